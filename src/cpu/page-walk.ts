import type { PhysicalMemory } from './ports.ts';

/**
 * Side-effect-free page walks (4-level, and PAE for 32-bit protected mode) for the hypervisor
 * side and for diagnostics: they read the guest's tables the way the introspection engine does
 * through its own mapping — no TLB, no A/D updates, no permission or EPT checks, no faults.
 */

/** Result of a successful software walk. */
export interface SoftwareTranslation {
  /** Guest-physical address of the byte. */
  readonly gpa: number;
  /** Size of the mapping: 4 KiB, 2 MiB or 1 GiB (PAE: 4 KiB or 2 MiB). */
  readonly pageBytes: number;
  /** Guest-physical address of the leaf entry. */
  readonly entryGpa: number;
  /** The leaf entry's low 32 bits (P, R/W, U/S, A, D, PS…). */
  readonly entryLow: number;
  /** The leaf entry's high 32 bits (bit 31 = NX). */
  readonly entryHigh: number;
}

/**
 * Translates linear address lo/hi (int32 halves) through the tables at `cr3Page` (a GPA). Returns
 * null for a non-canonical address, a not-present entry, or a table outside guest RAM.
 */
export function walkPageTables(memory: PhysicalMemory, cr3Page: number, lo: number, hi: number): SoftwareTranslation | null {
  if (((hi >> 15) + 1) >>> 1 !== 0) return null;
  const indexes = [((hi & 0xffff) >>> 7) & 511, (((hi & 0x7f) << 2) | (lo >>> 30)) & 511, (lo >>> 21) & 511, (lo >>> 12) & 511];
  return walkFrom(memory, cr3Page, indexes, 0, lo);
}

/**
 * Translates 32-bit linear address `lo` through PAE tables: the PDPT at CR3[31:5] (`cr3`, a
 * GPA), then PD and PT. Unlike the CPU, which walks from the four PDPTE registers it loaded at
 * the last MOV CR3 (SDM Vol. 3A §4.4.1), this reads the PDPTE from the PDPT in memory, as an
 * introspection engine reading the guest's tables does — the two differ while the guest has
 * changed its PDPT without reloading CR3. Pass the vCPU's registers as `pdptes` (lo, hi × 4,
 * e.g. `Cpu.mmu.pdptes`) to walk as the CPU does. Returns null for a not-present entry or a
 * table outside guest RAM.
 */
export function walkPaePageTables(memory: PhysicalMemory, cr3: number, lo: number, pdptes?: Int32Array): SoftwareTranslation | null {
  const slot = lo >>> 30;
  let low: number;
  let high: number;
  if (pdptes !== undefined) {
    low = pdptes[2 * slot];
    high = pdptes[2 * slot + 1];
  } else {
    const entryGpa = (cr3 & ~0x1f) + slot * 8;
    if (entryGpa < 0 || entryGpa + 8 > memory.bytes) return null;
    low = memory.i32[entryGpa >>> 2];
    high = memory.i32[(entryGpa >>> 2) + 1];
  }
  if ((low & 1) === 0) return null;
  const pd = (high & 0xff) * 4294967296 + ((low & ~0xfff) >>> 0);
  return walkFrom(memory, pd, [0, 0, (lo >>> 21) & 511, (lo >>> 12) & 511], 2, lo);
}

/** The walk from `table` at `first` (0 = PML4 … 3 = PT) down, with the 4-level index layout. */
function walkFrom(memory: PhysicalMemory, table: number, indexes: readonly number[], first: number, lo: number): SoftwareTranslation | null {
  for (let level = first; level < 4; level++) {
    const entryGpa = table + indexes[level] * 8;
    if (entryGpa < 0 || entryGpa + 8 > memory.bytes) return null;
    const low = memory.i32[entryGpa >>> 2];
    const high = memory.i32[(entryGpa >>> 2) + 1];
    if ((low & 1) === 0) return null;
    const large = (low & 0x80) !== 0 && (level === 1 || level === 2);
    if (level === 3 || large) {
      const pageBytes = level === 1 ? 0x40000000 : level === 2 ? 0x200000 : 0x1000;
      const base = (high & 0xff) * 4294967296 + ((low & ~(pageBytes - 1) & ~0xfff) >>> 0);
      const offset = (lo >>> 0) & (pageBytes - 1);
      return { gpa: base + offset, pageBytes, entryGpa, entryLow: low, entryHigh: high };
    }
    table = (high & 0xff) * 4294967296 + ((low & ~0xfff) >>> 0);
  }
  return null;
}
