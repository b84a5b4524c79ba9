import { assign, setup } from 'xstate';
import type { ThreadScan } from '../src/intro/thread-safeness.ts';

/**
 * The thread-safeness check (IntThrSafeCheckThreads) as a protocol: it scans only with every
 * vCPU paused — asked while they run, it refuses (and says so) instead of reading registers that
 * are changing under it — and ends safe or unsafe with what it found. The scan itself is the
 * effect the integrator provides (`scan`, which records its result); the machine decides whether
 * it may run and what the result means.
 *
 *   idle ──CHECK──▶ scanning ──▶ safe | unsafe        (any state) ──CHECK while running──▶ refused
 */

export interface ThreadSafenessContext {
  /** The last scan's result. */
  result: ThreadScan | null;
  scans: number;
  /** Checks asked for while the vCPUs were running. */
  refusals: number;
}

export type ThreadSafenessEvent = { type: 'CHECK'; paused: boolean };

export const threadSafenessMachine = setup({
  types: {
    context: {} as ThreadSafenessContext,
    events: {} as ThreadSafenessEvent,
  },
  actions: {
    /** Provided by the integrator: runs the scan and assigns `result`. */
    scan: assign({}),
    countScan: assign(({ context }) => ({ scans: context.scans + 1 })),
    refuse: assign(({ context }) => ({ refusals: context.refusals + 1, result: null })),
  },
  guards: {
    vcpusRunning: ({ event }) => !event.paused,
    foundThread: ({ context }) => context.result !== null && context.result.unsafe !== null,
  },
}).createMachine({
  id: 'threadSafeness',
  context: { result: null, scans: 0, refusals: 0 },
  initial: 'idle',
  on: {
    CHECK: [{ guard: 'vcpusRunning', target: '.refused', actions: 'refuse' }, { target: '.scanning', reenter: true }],
  },
  states: {
    idle: {},
    scanning: {
      entry: ['scan', 'countScan'],
      always: [{ guard: 'foundThread', target: 'unsafe' }, { target: 'safe' }],
    },
    safe: {},
    unsafe: {},
    refused: {},
  },
});
