import type { CallbackResult } from '../gpa-hooks.ts';
import { IntStatus, IntroAction, combineActions, type IntroActionCode, type IntStatusCode } from '../status.ts';

/**
 * One kind of register hook (HVMI's MSR, CR, XCR or DTR hook list, hooks/reg/hook_*.c): hooks
 * keyed by what they watch, called in the order they were placed. Removing a hook disables it at
 * once — its callback is never called again — and takes it out of the list at once too, unless
 * this list is being walked: then it stays in place until the walk's commit, so the walk never
 * steps on a hook that is gone (HVMI defers the delete while the vCPU is in that exit's handler,
 * and the handler's pre-return callback commits it).
 */

export type RegisterHookKind = 'msr' | 'cr' | 'xcr' | 'dtr';

/** What every register hook has, whatever it watches. */
export interface RegisterHookBase {
  readonly id: number;
  readonly kind: RegisterHookKind;
  /** MSR index, CR number, XCR index, or DescriptorAccess flags. */
  readonly key: number;
  /** Who placed it, for reports. */
  readonly owner: string;
  /** Exits the run had seen when it was placed (compare with an exit's ticket). */
  readonly placedTicket: number;
  /** Removed: never called again (HVMI's Disabled). */
  disabled: boolean;
  /** Out of its list (HVMI freed it). */
  deleted: boolean;
}

export type RegisterHookCallback<W> = (hook: RegisterHook<W>, write: W) => CallbackResult;

/** A register hook whose callback sees writes of type `W`. */
export interface RegisterHook<W> extends RegisterHookBase {
  readonly callback: RegisterHookCallback<W>;
}

/** An exit's outcome: SUCCESS, or NOT_FOUND when no hook watches that register, and the combined action. */
export interface RegisterExitResult {
  readonly status: IntStatusCode;
  readonly action: IntroActionCode;
}

/** What the engine does with a list without knowing its write type (removal, uninit, reports). */
export interface RegisterHookListControl {
  readonly kind: RegisterHookKind;
  remove(hook: RegisterHookBase): IntStatusCode;
  removeAll(): void;
  liveHooks(): readonly RegisterHookBase[];
}

export class RegisterHookList<W> implements RegisterHookListControl {
  private readonly hooks: RegisterHook<W>[] = [];
  private walks = 0;
  private nextId = 1;

  constructor(
    readonly kind: RegisterHookKind,
    /** The run's exit count now (the placement ticket). */
    private readonly ticket: () => number,
  ) {}

  /** IntHook*SetHook: appended, so it is called after the hooks already there. */
  set(key: number, callback: RegisterHookCallback<W>, owner: string): RegisterHook<W> {
    const hook: RegisterHook<W> = { id: this.nextId++, kind: this.kind, key, owner, callback, placedTicket: this.ticket(), disabled: false, deleted: false };
    this.hooks.push(hook);
    return hook;
  }

  /** IntHook*RemoveHook: disabled now; deleted now, or at the commit of the walk in progress. */
  remove(hook: RegisterHookBase): IntStatusCode {
    if (hook.kind !== this.kind) throw new RangeError(`a ${hook.kind} hook (#${hook.id}, ${hook.owner}) is not in the ${this.kind} hook list`);
    if (hook.disabled) return IntStatus.notNeededHint;
    hook.disabled = true;
    if (this.walks === 0) this.commit();
    return IntStatus.success;
  }

  /**
   * The loop of IntHandleMsrViolation / CrWrite / XcrWrite / DtrViolation: every hook on `key`,
   * in order, with the write; actions combine by priority; a callback answering
   * REMOVE_HOOK_ON_RET has its hook removed; the removals are committed after the walk. A
   * disabled hook on `key` still counts as found, as in HVMI.
   */
  call(key: number, write: W): RegisterExitResult {
    let found = false;
    let action: IntroActionCode = IntroAction.allowed;
    this.walks++;
    try {
      // By index, not a snapshot: a hook placed by a callback is reached too, as a list walk would.
      for (let i = 0; i < this.hooks.length; i++) {
        const hook = this.hooks[i];
        if (hook.key !== key) continue;
        found = true;
        if (hook.disabled) continue;
        const result = hook.callback(hook, write);
        action = combineActions(action, result.action);
        if (result.status === IntStatus.removeHookOnRet) this.remove(hook);
      }
    } finally {
      this.walks--;
    }
    this.commit();
    return { status: found ? IntStatus.success : IntStatus.notFound, action };
  }

  /** IntHook*Commit: deletes the disabled hooks (not while a walk is in progress). */
  commit(): number {
    if (this.walks > 0) return 0;
    let deleted = 0;
    for (let i = this.hooks.length - 1; i >= 0; i--) {
      const hook = this.hooks[i];
      if (!hook.disabled) continue;
      hook.deleted = true;
      this.hooks.splice(i, 1);
      deleted++;
    }
    return deleted;
  }

  /** IntHook*Uninit: every hook removed. */
  removeAll(): void {
    for (const hook of this.hooks) hook.disabled = true;
    this.commit();
  }

  /** Hooks still in the list, disabled ones waiting for the commit included. */
  inList(): readonly RegisterHook<W>[] {
    return [...this.hooks];
  }

  /** Hooks that are not disabled. */
  liveHooks(): readonly RegisterHook<W>[] {
    return this.hooks.filter((hook) => !hook.disabled);
  }
}
