import type { DecodedInstruction } from './decoder.ts';
import type { NoteDetail, RandomSource } from './glue.ts';
import { HookType, NO_CALLBACK, type CallbackResult, type GpaHook, type GpaHookTable } from './gpa-hooks.ts';
import { IntStatus, type IntStatusCode } from './status.ts';

/**
 * HVMI's global instruction cache (icache.c): decoded instructions keyed by exact GVA + CR3,
 * 512 lines × 16 ways, the line chosen by the page frame ((GVA >> 12) & 511) so one page's
 * instructions share a line, random replacement when a line is full.
 *
 * A cached instruction implies an EPT write hook on every guest-physical page its bytes come
 * from (one reference-counted invalidation entry per (page, CR3)); a guest write to such a page
 * traps, and the hook flushes that page's instructions before the write is allowed. The engine's
 * own writes go through its host mapping and bypass EPT — they do *not* flush, which is why every
 * code patcher must flush explicitly (memtables: IntIcFlushAddress after patching).
 */

/** Kernel instructions are cached for every address space (Cr3 = IC_ANY_VAS, Global). */
export const IC_ANY_VAS = 0n;

export const ICACHE_LINES = 512;
export const ICACHE_WAYS = 16;

const PAGE_MASK = ~0xfffn;

/** One invalidation entry: the write hook on a page that holds cached instructions. */
interface InvalidationEntry {
  readonly gvaPage: bigint;
  readonly cr3: bigint;
  readonly gpaPage: number;
  refs: number;
  readonly hook: GpaHook;
  /** The swap hook on the page's translation (null without one). */
  swap: unknown;
}

/**
 * Swap hooks for the icache (IntHookPtsSetHook with IntIcSwapHandler): `watch` calls `changed`
 * with the old and new leaf entry whenever the translation of `gvaPage` changes; null: the
 * icache places none (the icacheSwapHook fix off).
 */
export interface IcacheSwapHooks {
  watch(gvaPage: bigint, changed: (old: bigint, now: bigint) => void): unknown;
  unwatch(handle: unknown): void;
}

/** A/D: the bits a remap check ignores (IntIcSwapHandler's mask ~0x60). */
const ACCESSED_DIRTY = 0x60n;

interface CacheEntry {
  valid: boolean;
  gva: bigint;
  cr3: bigint;
  global: boolean;
  instruction: DecodedInstruction | null;
  invd1: InvalidationEntry | null;
  /** The second page of an instruction that spills over a page boundary. */
  invd2: InvalidationEntry | null;
}

export interface IcacheStats {
  hits: number;
  misses: number;
  adds: number;
  evictions: number;
  flushedEntries: number;
  writeHookFlushes: number;
}

/** Where the bytes of an instruction come from: its first page and, if it spills, its second. */
export interface InstructionPages {
  readonly gpaPage: number;
  readonly spillGpaPage: number | null;
}

const NO_ENTRIES: readonly CacheEntry[] = [];

export class InstructionCache {
  /** Lines are allocated on first use: most of the 512 never see an instruction. */
  private readonly lines: (CacheEntry[] | undefined)[];
  private readonly invalidations = new Map<string, InvalidationEntry>();
  private dirty = false;
  readonly stats: IcacheStats = { hits: 0, misses: 0, adds: 0, evictions: 0, flushedEntries: 0, writeHookFlushes: 0 };

  constructor(
    private readonly hooks: GpaHookTable,
    private readonly random: RandomSource,
    private readonly note: (what: string, detail: NoteDetail) => void = () => undefined,
    readonly lineCount = ICACHE_LINES,
    readonly ways = ICACHE_WAYS,
    private readonly swapHooks: () => IcacheSwapHooks | null = () => null,
  ) {
    this.lines = new Array<CacheEntry[] | undefined>(lineCount);
  }

  private lineIndex(gva: bigint): number {
    return Number((gva >> 12n) % BigInt(this.lineCount));
  }

  /** The line of `gva` (empty when it was never used). */
  private line(gva: bigint): readonly CacheEntry[] {
    return this.lines[this.lineIndex(gva)] ?? NO_ENTRIES;
  }

