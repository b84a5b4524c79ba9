import {
  CLOCK_VECTOR, guestAlive, HOOKED_APIS, NtGuest, hooksRemoved, imageRestored, notesOf, threadsCorrect, unloadSucceeds,
  type Oracle, type ScenarioBounds, type ScenarioEngine, type WindowGoal,
} from '../src/index.ts';

/**
 * What the unload scenarios share: an unload asked for mid-run (the engine's own logic asks, on
 * the n-th call of a detoured API, as an administrator's tool would through the daemon), the
 * oracles every unload must keep, and window goals over the unload's notes.
 */

/** Bounds for a guest of 6 threads on 3 vCPUs. */
export const THREADED_BOUNDS: ScenarioBounds = {
  stepsMax: 600_000, choicesMax: 60_000, slice: 150, pctEvents: 600, timerSteps: 4000, timerMs: 5, clockEverySteps: 900, freeWallMs: 20_000,
  unloadTries: 300, unloadRetrySteps: 800, fairnessSteps: 6000,
};

/** The guest and clock of the threaded unload scenarios: 6 threads of 40 iterations on 3 vCPUs. */
export const THREADED_GUEST = {
  vcpus: 3,
  bounds: THREADED_BOUNDS,
  clockVector: CLOCK_VECTOR,
  setup: (): NtGuest => new NtGuest({ vcpus: 3, iterations: 40, threads: 6 }),
} as const;

/** The engine asks for its own unload on the `calls`-th call of NtQueryTimerA. */
export function unloadOnCall<F extends string>(calls: number): (engine: ScenarioEngine<F>, guest: NtGuest) => void {
  return (engine, guest) => {
    let seen = 0;
    engine.detour(guest.symbol(HOOKED_APIS[0]), HOOKED_APIS[0], () => {
      if (++seen === calls) {
        engine.note('unload-requested', { calls: seen });
        engine.requestUnload();
      }
    });
  };
}

/** Every unload scenario's oracles: the guest lives, its threads are right, the unload finishes and leaves nothing behind. */
export function unloadOracles<F extends string>(): Oracle<NtGuest, F>[] {
  return [guestAlive(), threadsCorrect(), unloadSucceeds(), imageRestored(), hooksRemoved()];
}

/** Window goals over the unload's notes. */
export const UNLOAD_WINDOWS: readonly WindowGoal<NtGuest>[] = [
  {
    name: 'unload-retried',
    description: 'a thread-safeness check found a thread in the way, and a later attempt unloaded',
    reached: (world) => {
      const checks = notesOf(world.events, 'thread-safeness');
      const unsafe = checks.find((c) => c.event.detail.verdict === 'unsafe');
      return unsafe !== undefined && notesOf(world.events, 'uninit').some((u) => u.index > unsafe.index);
    },
  },
  {
    name: 'unloaded-while-threads-ran',
    description: 'the engine unloaded before every thread had terminated',
    reached: (world) => {
      const uninit = notesOf(world.events, 'uninit')[0];
      if (uninit === undefined) return false;
      const exits = world.events.filter((e, k) => k > uninit.index && e.event.kind === 'handle' && e.event.reason === 'vmcall').length;
      return exits > 0;
    },
  },
];
