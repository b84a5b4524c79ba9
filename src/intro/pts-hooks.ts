import type { GuestMemory } from '../machine/memory.ts';
import type { NoteDetail } from './glue.ts';
import { HookType, type CallbackResult, type GpaHook, type GpaHookTable, type HookedAccess } from './gpa-hooks.ts';
import { PTS_MONITORED_BITS, type PageTableWrites } from './page-table-writes.ts';
import { newWriteState, type PteWriteState } from './pte-write-state.ts';
import { isTableEntry, pagingLayout, rootOf, type PagingLayout } from './paging-layout.ts';
import { IntroAction, IntStatus } from './status.ts';
import type { PagingFormat } from '../machine/page-tables.ts';

/**
 * Swap hooks on translations (hook_pts.c): a callback whenever the translation of one page of
 * one address space changes in a watched bit — the frame it maps, P, R/W, U/S or PS. Every
 * paging-structure entry on the way (PML4E, PDPTE, PDE, PTE) carries a paging-structure write
 * hook; a complete write to one of them re-walks the translation from there, moving the hooks of
 * the levels below to the new tables, and compares the leaf before and after.
 *
 * Placing a level hooks its entry first and reads it after — HVMI: "fetch data from the page-table
 * page only after the hook has been set on it; otherwise, we may race with the guest". The naive
 * order (hookThenRead off) reads, lets other vCPUs run, then hooks: a write in between goes by
 * unseen and the hook keeps describing a translation that no longer exists.
 */

/** A change of a hooked translation, as its callback sees it. */
export interface SwapChange {
  readonly gva: bigint;
  /** The leaf entry before and after (0 for "not mapped"). */
  readonly old: bigint;
  readonly new: bigint;
  /** 4 KiB, 2 MiB or 1 GiB: the mapping's size after the change (before it, when it went away). */
  readonly pageSize: number;
  /** The vCPU whose page-table write made the change. */
  readonly vcpuId: number;
}

export type SwapCallback = (change: SwapChange) => void;

interface Level {
  readonly depth: number;
  readonly entryGpa: number;
  readonly hook: GpaHook;
  readonly state: PteWriteState;
}

/** One swap hook (HOOK_PTS): a translation and the entries it passes through. */
export interface PtsHook {
  readonly id: number;
  readonly gva: bigint;
  /** GPA of the address space's root table. */
  readonly root: number;
  readonly owner: string;
  /** The leaf entry as the hook last knew it (0: not mapped). */
  readonly leaf: bigint;
  readonly removed: boolean;
}

interface LivePtsHook extends PtsHook {
  leaf: bigint;
  removed: boolean;
  readonly layout: PagingLayout;
  readonly levels: Level[];
  readonly callback: SwapCallback;
}

const ADDRESS = 0x000f_ffff_ffff_f000n;

/** The table index of `gva` at `depth` (0 = the root). */
const indexAt = (layout: PagingLayout, gva: bigint, depth: number): number => Number((gva >> layout.shifts[depth]) & (depth === 0 ? BigInt(layout.rootEntries - 1) : 511n));

export interface PtsHookDeps {
  readonly memory: GuestMemory;
  readonly hooks: GpaHookTable;
  readonly writes: PageTableWrites;
  readonly hookThenRead: () => boolean;
  readonly preemptionPoint: (label: string) => void;
  readonly note: (what: string, detail: NoteDetail) => void;
}

export class PtsHooks {
  private nextId = 1;

  constructor(private readonly deps: PtsHookDeps) {}

  /** IntHookPtsSetHook: watches the translation of `gva` under the tables at `cr3` (4-level or PAE). */
  set(gva: bigint, cr3: number, owner: string, callback: SwapCallback, format: PagingFormat = '4-level'): PtsHook {
    const layout = pagingLayout(format);
    const root = rootOf(layout, cr3);
    const hook: LivePtsHook = { id: this.nextId++, gva: gva & ~0xfffn, root, owner, leaf: 0n, removed: false, layout, levels: [], callback };
    hook.leaf = this.walkFrom(hook, 0, root);
    return hook;
  }

