import { assign, setup } from 'xstate';

/**
 * The hook-commit actor (IntHookCommitAllHooks, hook.c): removing a hook only flags it, and this
 * actor deletes the flagged hooks at the end of every handler and timer tick — read hooks, then
 * write hooks, then execute hooks, so a page never becomes writable but unreadable. Deleting
 * later rather than at once is what lets a callback remove its own hook, or a sibling's, while
 * the engine is still walking that page's hook list.
 *
 *   clean ──HOOK_REMOVED──▶ dirty ──COMMIT──▶ committing ──▶ clean, or dirty while removals remain
 *   (COMMIT in clean does nothing; a deletion that failed leaves the actor dirty, as HVMI's Dirty)
 *
 * The three deletions are effects the integration provides (`.provide`); the machine decides
 * when they run and in which order.
 */

export interface HookCommitContext {
  /** Commits that deleted something. */
  commits: number;
}

export type HookCommitEvent = { type: 'HOOK_REMOVED' } | { type: 'COMMIT' };

export const hookCommitMachine = setup({
  types: {
    context: {} as HookCommitContext,
    events: {} as HookCommitEvent,
  },
  actions: {
    deleteReadHooks: () => undefined,
    deleteWriteHooks: () => undefined,
    deleteExecuteHooks: () => undefined,
    countCommit: assign(({ context }) => ({ commits: context.commits + 1 })),
  },
  guards: {
    removalsPending: () => false,
  },
}).createMachine({
  id: 'hookCommit',
  context: { commits: 0 },
  initial: 'clean',
  states: {
    clean: {
      on: { HOOK_REMOVED: 'dirty' },
    },
    dirty: {
      on: {
        COMMIT: { target: 'committing', actions: ['deleteReadHooks', 'deleteWriteHooks', 'deleteExecuteHooks', 'countCommit'] },
      },
    },
    committing: {
      always: [{ guard: 'removalsPending', target: 'dirty' }, { target: 'clean' }],
    },
  },
});
