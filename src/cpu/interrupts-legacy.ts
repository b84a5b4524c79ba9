import { EventInfo, Vcpu } from './state-block.ts';
import type { Cpu } from './cpu.ts';
import { IF, IOPL, NT, POPF_WRITABLE, RF, RFLAGS_FIXED1, TF, VM, settleFlags } from './flags.ts';
import { readDescriptor, setCpl, type Descriptor } from './interrupts.ts';
import { Need } from './mmu.ts';
import { Vector } from './stop.ts';

/**
 * Event delivery through 32-bit IDT gates and IRETD, in 32-bit protected mode (SDM Vol. 3A
 * §6.12 "Exception and Interrupt Handling").
 *
 * The subset a flat ring-0 kernel needs: 8-byte interrupt and trap gates (D=1) to flat 32-bit
 * ring-0 code segments, frames pushed on the same stack (EFLAGS, CS, EIP, and the error code),
 * IRETD to the same privilege. Task gates, 16-bit gates, privilege changes (which need the TSS
 * stack), non-flat code segments, nested-task and virtual-8086 returns raise #GP instead — the
 * fault a guest that needs them would see first. Like the 64-bit path, every access is
 * translated before anything changes, so a fault or an exit during delivery leaves no trace.
 */

const EXT_BIT = 1;
const INTERRUPT_GATE32 = 0xe;
const TRAP_GATE32 = 0xf;

/** Base 0, limit 4 GiB (limit 0xfffff with 4 KiB granularity). */
function isFlat(d: Descriptor): boolean {
  return (d.lo >>> 16) === 0 && (d.hi & 0xff0000ff) === 0 && (d.lo & 0xffff) === 0xffff && (d.hi & 0x8f0000) === 0x8f0000;
}

/** The flat 32-bit code segment a gate or IRETD names; #GP(selector) for anything else. */
function codeSegment32(cpu: Cpu, selector: number, ext: number): Descriptor {
  if ((selector & ~3) === 0) cpu.fault(Vector.GP, ext);
  const d = readDescriptor(cpu, selector, ext);
  if (!d.code || d.long || !d.defaultSize || !isFlat(d)) cpu.fault(Vector.GP, (selector & ~3) | ext);
  if (!d.present) cpu.fault(Vector.NP, (selector & ~3) | ext);
  return d;
}

function readSystemDword(cpu: Cpu, linear: number): number {
  return cpu.mmu.read32(cpu.mmu.translate(linear, 0, Need.read | Need.supervisor, 4));
}

/**
 * Pushes the frame of `vector` through its 32-bit gate and enters the handler (the 32-bit
 * counterpart of the long-mode `pushFrame`; same arguments, same precise-fault contract).
 */
export function pushFrame32(cpu: Cpu, vector: number, type: number, error: number, returnRip: number, injected: boolean, faultClass: boolean): void {
  const w = cpu.words;
  const ext = type === EventInfo.external || type === EventInfo.hardwareException ? EXT_BIT : 0;
  const software = type === EventInfo.softwareInterrupt || type === EventInfo.softwareException;
  const gateError = vector * 8 + 2 + ext;
  if (vector * 8 + 7 > (w[Vcpu.idtrLimit] & 0xffff)) cpu.fault(Vector.GP, gateError);
  const gate = (w[Vcpu.idtrBase] + vector * 8) | 0;
  const g0 = readSystemDword(cpu, gate);
  const g1 = readSystemDword(cpu, (gate + 4) | 0);
  const gateType = (g1 >>> 8) & 0x1f;
  if (gateType !== INTERRUPT_GATE32 && gateType !== TRAP_GATE32) cpu.fault(Vector.GP, gateError);
  if (software && ((g1 >>> 13) & 3) < cpu.cpl) cpu.fault(Vector.GP, vector * 8 + 2);
  if (((g1 >>> 15) & 1) === 0) cpu.fault(Vector.NP, gateError);
  const selector = (g0 >>> 16) & 0xffff;
  const target = codeSegment32(cpu, selector, ext);
  // Same privilege only: a handler at a more privileged level needs a stack from the TSS.
  if (target.dpl !== cpu.cpl) cpu.fault(Vector.GP, (selector & ~3) | ext);
  const flags = settleFlags(cpu);
  const pushedFlags = injected ? flags : type === EventInfo.hardwareException && faultClass ? flags | RF : flags & ~RF;
  // Slots in push order (highest address first): EFLAGS, CS, EIP, [error code].
  const slots = [pushedFlags, w[Vcpu.cs] & 0xffff, returnRip | 0];
  if (error >= 0) slots.push(error);
  const physical: number[] = [];
  let esp = cpu.r[8];
  for (let k = 0; k < slots.length; k++) {
    esp = (esp - 4) | 0;
    physical.push(cpu.mmu.translate(esp, 0, Need.write | Need.stack | Need.supervisor, 4));
  }
  // Everything is translated: commit.
  for (let k = 0; k < slots.length; k++) cpu.mmu.write32(physical[k], slots[k]);
  cpu.r[8] = esp;
  cpu.r[9] = 0;
  w[Vcpu.cs] = (selector & ~3) | cpu.cpl;
  let nextFlags = flags & ~(TF | NT | RF | VM);
  if (gateType === INTERRUPT_GATE32) nextFlags &= ~IF;
  cpu.fl = nextFlags;
  cpu.rip = ((g1 & 0xffff0000) | (g0 & 0xffff)) >>> 0;
  cpu.shadow = 0;
  cpu.halted = false;
}

/** IRETD in 32-bit protected mode: pops EIP, CS and EFLAGS, to the same privilege level. */
export function iretd(cpu: Cpu): void {
  const r = cpu.r;
  const w = cpu.words;
  // A nested-task return (NT=1) goes through the TSS back link: task switches are not modelled.
  if ((settleFlags(cpu) & NT) !== 0) cpu.fault(Vector.GP, 0);
  const physical: number[] = [];
  for (let k = 0; k < 3; k++) physical.push(cpu.mmu.translate((r[8] + 4 * k) | 0, 0, Need.read | Need.stack, 4));
  const eip = cpu.mmu.read32(physical[0]);
  const selector = cpu.mmu.read32(physical[1]) & 0xffff;
  const popped = cpu.mmu.read32(physical[2]);
  // To an outer level (which pops SS:ESP too) is not modelled, nor a return to virtual-8086 mode.
  if ((selector & 3) !== cpu.cpl) cpu.fault(Vector.GP, selector & ~3);
  if ((popped & VM) !== 0 && cpu.cpl === 0) cpu.fault(Vector.GP, 0);
  const code = codeSegment32(cpu, selector, 0);
  if (code.dpl !== cpu.cpl) cpu.fault(Vector.GP, selector & ~3);
  const old = settleFlags(cpu);
  let mask = POPF_WRITABLE | RF;
  if (cpu.cpl > 0) mask &= ~IOPL;
  if (cpu.cpl > ((old & IOPL) >>> 12)) mask &= ~IF;
  cpu.fl = ((old & ~mask) | (popped & mask) | RFLAGS_FIXED1) & ~VM;
  r[8] = (r[8] + 12) | 0;
  r[9] = 0;
  w[Vcpu.cs] = selector;
  setCpl(cpu, selector & 3);
  cpu.rip = eip >>> 0;
  cpu.serialize();
}
