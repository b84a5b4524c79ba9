import { EventInfo, ExitReason, Vcpu } from './state-block.ts';
import type { Cpu } from './cpu.ts';
import { IF, IOPL, NT, POPF_WRITABLE, RF, RFLAGS_FIXED1, TF, VM, settleFlags } from './flags.ts';
import { Need } from './mmu.ts';
import { STOP, StopKind, Vector, exceptionClass } from './stop.ts';
import { iretd, pushFrame32 } from './interrupts-legacy.ts';

/**
 * Event delivery through the 64-bit IDT, IRETQ, and the descriptor reads they need
 * (SDM Vol. 3A ch. 6 "Interrupt and Exception Handling", §6.14 "64-bit mode").
 *
 * Delivery is precise: every memory access (IDT gate, GDT descriptor, TSS stack pointer, the
 * five or six stack slots) is translated before anything changes, so a fault or EPT violation
 * during delivery leaves the vCPU exactly as it was — the basis of the double-fault rules here and
 * of restarting delivery after the hypervisor handled an exit.
 */

const EXT_BIT = 1;
const EFER_LMA = 0x400;

/** Reads a qword at a linear address as an implicit supervisor access. Returns lo; hi in mmu.hi. */
export function readSystemQword(cpu: Cpu, lo: number, hi: number): number {
  const pa = cpu.mmu.translate(lo, hi, Need.read | Need.supervisor, 8);
  return cpu.mmu.read64(pa);
}

function addLinear(lo: number, hi: number, offset: number): [number, number] {
  const t = (lo >>> 0) + offset;
  return [t | 0, (hi + Math.floor(t / 4294967296)) | 0];
}

/** A segment descriptor's fields that 64-bit mode uses. */
export interface Descriptor {
  readonly lo: number;
  readonly hi: number;
  readonly present: boolean;
  readonly dpl: number;
  /** S=1 and type bit 3 set. */
  readonly code: boolean;
  readonly writableData: boolean;
  readonly long: boolean;
  readonly defaultSize: boolean;
  readonly systemType: number;
}

/** Reads the GDT descriptor for `selector`; #GP(selector) outside the GDT limit or in an LDT. */
export function readDescriptor(cpu: Cpu, selector: number, ext = 0): Descriptor {
  const w = cpu.words;
  const index = selector & ~7;
  if ((selector & 4) !== 0 || index + 7 > (w[Vcpu.gdtrLimit] & 0xffff)) cpu.fault(Vector.GP, (selector & ~3) | ext);
  const [lo, hi] = addLinear(w[Vcpu.gdtrBase], w[Vcpu.gdtrBase + 1], index);
  const dlo = readSystemQword(cpu, lo, hi);
  const dhi = cpu.mmu.hi;
  const s = (dhi >>> 12) & 1;
  const type = (dhi >>> 8) & 0xf;
  return {
    lo: dlo,
    hi: dhi,
    present: ((dhi >>> 15) & 1) !== 0,
    dpl: (dhi >>> 13) & 3,
    code: s === 1 && (type & 8) !== 0,
    writableData: s === 1 && (type & 8) === 0 && (type & 2) !== 0,
    long: ((dhi >>> 21) & 1) !== 0,
    defaultSize: ((dhi >>> 22) & 1) !== 0,
    systemType: s === 0 ? type : -1,
  };
}

/** A 64-bit code segment — or, with `compatible`, a 32-bit one (IRETQ to compatibility mode). */
function checkCodeSegment(cpu: Cpu, selector: number, ext: number, compatible = false): Descriptor {
  if ((selector & ~3) === 0) cpu.fault(Vector.GP, ext);
  const d = readDescriptor(cpu, selector, ext);
  const bits64 = d.long && !d.defaultSize;
  const bits32 = compatible && !d.long && d.defaultSize;
  if (!d.code || !(bits64 || bits32)) cpu.fault(Vector.GP, (selector & ~3) | ext);
  if (!d.present) cpu.fault(Vector.NP, (selector & ~3) | ext);
  return d;
}

/** Reads a stack pointer from the 64-bit TSS (RSPn at 4 + 8n, ISTn at 0x24 + 8(n-1)). */
function tssStack(cpu: Cpu, offset: number, ext: number): [number, number] {
  const w = cpu.words;
  if (offset + 7 > w[Vcpu.trLimit]) cpu.fault(Vector.TS, (w[Vcpu.tr] & ~3) | ext);
  const [lo, hi] = addLinear(w[Vcpu.trBase], w[Vcpu.trBase + 1], offset);
  const value = readSystemQword(cpu, lo, hi);
  return [value, cpu.mmu.hi];
}

