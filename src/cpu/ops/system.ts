import { DtrKind, EventInfo, ExitControl, ExitReason, UdReason, Vcpu } from '../state-block.ts';
import type { Cpu } from '../cpu.ts';
import { DF, IF, IOPL, POPF_WRITABLE, RF, RFLAGS_FIXED1, VM, settleFlags } from '../flags.ts';
import { deliverEvent, interruptReturn as iret, readDescriptor, setCpl } from '../interrupts.ts';
import { MAX_PHYS_BITS, Need } from '../mmu.ts';
import { GO_ON, Vector, type HelperExit } from '../stop.ts';
import { cpuidLeaf } from './cpuid.ts';
import { MSR, readMsr, writeMsr } from './msr.ts';

/**
 * Privileged and system instructions: MOV CR, RDMSR/WRMSR, CPUID, RDTSC, XSETBV, LGDT/LIDT/SGDT/
 * SIDT/LTR, INVLPG, VMCALL, SWAPGS, SYSCALL/SYSRET, CLI/STI/HLT, INT3/INT n/IRETQ, PUSHFQ/POPFQ,
 * ENTER. Each checks privilege first, then exits if the hypervisor asked for it (before any
 * effect), then executes.
 */

export const CR0 = { PE: 1, MP: 2, EM: 4, TS: 8, ET: 0x10, NE: 0x20, WP: 0x10000, AM: 0x40000, NW: 0x20000000, CD: 0x40000000, PG: 0x80000000 | 0 } as const;
export const CR4 = { PSE: 0x10, PAE: 0x20, PGE: 0x80, OSFXSR: 0x200, OSXMMEXCPT: 0x400, OSXSAVE: 0x40000, SMEP: 0x100000 } as const;
export const EFER = { SCE: 1, LME: 0x100, LMA: 0x400, NXE: 0x800 } as const;

const CR0_SUPPORTED = CR0.PE | CR0.MP | CR0.EM | CR0.TS | CR0.ET | CR0.NE | CR0.WP | CR0.AM | CR0.NW | CR0.CD | CR0.PG;
const CR4_SUPPORTED = CR4.PSE | CR4.PAE | CR4.PGE | CR4.OSFXSR | CR4.OSXMMEXCPT | CR4.OSXSAVE | CR4.SMEP;

/** Copies paging and segment state from the state block into the CPU's caches (VM entry). */
export function loadControlState(cpu: Cpu): void {
  const w = cpu.words;
  // Only a real CPL change re-checks decoded blocks' translations (setCpl keeps cpl and the MMU's user bit in step).
  setCpl(cpu, w[Vcpu.cs] & 3);
  cpu.fsLo = w[Vcpu.fsBase];
  cpu.fsHi = w[Vcpu.fsBase + 1];
  cpu.gsLo = w[Vcpu.gsBase];
  cpu.gsHi = w[Vcpu.gsBase + 1];
  configurePaging(cpu, false);
  cpu.setMode32((w[Vcpu.efer] & EFER.LMA) === 0 || w[Vcpu.csCompat] !== 0);
}

/**
 * Pushes CR0/CR3/CR4/EFER into the MMU. The guest's own writes (`force`) always drop the TLB, as
 * MOV CR3 does even with the same value; a VM entry drops it only when the hypervisor changed
 * the paging state — translations survive exits, as with VPID on real hardware.
 */
