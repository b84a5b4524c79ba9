import type { PagingFormat } from '../machine/page-tables.ts';

/**
 * The shape of a guest's page tables as the engine's page-table hooks walk them: 4-level paging
 * (PML4 → PDPT → PD → PT) or PAE (PDPT of four entries at CR3[31:5] → PD → PT), entries of 8 bytes
 * in both. The engine reads every level from memory, PAE's PDPT included (HVMI does the same;
 * the CPU keeps the PDPTEs it loaded at MOV CR3 — see page-walk.ts).
 */
export interface PagingLayout {
  readonly format: PagingFormat;
  /** Levels from the root to the page table. */
  readonly levels: number;
  /** Linear-address shift of each level's index. */
  readonly shifts: readonly bigint[];
  /** Entries in the root table, and how many of them map the user half (the VAS monitor's scope). */
  readonly rootEntries: number;
  readonly userRootEntries: number;
  /** Size of the mapping an entry at each depth makes when it is a leaf (0: never a leaf). */
  readonly leafBytes: readonly number[];
  /** Where the kernel's half of the address space starts (kernel code is cached for every CR3). */
  readonly kernelSpace: bigint;
  /** The linear address of the first byte an entry maps, from the one its table starts at. */
  address(tableBase: bigint, depth: number, index: number): bigint;
}

const canonical48 = (gla: bigint): bigint => (((gla >> 47n) & 1n) !== 0n ? gla | 0xffff_0000_0000_0000n : gla);

const FOUR_LEVEL: PagingLayout = {
  format: '4-level',
  levels: 4,
  shifts: [39n, 30n, 21n, 12n],
  rootEntries: 512,
  userRootEntries: 256,
  leafBytes: [0, 0x40000000, 0x200000, 0x1000],
  kernelSpace: 0xffff_8000_0000_0000n,
  address: (base, depth, index) => canonical48(base | (BigInt(index) << FOUR_LEVEL.shifts[depth])),
};

const PAE: PagingLayout = {
  format: 'pae',
  levels: 3,
  shifts: [30n, 21n, 12n],
  rootEntries: 4,
  userRootEntries: 2,
  leafBytes: [0, 0x200000, 0x1000],
  kernelSpace: 0x8000_0000n,
  address: (base, depth, index) => base | (BigInt(index) << PAE.shifts[depth]),
};

export function pagingLayout(format: PagingFormat): PagingLayout {
  return format === 'pae' ? PAE : FOUR_LEVEL;
}

/** Whether an entry at `depth` points to a further table (present, not a leaf). */
export function isTableEntry(layout: PagingLayout, entry: bigint, depth: number): boolean {
  if ((entry & 1n) === 0n || depth >= layout.levels - 1) return false;
  return layout.leafBytes[depth] === 0 || (entry & 0x80n) === 0n;
}

/** The root table's GPA from CR3's value: 4 KiB-aligned, or 32-byte-aligned under PAE. */
export function rootOf(layout: PagingLayout, cr3: number): number {
  return layout.format === 'pae' ? cr3 - (cr3 % 0x20) : cr3 - (cr3 % 0x1000);
}