/** Sets CPL-dependent state after CS changed. */
export function setCpl(cpu: Cpu, cpl: number): void {
  if (cpl === cpu.cpl) return;
  cpu.cpl = cpl;
  cpu.mmu.userShift = cpl === 3 ? 3 : 0;
  // Execute permissions differ between CPLs: decoded blocks must re-check their translation.
  cpu.mmu.epoch++;
}

function eventInfo(vector: number, type: number, error: number): number {
  return EventInfo.valid | (type << EventInfo.typeShift) | vector | (error >= 0 ? EventInfo.hasError : 0);
}

function isFaultClass(vector: number): boolean {
  return vector !== Vector.DB && vector !== Vector.BP && vector !== Vector.OF;
}

/**
 * Delivers an event. `returnRip` is the RIP pushed (the faulting instruction for faults, the next
 * one for traps and software interrupts). Exceptions set in the exception bitmap become VM exits.
 * A fault during delivery of an exception follows the double-fault table (SDM Table 6-5); a fault
 * during #DF delivery is a triple fault (a VM exit). A fault during a software interrupt or a
 * software exception (INT n, INT3) is the instruction's own fault and propagates. Returns true when
 * the original event was delivered.
 *
 * `injected` marks an event injected at VM entry (SDM 3C §26.5.1): it never causes a VM exit
 * directly (the exception bitmap is not consulted for it), it does not load CR2 (CR2 is guest
 * state the injector sets), and the RFLAGS image keeps RF as loaded. Exceptions raised while
 * delivering it are ordinary exceptions.
 */
export function deliverEvent(cpu: Cpu, vector: number, type: number, error: number, returnRip: number, injected = false): boolean {
  let v = vector;
  let t = type;
  let err = error;
  // True while delivering the event we were called with (false once a nested exception replaced it).
  let original = true;
  // The event whose delivery raised the exception being delivered now, for the IDT-vectoring info
  // of an exit that exception causes through the exception bitmap (SDM 3C §27.2.4); 0 if none.
  let outer = 0;
  let outerError = 0;
  for (;;) {
    const hardware = t === EventInfo.hardwareException || t === EventInfo.softwareException;
    if (hardware && !(injected && original) && ((cpu.words[Vcpu.exceptionBitmap] >>> v) & 1) !== 0) {
      cpu.delivering = outer;
      cpu.deliveringError = outerError;
      exceptionExit(cpu, v, err);
    }
    cpu.delivering = eventInfo(v, t, err);
    cpu.deliveringError = err >= 0 ? err : 0;
    // CR2 is loaded before the frame is pushed: a #PF whose delivery then causes a VM exit (an EPT
    // violation on the IDT or the stack) has still updated CR2 (SDM 3C §27.1, events that cause a
    // VM exit indirectly). Written after pushFrame, CR2 kept its old value on such exits.
    if (v === Vector.PF && t === EventInfo.hardwareException && !(injected && original)) {
      cpu.words[Vcpu.cr2] = cpu.faultCr2Lo;
      cpu.words[Vcpu.cr2 + 1] = cpu.faultCr2Hi;
    }
    try {
      pushFrame(cpu, v, t, err, returnRip, injected && original);
      return v === vector && t === type;
    } catch (error) {
      if (error !== STOP) throw error;
      // INT3 (a software exception) faults like INT n: the #GP/#NP is reported for the instruction
      // with its own RIP, not handled as a nested exception pushing the next RIP.
      if (cpu.stopKind === StopKind.exit || t === EventInfo.softwareInterrupt || t === EventInfo.softwareException) throw error;
      const second = cpu.faultVector;
      if (v === Vector.DF) {
        cpu.delivering = 0;
        cpu.words[Vcpu.exitReason] = ExitReason.tripleFault;
        cpu.exit(ExitReason.tripleFault);
      }
      const first = exceptionClass(v);
      const next = exceptionClass(second);
      if ((first === 'contributory' && next === 'contributory') || (first === 'pageFault' && next !== 'benign')) {
        // CR2 is loaded when a page fault is detected; one that becomes a #DF still loads it.
        if (second === Vector.PF) {
          cpu.words[Vcpu.cr2] = cpu.faultCr2Lo;
          cpu.words[Vcpu.cr2 + 1] = cpu.faultCr2Hi;
        }
        // A #DF that exits is not "during delivery" of the first event (SDM 3C §27.2.4).
        outer = 0;
        outerError = 0;
        v = Vector.DF;
        err = 0;
      } else {
        outer = eventInfo(v, t, err);
        outerError = err >= 0 ? err : 0;
        v = second;
        err = cpu.faultError;
      }
      t = EventInfo.hardwareException;
      original = false;
    } finally {
      cpu.delivering = 0;
      cpu.deliveringError = 0;
    }
  }
}