export function configurePaging(cpu: Cpu, force = true): void {
  const w = cpu.words;
  const mmu = cpu.mmu;
  const cr0 = w[Vcpu.cr0];
  const cr4 = w[Vcpu.cr4];
  const efer = w[Vcpu.efer];
  const cr3Lo = w[Vcpu.cr3];
  const cr3Hi = w[Vcpu.cr3 + 1];
  if (!force && mmu.pagingStateIs(cr0, cr3Lo, cr3Hi, cr4, efer)) return;
  mmu.pagingOn = (cr0 & CR0.PG) !== 0;
  mmu.writeProtect = (cr0 & CR0.WP) !== 0;
  mmu.smep = (cr4 & CR4.SMEP) !== 0;
  mmu.nxEnabled = (efer & EFER.NXE) !== 0;
  // 32-bit (non-PAE) paging is not modelled: MOV CR0/CR4 refuse to turn it on (#GP), and a
  // protected-mode state with paging on is walked as PAE.
  mmu.pae = mmu.pagingOn && (efer & EFER.LMA) === 0;
  const hi = cr3Hi & ((1 << (MAX_PHYS_BITS - 32)) - 1);
  mmu.cr3Page = hi * 4294967296 + ((cr3Lo & ~0xfff) >>> 0);
  mmu.flush();
  mmu.notePagingState(cr0, cr3Lo, cr3Hi, cr4, efer);
}

/** True when CR0/CR4/EFER values select PAE paging in 32-bit protected mode. */
function paePaging(cr0: number, cr4: number, efer: number): boolean {
  return (cr0 & CR0.PG) !== 0 && (cr4 & CR4.PAE) !== 0 && (efer & EFER.LMA) === 0;
}

/**
 * Loads the PDPTE registers from the PDPT at CR3[31:5] (SDM Vol. 3A §4.4.1), for a MOV to CR0,
 * CR3 or CR4 that leaves PAE paging on. #GP(0) — with no register changed — when a present
 * PDPTE has reserved bits set; callers commit the control register only after this returned.
 */
function loadPdptes(cpu: Cpu, cr3: number): void {
  const entries = cpu.mmu.readPdpt((cr3 & ~0x1f) >>> 0);
  if (entries === null) cpu.fault(Vector.GP, 0);
  cpu.words.set(entries, Vcpu.pdpte);
}

function exitsOn(cpu: Cpu, control: number): boolean {
  return !cpu.instructionExitsSuppressed && (cpu.words[Vcpu.exitControls] & control) !== 0;
}

const CR_EXIT = [ExitControl.crWrite0, 0, 0, ExitControl.crWrite3, ExitControl.crWrite4, 0, 0, 0, ExitControl.crWrite8];

/** MOV CRn, r64 (SDM Vol. 2B "MOV—Move to/from Control Registers"). */
export function writeCr(cpu: Cpu, n: number, lo: number, hi: number, sourceRegister: number): HelperExit {
  const w = cpu.words;
  if (n === 1 || (n > 4 && n !== 8)) cpu.fault(Vector.UD);
  const control = CR_EXIT[n] ?? 0;
  if (control !== 0 && exitsOn(cpu, control)) return cpu.recordExit(ExitReason.crWrite, sourceRegister << 8, n, lo, hi);
  const efer = w[Vcpu.efer];
  const longMode = (efer & EFER.LMA) !== 0;
  switch (n) {
    case 0: {
      if (hi !== 0 || (lo & ~CR0_SUPPORTED) !== 0) cpu.fault(Vector.GP, 0);
      // Long mode cannot be left here, nor real mode entered. In protected mode paging may go on
      // and off, but only as PAE paging: vcpusim has no 32-bit (non-PAE) paging, and turning
      // paging on with EFER.LME set (entering long mode) is not modelled either — both #GP.
      if ((lo & CR0.PE) === 0 || (longMode && (lo & CR0.PG) === 0)) cpu.fault(Vector.GP, 0);
      if ((lo & CR0.NW) !== 0 && (lo & CR0.CD) === 0) cpu.fault(Vector.GP, 0);
      if (!longMode && (lo & CR0.PG) !== 0 && ((w[Vcpu.cr4] & CR4.PAE) === 0 || (efer & EFER.LME) !== 0)) cpu.fault(Vector.GP, 0);
      const pagingBits = CR0.PG | CR0.CD | CR0.NW;
      if (paePaging(lo, w[Vcpu.cr4], efer) && ((lo ^ w[Vcpu.cr0]) & pagingBits) !== 0) loadPdptes(cpu, w[Vcpu.cr3]);
      w[Vcpu.cr0] = lo | CR0.ET;
      w[Vcpu.cr0 + 1] = 0;
      configurePaging(cpu);
      break;
    }
    case 2:
      w[Vcpu.cr2] = lo;
      w[Vcpu.cr2 + 1] = hi;
      break;
    case 3:
      if ((hi & ~((1 << (MAX_PHYS_BITS - 32)) - 1)) !== 0) cpu.fault(Vector.GP, 0);
      if (paePaging(w[Vcpu.cr0], w[Vcpu.cr4], efer)) loadPdptes(cpu, lo);
      w[Vcpu.cr3] = lo;
      w[Vcpu.cr3 + 1] = hi;
      configurePaging(cpu);
      break;
    case 4: {
      // PAE stays on while paging is: clearing it would mean long mode off or 32-bit paging.
      if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0 || ((lo & CR4.PAE) === 0 && (w[Vcpu.cr0] & CR0.PG) !== 0)) cpu.fault(Vector.GP, 0);
      const pagingBits = CR4.PAE | CR4.PGE | CR4.PSE | CR4.SMEP;
      if (paePaging(w[Vcpu.cr0], lo, efer) && ((lo ^ w[Vcpu.cr4]) & pagingBits) !== 0) loadPdptes(cpu, w[Vcpu.cr3]);
      w[Vcpu.cr4] = lo;
      w[Vcpu.cr4 + 1] = 0;
      configurePaging(cpu);
      break;
    }
    default:
      if (hi !== 0 || (lo & ~0xf) !== 0) cpu.fault(Vector.GP, 0);
      w[Vcpu.cr8] = lo;
  }
  cpu.serialize();
  return GO_ON;
}

