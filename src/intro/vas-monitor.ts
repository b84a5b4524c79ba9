import type { GuestMemory } from '../machine/memory.ts';
import type { NoteDetail } from './glue.ts';
import { HookType, type CallbackResult, type GpaHook, type GpaHookTable, type HookedAccess } from './gpa-hooks.ts';
import { PTS_MONITORED_BITS, type PageTableWrites } from './page-table-writes.ts';
import { isTableEntry, pagingLayout, rootOf, type PagingLayout } from './paging-layout.ts';
import type { PagingFormat } from '../machine/page-tables.ts';
import { newWriteState, type PteWriteState } from './pte-write-state.ts';
import { IntroAction, IntStatus } from './status.ts';

/**
 * The VAS monitor (vasmonitor.c, hvmi-notes §9): every page table of an address space's user half
 * write-hooked, recursively, and a callback for every change of a leaf mapping.
 *
 * - Hooking a table pauses every vCPU around placing the hook, so the EPT change is in force on
 *   all of them before the table is read (pauseAroundVasHook); the table is read after the hook
 *   (hookThenRead). Entries present when a table is hooked produce no callback.
 * - A table removed (a present non-leaf entry cleared or turned into a large page) is unhooked
 *   and every leaf below it gets a synthesised `old → 0` callback.
 * - A table added or remapped is hooked recursively — with no leaf callbacks for what it holds.
 * - A leaf change (level 1, or a large page on either side) in the monitored bits calls back.
 */

/** A leaf mapping's change: `(gla, old, new, pageSize)`. */
export interface VasChange {
  readonly gla: bigint;
  readonly old: bigint;
  readonly new: bigint;
  readonly pageSize: number;
  /** The vCPU whose write made it; -1 for a change synthesised by unhooking a table. */
  readonly vcpuId: number;
}

export type VasCallback = (change: VasChange) => void;

/** An entry the monitor knows differently from memory. */
export interface VasDivergence {
  readonly owner: string;
  /** GPA of the table, its depth (0 = PML4 … 3 = page table) and the entry's index. */
  readonly table: number;
  readonly depth: number;
  readonly index: number;
  readonly known: bigint;
  readonly memory: bigint;
}

interface Table {
  readonly gpa: number;
  /** 0 = PML4 … 3 = page table. */
  readonly depth: number;
  /** The linear address the table's first entry maps. */
  readonly base: bigint;
  /** Entries hooked (the root's user half, PAE's whole PDPT; 512 elsewhere), and how many of them are followed. */
  readonly entries: number;
  readonly walked: number;
  readonly states: PteWriteState[];
  readonly children: Map<number, Table>;
  hook: GpaHook | null;
}

/** One monitored address space. */
export interface VasMonitorHandle {
  readonly root: number;
  readonly owner: string;
  /** Tables hooked now. */
  readonly tables: number;
  readonly stopped: boolean;
}

interface LiveSpace extends VasMonitorHandle {
  tables: number;
  stopped: boolean;
  readonly layout: PagingLayout;
  readonly rootTable: Table;
  readonly callback: VasCallback;
  readonly monitoredBits: bigint;
}

const ADDRESS = 0x000f_ffff_ffff_f000n;

export interface VasMonitorDeps {
  readonly memory: GuestMemory;
  readonly hooks: GpaHookTable;
  readonly writes: PageTableWrites;
  readonly hookThenRead: () => boolean;
  readonly pauseAroundHook: () => boolean;
  readonly pause: () => void;
  readonly resume: () => void;
  readonly preemptionPoint: (label: string) => void;
  readonly note: (what: string, detail: NoteDetail) => void;
}

export class VasMonitor {
  private readonly spaces = new Set<LiveSpace>();

  constructor(private readonly deps: VasMonitorDeps) {}