  private lineForAdd(gva: bigint): CacheEntry[] {
    const index = this.lineIndex(gva);
    let line = this.lines[index];
    if (line === undefined) {
      line = Array.from({ length: this.ways }, (): CacheEntry => ({ valid: false, gva: 0n, cr3: 0n, global: false, instruction: null, invd1: null, invd2: null }));
      this.lines[index] = line;
    }
    return line;
  }

  private *entries(): Generator<CacheEntry> {
    for (const line of this.lines) if (line !== undefined) yield* line;
  }

  /** IntIcLookupInstruction: the cached instruction at `gva` for address space `cr3`, or null. */
  lookup(gva: bigint, cr3: bigint): DecodedInstruction | null {
    for (const entry of this.line(gva)) {
      if (entry.valid && entry.gva === gva && (entry.cr3 === cr3 || entry.global)) {
        this.stats.hits++;
        return entry.instruction;
      }
    }
    this.stats.misses++;
    return null;
  }

  /**
   * IntIcAddInstruction: caches `instruction` and write-hooks its page(s). The entry becomes valid
   * only after its invalidation entries exist. A full line loses a random way.
   */
  add(gva: bigint, cr3: bigint, global: boolean, instruction: DecodedInstruction, pages: InstructionPages): IntStatusCode {
    const line = this.lineForAdd(gva);
    let entry = line.find((e) => !e.valid);
    if (entry === undefined) {
      entry = line[this.random.below(this.ways)];
      this.stats.evictions++;
      this.note('icache-evict', { gva: entry.gva, by: gva });
      this.invalidate(entry);
    }
    const tagCr3 = global ? IC_ANY_VAS : cr3;
    entry.invd1 = this.acquire(gva & PAGE_MASK, tagCr3, pages.gpaPage);
    entry.invd2 = pages.spillGpaPage === null ? null : this.acquire((gva & PAGE_MASK) + 0x1000n, tagCr3, pages.spillGpaPage);
    entry.gva = gva;
    entry.cr3 = tagCr3;
    entry.global = global;
    entry.instruction = instruction;
    entry.valid = true;
    this.dirty = true;
    this.stats.adds++;
    return IntStatus.success;
  }

  /** IntIcFlushAddress: drops the entry for exactly `gva`; NOT_FOUND (an error) if absent. */
  flushAddress(gva: bigint, cr3: bigint): IntStatusCode {
    let found = false;
    for (const entry of this.line(gva)) {
      if (entry.valid && entry.gva === gva && this.inSpace(entry, cr3)) {
        this.invalidate(entry);
        found = true;
      }
    }
    return found ? IntStatus.success : IntStatus.notFound;
  }

  /** IntIcFlushGvaPage: every instruction starting in the page of `gva` (and, with `spill`, those of the previous page that run into it). */
  flushGvaPage(gva: bigint, cr3: bigint, spill = false): number {
    const page = gva & PAGE_MASK;
    let flushed = 0;
    for (const entry of this.line(page)) {
      if (entry.valid && (entry.gva & PAGE_MASK) === page && this.inSpace(entry, cr3)) {
        this.invalidate(entry);
        flushed++;
      }
    }
    if (spill) {
      for (const entry of this.line(page - 0x1000n)) {
        if (entry.valid && entry.invd2 !== null && entry.invd2.gvaPage === page && this.inSpace(entry, cr3)) {
          this.invalidate(entry);
          flushed++;
        }
      }
    }
    return flushed;
  }

  /** IntIcFlushVaSpace: every instruction cached for address space `cr3` (not the global ones). */
  flushVaSpace(cr3: bigint): number {
    let flushed = 0;
    for (const entry of this.entries()) {
      if (entry.valid && !entry.global && entry.cr3 === cr3) {
        this.invalidate(entry);
        flushed++;
      }
    }
    return flushed;
  }