/** MOV r64, CRn. */
export function readCr(cpu: Cpu, n: number, destination: number): void {
  const w = cpu.words;
  let lo: number;
  let hi = 0;
  switch (n) {
    case 0: lo = w[Vcpu.cr0]; break;
    case 2: lo = w[Vcpu.cr2]; hi = w[Vcpu.cr2 + 1]; break;
    case 3: lo = w[Vcpu.cr3]; hi = w[Vcpu.cr3 + 1]; break;
    case 4: lo = w[Vcpu.cr4]; break;
    case 8: lo = w[Vcpu.cr8] & 0xf; break;
    default: return cpu.fault(Vector.UD);
  }
  cpu.r[2 * destination] = lo;
  // 32-bit code reads the low half, zero-extended like any 32-bit result.
  cpu.r[2 * destination + 1] = cpu.mode32 ? 0 : hi;
}

export function rdmsr(cpu: Cpu): void {
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  const index = cpu.r[2] >>> 0;
  const value = readMsr(cpu, index);
  if (value === null) return cpu.fault(Vector.GP, 0);
  cpu.r[0] = value[0];
  cpu.r[1] = 0;
  cpu.r[4] = value[1];
  cpu.r[5] = 0;
}

export function wrmsr(cpu: Cpu): HelperExit {
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  const index = cpu.r[2] >>> 0;
  const lo = cpu.r[0];
  const hi = cpu.r[4];
  if (exitsOn(cpu, ExitControl.msrWrite)) return cpu.recordExit(ExitReason.msrWrite, 0, index, lo, hi);
  if (!writeMsr(cpu, index, lo, hi)) cpu.fault(Vector.GP, 0);
  if (index === MSR.EFER) configurePaging(cpu);
  cpu.serialize();
  return GO_ON;
}

export function cpuid(cpu: Cpu): void {
  const r = cpu.r;
  const [eax, ebx, ecx, edx] = cpuidLeaf(cpu, r[0] >>> 0, r[2] >>> 0);
  r[0] = eax; r[1] = 0;
  r[6] = ebx; r[7] = 0;
  r[2] = ecx; r[3] = 0;
  r[4] = edx; r[5] = 0;
  cpu.serialize();
}

