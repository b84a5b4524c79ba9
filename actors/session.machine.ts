import { assign, setup } from 'xstate';

/**
 * A session's lifecycle: it boots its vCPU hosts, runs, and shuts down, and it can fail from any
 * live state (a dead worker, a handler that threw, a stuck vCPU). Closing always goes through
 * `shuttingDown`, where every host is terminated, to `closed`.
 *
 *   booting ──BOOTED──▶ running ──CLOSE──▶ shuttingDown ──CLOSED──▶ closed
 *      └──────────FAIL──────┴──▶ failed ──CLOSE──▶ shuttingDown
 */

export interface SessionContext {
  readonly vcpus: number;
  /** Why the session failed, if it did. */
  failure: string | null;
}

export type SessionEvent =
  | { type: 'BOOTED' }
  | { type: 'FAIL'; reason: string }
  | { type: 'CLOSE' }
  | { type: 'CLOSED' };

export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as { vcpus: number },
  },
  actions: {
    recordFailure: assign(({ context, event }) => (event.type === 'FAIL' && context.failure === null ? { failure: event.reason } : {})),
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({ vcpus: input.vcpus, failure: null }),
  initial: 'booting',
  states: {
    booting: {
      on: {
        BOOTED: 'running',
        FAIL: { target: 'failed', actions: 'recordFailure' },
        CLOSE: 'shuttingDown',
      },
    },
    running: {
      on: {
        FAIL: { target: 'failed', actions: 'recordFailure' },
        CLOSE: 'shuttingDown',
      },
    },
    failed: {
      on: { CLOSE: 'shuttingDown' },
    },
    shuttingDown: {
      on: { CLOSED: 'closed' },
    },
    closed: { type: 'final' },
  },
});
