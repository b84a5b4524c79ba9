import type { DecodedInstruction } from './decoder.ts';
import type { Glue, VcpuAccess } from './glue.ts';
import { IntStatus, IntroAction, type IntroActionCode, type IntStatusCode } from './status.ts';

/**
 * EPT hooks on guest-physical pages (hook_gpa.c). A hook covers a byte range inside one page and
 * one access type; the page's EPT rights are derived from per-type reference counts, bit by bit
 * (R = no read hooks, W = no write hooks, X = no execute hooks), exactly as HVMI computes them —
 * so callers must place a write hook before a read hook, or the page becomes write-without-read
 * and the EPT refuses it (an EPT misconfiguration on real hardware).
 *
 * Removing a hook only flags it (REMOVE | DISABLED) and queues it; its callback is never called
 * again, and the hook stays in its page list so a walk in progress stays valid. The hook-commit
 * actor deletes queued hooks at the end of every handler and timer tick, read hooks first, then
 * write, then execute, so no page is ever writable but unreadable.
 */

/** IG_EPT_HOOK_*: which access a hook intercepts. */
export const HookType = { read: 1, write: 2, execute: 4 } as const;
export type HookTypeCode = (typeof HookType)[keyof typeof HookType];
export const HOOK_TYPES: readonly HookTypeCode[] = [HookType.read, HookType.write, HookType.execute];

export function hookTypeName(type: HookTypeCode): 'read' | 'write' | 'execute' {
  return type === HookType.read ? 'read' : type === HookType.write ? 'write' : 'execute';
}

/** HOOK_FLG_*, and `freed`: the hook's memory is gone (what a walk must never touch again). */
export const HookFlag = { disabled: 1, remove: 2, freed: 4 } as const;

/** One access to a hooked range, as a callback sees it. */
export interface HookedAccess {
  readonly vcpuId: number;
  /** Ticket of the exit this access comes from (compare with `GpaHook.placedTicket`). */
  readonly exitTicket: number;
  /** Guest-physical and guest-linear address of the first byte accessed in this page. */
  readonly gpa: number;
  readonly gla: bigint;
  /** Bytes accessed in this page. */
  readonly size: number;
  readonly type: HookTypeCode;
  /** The instruction making the access (null for accesses without one). */
  readonly instruction: DecodedInstruction | null;
  readonly self: VcpuAccess;
  /**
   * Asks to complete the instruction in the engine (HVMI's patch buffer for the hypervisor's
   * emulator): `apply` runs once, after all callbacks, and only if the combined action is
   * allowedVirtual. The first request of an exit wins.
   */
  emulate(apply: () => void): void;
}

/** What a callback answers: a status (REMOVE_HOOK_ON_RET, SKIP_OTHER_CALLBACKS…) and an action. */
export interface CallbackResult {
  readonly status: IntStatusCode;
  readonly action: IntroActionCode;
}

export type HookCallback = (hook: GpaHook, access: HookedAccess) => CallbackResult;

export interface GpaHook {
  readonly id: number;
  /** Page-aligned GPA. */
  readonly gpaPage: number;
  readonly offset: number;
  readonly length: number;
  readonly type: HookTypeCode;
  /** Who placed it (for reports: "icache", "memcloak"...). */
  readonly owner: string;
  readonly callback: HookCallback;
  /**
   * Exits the run had seen when the hook was placed (`Glue.ticket`): an exit whose ticket is not
   * above this happened before the hook existed.
   */
  readonly placedTicket: number;
  /**
   * HOOK_FLG_PAGING_STRUCTURE: the range holds page-table entries. A write to it is carried out
   * by the engine (page-table write emulation) before the first such callback runs.
   */
  readonly pagingStructure: boolean;
  flags: number;
}

interface PageEntry {
  readonly hooks: Record<HookTypeCode, GpaHook[]>;
  readonly counts: Record<HookTypeCode, number>;
}

const PAGE = 0x1000;

export class GpaHookTable {
  private readonly pages = new Map<number, PageEntry>();
  private readonly removed: Record<HookTypeCode, GpaHook[]> = { 1: [], 2: [], 4: [] };
  private nextId = 1;

  constructor(
    private readonly glue: Glue,
    /** Told whenever a hook is flagged for removal (the hook-commit actor becomes dirty). */
    private readonly onRemoved: () => void = () => undefined,
    /** HVMI's deferred removal (the deferredHookRemoval fix); false: a removed hook is deleted, and freed, at once. */
    private readonly deferRemoval = true,
  ) {}