/** The virtual TSC: retired steps of this vCPU plus the hypervisor's TSC offset. Deterministic. */
export function timestamp(cpu: Cpu): [number, number] {
  const w = cpu.words;
  const offset = (w[Vcpu.tscOffset + 1] >>> 0) * 4294967296 + (w[Vcpu.tscOffset] >>> 0);
  const value = cpu.stepCount() + offset;
  return [value % 4294967296 | 0, Math.floor(value / 4294967296) | 0];
}

export function rdtsc(cpu: Cpu): void {
  const [lo, hi] = timestamp(cpu);
  cpu.r[0] = lo;
  cpu.r[1] = 0;
  cpu.r[4] = hi;
  cpu.r[5] = 0;
}

export function xsetbv(cpu: Cpu): HelperExit {
  const w = cpu.words;
  const index = cpu.r[2] >>> 0;
  const lo = cpu.r[0];
  const hi = cpu.r[4];
  if ((w[Vcpu.cr4] & CR4.OSXSAVE) === 0) cpu.fault(Vector.UD);
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  if (exitsOn(cpu, ExitControl.xcrWrite)) return cpu.recordExit(ExitReason.xcrWrite, 0, index, lo, hi);
  // Only XCR0 exists; x87 state (bit 0) must stay set, and this CPU has no other state components:
  // CPUID.(EAX=0DH,ECX=0):EAX = 1, and setting an XCR0 bit that leaf reports as 0 is #GP (SDM
  // XSETBV). SSE/AVX (bits 1, 2) used to be accepted although the CPU reports neither.
  if (index !== 0 || hi !== 0 || lo !== 1) cpu.fault(Vector.GP, 0);
  w[Vcpu.xcr0] = lo;
  w[Vcpu.xcr0 + 1] = 0;
  return GO_ON;
}

