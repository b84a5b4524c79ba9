import { assign, setup } from 'xstate';

/**
 * Unloading the engine (IntDisableIntro → IntGuestDisableIntro → IntGuestUninit), with the
 * integrator's retry loop around it, as a protocol:
 *
 *   active ──DISABLE──▶ attempt: pause (DisableIntro), pause (GuestDisableIntro), prepare once
 *     (PrepareUninit is idempotent: detour prologues back, handler INT3s NOPed, mem-tables off,
 *     hooks committed) ─▶ checking: thread safeness
 *       safe ───────────────────────────────▶ uninitializing (GuestUninit, both resumes) ─▶ unloaded
 *       unsafe, tries left, not final ──────▶ waiting (both resumes; the daemon retries later)
 *       unsafe, no tries left or final ─────▶ failed (both resumes)
 *   waiting ──RETRY / DISABLE──▶ attempt
 *
 * With `checkSafeness` false (the threadSafenessCheck fix off), or a DISABLE that ignores
 * safeness (no guest thread will run again), an attempt goes straight to uninitializing. A disable asked for inside a callback (REQUEST_ON_RETURN) only sets a flag
 * that the handler's return (HANDLER_RETURNED) consumes — unless `deferToReturn` is false (the
 * deferDisableToReturn fix off), and then the attempt runs at once, inside the callback.
 * Pausing, preparing, scanning, tearing down and scheduling the retry are effects the integrator
 * provides; this machine decides when each happens.
 */

export interface UninitInput {
  /** Attempts before giving up (the daemon's 300 tries). */
  readonly maxTries: number;
  /** Check thread safeness before tearing down (the threadSafenessCheck fix). */
  readonly checkSafeness: boolean;
  /** A disable asked for inside a callback waits for the handler's return (the deferDisableToReturn fix). */
  readonly deferToReturn: boolean;
}

export interface UninitContext extends UninitInput {
  tries: number;
  prepared: boolean;
  /** A callback asked for a disable; the handler's return runs it. */
  disableOnReturn: boolean;
  /** The last attempt is the last one whatever it finds (the run is over: waiting changes nothing). */
  final: boolean;
  /** IG_DISABLE_IGNORE_SAFENESS: no guest thread will run again, skip the check. */
  ignoreSafeness: boolean;
  /** Set by the provided `check` effect: the scan found nothing (true), something or was refused (false). */
  safe: boolean;
}

export type UninitEvent =
  | { type: 'DISABLE'; final?: boolean; ignoreSafeness?: boolean }
  | { type: 'RETRY' }
  | { type: 'REQUEST_ON_RETURN' }
  | { type: 'HANDLER_RETURNED' };

export const uninitMachine = setup({
  types: {
    context: {} as UninitContext,
    events: {} as UninitEvent,
    input: {} as UninitInput,
  },
  actions: {
    pause: () => undefined,
    resume: () => undefined,
    prepare: () => undefined,
    /** Provided: runs the thread-safeness check and assigns `safe`. */
    check: assign({}),
    uninit: () => undefined,
    scheduleRetry: () => undefined,
    countTry: assign(({ context }) => ({ tries: context.tries + 1 })),
    markPrepared: assign({ prepared: true }),
    markFinal: assign(({ event }) => (event.type === 'DISABLE' ? { final: event.final === true, ignoreSafeness: event.ignoreSafeness === true } : {})),
    setFlag: assign({ disableOnReturn: true }),
    consumeFlag: assign({ disableOnReturn: false }),
  },
  guards: {
    deferred: ({ context }) => context.deferToReturn,
    flagSet: ({ context }) => context.disableOnReturn,
    unprepared: ({ context }) => !context.prepared,
    unchecked: ({ context }) => !context.checkSafeness || context.ignoreSafeness,
    safe: ({ context }) => context.safe,
    giveUp: ({ context }) => context.final || context.tries >= context.maxTries,
  },
}).createMachine({
  id: 'uninit',
  context: ({ input }) => ({ ...input, tries: 0, prepared: false, disableOnReturn: false, final: false, ignoreSafeness: false, safe: false }),
  initial: 'active',
  states: {
    active: {
      on: {
        DISABLE: { target: 'attempt', actions: 'markFinal' },
        REQUEST_ON_RETURN: [{ guard: 'deferred', actions: 'setFlag' }, { target: 'attempt' }],
        HANDLER_RETURNED: { guard: 'flagSet', target: 'attempt', actions: 'consumeFlag' },
      },
    },
    attempt: {
      entry: ['countTry', 'pause', 'pause'],
      always: [
        { guard: 'unprepared', target: 'prepared', actions: ['prepare', 'markPrepared'] },
        { target: 'prepared' },
      ],
    },
    prepared: {
      always: [{ guard: 'unchecked', target: 'uninitializing' }, { target: 'checking' }],
    },
    checking: {
      entry: 'check',
      always: [
        { guard: 'safe', target: 'uninitializing' },
        { guard: 'giveUp', target: 'failed', actions: ['resume', 'resume'] },
        { target: 'waiting', actions: ['resume', 'resume', 'scheduleRetry'] },
      ],
    },
    waiting: {
      on: {
        RETRY: 'attempt',
        DISABLE: { target: 'attempt', actions: 'markFinal' },
      },
    },
    uninitializing: {
      entry: ['uninit', 'resume', 'resume'],
      always: 'unloaded',
    },
    unloaded: { type: 'final' },
    failed: { type: 'final' },
  },
});