  /** IntIcFlushGpaPage: every instruction whose bytes come from guest-physical page `gpa`. */
  flushGpaPage(gpa: number): number {
    const gpaPage = gpa - (gpa % 0x1000);
    let flushed = 0;
    for (const entry of this.entries()) {
      if (entry.valid && (entry.invd1?.gpaPage === gpaPage || entry.invd2?.gpaPage === gpaPage)) {
        this.invalidate(entry);
        flushed++;
      }
    }
    return flushed;
  }

  /** IntIcFlush: everything (skipped when nothing was added since the last full flush). */
  flushAll(): number {
    if (!this.dirty) return 0;
    let flushed = 0;
    for (const entry of this.entries()) {
      if (entry.valid) {
        this.invalidate(entry);
        flushed++;
      }
    }
    this.dirty = false;
    return flushed;
  }

  /** Valid entries (for tests and reports). */
  get size(): number {
    let count = 0;
    for (const entry of this.entries()) if (entry.valid) count++;
    return count;
  }

  private inSpace(entry: CacheEntry, cr3: bigint): boolean {
    return cr3 === IC_ANY_VAS || entry.global || entry.cr3 === cr3;
  }

  private invalidate(entry: CacheEntry): void {
    if (!entry.valid) return;
    entry.valid = false;
    entry.instruction = null;
    this.release(entry.invd1);
    this.release(entry.invd2);
    entry.invd1 = null;
    entry.invd2 = null;
    this.stats.flushedEntries++;
  }

  private acquire(gvaPage: bigint, cr3: bigint, gpaPage: number): InvalidationEntry {
    const key = `${gvaPage}:${cr3}`;
    let invd = this.invalidations.get(key);
    if (invd !== undefined && invd.gpaPage !== gpaPage) {
      // The page was remapped since its instructions were cached; HVMI's swap hook would have
      // flushed them then. Without page-table hooks, flush them now and hook the new frame.
      this.note('icache-remap-flush', { page: gvaPage, from: invd.gpaPage, to: gpaPage });
      this.flushGvaPage(gvaPage, cr3, true);
      invd = this.invalidations.get(key);
      if (invd !== undefined) throw new Error(`internal: icache invalidation entry for 0x${gvaPage.toString(16)} survived flushing its page`);
    }
    if (invd === undefined) {
      const hook = this.hooks.set(gpaPage, 0x1000, HookType.write, (_hook, access) => this.writeHandler(gvaPage, cr3, access.gpa), 'icache');
      invd = { gvaPage, cr3, gpaPage, refs: 0, hook, swap: null };
      this.invalidations.set(key, invd);
      const swapHooks = this.swapHooks();
      if (swapHooks !== null) invd.swap = swapHooks.watch(gvaPage, (old, now) => this.swapHandler(gvaPage, cr3, old, now));
    }
    invd.refs++;
    return invd;
  }

  private release(invd: InvalidationEntry | null): void {
    if (invd === null || --invd.refs > 0) return;
    this.invalidations.delete(`${invd.gvaPage}:${invd.cr3}`);
    // Only flagged: this may run inside this very hook's callback (the commit deletes it later).
    this.hooks.remove(invd.hook);
    if (invd.swap !== null) this.swapHooks()?.unwatch(invd.swap);
  }

  /** IntIcSwapHandler: the page was remapped (any change but A/D): its instructions are stale. */
  private swapHandler(gvaPage: bigint, cr3: bigint, old: bigint, now: bigint): void {
    if (((old ^ now) & ~ACCESSED_DIRTY) === 0n) return;
    const flushed = this.flushGvaPage(gvaPage, cr3, true);
    this.note('icache-swap-flush', { page: gvaPage, old, new: now, flushed });
  }

  /** IntIcWriteHandler: a guest write to a page with cached code flushes that page, then is allowed. */
  private writeHandler(gvaPage: bigint, cr3: bigint, gpa: number): CallbackResult {
    this.stats.writeHookFlushes++;
    const flushed = this.flushGvaPage(gvaPage, cr3, true);
    this.note('icache-write-flush', { page: gvaPage, gpa, flushed });
    return NO_CALLBACK;
  }
}