/** LGDT/LIDT/SGDT/SIDT m16&64 at linear ea/eah. */
export function descriptorTable(cpu: Cpu, kind: number, ea: number, eah: number, stack: boolean): HelperExit {
  const w = cpu.words;
  const store = kind === DtrKind.sgdt || kind === DtrKind.sidt;
  if (!store && cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  // The exit comes before the operand is accessed: a fault-like exit that does not depend on the
  // operand's contents has priority over a #PF on the operand (SDM 3C §25.1.1).
  if (exitsOn(cpu, ExitControl.dtr)) {
    w[Vcpu.exitGla] = ea;
    w[Vcpu.exitGla + 1] = eah;
    return cpu.recordExit(ExitReason.dtr, 0, kind);
  }
  const mmu = cpu.mmu;
  // 32-bit code: m16&32, the base is 4 bytes (a 16-bit operand's 24-bit base is not modelled).
  const baseBytes = cpu.mode32 ? 4 : 8;
  const limitPa = mmu.translate(ea, eah, (store ? Need.write : Need.read) | (stack ? Need.stack : 0), 2);
  const t = (ea >>> 0) + 2;
  const baseLo = t | 0;
  const baseHi = cpu.mode32 ? 0 : (eah + (t > 4294967295 ? 1 : 0)) | 0;
  const basePa = mmu.translate(baseLo, baseHi, (store ? Need.write : Need.read) | (stack ? Need.stack : 0), baseBytes);
  const limitField = kind === DtrKind.lgdt || kind === DtrKind.sgdt ? Vcpu.gdtrLimit : Vcpu.idtrLimit;
  const baseField = kind === DtrKind.lgdt || kind === DtrKind.sgdt ? Vcpu.gdtrBase : Vcpu.idtrBase;
  if (store) {
    mmu.write16(limitPa, w[limitField] & 0xffff);
    if (cpu.mode32) mmu.write32(basePa, w[baseField]);
    else mmu.write64(basePa, w[baseField], w[baseField + 1]);
    return GO_ON;
  }
  const limit = mmu.read16(limitPa);
  const lo = cpu.mode32 ? mmu.read32(basePa) : mmu.read64(basePa);
  const hi = cpu.mode32 ? 0 : mmu.hi;
  if (((hi >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.GP, 0);
  w[limitField] = limit;
  w[baseField] = lo;
  w[baseField + 1] = hi;
  cpu.serialize();
  return GO_ON;
}

/** LTR r/m16: loads the task register from a 64-bit TSS descriptor and marks it busy. */
export function ltr(cpu: Cpu, selector: number): HelperExit {
  const w = cpu.words;
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  if (exitsOn(cpu, ExitControl.dtr)) return cpu.recordExit(ExitReason.dtr, 0, DtrKind.ltr, selector);
  if ((selector & ~3) === 0) cpu.fault(Vector.GP, 0);
  const d = readDescriptor(cpu, selector);
  if (d.systemType !== 9) cpu.fault(Vector.GP, selector & ~3);
  if (!d.present) cpu.fault(Vector.NP, selector & ~3);
  const index = selector & ~7;
  const t = (w[Vcpu.gdtrBase] >>> 0) + index + 8;
  const upper = cpu.mmu.translate(t | 0, (w[Vcpu.gdtrBase + 1] + (t > 4294967295 ? 1 : 0)) | 0, Need.read | Need.supervisor, 8);
  const baseHi = cpu.mmu.read64(upper);
  const tb = (w[Vcpu.gdtrBase] >>> 0) + index + 4;
  const typeWord = cpu.mmu.translate(tb | 0, (w[Vcpu.gdtrBase + 1] + (tb > 4294967295 ? 1 : 0)) | 0, Need.readWrite | Need.supervisor, 4);
  cpu.mmu.write32(typeWord, d.hi | 0x200);
  w[Vcpu.tr] = selector;
  w[Vcpu.trBase] = ((d.hi & 0xff000000) | ((d.hi & 0xff) << 16) | ((d.lo >>> 16) & 0xffff)) | 0;
  w[Vcpu.trBase + 1] = baseHi;
  w[Vcpu.trLimit] = ((d.hi & 0xf0000) | (d.lo & 0xffff)) >>> 0;
  return GO_ON;
}

export function invlpg(cpu: Cpu, ea: number, eah: number): void {
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  cpu.mmu.flushPage(ea, eah);
  cpu.serialize();
}

export function vmcall(cpu: Cpu): HelperExit {
  return cpu.recordExit(ExitReason.vmcall);
}

export function swapgs(cpu: Cpu): void {
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  const w = cpu.words;
  const lo = w[Vcpu.kernelGsBase];
  const hi = w[Vcpu.kernelGsBase + 1];
  w[Vcpu.kernelGsBase] = w[Vcpu.gsBase];
  w[Vcpu.kernelGsBase + 1] = w[Vcpu.gsBase + 1];
  w[Vcpu.gsBase] = lo;
  w[Vcpu.gsBase + 1] = hi;
  cpu.gsLo = lo;
  cpu.gsHi = hi;
}

/** SYSCALL (SDM Vol. 2B): ring 3 → ring 0 through STAR/LSTAR/FMASK. */
export function syscall(cpu: Cpu, nextIp: number): void {
  const w = cpu.words;
  // Outside 64-bit mode SYSCALL is #UD on Intel CPUs, whose behaviour vcpusim follows.
  if ((w[Vcpu.efer] & EFER.SCE) === 0 || cpu.mode32) cpu.fault(Vector.UD);
  const r = cpu.r;
  const [lo, hi] = canonicalHalves(nextIp);
  r[2] = lo;
  r[3] = hi;
  const flags = settleFlags(cpu) & ~RF;
  r[22] = flags;
  r[23] = 0;
  cpu.fl = (flags & ~w[Vcpu.fmask]) | RFLAGS_FIXED1;
  const star = w[Vcpu.star + 1];
  w[Vcpu.cs] = star & 0xfffc;
  w[Vcpu.ss] = ((star & 0xffff) + 8) & 0xffff;
  setCpl(cpu, 0);
  cpu.rip = (w[Vcpu.lstar + 1] & 0xffff) * 4294967296 + (w[Vcpu.lstar] >>> 0);
}

/** SYSRET with REX.W (return to 64-bit ring 3). */
export function sysret(cpu: Cpu): void {
  const w = cpu.words;
  if ((w[Vcpu.efer] & EFER.SCE) === 0) cpu.fault(Vector.UD);
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  const r = cpu.r;
  if (((r[3] >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.GP, 0);
  const selector = (w[Vcpu.star + 1] >>> 16) & 0xffff;
  cpu.fl = (r[22] & 0x3c7fd7) | RFLAGS_FIXED1;
  w[Vcpu.cs] = ((selector + 16) & 0xffff) | 3;
  w[Vcpu.ss] = ((selector + 8) & 0xffff) | 3;
  setCpl(cpu, 3);
  cpu.rip = (r[3] & 0xffff) * 4294967296 + (r[2] >>> 0);
}

function iopl(cpu: Cpu): number {
  return (cpu.fl & IOPL) >>> 12;
}

export function cli(cpu: Cpu): void {
  if (cpu.cpl > iopl(cpu)) cpu.fault(Vector.GP, 0);
  cpu.fl &= ~IF;
}

/** STI: interrupts stay blocked for one more instruction when IF was clear (the STI shadow). */
export function sti(cpu: Cpu): void {
  if (cpu.cpl > iopl(cpu)) cpu.fault(Vector.GP, 0);
  if ((cpu.fl & IF) === 0) cpu.shadow = 2;
  cpu.fl |= IF;
}

export function hlt(cpu: Cpu, nextIp: number): HelperExit {
  if (cpu.cpl !== 0) cpu.fault(Vector.GP, 0);
  if (exitsOn(cpu, ExitControl.hlt)) return cpu.recordExit(ExitReason.hlt);
  cpu.halted = true;
  cpu.boundaryWork = true;
  cpu.rip = nextIp;
  return GO_ON;
}

export function int3(cpu: Cpu, nextIp: number): HelperExit {
  if (exitsOn(cpu, ExitControl.int3)) return cpu.recordExit(ExitReason.int3);
  deliverEvent(cpu, Vector.BP, EventInfo.softwareException, -1, nextIp);
  return GO_ON;
}

export function softwareInterrupt(cpu: Cpu, vector: number, nextIp: number): void {
  deliverEvent(cpu, vector, EventInfo.softwareInterrupt, -1, nextIp);
}

/** IRET at `ip` (iced `code`): IRETD in 32-bit protected mode, IRETQ in 64-bit mode. */
export function interruptReturn(cpu: Cpu, code: number, ip: number): void {
  // In compatibility mode it is IRETD with IA-32e semantics (it pops SS:ESP too): not modelled.
  if (cpu.mode32 && (cpu.words[Vcpu.efer] & EFER.LMA) !== 0) cpu.undefinedOpcode(UdReason.unsupported, code, ip);
  iret(cpu);
}

/** PUSHFQ, or PUSHFD in 32-bit code (`width` 4): RFLAGS with VM and RF cleared. */
export function pushFlags(cpu: Cpu, width = 8): void {
  const r = cpu.r;
  // Inline stack arithmetic (no tuple): PUSHF/POPF run often enough to keep allocation out.
  const t = (r[8] >>> 0) - width;
  const lo = t | 0;
  const hi = cpu.mode32 ? 0 : (r[9] - (t < 0 ? 1 : 0)) | 0;
  const pa = cpu.mmu.translate(lo, hi, Need.write | Need.stack, width);
  const flags = settleFlags(cpu) & ~(VM | RF);
  if (width === 4) cpu.mmu.write32(pa, flags);
  else cpu.mmu.write64(pa, flags, 0);
  r[8] = lo;
  r[9] = hi;
}

/** POPFQ, or POPFD in 32-bit code: IOPL only at CPL 0, IF only when CPL ≤ IOPL; RF, VM, VIF, VIP are cleared. */
export function popFlags(cpu: Cpu, width = 8): void {
  const r = cpu.r;
  const pa = cpu.mmu.translate(r[8], cpu.mode32 ? 0 : r[9], Need.read | Need.stack, width);
  const value = width === 4 ? cpu.mmu.read32(pa) : cpu.mmu.read64(pa);
  const old = settleFlags(cpu);
  let mask = POPF_WRITABLE;
  if (cpu.cpl > 0) mask &= ~IOPL;
  if (cpu.cpl > iopl(cpu)) mask &= ~IF;
  cpu.fl = (old & ~mask) | (value & mask) | RFLAGS_FIXED1;
  cpu.fl &= ~(RF | VM);
  const t = (r[8] >>> 0) + width;
  r[8] = t | 0;
  r[9] = cpu.mode32 ? 0 : (r[9] + (t > 4294967295 ? 1 : 0)) | 0;
}

/**
 * A stack address `delta` bytes from lo/hi: 64-bit arithmetic, or in 32-bit code ESP arithmetic
 * wrapping at 4 GiB with a zero high half (the stack pointer is written zero-extended).
 */
function stackStep(cpu: Cpu, lo: number, hi: number, delta: number): [number, number] {
  if (cpu.mode32) return [(lo + delta) | 0, 0];
  const t = (lo >>> 0) + delta;
  return [t | 0, (hi + (t > 4294967295 ? 1 : t < 0 ? -1 : 0)) | 0];
}

/** ENTER size, level with the mode's operand size (`width` 8, or 4 in 32-bit code). */
export function enter(cpu: Cpu, size: number, level: number, width = 8): void {
  const r = cpu.r;
  const mmu = cpu.mmu;
  const bp: [number, number] = [r[10], cpu.mode32 ? 0 : r[11]];
  const pushes: Array<[number, number]> = [bp];
  let [bpLo, bpHi] = bp;
  for (let i = 1; i < level; i++) {
    [bpLo, bpHi] = stackStep(cpu, bpLo, bpHi, -width);
    const pa = mmu.translate(bpLo, bpHi, Need.read | Need.stack, width);
    pushes.push(width === 4 ? [mmu.read32(pa), 0] : [mmu.read64(pa), mmu.hi]);
  }
  const frame = stackStep(cpu, r[8], r[9], -width);
  if (level > 0) pushes.push(frame);
  let [spLo, spHi] = [r[8], cpu.mode32 ? 0 : r[9]];
  const targets: number[] = [];
  for (let k = 0; k < pushes.length; k++) {
    [spLo, spHi] = stackStep(cpu, spLo, spHi, -width);
    targets.push(mmu.translate(spLo, spHi, Need.write | Need.stack, width));
  }
  const [finalLo, finalHi] = stackStep(cpu, spLo, spHi, -size);
  // A frame that would leave RSP non-canonical faults before anything is written.
  if (((finalHi >> 15) + 1) >>> 1 !== 0) cpu.fault(Vector.SS, 0);
  pushes.forEach(([lo, hi], k) => (width === 4 ? mmu.write32(targets[k], lo) : mmu.write64(targets[k], lo, hi)));
  r[10] = frame[0];
  r[11] = frame[1];
  r[8] = finalLo;
  r[9] = finalHi;
}

function canonicalHalves(linear: number): [number, number] {
  return [linear % 4294967296 | 0, ((Math.floor(linear / 4294967296) & 0xffff) << 16) >> 16];
}

/** CLD/STD/CLC/STC/CMC: direct flag edits. */
export function setFlagBits(cpu: Cpu, clear: number, set: number, toggle: number): void {
  const flags = settleFlags(cpu);
  cpu.fl = ((flags & ~clear) | set) ^ toggle;
}

export { DF };
