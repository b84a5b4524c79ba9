import { assign, setup } from 'xstate';

/**
 * The pause coordinator: HVMI's IntPauseVcpus/IntResumeVcpus contract, with the reference count
 * the integrator keeps (xc_domain_pause/unpause). Nested pauses are counted; the guest runs again
 * only when the count returns to 0, and that resume commits the pending EPT rights. Resuming more
 * often than pausing is refused and recorded (the API turns it into an error).
 *
 *   running ──PAUSE──▶ pausing ──ALL_STOPPED──▶ paused ──RESUME (last)──▶ running
 *
 * `requestPause` (stop every running vCPU at a boundary) and `resumeAll` (commit EPT, let vCPUs
 * run) are effects the session provides; the machine only decides when they happen.
 *
 * `counted: false` is the naive coordinator (the countedPause fix off): a boolean pause, which the
 * first inner resume releases while an outer pauser still relies on it, and the outer resume
 * that follows finds nothing paused and passes unnoticed.
 */

export interface PauseContext {
  /** Nested pauses are counted (HVMI's contract); false: a boolean pause. */
  readonly counted: boolean;
  depth: number;
  /** RESUME events refused because nothing was paused (an error of the caller). */
  underflows: number;
  /** RESUME events a boolean pause let pass with nothing paused (what the naive coordinator does). */
  ignored: number;
  /** Completed pause → resume cycles. */
  cycles: number;
}

export type PauseEvent = { type: 'PAUSE' } | { type: 'ALL_STOPPED' } | { type: 'RESUME' };

export const pauseMachine = setup({
  types: {
    context: {} as PauseContext,
    events: {} as PauseEvent,
    input: {} as { counted: boolean },
  },
  actions: {
    deepen: assign(({ context }) => ({ depth: context.depth + 1 })),
    shallow: assign(({ context }) => ({ depth: context.depth - 1 })),
    finishCycle: assign(({ context }) => ({ depth: 0, cycles: context.cycles + 1 })),
    refuseResume: assign(({ context }) => ({ underflows: context.underflows + 1 })),
    ignoreResume: assign(({ context }) => ({ ignored: context.ignored + 1 })),
    requestPause: () => undefined,
    resumeAll: () => undefined,
  },
  guards: {
    nested: ({ context }) => context.counted && context.depth > 1,
    boolean: ({ context }) => !context.counted,
  },
}).createMachine({
  id: 'pause',
  context: ({ input }) => ({ counted: input.counted, depth: 0, underflows: 0, ignored: 0, cycles: 0 }),
  initial: 'running',
  states: {
    running: {
      on: {
        PAUSE: { target: 'pausing', actions: ['deepen', 'requestPause'] },
        RESUME: [{ guard: 'boolean', actions: 'ignoreResume' }, { actions: 'refuseResume' }],
      },
    },
    pausing: {
      on: {
        PAUSE: { actions: 'deepen' },
        ALL_STOPPED: 'paused',
        RESUME: [{ guard: 'nested', actions: 'shallow' }, { target: 'running', actions: ['finishCycle', 'resumeAll'] }],
      },
    },
    paused: {
      on: {
        PAUSE: { actions: 'deepen' },
        RESUME: [{ guard: 'nested', actions: 'shallow' }, { target: 'running', actions: ['finishCycle', 'resumeAll'] }],
      },
    },
  },
});