  /** IntHookPtsRemoveHook: flagged at once (its callback never runs again), its entry hooks go at the commit. */
  remove(hook: PtsHook): void {
    const live = hook as LivePtsHook;
    if (live.removed) return;
    live.removed = true;
    this.dropLevels(live, 0);
  }

  /**
   * Hooks the entries of `hook`'s translation from `depth` down, starting at `table`; returns the
   * leaf (0 when a level is not present).
   */
  private walkFrom(hook: LivePtsHook, depth: number, table: number): bigint {
    for (let level = depth; level < hook.layout.levels; level++) {
      const entryGpa = table + indexAt(hook.layout, hook.gva, level) * 8;
      const entry = this.placeLevel(hook, level, entryGpa);
      if (!isTableEntry(hook.layout, entry, level)) return (entry & 1n) !== 0n ? entry : 0n;
      table = Number(entry & ADDRESS);
    }
    return 0n;
  }

  /** One level: hook, then read (or, naive, read, let others run, hook). */
  private placeLevel(hook: LivePtsHook, depth: number, entryGpa: number): bigint {
    const { hooks, memory } = this.deps;
    const place = (): GpaHook =>
      hooks.set(entryGpa, 8, HookType.write, (_gpaHook, access) => this.onWrite(hook, depth, access), `pts:${hook.owner}`, { pagingStructure: true });
    let entry: bigint;
    let gpaHook: GpaHook;
    const state = newWriteState(0n);
    if (this.deps.hookThenRead()) {
      gpaHook = place();
      entry = memory.read64(entryGpa);
    } else {
      entry = memory.read64(entryGpa);
      this.deps.preemptionPoint('pts-read-before-hook');
      gpaHook = place();
    }
    state.curEntry = entry;
    hook.levels[depth] = { depth, entryGpa, hook: gpaHook, state };
    return entry;
  }

  /** Takes the entry hooks from `depth` down off (flagged; the commit deletes them). */
  private dropLevels(hook: LivePtsHook, depth: number): void {
    for (let level = hook.levels.length - 1; level >= depth; level--) {
      const placed = hook.levels[level];
      if (placed !== undefined) this.deps.hooks.remove(placed.hook);
    }
    hook.levels.length = depth;
  }

  /** IntHookPtsWriteCallback: a complete write re-walks from its level; a watched change of the leaf calls back. */
  private onWrite(hook: LivePtsHook, depth: number, access: HookedAccess): CallbackResult {
    const level = hook.levels[depth];
    if (hook.removed || level === undefined) return DONE;
    const written = this.deps.writes.process(level.state, access.vcpuId);
    if (written.status !== IntStatus.success || written.old === undefined) return DONE;
    const before = hook.leaf;
    const pageBefore = this.pageSize(hook);
    let after: bigint;
    if (isTableEntry(hook.layout, written.new, depth)) {
      const moved = !isTableEntry(hook.layout, written.old, depth) || (written.old & ADDRESS) !== (written.new & ADDRESS);
      if (moved) {
        this.dropLevels(hook, depth + 1);
        after = this.walkFrom(hook, depth + 1, Number(written.new & ADDRESS));
      } else {
        after = hook.leaf;
      }
    } else {
      this.dropLevels(hook, depth + 1);
      after = (written.new & 1n) !== 0n ? written.new : 0n;
    }
    hook.leaf = after;
    if (((before ^ after) & PTS_MONITORED_BITS) === 0n) return DONE;
    this.deps.note('pts-change', { owner: hook.owner, gva: hook.gva, old: before, new: after, vcpu: access.vcpuId });
    hook.callback({ gva: hook.gva, old: before, new: after, pageSize: after === 0n ? pageBefore : this.pageSize(hook), vcpuId: access.vcpuId });
    return DONE;
  }

  private pageSize(hook: LivePtsHook): number {
    return hook.layout.leafBytes[hook.levels.length - 1] || 0x1000;
  }
}

const DONE: CallbackResult = Object.freeze({ status: IntStatus.success, action: IntroAction.allowed });