function exceptionExit(cpu: Cpu, vector: number, error: number): never {
  const w = cpu.words;
  if (vector === Vector.PF) {
    // A #PF that exits does not write CR2; the address travels in the exit record.
    w[Vcpu.exitGla] = cpu.faultCr2Lo;
    w[Vcpu.exitGla + 1] = cpu.faultCr2Hi;
  }
  return cpu.exit(ExitReason.exception, 0, vector, error >= 0 ? error : 0, error >= 0 ? 1 : 0);
}

function pushFrame(cpu: Cpu, vector: number, type: number, error: number, returnRip: number, injected: boolean): void {
  // 32-bit gates in protected mode; in IA-32e mode (64-bit and compatibility mode) 64-bit gates.
  if ((cpu.words[Vcpu.efer] & EFER_LMA) === 0) return pushFrame32(cpu, vector, type, error, returnRip, injected, isFaultClass(vector));
  const w = cpu.words;
  const ext = type === EventInfo.external || type === EventInfo.hardwareException ? EXT_BIT : 0;
  const software = type === EventInfo.softwareInterrupt || type === EventInfo.softwareException;
  if (vector * 16 + 15 > (w[Vcpu.idtrLimit] & 0xffff)) cpu.fault(Vector.GP, vector * 8 + 2 + ext);
  const [gateLo, gateHi] = addLinear(w[Vcpu.idtrBase], w[Vcpu.idtrBase + 1], vector * 16);
  const g0 = readSystemQword(cpu, gateLo, gateHi);
  const g1 = cpu.mmu.hi;
  const [upperLo, upperHi] = addLinear(gateLo, gateHi, 8);
  const g2 = readSystemQword(cpu, upperLo, upperHi);
  const gateType = (g1 >>> 8) & 0xf;
  if (gateType !== 0xe && gateType !== 0xf) cpu.fault(Vector.GP, vector * 8 + 2 + ext);
  if (software && ((g1 >>> 13) & 3) < cpu.cpl) cpu.fault(Vector.GP, vector * 8 + 2);
  if (((g1 >>> 15) & 1) === 0) cpu.fault(Vector.NP, vector * 8 + 2 + ext);
  const selector = (g0 >>> 16) & 0xffff;
  const target = checkCodeSegment(cpu, selector, ext);
  const newCpl = target.dpl;
  if (newCpl > cpu.cpl) cpu.fault(Vector.GP, (selector & ~3) | ext);
  const targetLo = ((g1 & 0xffff0000) | (g0 & 0xffff)) | 0;
  const targetHi = g2;
  if (((targetHi >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.GP, ext);
  const ist = g1 & 7;
  const r = cpu.r;
  let rspLo = r[8];
  let rspHi = r[9];
  if (ist !== 0) [rspLo, rspHi] = tssStack(cpu, 0x24 + (ist - 1) * 8, ext);
  else if (newCpl < cpu.cpl) [rspLo, rspHi] = tssStack(cpu, 4 + newCpl * 8, ext);
  rspLo &= ~0xf;
  const flags = settleFlags(cpu);
  const [retLo, retHi] = canonicalHalves(returnRip);
  // Faults push RF=1 (a restarted instruction must not re-trigger an instruction breakpoint); an
  // injected event pushes RF as loaded (SDM 3C §26.5.1.1).
  const pushedFlags = injected ? flags : type === EventInfo.hardwareException && isFaultClass(vector) ? flags | RF : flags & ~RF;
  // Slots in push order (highest address first): SS, RSP, RFLAGS, CS, RIP, [error code].
  const slots = [w[Vcpu.ss] & 0xffff, 0, r[8], r[9], pushedFlags, 0, w[Vcpu.cs] & 0xffff, 0, retLo, retHi];
  if (error >= 0) slots.push(error, 0);
  const count = slots.length / 2;
  const physical: number[] = [];
  let [lo, hi] = [rspLo, rspHi];
  for (let k = 0; k < count; k++) {
    [lo, hi] = addLinear(lo, hi, -8);
    if (((hi >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.SS, ext);
    physical.push(cpu.mmu.translate(lo, hi, Need.write | Need.stack | Need.supervisor, 8));
  }
  // Everything is translated: commit.
  for (let k = 0; k < count; k++) cpu.mmu.write64(physical[k], slots[2 * k], slots[2 * k + 1]);
  r[8] = lo;
  r[9] = hi;
  if (newCpl !== cpu.cpl) w[Vcpu.ss] = newCpl;
  w[Vcpu.cs] = (selector & ~3) | newCpl;
  setCpl(cpu, newCpl);
  let nextFlags = flags & ~(TF | NT | RF | VM);
  if (gateType === 0xe) nextFlags &= ~IF;
  cpu.fl = nextFlags;
  cpu.rip = (targetHi & 0xffff) * 4294967296 + (targetLo >>> 0);
  cpu.shadow = 0;
  cpu.halted = false;
  // A 64-bit gate leads to 64-bit code, also from compatibility mode.
  if (cpu.mode32) {
    w[Vcpu.csCompat] = 0;
    cpu.setMode32(false);
  }
}

function canonicalHalves(linear: number): [number, number] {
  return [linear % 4294967296 | 0, ((Math.floor(linear / 4294967296) & 0xffff) << 16) >> 16];
}

/** IRET: IRETD in 32-bit protected mode, else IRETQ. */
export function interruptReturn(cpu: Cpu): void {
  if ((cpu.words[Vcpu.efer] & EFER_LMA) === 0) iretd(cpu);
  else iretq(cpu);
}

/** IRETQ (64-bit operand size): pops RIP, CS, RFLAGS, RSP, SS. */
export function iretq(cpu: Cpu): void {
  const r = cpu.r;
  const w = cpu.words;
  const physical: number[] = [];
  let [lo, hi] = [r[8], r[9]];
  for (let k = 0; k < 5; k++) {
    physical.push(cpu.mmu.translate(lo, hi, Need.read | Need.stack, 8));
    [lo, hi] = addLinear(lo, hi, 8);
  }
  const values: number[] = [];
  for (const pa of physical) values.push(cpu.mmu.read64(pa), cpu.mmu.hi);
  const [ripLo, ripHi, cs, , flagsLo, , rspLo, rspHi, ss] = values;
  const selector = cs & 0xffff;
  const rpl = selector & 3;
  if (rpl < cpu.cpl) cpu.fault(Vector.GP, selector & ~3);
  const code = checkCodeSegment(cpu, selector, 0, true);
  if (code.dpl !== rpl) cpu.fault(Vector.GP, selector & ~3);
  const compat = !code.long;
  if (!compat && ((ripHi >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.GP, 0);
  const stackSelector = ss & 0xffff;
  if (rpl !== 0 || (stackSelector & ~3) !== 0) {
    if ((stackSelector & ~3) === 0) cpu.fault(Vector.GP, 0);
    if ((stackSelector & 3) !== rpl) cpu.fault(Vector.GP, stackSelector & ~3);
    const stack = readDescriptor(cpu, stackSelector);
    if (!stack.writableData || stack.dpl !== rpl) cpu.fault(Vector.GP, stackSelector & ~3);
    if (!stack.present) cpu.fault(Vector.SS, stackSelector & ~3);
  }
  const old = settleFlags(cpu);
  let mask = POPF_WRITABLE | RF;
  if (cpu.cpl > 0) mask &= ~IOPL;
  if (cpu.cpl > ((old & IOPL) >>> 12)) mask &= ~IF;
  cpu.fl = ((old & ~mask) | (flagsLo & mask) | RFLAGS_FIXED1) & ~VM;
  r[8] = rspLo;
  r[9] = rspHi;
  w[Vcpu.ss] = stackSelector;
  w[Vcpu.cs] = selector;
  setCpl(cpu, rpl);
  // To compatibility mode the return address is EIP: its high half is not part of it.
  w[Vcpu.csCompat] = compat ? 1 : 0;
  cpu.setMode32(compat);
  cpu.rip = compat ? ripLo >>> 0 : (ripHi & 0xffff) * 4294967296 + (ripLo >>> 0);
  cpu.serialize();
}
