import type { GuestMemory } from './memory.ts';
import { resetRunState, type GateOptions } from './long-mode.ts';
import type { VcpuState } from './vcpu-state.ts';

/**
 * A flat 32-bit protected-mode environment with PAE paging for a vCPU: a GDT with ring-0 32-bit
 * code and data segments (base 0, limit 4 GiB), 32-bit IDT gates, and the control-register
 * values that turn on protected mode with PAE paging (CR0.PE|PG, CR4.PAE, EFER.LMA=0). The page
 * tables come from a `PageTableBuilder` in 'pae' format. Guests and tests start 32-bit vCPUs
 * here, already in protected mode (no real-mode boot).
 */

/** Selectors of the GDT written by `writeGdt32`. */
export const Selector32 = {
  kernelCode: 0x08,
  kernelData: 0x10,
  userCode: 0x1b,
  userData: 0x23,
} as const;

/** GDT bytes written by `writeGdt32` (null, kernel code and data, user code and data). */
export const GDT32_BYTES = 0x28;

const DESCRIPTORS32: ReadonlyArray<[number, bigint]> = [
  [Selector32.kernelCode, 0x00cf9a000000ffffn], // P, DPL0, code execute/read, D=1, G=1, base 0, limit 4 GiB
  [Selector32.kernelData, 0x00cf92000000ffffn], // P, DPL0, data read/write, B=1, G=1, base 0, limit 4 GiB
  [Selector32.userCode & ~3, 0x00cffa000000ffffn], // the same at DPL3
  [Selector32.userData & ~3, 0x00cff2000000ffffn],
];

/** Writes the flat 32-bit GDT at `gdt` (a GPA, identity-visible); returns its limit. */
export function writeGdt32(memory: GuestMemory, gdt: number): number {
  memory.fill(gdt, GDT32_BYTES, 0);
  for (const [selector, descriptor] of DESCRIPTORS32) memory.write64(gdt + selector, descriptor);
  return GDT32_BYTES - 1;
}

/** Options for putting a vCPU into 32-bit protected mode with PAE paging. */
export interface ProtectedModeOptions {
  /** GPA of the PDPT (the value for CR3; 32-byte aligned, below 4 GiB). */
  cr3: number;
  gdtBase: number;
  gdtLimit: number;
  idtBase?: number;
  /** IDT limit; default 0x7ff (256 eight-byte gates). */
  idtLimit?: number;
  /** EFER.NXE: bit 63 of paging entries is XD (default true) instead of reserved. */
  noExecute?: boolean;
  /** CR0.WP: supervisor writes honour read-only pages (default true). */
  writeProtect?: boolean;
  /**
   * CPL to start at (default 0). Ring 3 runs, but an event from ring 3 needs a stack switch
   * through the TSS, which the CPU's 32-bit subset does not do: use it only with an exception
   * bitmap that turns exceptions into exits (as the differential harness does).
   */
  ring?: 0 | 3;
  /** VM-exit controls (ExitControl bits); default: none. */
  exitControls?: number;
  /** Exception bitmap: vectors that exit instead of being delivered. */
  exceptionBitmap?: number;
}

const CR0_PE = 0x1n;
const CR0_MP = 0x2n;
const CR0_ET = 0x10n;
const CR0_NE = 0x20n;
const CR0_WP = 0x10000n;
const CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n;
const EFER_NXE = 0x800n;
/** Reserved bits of a present PDPTE (2:1, 8:5, 63:40 with this CPU's 40 physical-address bits). */
const PDPTE_RESERVED = 0xffffff00_000001e6n;

/**
 * Loads the four PDPTE registers of `state` from the PDPT at `cr3` in guest memory, as the
 * hypervisor fills the VMCS guest-PDPTE fields before it enters a PAE guest (the CPU takes them
 * from the state block at VM entry and reloads them itself only at MOV CR3/CR0/CR4).
 */
export function loadPdptes(state: VcpuState, memory: GuestMemory, cr3: number): void {
  const pdpt = cr3 & ~0x1f;
  for (let k = 0; k < 4; k++) {
    const entry = memory.read64(pdpt + 8 * k);
    if ((entry & 1n) !== 0n && (entry & PDPTE_RESERVED) !== 0n) {
      throw new RangeError(`PDPTE ${k} at GPA 0x${(pdpt + 8 * k).toString(16)} has reserved bits set: 0x${entry.toString(16)}`);
    }
    state.setPdpte(k, entry);
  }
}

/** Sets control registers, segments, descriptor tables and PDPTEs of a vCPU for flat 32-bit PAE mode. */
export function enterProtectedModePae(state: VcpuState, memory: GuestMemory, options: ProtectedModeOptions): void {
  if (options.cr3 % 32 !== 0 || options.cr3 >= 2 ** 32) throw new RangeError(`PAE CR3 0x${options.cr3.toString(16)} must be 32-byte aligned and below 4 GiB`);
  state.set64('cr0', CR0_PG | CR0_PE | CR0_MP | CR0_ET | CR0_NE | (options.writeProtect === false ? 0n : CR0_WP));
  state.set64('cr4', CR4_PAE);
  state.set64('cr3', BigInt(options.cr3));
  state.set64('efer', options.noExecute === false ? 0n : EFER_NXE);
  loadPdptes(state, memory, options.cr3);
  const user = options.ring === 3;
  state.set32('cs', user ? Selector32.userCode : Selector32.kernelCode);
  for (const segment of ['ss', 'ds', 'es', 'fs', 'gs'] as const) state.set32(segment, user ? Selector32.userData : Selector32.kernelData);
  state.set64('fsBase', 0n);
  state.set64('gsBase', 0n);
  state.set64('gdtrBase', BigInt(options.gdtBase));
  state.set32('gdtrLimit', options.gdtLimit);
  state.set64('idtrBase', BigInt(options.idtBase ?? 0));
  state.set32('idtrLimit', options.idtLimit ?? 0x7ff);
  resetRunState(state, options);
}

/** Writes the 8-byte 32-bit IDT gate for `vector` (to the flat ring-0 code segment) into the IDT at `idtGpa`. */
export function writeIdtGate32(memory: GuestMemory, idtGpa: number, vector: number, handler: number, options: Omit<GateOptions, 'ist'> = {}): void {
  const type = options.trap === true ? 0xfn : 0xen;
  const present = options.present === false ? 0n : 1n;
  const offset = BigInt(handler >>> 0);
  const gate =
    (offset & 0xffffn) |
    (BigInt(Selector32.kernelCode) << 16n) |
    (type << 40n) |
    (BigInt(options.dpl ?? 0) << 45n) |
    (present << 47n) |
    (((offset >> 16n) & 0xffffn) << 48n);
  memory.write64(idtGpa + vector * 8, gate);
}
