import { PAGE_BYTES } from './layout.ts';
import type { GuestMemory } from './memory.ts';

/** Page-table entry bits (x86-64 4-level paging, and PAE paging, whose entries are the same). */
export const Pte = {
  present: 1n,
  writable: 2n,
  user: 4n,
  accessed: 0x20n,
  dirty: 0x40n,
  large: 0x80n,
  global: 0x100n,
  noExecute: 1n << 63n,
} as const;

/** Size of a mapping: 4 KiB, 2 MiB or 1 GiB. */
export type PageSize = 4096 | 0x200000 | 0x40000000;

/** Which paging structures a builder writes. */
export type PagingFormat = '4-level' | 'pae';

/** Linear-address shift of each level's index, root first. */
const LEVEL_SHIFTS: Readonly<Record<PagingFormat, readonly bigint[]>> = {
  '4-level': [39n, 30n, 21n, 12n],
  // PAE: the PDPT (4 entries, bits 31:30), the PD, the PT.
  pae: [30n, 21n, 12n],
};

/**
 * Builds 4-level or PAE page tables in guest RAM, allocating table pages from a reserved region.
 * Used to set up guests and test machines; the hypervisor writes them directly (no EPT).
 */
export class PageTableBuilder {
  private next: number;
  private readonly shifts: readonly bigint[];

  /**
   * @param memory guest RAM
   * @param tablesBase GPA of the first page reserved for tables (4 KiB aligned)
   * @param tablesEnd GPA just past the reserved region
   * @param format '4-level' (long mode, the default) or 'pae' (32-bit protected mode)
   */
  constructor(
    private readonly memory: GuestMemory,
    tablesBase: number,
    private readonly tablesEnd: number,
    readonly format: PagingFormat = '4-level',
    /**
     * Write every entry with A set (and D on writable leaves), as the tables of a kernel that has
     * been running a while are: walks then never update them. (Not on PAE PDPTEs: reserved there.)
     */
    private readonly presetAccessed = false,
  ) {
    if (tablesBase % PAGE_BYTES !== 0) throw new RangeError('page-table region must be 4 KiB aligned');
    this.shifts = LEVEL_SHIFTS[format];
    this.next = tablesBase;
    this.root = this.allocate();
  }

  /** GPA of the PML4, or of the PDPT in PAE format (the value for CR3). */
  readonly root: number;

  private allocate(): number {
    if (this.next + PAGE_BYTES > this.tablesEnd) {
      throw new RangeError(`page-table region exhausted at GPA 0x${this.next.toString(16)}: reserve more table pages`);
    }
    const page = this.next;
    this.memory.fill(page, PAGE_BYTES, 0);
    this.next += PAGE_BYTES;
    return page;
  }

  /**
   * Maps `linear` (canonical, aligned to `size`) to `physical` with the given leaf flags.
   * Intermediate entries are made present, writable and user so the leaf flags decide.
   */
  map(linear: bigint, physical: number, flags: bigint, size: PageSize = 4096): void {
    const sizeBig = BigInt(size);
    if (linear % sizeBig !== 0n || physical % size !== 0) {
      throw new RangeError(`mapping 0x${linear.toString(16)} → 0x${physical.toString(16)} is not aligned to ${size}`);
    }
    const pae = this.format === 'pae';
    if (pae && (size === 0x40000000 || linear >> 32n !== 0n)) {
      throw new RangeError(`PAE paging maps 4 KiB and 2 MiB pages below 4 GiB, not 0x${linear.toString(16)} (${size} bytes)`);
    }
    const leafLevel = this.shifts.length - (size === 4096 ? 1 : size === 0x200000 ? 2 : 3);
    let table = this.root;
    for (let level = 0; level < leafLevel; level++) {
      const index = Number((linear >> this.shifts[level]) & 511n);
      const entryGpa = table + index * 8;
      let entry = this.memory.read64(entryGpa);
      if ((entry & Pte.present) === 0n) {
        const child = this.allocate();
        // A PAE PDPTE has no R/W, U/S or A bits (they are reserved there): present only.
        entry = BigInt(child) | Pte.present | (pae && level === 0 ? 0n : Pte.writable | Pte.user | this.accessedBits(false));
        this.memory.write64(entryGpa, entry);
      } else if ((entry & Pte.large) !== 0n) {
        throw new Error(`0x${linear.toString(16)} is already covered by a large page`);
      }
      table = Number(entry & 0x000f_ffff_ffff_f000n);
    }
    const index = Number((linear >> this.shifts[leafLevel]) & 511n);
    const large = size === 4096 ? 0n : Pte.large;
    this.memory.write64(table + index * 8, BigInt(physical) | flags | large | Pte.present | this.accessedBits((flags & Pte.writable) !== 0n));
  }

  private accessedBits(writableLeaf: boolean): bigint {
    return !this.presetAccessed ? 0n : writableLeaf ? Pte.accessed | Pte.dirty : Pte.accessed;
  }

  /** Maps [linear, linear+bytes) page by page to consecutive physical pages. */
  mapRange(linear: bigint, physical: number, bytes: number, flags: bigint): void {
    for (let offset = 0; offset < bytes; offset += PAGE_BYTES) this.map(linear + BigInt(offset), physical + offset, flags);
  }

  /**
   * Makes the entry at `level` (0 = PML4 … 2 = PD) on the way to `linear` point to the table at
   * `tableGpa` — a table the caller owns, e.g. one the guest edits itself — creating the levels
   * above it. The entry must not be present yet.
   */
  link(linear: bigint, level: number, tableGpa: number): void {
    if (this.format !== '4-level') throw new Error('link() builds 4-level tables only');
    if (tableGpa % PAGE_BYTES !== 0 || level < 0 || level > 2) throw new RangeError(`link(0x${linear.toString(16)}, ${level}, 0x${tableGpa.toString(16)}): a 4 KiB-aligned table at level 0..2`);
    let table = this.root;
    for (let depth = 0; depth <= level; depth++) {
      const entryGpa = table + Number((linear >> this.shifts[depth]) & 511n) * 8;
      const entry = this.memory.read64(entryGpa);
      if (depth === level) {
        if ((entry & Pte.present) !== 0n) throw new Error(`0x${linear.toString(16)} already has a present entry at level ${level}`);
        this.memory.write64(entryGpa, BigInt(tableGpa) | Pte.present | Pte.writable | Pte.user);
        return;
      }
      if ((entry & Pte.present) === 0n) {
        const child = this.allocate();
        this.memory.write64(entryGpa, BigInt(child) | Pte.present | Pte.writable | Pte.user);
        table = child;
      } else {
        if ((entry & Pte.large) !== 0n) throw new Error(`0x${linear.toString(16)} is already covered by a large page`);
        table = Number(entry & 0x000f_ffff_ffff_f000n);
      }
    }
  }

  /** GPA of the leaf entry that maps `linear` (4 KiB mappings only), for tests that edit PTEs. */
  leafEntry(linear: bigint): number {
    let table = this.root;
    for (let level = 0; level < this.shifts.length - 1; level++) {
      const entry = this.memory.read64(table + Number((linear >> this.shifts[level]) & 511n) * 8);
      if ((entry & Pte.present) === 0n || (entry & Pte.large) !== 0n) throw new Error(`0x${linear.toString(16)} has no 4 KiB leaf`);
      table = Number(entry & 0x000f_ffff_ffff_f000n);
    }
    return table + Number((linear >> 12n) & 511n) * 8;
  }
}