  /**
   * IntVasStartMonitorVaSpace: hooks every table of the user half under `cr3` — PML4 entries
   * 0..255, or under PAE the whole 0x20-byte PDPT with only its first two entries walked.
   */
  start(cr3: number, owner: string, callback: VasCallback, monitoredBits = PTS_MONITORED_BITS, format: PagingFormat = '4-level'): VasMonitorHandle {
    const layout = pagingLayout(format);
    const root = rootOf(layout, cr3);
    const rootTable = newTable(root, 0, 0n, layout.format === 'pae' ? layout.rootEntries : layout.userRootEntries, layout.userRootEntries);
    const space: LiveSpace = { root, owner, tables: 0, stopped: false, layout, rootTable, callback, monitoredBits };
    this.spaces.add(space);
    this.hookTables(space, rootTable);
    this.deps.note('vas-start', { owner, root, tables: space.tables });
    return space;
  }

  /** IntVasStopMonitorVaSpace: every table unhooked, no callbacks. */
  stop(handle: VasMonitorHandle): void {
    const space = handle as LiveSpace;
    if (space.stopped) return;
    space.stopped = true;
    this.spaces.delete(space);
    this.unhookTables(space, space.rootTable, false);
  }

  /**
   * Entries of hooked tables whose monitored bits the monitor knows differently from memory —
   * a write it never saw. Entries with a partial write in progress are skipped (their bytes are
   * between two stores), and so are entries absent on both sides.
   */
  divergence(): VasDivergence[] {
    const out: VasDivergence[] = [];
    const visit = (space: LiveSpace, table: Table): void => {
      if (table.hook === null) return;
      for (let index = 0; index < table.entries; index++) {
        const state = table.states[index];
        if (state.writtenMask !== 0) continue;
        const memory = this.deps.memory.read64(table.gpa + index * 8);
        if (((state.curEntry | memory) & 1n) === 0n || ((state.curEntry ^ memory) & space.monitoredBits) === 0n) continue;
        out.push({ owner: space.owner, table: table.gpa, depth: table.depth, index, known: state.curEntry, memory });
      }
      for (const child of table.children.values()) visit(space, child);
    };
    for (const space of this.spaces) visit(space, space.rootTable);
    return out;
  }

  /** Entries of hooked tables with a partial write in progress (bytes written, waiting for the rest). */
  partialEntries(): { readonly table: number; readonly index: number; readonly writtenMask: number }[] {
    const out: { table: number; index: number; writtenMask: number }[] = [];
    const visit = (table: Table): void => {
      if (table.hook === null) return;
      table.states.forEach((state, index) => {
        if (state.writtenMask !== 0) out.push({ table: table.gpa, index, writtenMask: state.writtenMask });
      });
      for (const child of table.children.values()) visit(child);
    };
    for (const space of this.spaces) visit(space.rootTable);
    return out;
  }

  /** IntVasHookTables: hook the table (paused), then read it, then its present non-leaf children. */
  private hookTables(space: LiveSpace, table: Table): void {
    if (!this.deps.hookThenRead()) {
      this.readEntries(table);
      this.deps.preemptionPoint('vas-read-before-hook');
    }
    const paused = this.deps.pauseAroundHook();
    if (paused) this.deps.pause();
    try {
      table.hook = this.deps.hooks.set(table.gpa, table.entries * 8, HookType.write, (_hook, access) => this.onWrite(space, table, access), `vas:${space.owner}`, { pagingStructure: true });
    } finally {
      if (paused) this.deps.resume();
    }
    space.tables++;
    this.deps.preemptionPoint('vas-hooked');
    if (this.deps.hookThenRead()) this.readEntries(table);
    // The scan below (and the callbacks of the write that got us here) take time the other
    // vCPUs run in.
    this.deps.preemptionPoint('vas-table-read');
    for (let index = 0; index < table.walked; index++) {
      const entry = table.states[index].curEntry;
      if (!isTableEntry(space.layout, entry, table.depth)) continue;
      const child = newTable(Number(entry & ADDRESS), table.depth + 1, space.layout.address(table.base, table.depth, index), 512);
      table.children.set(index, child);
      this.hookTables(space, child);
    }
  }

