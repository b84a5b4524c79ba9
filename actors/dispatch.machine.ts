import { assign, setup } from 'xstate';

/**
 * The handler lock (HVMI's gLock): one handler at a time — an exit handler, the timer callback,
 * or the integrator's daemon (unload retries). A second acquire while the lock is held is refused
 * and recorded (the session turns it into an error: handlers never nest, and the real lock is not
 * re-entrant).
 *
 *   free ──ACQUIRE──▶ held ──RELEASE──▶ free
 *                     held ──ACQUIRE──▶ held (refused, counted)
 */

/** Who holds the lock: a vCPU whose exit is handled, or the timer, or the daemon. */
export type LockHolder = { readonly kind: 'exit'; readonly vcpu: number } | { readonly kind: 'timer' } | { readonly kind: 'daemon' };

export interface DispatchContext {
  holder: LockHolder | null;
  /** Exits handed to a handler, timer ticks and daemon tasks run since the session opened. */
  exits: number;
  ticks: number;
  tasks: number;
  /** Acquires refused because the lock was held. */
  refused: number;
}

export type DispatchEvent = { type: 'ACQUIRE'; holder: LockHolder } | { type: 'RELEASE' };

export const dispatchMachine = setup({
  types: {
    context: {} as DispatchContext,
    events: {} as DispatchEvent,
  },
  actions: {
    take: assign(({ context, event }) => {
      if (event.type !== 'ACQUIRE') return {};
      const kind = event.holder.kind;
      return { holder: event.holder, exits: context.exits + (kind === 'exit' ? 1 : 0), ticks: context.ticks + (kind === 'timer' ? 1 : 0), tasks: context.tasks + (kind === 'daemon' ? 1 : 0) };
    }),
    release: assign({ holder: null }),
    refuse: assign(({ context }) => ({ refused: context.refused + 1 })),
  },
}).createMachine({
  id: 'dispatch',
  context: { holder: null, exits: 0, ticks: 0, tasks: 0, refused: 0 },
  initial: 'free',
  states: {
    free: {
      on: { ACQUIRE: { target: 'held', actions: 'take' } },
    },
    held: {
      on: {
        ACQUIRE: { actions: 'refuse' },
        RELEASE: { target: 'free', actions: 'release' },
      },
    },
  },
});