  /** IntHookGpaSetHook: hooks [gpa, gpa+length) for `type`; the range must stay in one page. */
  set(gpa: number, length: number, type: HookTypeCode, callback: HookCallback, owner: string, options: { readonly pagingStructure?: boolean } = {}): GpaHook {
    const gpaPage = gpa - (gpa % PAGE);
    if (length < 1 || gpa % PAGE + length > PAGE) {
      throw new RangeError(`GPA hook 0x${gpa.toString(16)} + ${length} (${owner}) must lie inside one 4 KiB page`);
    }
    const hook: GpaHook = { id: this.nextId++, gpaPage, offset: gpa - gpaPage, length, type, owner, callback, placedTicket: this.glue.ticket, pagingStructure: options.pagingStructure === true, flags: 0 };
    const entry = this.entry(gpaPage);
    entry.hooks[type].push(hook);
    if (entry.counts[type]++ === 0) this.applyRights(gpaPage, entry);
    return hook;
  }

  /**
   * IntHookGpaRemoveHook: flags the hook and queues it for deletion at the next commit. Without
   * deferral (the naive engine) it is deleted at once — and freed, so a walk of its page that is
   * in progress touches freed memory next.
   */
  remove(hook: GpaHook): IntStatusCode {
    if ((hook.flags & HookFlag.remove) !== 0) return IntStatus.notNeededHint;
    hook.flags |= HookFlag.remove | HookFlag.disabled;
    if (!this.deferRemoval) {
      this.delete(hook);
      return IntStatus.success;
    }
    this.removed[hook.type].push(hook);
    this.onRemoved();
    return IntStatus.success;
  }

  /** Hooks of `type` on the page holding `gpa`, flagged ones included (callers skip them). */
  hooksAt(gpa: number, type: HookTypeCode): readonly GpaHook[] {
    return this.pages.get(gpa - (gpa % PAGE))?.hooks[type] ?? [];
  }

  /** Whether the page holding `gpa` has any hook (HVMI: an EPT entry exists for it). */
  isPageHooked(gpa: number): boolean {
    return this.pages.has(gpa - (gpa % PAGE));
  }

  /** Flagged hooks of `type` waiting for the commit. */
  pendingRemovals(type: HookTypeCode): number {
    return this.removed[type].length;
  }

  get dirty(): boolean {
    return this.removed[HookType.read].length + this.removed[HookType.write].length + this.removed[HookType.execute].length > 0;
  }

  /**
   * Deletes every flagged hook of `type` (one step of IntHookGpaCommitHooks): the hook leaves its
   * page list, the page's count drops, and the EPT right comes back when the count reaches 0.
   */
  deleteRemoved(type: HookTypeCode): number {
    const queue = this.removed[type];
    const count = queue.length;
    for (const hook of queue) this.delete(hook);
    queue.length = 0;
    return count;
  }

  /** Takes a hook out of its page list (the EPT right comes back when the last goes) and frees it. */
  private delete(hook: GpaHook): void {
    const entry = this.pages.get(hook.gpaPage);
    if (entry === undefined) throw new Error(`internal: removed ${hookTypeName(hook.type)} hook #${hook.id} (${hook.owner}) has no page entry`);
    const list = entry.hooks[hook.type];
    list.splice(list.indexOf(hook), 1);
    hook.flags |= HookFlag.freed;
    if (--entry.counts[hook.type] === 0) this.applyRights(hook.gpaPage, entry);
    if (entry.counts[HookType.read] + entry.counts[HookType.write] + entry.counts[HookType.execute] === 0) this.pages.delete(hook.gpaPage);
  }

  /** Live (not flagged) hooks, for reports and oracles. */
  liveHooks(): GpaHook[] {
    const out: GpaHook[] = [];
    for (const entry of this.pages.values()) for (const type of HOOK_TYPES) for (const hook of entry.hooks[type]) if (hook.flags === 0) out.push(hook);
    return out;
  }

  private entry(gpaPage: number): PageEntry {
    let entry = this.pages.get(gpaPage);
    if (entry === undefined) {
      entry = { hooks: { 1: [], 2: [], 4: [] }, counts: { 1: 0, 2: 0, 4: 0 } };
      this.pages.set(gpaPage, entry);
    }
    return entry;
  }

  /** A page seen for the first time is assumed RWX (IntHookGpaGetEptEntry). */
  private applyRights(gpaPage: number, entry: PageEntry): void {
    const rights =
      (entry.counts[HookType.read] === 0 ? HookType.read : 0) |
      (entry.counts[HookType.write] === 0 ? HookType.write : 0) |
      (entry.counts[HookType.execute] === 0 ? HookType.execute : 0);
    this.glue.ept.setRights(gpaPage, rights);
  }
}

/** HVMI's default when no callback claims an access. */
export const NO_CALLBACK: CallbackResult = Object.freeze({ status: IntStatus.success, action: IntroAction.allowed });