  private readEntries(table: Table): void {
    for (let index = 0; index < table.entries; index++) table.states[index].curEntry = this.deps.memory.read64(table.gpa + index * 8);
  }

  /**
   * IntVasUnHookTables: the table's hook and its children's are flagged for removal; with
   * `synthesise`, every present leaf below gets an `old → 0` callback (the flagged hooks will not
   * run again, so the structures go at once).
   */
  private unhookTables(space: LiveSpace, table: Table, synthesise: boolean): void {
    if (table.hook !== null) {
      this.deps.hooks.remove(table.hook);
      table.hook = null;
      space.tables--;
    }
    for (let index = 0; index < table.entries; index++) {
      const child = table.children.get(index);
      if (child !== undefined) {
        this.unhookTables(space, child, synthesise);
        continue;
      }
      const entry = table.states[index].curEntry;
      if (!synthesise || (entry & 1n) === 0n || index >= table.walked) continue;
      this.leafChanged(space, space.layout.address(table.base, table.depth, index), entry, 0n, space.layout.leafBytes[table.depth], -1);
    }
    table.children.clear();
  }

  /** IntVasPageTableWriteCallback. */
  private onWrite(space: LiveSpace, table: Table, access: HookedAccess): CallbackResult {
    if (space.stopped || table.hook === null) return DONE;
    const index = Math.floor((access.gpa - table.gpa) / 8);
    if (index < 0 || index >= table.entries) return DONE;
    const state = table.states[index];
    const written = this.deps.writes.process(state, access.vcpuId);
    if (written.status !== IntStatus.success || written.old === undefined) return DONE;
    const { old, new: now } = written;
    const depth = table.depth;
    // A write to a root entry outside the user half (PAE's PDPTEs 2 and 3) is not followed.
    if (index >= table.walked) return DONE;
    const layout = space.layout;
    const gla = layout.address(table.base, depth, index);
    const wasTable = isTableEntry(layout, old, depth);
    const isTable = isTableEntry(layout, now, depth);
    if (wasTable && (!isTable || (old & ADDRESS) !== (now & ADDRESS))) {
      const child = table.children.get(index);
      if (child !== undefined) {
        table.children.delete(index);
        this.unhookTables(space, child, true);
        this.deps.note('vas-table-removed', { owner: space.owner, gla, table: child.gpa, vcpu: access.vcpuId });
      }
    }
    if (isTable && (!wasTable || (old & ADDRESS) !== (now & ADDRESS))) {
      const child = newTable(Number(now & ADDRESS), depth + 1, gla, 512);
      table.children.set(index, child);
      this.deps.note('vas-table-added', { owner: space.owner, gla, table: child.gpa, vcpu: access.vcpuId });
      this.hookTables(space, child);
    }
    if (!wasTable && !isTable && ((old ^ now) & space.monitoredBits) !== 0n && ((old | now) & 1n) !== 0n) {
      this.leafChanged(space, gla, old, now, layout.leafBytes[depth], access.vcpuId);
    }
    return DONE;
  }

  private leafChanged(space: LiveSpace, gla: bigint, old: bigint, now: bigint, pageSize: number, vcpuId: number): void {
    this.deps.note('vas-leaf', { owner: space.owner, gla, old, new: now, vcpu: vcpuId });
    space.callback({ gla, old, new: now, pageSize, vcpuId });
  }
}

function newTable(gpa: number, depth: number, base: bigint, entries: number, walked = entries): Table {
  return { gpa, depth, base, entries, walked, states: Array.from({ length: entries }, () => newWriteState(0n)), children: new Map(), hook: null };
}

const DONE: CallbackResult = Object.freeze({ status: IntStatus.success, action: IntroAction.allowed });
