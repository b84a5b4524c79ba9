import type { GuestMemory } from './memory.ts';
import type { VcpuState } from './vcpu-state.ts';

/**
 * A flat 64-bit long-mode environment for a vCPU: a GDT with kernel/user code and data segments
 * and an optional 64-bit TSS, and the control-register values that turn on long mode with paging.
 * Guests and tests start their vCPUs already in long mode from here (no real-mode boot).
 */

/** Selectors of the GDT written by `writeGdt` (Linux-like numbering). */
export const Selector = {
  /** 32-bit ring-0 code (L=0, D=1): compatibility mode at CPL 0. */
  kernelCode32: 0x08,
  kernelCode: 0x10,
  kernelData: 0x18,
  /** 32-bit ring-3 code (L=0, D=1): compatibility mode, as x86-64 Linux's __USER32_CS. */
  userCode32: 0x23,
  userData: 0x2b,
  userCode: 0x33,
  tss: 0x40,
} as const;

/** GDT bytes needed by `writeGdt` (8 descriptors + a 16-byte TSS descriptor). */
export const GDT_BYTES = 0x50;
/** Size of a 64-bit TSS. */
export const TSS_BYTES = 0x68;

const DESCRIPTORS: ReadonlyArray<[number, bigint]> = [
  [Selector.kernelCode32, 0x00cf9a000000ffffn], // P, DPL0, code execute/read, D=1, flat
  [Selector.userCode32 & ~3, 0x00cffa000000ffffn], // P, DPL3, code execute/read, D=1, flat
  [Selector.kernelCode, 0x00209a0000000000n], // P, DPL0, code execute/read, L=1
  [Selector.kernelData, 0x0000920000000000n], // P, DPL0, data read/write
  [Selector.userData & ~3, 0x0000f20000000000n], // P, DPL3, data read/write
  [Selector.userCode & ~3, 0x0020fa0000000000n], // P, DPL3, code execute/read, L=1
];

/** Writes the GDT at `gdt` (a GPA, identity-visible); with `tss`, adds an available 64-bit TSS. */
export function writeGdt(memory: GuestMemory, gdt: number, tss?: { linear: bigint; limit?: number }): number {
  memory.fill(gdt, GDT_BYTES, 0);
  for (const [selector, descriptor] of DESCRIPTORS) memory.write64(gdt + selector, descriptor);
  if (tss !== undefined) {
    const base = tss.linear;
    const limit = BigInt(tss.limit ?? TSS_BYTES - 1);
    const low =
      (limit & 0xffffn) |
      ((base & 0xffffffn) << 16n) |
      (0x89n << 40n) | // P, type 9 (available 64-bit TSS)
      (((limit >> 16n) & 0xfn) << 48n) |
      (((base >> 24n) & 0xffn) << 56n);
    memory.write64(gdt + Selector.tss, low);
    memory.write64(gdt + Selector.tss + 8, (base >> 32n) & 0xffffffffn);
  }
  return GDT_BYTES - 1;
}

/** Options for putting a vCPU into 64-bit mode. */
export interface LongModeOptions {
  /** GPA of the PML4. */
  cr3: number;
  /** CPL to start at. */
  ring: 0 | 3;
  gdtBase: bigint;
  gdtLimit: number;
  idtBase?: bigint;
  idtLimit?: number;
  /** Linear address and limit of the TSS (needed for interrupts from ring 3 and IST). */
  tss?: { linear: bigint; limit?: number };
  /** VM-exit controls (ExitControl bits); default: none. */
  exitControls?: number;
  /** Exception bitmap: vectors that exit instead of being delivered. */
  exceptionBitmap?: number;
  /** Start in compatibility mode: CS is the ring's 32-bit code segment (default false). */
  compat?: boolean;
}

/** Sets control registers, segments and descriptor tables of a vCPU for flat 64-bit mode. */
export function enterLongMode(state: VcpuState, options: LongModeOptions): void {
  state.set64('cr0', 0x80050033n); // PG, AM, WP, NE, ET, MP, PE
  state.set64('cr4', 0x20n); // PAE
  state.set64('cr3', BigInt(options.cr3));
  state.set64('efer', 0xd01n); // NXE, LMA, LME, SCE
  const compat = options.compat === true;
  const code = options.ring === 3 ? (compat ? Selector.userCode32 : Selector.userCode) : compat ? Selector.kernelCode32 : Selector.kernelCode;
  state.set32('cs', code);
  state.set32('csCompat', compat ? 1 : 0);
  const data = options.ring === 3 ? Selector.userData : Selector.kernelData;
  for (const segment of ['ss', 'ds', 'es', 'fs', 'gs'] as const) state.set32(segment, data);
  state.set64('gdtrBase', options.gdtBase);
  state.set32('gdtrLimit', options.gdtLimit);
  state.set64('idtrBase', options.idtBase ?? 0n);
  state.set32('idtrLimit', options.idtLimit ?? 0xfff);
  if (options.tss !== undefined) {
    state.set32('tr', Selector.tss);
    state.set64('trBase', options.tss.linear);
    state.set32('trLimit', options.tss.limit ?? 0x67);
  }
  resetRunState(state, options);
}

/**
 * The state every freshly set-up vCPU starts with, whatever its mode: RFLAGS and PAT at their
 * reset values, no pending event, active, and the hypervisor's exit controls.
 */
export function resetRunState(state: VcpuState, options: { exitControls?: number; exceptionBitmap?: number }): void {
  state.rflags = 0x2n;
  state.set64('pat', 0x0007040600070406n);
  state.set32('exitControls', options.exitControls ?? 0);
  state.set32('exceptionBitmap', options.exceptionBitmap ?? 0);
  state.set32('pendingInterrupt', -1);
  state.set32('pendingEvent', 0);
  state.set32('activity', 0);
}


/** How an IDT gate enters its handler. */
export interface GateOptions {
  /** A trap gate (IF stays as it was) instead of an interrupt gate (IF cleared). */
  readonly trap?: boolean;
  /** Highest CPL that may reach the gate with INT n. */
  readonly dpl?: number;
  /** Interrupt stack table slot (0: none). */
  readonly ist?: number;
  readonly present?: boolean;
}

/** Writes the 16-byte 64-bit IDT gate for `vector` (kernel code segment) into the IDT at `idtGpa`. */
export function writeIdtGate(memory: GuestMemory, idtGpa: number, vector: number, handler: bigint, options: GateOptions = {}): void {
  const type = options.trap === true ? 0xfn : 0xen;
  const present = options.present === false ? 0n : 1n;
  const low =
    (handler & 0xffffn) |
    (BigInt(Selector.kernelCode) << 16n) |
    (BigInt(options.ist ?? 0) << 32n) |
    (type << 40n) |
    (BigInt(options.dpl ?? 0) << 45n) |
    (present << 47n) |
    (((handler >> 16n) & 0xffffn) << 48n);
  memory.write64(idtGpa + vector * 16, low);
  memory.write64(idtGpa + vector * 16 + 8, (handler >> 32n) & 0xffffffffn);
}
