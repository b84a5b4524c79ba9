import {
  CLOCK_VECTOR, guestAlive, HOOKED_APIS, NtGuest, hooksRemoved, imageRestored, notesOf, threadsCorrect, unloadSucceeds,
  type Oracle, type OrderingPair, type OrderingSide, type RunMemory, type RuntimeEvent, type ScenarioBounds, type ScenarioEngine, type WindowGoal,
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
    const detoured = engine.state({ seen: 0 });
    engine.detour(guest.symbol(HOOKED_APIS[0]), HOOKED_APIS[0], () => {
      if (++detoured.seen === calls) {
        engine.note('unload-requested', { calls: detoured.seen });
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

/** What the unload pairs tie together: there is one unload, so any occurrence of each side counts. */
const UNLOAD = 'unload';

/** A region of engine code in the guest, as the engine's cloak note announced it. */
interface CodeRegion {
  readonly start: bigint;
  readonly end: bigint;
}

const regionsOf = (memory: RunMemory): readonly CodeRegion[] => (memory.get('regions') as readonly CodeRegion[] | undefined) ?? [];
const inRegions = (rip: bigint, memory: RunMemory): boolean => regionsOf(memory).some((r) => rip >= r.start && rip < r.end);

/**
 * A pair's `learn` for `threadInHandler`: where the engine put its handlers (the cloak notes of
 * owners starting with `owner`, e.g. "detour handler", "memtable handler" — slack the engine picks
 * at run time), and, at every stop, whether that vCPU was inside one before and is now.
 */
export function learnHandlers(owner: string): NonNullable<OrderingPair['learn']> {
  return (event: RuntimeEvent, memory: RunMemory) => {
    if (event.kind === 'note' && event.what === 'cloak' && String(event.detail.owner).startsWith(owner)) {
      const start = BigInt(event.detail.gva as bigint);
      memory.set('regions', [...regionsOf(memory), { start, end: start + BigInt(event.detail.size as number) }]);
    }
    if (event.kind === 'stop') {
      memory.set(`was inside ${event.vcpu}`, memory.get(`inside ${event.vcpu}`) === true);
      memory.set(`inside ${event.vcpu}`, inRegions(event.rip, memory));
    }
  };
}

/**
 * A vCPU inside one of the handlers `learnHandlers` learned: from the stop that found its RIP there
 * until its next stop outside them (stops are where a vCPU's RIP is known; one preempted there
 * and switched away leaves only its stack pointing in, which only the scan sees).
 */
export const threadInHandler: OrderingSide = {
  begins: (event, memory) =>
    event.kind === 'stop' && memory.get(`inside ${event.vcpu}`) === true && memory.get(`was inside ${event.vcpu}`) !== true ? { key: UNLOAD, vcpu: event.vcpu } : null,
  ends: (event, inside, memory) => event.kind === 'stop' && event.vcpu === inside.vcpu && memory.get(`inside ${event.vcpu}`) !== true,
};

/** The thread-safeness scan (an instant of the engine, every vCPU paused). */
export const threadSafenessScan: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'thread-safeness' ? { key: UNLOAD, vcpu: -1 } : null),
};

/** The teardown: GuestUninit removes the handlers and zeroes their slack. */
export const teardown: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'uninit' ? { key: UNLOAD, vcpu: -1 } : null),
};

/**
 * One unload attempt, from the daemon's task (the first try or a retry) until the point where the
 * vCPUs must still be stopped: the scan, or — when it is skipped or safe — the teardown.
 */
export const unloadAttempt: OrderingSide = {
  begins: (event) => (event.kind === 'daemon' && event.label.startsWith('unload') ? { key: UNLOAD, vcpu: -1 } : null),
  ends: (event) => event.kind === 'note' && ((event.what === 'thread-safeness' && event.detail.verdict !== 'safe') || event.what === 'uninit'),
};

/** The vCPUs released: a resume that brings the pause count back to zero. */
export const vcpusReleased: OrderingSide = {
  begins: (event) => (event.kind === 'resume' && event.depth === 0 ? { key: UNLOAD, vcpu: -1 } : null),
};

/** A vCPU that executed guest code (an instant: the stop that ended its slice). */
export const vcpuRan: OrderingSide = {
  begins: (event) => (event.kind === 'stop' && event.retired > 0 ? { key: UNLOAD, vcpu: event.vcpu } : null),
};

/**
 * The scan against a thread inside an engine handler: A during B, the scan saw it there (CANNOT_UNLOAD
 * by its RIP); B before A, a thread left a handler before the scan — what its stack still holds
 * then is what the scan judges.
 */
export function scanVsThreadInHandler(name: string, owner: string, what: string): OrderingPair {
  return {
    name,
    description: `A: the thread-safeness scan; B: a vCPU inside ${what}, from the stop that found it there until its next stop outside. A during B: the scan found it inside (unload refused); B before A: it had left, and only its stack can still point in`,
    learn: learnHandlers(owner),
    a: threadSafenessScan,
    b: threadInHandler,
  };
}
