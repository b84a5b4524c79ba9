import type { GuestMemory } from '../machine/memory.ts';
import { Pte, type PageTableBuilder } from '../machine/page-tables.ts';
import type { GuestPages } from './nt-guest.ts';

/**
 * A range of virtual memory the guest manages itself, the way a kernel's memory manager does:
 * its page directory and page tables are ordinary pages from the guest's allocator, visible at
 * kernel addresses, so guest code maps, unmaps and remaps pages by writing entries — 8-byte
 * stores, 4-byte halves, LOCK CMPXCHG — while other vCPUs walk those very translations.
 */

/** What a managed range is made of. */
export interface ManagedRangeOptions {
  /** Start of the range: 1 GiB-aligned, canonical, with nothing mapped in that gigabyte. */
  readonly gva: bigint;
  /** Physical pages the range may map (frame k at `frames.gpa + k * 4096`). */
  readonly frames: number;
  /** Page tables the guest can link into the directory (default 1); the first is linked at entry 0. */
  readonly tables?: number;
  /** Pages of the first table mapped at start, page k to frame k (default 0). */
  readonly mapped?: number;
  readonly writable?: boolean;
  readonly executable?: boolean;
  /** User pages (U/S = 1); the kernel reaches them too (this CPU has no SMAP). */
  readonly user?: boolean;
}

/** A managed range as its guest code and engine logic see it. */
export interface ManagedRange {
  readonly name: string;
  readonly gva: bigint;
  /** The range's page directory (one page; entry k maps [gva + k·2 MiB, +2 MiB)). */
  readonly directory: GuestPages;
  /** Its page tables; table 0 is linked at directory entry 0 at start. */
  readonly tables: GuestPages;
  readonly frames: GuestPages;
  /** The flags of a present leaf entry of this range (P, and R/W, U/S, NX as asked). */
  readonly leafFlags: bigint;
  /** The flags of a present directory entry (P, R/W, U/S). */
  readonly tableFlags: bigint;
}

const GIB = 0x40000000n;

export function leafFlagsOf(options: ManagedRangeOptions): bigint {
  return Pte.present | (options.writable === true ? Pte.writable : 0n) | (options.user === true ? Pte.user : 0n) | (options.executable === true ? 0n : Pte.noExecute);
}

/** Checks what can be checked before the guest is built; throws one clear error. */
export function checkManagedRange(name: string, options: ManagedRangeOptions): void {
  const where = `managedRange("${name}")`;
  const high = options.gva >> 47n;
  if (options.gva % GIB !== 0n || (high !== 0n && high !== 0x1ffffn)) throw new RangeError(`${where}: gva 0x${options.gva.toString(16)} must be canonical and 1 GiB-aligned`);
  if (!Number.isInteger(options.frames) || options.frames < 1) throw new RangeError(`${where}: frames must be a positive integer`);
  const tables = options.tables ?? 1;
  if (!Number.isInteger(tables) || tables < 1 || tables > 512) throw new RangeError(`${where}: tables must be 1..512`);
  const mapped = options.mapped ?? 0;
  if (!Number.isInteger(mapped) || mapped < 0 || mapped > Math.min(512, options.frames)) throw new RangeError(`${where}: mapped must be 0..min(512, frames)`);
}

/** Links the range's directory under the kernel's tables and maps its first pages. */
export function linkManagedRange(tables: PageTableBuilder, memory: GuestMemory, range: ManagedRange, mapped: number): void {
  memory.fill(range.directory.gpa, 0x1000, 0);
  memory.fill(range.tables.gpa, range.tables.bytes, 0);
  tables.link(range.gva, 1, range.directory.gpa);
  memory.write64(range.directory.gpa, BigInt(range.tables.gpa) | range.tableFlags);
  for (let page = 0; page < mapped; page++) memory.write64(range.tables.gpa + page * 8, BigInt(range.frames.gpa + page * 0x1000) | range.leafFlags);
}
