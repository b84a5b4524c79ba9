import { errorLine } from './error-line.ts';
import type { EventSink } from '../../actors/events.ts';
import { Introspection } from '../../actors/introspection.ts';
import { Session, SessionError } from '../../actors/session.ts';
import type { VcpuHost } from '../host/hosts.ts';
import type { Introcore } from '../intro/engine.ts';
import { ScenarioEngine } from '../intro/extension.ts';
import type { FixCatalog, Fixes } from '../intro/fixes.ts';
import { MachineSnapshot } from '../machine/snapshot.ts';
import { DeterministicRun, runResult, type InterruptSource, type RunResult } from './deterministic.ts';
import { BranchStateLeak, describeBranchPoint, lastPointAtOrBefore, windowOpensAt, type BranchPoint, type BranchPrefix, type BranchRequest, type BranchResult, type BranchSuffix } from './branch.ts';
import { ReplayScheduler } from './schedulers/replay.ts';
import { RunSnapshot } from './run-snapshot.ts';
import { PrefixWalk, WalkSetupFailed, type WalkOptions, type WalkRun } from './prefix-walk.ts';
export { BranchStateLeak, type BranchRequest, type BranchResult } from './branch.ts';
export { clockInterrupts, failed, RUN_MODES, traceJsonOf, type FollowedRun, type OpenBranch, type RigOptions, type RunMode, type RunOptions, type RunReport, type RunRequest, type Violation } from './run-report.ts';
import { clockInterrupts, type FollowedRun, type OpenBranch, type RigOptions, type RunMode, type RunOptions, type RunReport, type RunRequest, type Violation } from './run-report.ts';
import { runFree } from './free-running.ts';
import { Prng, seedValue, type Seed } from './prng.ts';
import { RunRecorder, type RunRecording } from './recorder.ts';
import { replayTrace } from './replay.ts';
import { fixCatalogOf, type OraclePhase, type ScenarioDefinition, type ScenarioGuest, type TimedEvent, type World } from './scenario.ts';
import { CountingScheduler, createScheduler, RoundRobinScheduler } from './schedulers/index.ts';
import { LenientScheduler, SHRUNK_STRATEGY, type ChoiceWatcher, type ListedChoice, type ScheduleLabel } from './schedulers/lenient.ts';
import { ScheduleShape } from './schedule-shape.ts';
import type { Scheduler } from './schedule.ts';
import type { TraceJson } from './trace-json.ts';
import { firstDivergence, Trace } from './trace.ts';
import { explainRunEnd } from './run-end.ts';
import { OrderingScan, type OrderingWitness } from './orderings.ts';
import { describeFailedUnload } from './unload-report.ts';
import { ReplayDivergence } from './schedulers/replay.ts';
import { describeLastUd, describeVcpusWithCode, hitUnsupportedInstruction } from './vcpu-report.ts';

/**
 * Runs a scenario, one seed at a time, on one machine and one session: each run restores the
 * machine's initial snapshot, restarts the session (no new workers), starts a fresh engine with
 * the run's fixes, runs the guest to the end, checks the oracles, unloads the engine, checks the
 * after-uninit oracles and records which window goals were reached.
 */

/** The seed a branch's runs start from: the prefix's own, or its trace's. */
function prefixSeed(prefix: BranchPrefix): Seed {
  return 'trace' in prefix ? prefix.trace.seed : prefix.seed;
}

/** What a run body gets: the session, a fresh trace, the run's generator, the window log, engine start. */
interface RunContext {
  readonly session: Session;
  readonly trace: Trace;
  readonly prng: Prng;
  readonly observe: EventSink;
  readonly startEngine: () => void;
  /** The run is over: every vCPU stopped, or a continuous oracle broke. */
  readonly done: (session: Session) => boolean;
}

/** The ordering pairs' scan of a branch's prefix: the first `events` events of every suffix. */
interface PrefixOrderings {
  readonly scan: OrderingScan;
  readonly events: number;
}

/** One run's state outside the session: what `settle` turns into a report (one per suffix of a branch). */
interface LiveRun<G extends ScenarioGuest> {
  readonly context: RunContext;
  readonly world: World<G> & { result: RunResult | null };
  readonly introspection: Introspection;
  readonly events: TimedEvent[];
  readonly choicesBefore: number[];
  readonly recorder: RunRecorder | null;
  /** The first continuous oracle that broke (the run ends there). */
  readonly stop: { early: EarlyStop | null };
  readonly restart: Parameters<Session['restart']>[0];
  readonly base: Pick<RunReport, 'scenario' | 'seed' | 'strategy' | 'mode' | 'fixesOff'>;
  /** When this run (or this suffix) started, for its duration. */
  started: number;
  /** A branched run: each end stops the actors but keeps the engine's WASM objects for the next suffix. */
  branched: boolean;
}

/** The first continuous oracle that broke, and where every vCPU was at that moment. */
interface EarlyStop {
  readonly violations: Violation[];
  readonly vcpus: string;
}

/** A scenario's setup() threw: the scenario cannot be run at all. */
export class ScenarioSetupError extends Error {
  constructor(readonly scenario: string, cause: unknown) {
    super(`scenario "${scenario}": setup() threw while building the guest: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ScenarioSetupError';
  }
}

function buildGuest<G extends ScenarioGuest>(definition: ScenarioDefinition<G>): G {
  try {
    return definition.setup();
  } catch (error) {
    throw new ScenarioSetupError(definition.name, error);
  }
}

export class ScenarioRig<G extends ScenarioGuest> {
  /** The fixes this scenario's runs can switch: built-in and its own. */
  readonly fixes: FixCatalog<string>;
  private session: Session | null = null;
  private guestInstance: G;
  private events: readonly TimedEvent[] = [];
  private recording: RunRecording | null = null;
  private snapshot: MachineSnapshot;
  /** The last run threw outside the engine: its session may be in any state, the next run gets a new one. */
  private sessionSuspect = false;
  /** SURW's event estimates, by the fixes that were off. */
  private readonly estimates = new Map<string, readonly number[]>();
  /** Sessions that failed, still shutting down (their workers exit asynchronously). */
  private readonly retiring = new Set<Promise<void>>();

  private constructor(
    readonly definition: ScenarioDefinition<G>,
    readonly mode: RunMode,
    private readonly options: RigOptions,
  ) {
    this.fixes = fixCatalogOf(definition);
    this.guestInstance = buildGuest(definition);
    this.snapshot = new MachineSnapshot(this.guestInstance.machine);
  }

  /** The guest the runs use (its state is the last run's). */
  get guest(): G {
    return this.guestInstance;
  }

  /** Every runtime event of the last run, in order (engine unload included): what oracles saw. */
  get lastEvents(): readonly TimedEvent[] {
    return this.events;
  }

  /** The last run's recording, when it was asked for (`run(request, { record: true })`); otherwise null. */
  get lastRecording(): RunRecording | null {
    return this.recording;
  }

  static open<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, mode: RunMode, options: RigOptions = {}): ScenarioRig<G> {
    return new ScenarioRig(definition, mode, options);
  }

  private liveSession(): Session {
    if (this.session !== null && this.session.failed === null && !this.sessionSuspect) return this.session;
    this.sessionSuspect = false;
    let hosts: readonly VcpuHost[] | null = null;
    if (this.session !== null) {
      // The next session takes over the machine, restored from the snapshot like every run's, and
      // the failed one's hosts when they are idle (its handler threw), else once nothing of the
      // failed one can write the machine (its workers left). A new machine per failed run would
      // hold its RAM until the event loop turns (a backing store is freed by a task there), which
      // a synchronous search never lets happen; new workers per failed run cost a second.
      hosts = this.session.handOver();
      const machineFree = hosts !== null || this.session.retire();
      if (this.mode !== 'inline') this.keepUntilClosed(this.session.close());
      if (!machineFree) {
        this.guestInstance = buildGuest(this.definition);
        this.snapshot = new MachineSnapshot(this.guestInstance.machine);
      }
    }
    this.session = Session.open({
      machine: this.guestInstance.machine,
      hosts: hosts ?? (this.mode === 'inline' ? 'inline' : 'workers'),
      freeRunning: this.mode === 'free',
      ...(this.options.interpreter === undefined ? {} : { interpreter: this.options.interpreter }),
      handler: () => {
        throw new Error('no run is in progress');
      },
    });
    return this.session;
  }

  /** Keeps a closing session's promise until it settles, so `close()` can wait for its workers. */
  private keepUntilClosed(closing: Promise<void>): void {
    this.retiring.add(closing);
    const settled = (): void => void this.retiring.delete(closing);
    closing.then(settled, settled);
  }

  private interrupts(): InterruptSource[] {
    return clockInterrupts(this.definition);
  }

  /** One run from the initial snapshot. */
  run(request: RunRequest, options: RunOptions = {}): RunReport {
    const strategy = this.mode === 'free' ? 'free' : request.strategy === 'pct' ? `pct(d=${request.depth})` : request.strategy;
    const eventEstimate = this.mode !== 'free' && request.strategy === 'surw' ? this.eventEstimate(request.fixes) : undefined;
    return this.execute(request.seed, strategy, request.fixes, options, (context) => {
      const { session, trace, prng, done } = context;
      const { bounds, vcpus } = this.definition;
      this.startRecording(context);
      if (this.mode === 'free') return { result: runFree({ session, trace, done, wallMs: bounds.freeWallMs, timerEveryMs: bounds.timerMs, interrupts: this.interrupts() }), trace };
      return this.deterministic(context, createScheduler(request.strategy, prng.fork('scheduler'), {
        vcpus, slice: bounds.slice, depth: request.depth, events: bounds.pctEvents, ...(eventEstimate === undefined ? {} : { eventEstimate }),
      }));
    });
  }

  /**
   * SURW's estimate of the interesting events each vCPU and the timer will have: counted on one
   * round-robin run with the same fixes (seed 0), once per set of fixes. It depends on nothing but
   * the scenario and the fixes, so a SURW run is still decided by its seed alone.
   */
  eventEstimate(fixes: Fixes<string>): readonly number[] {
    const key = this.fixes.off(fixes).join(',');
    const known = this.estimates.get(key);
    if (known !== undefined) return known;
    let counter: CountingScheduler | null = null;
    this.execute(0, 'rr', fixes, {}, (context) => {
      this.startRecording(context);
      counter = new CountingScheduler(new RoundRobinScheduler(this.definition.bounds.slice), this.definition.vcpus);
      return this.deterministic(context, counter);
    });
    const counts = [...(counter as CountingScheduler | null)?.seen.counts ?? []];
    this.estimates.set(key, counts);
    return counts;
  }

  /**
   * One run that follows `choices` leniently (a choice that is not possible when its turn comes is
   * skipped; when the list runs out, the default continuation goes on): what a shrinker tries. The
   * run is a schedule of its own, labelled "shrunk" (or by `label`: who made the list); its trace
   * replays strictly like any other.
   * `shape` tells its preemptions and how many of its choices the default would not have made.
   */
  runChoices(seed: Seed, choices: readonly ListedChoice[], fixes: Fixes<string>, options: RunOptions & { readonly watch?: ChoiceWatcher; readonly alternatives?: boolean; readonly label?: ScheduleLabel } = {}): FollowedRun {
    if (this.mode === 'free') throw new Error('a schedule is followed in a deterministic mode (inline or workers), not free-running');
    const shape = new ScheduleShape(this.definition.bounds.slice);
    let scheduler: LenientScheduler | null = null;
    const report = this.execute(seed, options.label ?? SHRUNK_STRATEGY, fixes, options, (context) => {
      this.startRecording(context);
      scheduler = new LenientScheduler(choices, shape, (vcpu) => context.session.retiredBy(vcpu), options.watch, options.alternatives === true);
      return this.deterministic(context, scheduler);
    });
    const followed = scheduler as LenientScheduler | null;
    return { report, shape, followed: followed?.followed ?? [], skipped: followed?.skipped ?? 0, points: followed?.points ?? [] };
  }

  /**
   * Branches from a snapshot (inline mode): finds the point on one full run of the prefix, runs
   * the prefix again to it, snapshots the whole simulation, and runs every suffix from the
   * snapshot, restoring it (dirty RAM pages only) before each but the first. Every suffix run is a
   * full run with its oracles, unload and report; its trace holds the prefix's choices and its own,
   * and replays strictly from the start. Throws when the point is never reached.
   */
  branch(request: BranchRequest): BranchResult {
    const open = this.openBranch(request);
    try {
      const runs: RunReport[] = [];
      for (const [index, suffix] of request.suffixes.entries()) {
        const report = open.run(suffix, request.horizon);
        runs.push(report);
        if (request.onRun?.(report, index) === false) break;
      }
      if (request.check !== false && runs.length > 0) {
        // The first suffix again, from a restore this time: state a snapshot cannot see (a closure's
        // variables, a module's) shows as a different run.
        const again = open.run(request.suffixes[0], request.horizon);
        if (again.hash !== runs[0].hash) {
          const where = firstDivergence(runs[0].trace.entries, again.trace.entries, ['the first suffix', 'the same suffix after a restore']) ?? 'their hashes differ';
          throw new BranchStateLeak(this.definition.name, where);
        }
      }
      const { at, asked, objects, ramPages, dirtyPages, prefixMs, snapshotMs, restoreMs } = open;
      return { at, asked, objects, ramPages, dirtyPages: [...dirtyPages], prefixMs, snapshotMs, restoreMs, runs };
    } finally {
      open.close();
    }
  }

  /**
   * Opens a branch point (inline mode): finds the point on one full run of the prefix, runs the
   * prefix again to it and snapshots the whole simulation there. Suffixes then run from it one at
   * a time, each after a restore (dirty RAM pages only) but the first — a search that decides its
   * next suffix from the last (the bounded-exhaustive one) drives it run by run. Close it when done:
   * the rig's next run starts afresh. Throws when the point is never reached.
   */
  openBranch(request: Pick<BranchRequest, 'prefix' | 'at' | 'suffixes'>): OpenBranch {
    if (this.mode !== 'inline') throw new Error(`branching from a snapshot needs the inline mode (the snapshot holds each CPU's objects, which a worker keeps in its own thread): got ${this.mode}`);
    const { prefix } = request;
    // SURW's estimate comes from a run of its own: made before the branch's runs, once.
    const strategies = [...('trace' in prefix ? [] : [prefix.strategy]), ...request.suffixes.map((suffix) => suffix.strategy)];
    const estimate = strategies.includes('surw') ? this.eventEstimate(prefix.fixes) : undefined;
    const at = this.branchChoice(prefix, request.at, estimate);
    const started = performance.now();
    const live = this.begin(prefixSeed(prefix), 'branched', prefix.fixes, {});
    const { session } = live.context;
    live.branched = true;
    session.restart(live.restart);
    this.startRecording(live.context);
    const loop = this.loop(live.context, this.prefixScheduler(prefix, live.context.prng, estimate));
    const close = (): void => {
      loop.release();
      // The session ends at some suffix's end; the next run starts it afresh.
      live.introspection.stop();
    };
    let snapshot: RunSnapshot;
    try {
      if (loop.continue((choices) => choices >= at) !== null || loop.counter.choices !== at) {
        throw new Error(`the prefix did not stop at choice ${at} the second time (it ended, or reached ${loop.counter.choices}): the run is not deterministic`);
      }
      const snapshotAt = performance.now();
      live.context.trace.writeOut();
      snapshot = RunSnapshot.take(this.guestInstance.machine, { run: live, loop, session, guest: this.guestInstance }, [live.events, live.choicesBefore, ...live.context.trace.logs]);
      const figures = { prefixMs: snapshotAt - started, snapshotMs: performance.now() - snapshotAt };
      const taken = snapshot;
      // Every suffix shares the prefix's events: their ordering scan is made once, and each suffix scans its own.
      const prefixOrderings = this.orderingScanOf(live.events, live.choicesBefore);
      const dirtyPages: number[] = [];
      let restoreMs = 0;
      let used = false;
      const backToPoint = (): void => {
        if (used) {
          const restoreAt = performance.now();
          // Every page, when a walk took snapshots of its own since (the checkpoint knows).
          dirtyPages.push(taken.restore().dirtyPages);
          restoreMs += performance.now() - restoreAt;
        }
        used = true;
      };
      /** Back to the point (unless nothing ran since the snapshot), then `scheduler` makes the suffix's choices. */
      const suffixRun = (scheduler: Scheduler, horizon: number | undefined): RunReport => {
        backToPoint();
        live.started = performance.now();
        loop.scheduler = scheduler;
        // The run's trace object is rewound by the next restore: the report keeps a copy.
        return this.settle(live, () => this.suffix(live, loop, at, horizon), prefixOrderings, true);
      };
      return {
        at, asked: describeBranchPoint(request.at), objects: taken.objects, ramPages: this.guestInstance.machine.memory.pages, ...figures,
        dirtyPages,
        get restoreMs() {
          return restoreMs;
        },
        run: (suffix, horizon) => suffixRun(this.suffixScheduler(suffix, estimate), horizon),
        runChoices: (choices, options = {}) => {
          const shape = new ScheduleShape(this.definition.bounds.slice);
          const scheduler = new LenientScheduler(choices, shape, (vcpu) => session.retiredBy(vcpu), undefined, options.alternatives === true);
          const report = suffixRun(scheduler, options.horizon);
          return { report, shape, followed: scheduler.followed, skipped: scheduler.skipped, points: scheduler.points };
        },
        walk: (horizon, options = {}) => new PrefixWalk(this.definition.name, () => {
          backToPoint();
          return this.walkOver(live, loop, this.walkScheduler(session), at, horizon, () => undefined);
        }, undefined, options),
        close: () => {
          taken.release();
          close();
        },
      };
    } catch (error) {
      close();
      throw error;
    }
  }

  /**
   * A walk over whole runs whose lists of choices share prefixes (inline mode): each list's run,
   * as `runChoices(seed, list, fixes, { alternatives: true, label })` makes it, from a snapshot
   * along the prefix it shares with the lists before it (see PrefixWalk). It holds the rig's
   * session: close it before the rig runs anything else.
   */
  openWalk(seed: Seed, fixes: Fixes<string>, label: ScheduleLabel, options: WalkOptions = {}): PrefixWalk {
    if (this.mode !== 'inline') throw new Error(`a walk along shared prefixes needs the inline mode (its snapshots hold each CPU's objects, which a worker keeps in its own thread): got ${this.mode}`);
    return new PrefixWalk(this.definition.name, () => this.walkRun(seed, fixes, label), (list) => this.runChoices(seed, list, fixes, { alternatives: true, label }), options);
  }

  /** A run paused at its first choice, for a PrefixWalk to drive. */
  private walkRun(seed: Seed, fixes: Fixes<string>, label: ScheduleLabel): WalkRun {
    const live = this.begin(seed, label, fixes, {});
    const { session } = live.context;
    live.branched = true;
    try {
      session.restart(live.restart);
      this.startRecording(live.context);
    } catch (error) {
      // A run from the start reports this (its engine did not start): the walk runs the list so.
      this.endEngine(live);
      if (!(error instanceof SessionError)) this.sessionSuspect = true;
      throw new WalkSetupFailed(error);
    }
    const { scheduler, shape } = this.walkScheduler(session);
    const loop = this.loop(live.context, scheduler);
    return this.walkOver(live, loop, { scheduler, shape }, 0, undefined, () => {
      loop.release();
      live.introspection.stop();
    });
  }

  /** A list-following scheduler with its choice points, for a walk. */
  private walkScheduler(session: Session): { readonly scheduler: LenientScheduler; readonly shape: ScheduleShape } {
    const shape = new ScheduleShape(this.definition.bounds.slice);
    return { shape, scheduler: new LenientScheduler([], shape, (vcpu) => session.retiredBy(vcpu), undefined, true) };
  }

  /**
   * A paused run (`live`, `loop`) as a walk drives it: its choices from `base` on are the walk's
   * (counted from there), each run cut `horizon` choices past `base` when given.
   */
  private walkOver(
    live: LiveRun<G>, loop: DeterministicRun, own: { readonly scheduler: LenientScheduler; readonly shape: ScheduleShape },
    base: number, horizon: number | undefined, close: () => void,
  ): WalkRun {
    const { session, trace } = live.context;
    const { scheduler, shape } = own;
    loop.scheduler = scheduler;
    // Append-only, saved by length; the list followed is the walk's input, not the run's state.
    const logs = (): unknown[][] => [live.events, live.choicesBefore, ...trace.logs, scheduler.followed, scheduler.points, shape.preemptionAt, shape.preempted, scheduler.list as unknown[]];
    let prefixOrderings: PrefixOrderings | null = null;
    return {
      scheduler, shape,
      snapshot: () => {
        const orderings = this.orderingScanOf(live.events, live.choicesBefore);
        prefixOrderings = orderings;
        // The prefix's entries written out (text and running hash) before the snapshot, not again by every run's hash.
        trace.writeOut();
        const taken = RunSnapshot.take(this.guestInstance.machine, { run: live, loop, session, guest: this.guestInstance }, logs());
        // Each point has its own scan of the events before it: a run goes on from the one it was restored to.
        return {
          restore: () => {
            taken.restore();
            prefixOrderings = orderings;
          },
          release: () => taken.release(),
        };
      },
      advance: (choices) => loop.continue((made) => made >= base + choices) === null && loop.counter.choices === base + choices,
      finish: (onPoint) => {
        live.started = performance.now();
        return this.settle(live, () => this.suffix(live, loop, base, horizon, onPoint), prefixOrderings, true);
      },
      close,
    };
  }

  /** One suffix from the branch point `at` (a walk's point 0): to the end of the run, or to its horizon; `onPoint` sees each top-level point (choices past `at`). */
  private suffix(live: LiveRun<G>, loop: DeterministicRun, at: number, horizon: number | undefined, onPoint?: (choices: number) => void): { result: RunResult; trace: Trace } {
    const trace = live.context.trace;
    const result = loop.continue(horizon === undefined && onPoint === undefined ? undefined : (choices) => {
      if (horizon !== undefined && choices >= at + horizon) return true;
      onPoint?.(choices - at);
      return false;
    });
    // The end (oracles, unload) runs without the scheduler, as after a run from the start; the next restore attaches it again.
    loop.release();
    return { result: result ?? runResult(live.context.session, trace, 'horizon', loop.counter.choices, `cut ${horizon} choices after the branch point`), trace };
  }

  /** The prefix's scheduler: its strategy from the run's generator (as a plain run makes it), or its trace followed strictly. */
  private prefixScheduler(prefix: BranchPrefix, prng: Prng, estimate: readonly number[] | undefined): Scheduler {
    if ('trace' in prefix) return new ReplayScheduler(prefix.trace.choices, () => `(the branch's prefix: ${prefix.trace.scenario} seed ${prefix.trace.seed})`);
    return createScheduler(prefix.strategy, prng.fork('scheduler'), this.schedulerOptions(prefix.depth, estimate));
  }

  /** A suffix's scheduler: its strategy, seeded by its own seed (the engine keeps the prefix's generator). */
  private suffixScheduler(suffix: BranchSuffix, estimate: readonly number[] | undefined): Scheduler {
    return createScheduler(suffix.strategy, new Prng(suffix.seed).fork('scheduler'), this.schedulerOptions(suffix.depth ?? 2, estimate));
  }


  /** The choice count of the branch point: found on one full run of the prefix. */
  private branchChoice(prefix: BranchPrefix, point: BranchPoint, estimate: readonly number[] | undefined): number {
    const points: number[] = [];
    const live = this.begin(prefixSeed(prefix), 'branched', prefix.fixes, {});
    const report = this.settle(live, () => {
      live.context.session.restart(live.restart);
      this.startRecording(live.context);
      const loop = this.loop(live.context, this.prefixScheduler(prefix, live.context.prng, estimate));
      try {
        return { result: loop.continue((choices) => {
          points.push(choices);
          return false;
        }) as RunResult, trace: live.context.trace };
      } finally {
        loop.release();
      }
    });
    let target: number;
    if ('choice' in point) target = point.choice;
    else {
      const pair = (this.definition.orderings ?? []).find((p) => p.name === point.pair);
      if (pair === undefined) throw new Error(`scenario "${this.definition.name}" has no ordering pair "${point.pair}"; its pairs: ${(this.definition.orderings ?? []).map((p) => p.name).join(', ') || 'none'}`);
      const opens = windowOpensAt(pair, point.side, live.events.map((e) => e.event), live.choicesBefore);
      if (opens === null) throw new Error(`${describeBranchPoint(point)}: never happened in the prefix run (seed ${report.seed}, ${report.strategy}); try another prefix seed`);
      target = opens;
    }
    const found = lastPointAtOrBefore(points, target);
    if (found === null) throw new Error(`${describeBranchPoint(point)}: no top-level choice point at or before choice ${target} (the prefix run has ${report.choices} choices): nothing to branch from`);
    return found;
  }

  private schedulerOptions(depth: number, eventEstimate: readonly number[] | undefined): Parameters<typeof createScheduler>[2] {
    const { bounds, vcpus } = this.definition;
    return { vcpus, slice: bounds.slice, depth, events: bounds.pctEvents, ...(eventEstimate === undefined ? {} : { eventEstimate }) };
  }

  /** A resumable run loop with the scenario's bounds, clock and faults. */
  private loop({ session, trace, done }: RunContext, scheduler: Scheduler): DeterministicRun {
    const { bounds } = this.definition;
    return new DeterministicRun({
      session, scheduler, trace, done, stepsMax: bounds.stepsMax, choicesMax: bounds.choicesMax, interrupts: this.interrupts(),
      ...(bounds.fairnessSteps !== undefined ? { fairnessSteps: bounds.fairnessSteps } : {}),
      ...(this.definition.hypervisor?.faults !== undefined ? { faults: this.definition.hypervisor.faults } : {}),
    });
  }

  /** The trace records every event from here on (and the rig's log sees it); the engine starts. */
  private startRecording({ session, trace, observe, startEngine }: RunContext): void {
    session.eventSink = (event, clock) => {
      trace.recordEvent(event, clock);
      observe(event, clock);
    };
    startEngine();
  }

  /** The run loop of the deterministic modes, with the scenario's bounds, clock and faults. */
  private deterministic(context: RunContext, scheduler: Scheduler): { result: RunResult; trace: Trace } {
    const loop = this.loop(context, scheduler);
    try {
      return { result: loop.continue() as RunResult, trace: context.trace };
    } finally {
      loop.release();
    }
  }

  /**
   * Follows a recorded schedule (a trace written by a run) with the recorded seed, checking every
   * entry as it goes; the first difference raises ReplayDivergence naming it.
   */
  replay(recorded: TraceJson, fixes: Fixes<string>, options: RunOptions = {}): RunReport {
    if (this.mode === 'free') throw new Error('a recorded trace replays in a deterministic mode (inline or workers), not free-running');
    return this.execute(recorded.seed, recorded.strategy, fixes, options, ({ session, trace, observe, startEngine, done }) => {
      const faults = this.definition.hypervisor?.faults;
      const { bounds } = this.definition;
      const result = replayTrace({
        session, recorded, trace, done, stepsMax: bounds.stepsMax, choicesMax: bounds.choicesMax, interrupts: this.interrupts(), before: startEngine, observe,
        ...(bounds.fairnessSteps !== undefined ? { fairnessSteps: bounds.fairnessSteps } : {}),
        ...(faults !== undefined ? { faults } : {}),
      });
      return { result, trace: result.trace };
    });
  }

  private execute(seed: Seed, strategy: string, fixes: Fixes<string>, options: RunOptions, body: (run: RunContext) => { result: RunResult; trace: Trace }): RunReport {
    const live = this.begin(seed, strategy, fixes, options);
    return this.settle(live, () => {
      live.context.session.restart(live.restart);
      return body(live.context);
    });
  }

  /** Everything one run needs, made fresh from the initial snapshot (the run itself has not started). */
  private begin(seed: Seed, strategy: string, fixes: Fixes<string>, options: RunOptions): LiveRun<G> {
    const definition = this.definition;
    const session = this.liveSession();
    this.snapshot.restore(this.guestInstance.machine);
    this.guestInstance.resetObservations();
    const events: TimedEvent[] = [];
    this.events = events;
    /** Choices made before each event: where an ordering witness sits in the schedule. */
    const choicesBefore: number[] = [];
    this.recording = null;
    const runTrace = new Trace();
    const recorder = options.record === true ? new RunRecorder(this.guestInstance.machine, () => session.clock, () => runTrace.entries.length) : null;
    const inspect = recorder === null ? {} : { inspect: recorder.inspect };
    const prng = new Prng(seed);
    const extension = definition.engine;
    const scenarioEngine = (engine: Introcore): ScenarioEngine<string> => new ScenarioEngine(engine, fixes);
    const introspection = new Introspection(session, {
      guest: this.guestInstance.description,
      fixes,
      ...(extension?.beforeUninit === undefined ? {} : { beforeUninit: (engine: Introcore) => extension.beforeUninit!(scenarioEngine(engine), this.guestInstance) }),
      ...(definition.bounds.unloadTries !== undefined ? { unloadTries: definition.bounds.unloadTries } : {}),
      ...(definition.bounds.unloadRetrySteps !== undefined ? { unloadRetrySteps: definition.bounds.unloadRetrySteps } : {}),
      guestCall: (event) => this.guestInstance.guestCall(event.vcpuId, event.self),
      ...inspect,
    });
    const world = {
      guest: this.guestInstance,
      get engine() {
        return introspection.engine;
      },
      introspection,
      session,
      fixes,
      result: null as RunResult | null,
      events,
    };
    // A field, not a closure variable: a branch's snapshot must bring it back.
    const stop: { early: EarlyStop | null } = { early: null };
    const restart: Parameters<Session['restart']>[0] = {
      handler: introspection.handler,
      afterHandler: (hypervisor) => {
        introspection.afterHandler(hypervisor);
        if (stop.early !== null) return;
        const broken: Violation[] = [];
        this.check(world, 'continuous', broken);
        if (broken.length === 0) return;
        // Free-running vCPUs are still executing: stop them so their registers are current.
        if (session.freeRunning) session.pauseVcpus();
        stop.early = { violations: broken, vcpus: describeVcpusWithCode(this.guestInstance.machine) };
        if (session.freeRunning) session.resumeVcpus();
      },
      timer: { periodSteps: definition.bounds.timerSteps, callback: introspection.timer },
      random: prng.fork('engine'),
      countedPause: fixes.countedPause,
      emulateAtReply: definition.hypervisor?.emulation === 'at-reply',
      inspect: recorder?.inspect,
    };
    const base = { scenario: definition.name, seed: String(seedValue(seed)), strategy, mode: this.mode, fixesOff: this.fixes.off(fixes) };
    const context: RunContext = {
      session,
      trace: runTrace,
      prng,
      observe: (event, clock) => {
        events.push({ event, clock });
        choicesBefore.push(runTrace.choices.length);
        recorder?.observe(event);
      },
      startEngine: () => void introspection.start(extension?.start === undefined ? undefined : (engine) => extension.start!(scenarioEngine(engine), this.guestInstance)),
      done: (s) => stop.early !== null || s.finished,
    };
    return { context, world, introspection, events, choicesBefore, recorder, stop, restart, base, started: performance.now(), branched: false };
  }

  /**
   * Runs `body` (the run, or what is left of it) and turns its outcome, or its error, into the run's
   * report; `copyTrace`: the report keeps a copy of the trace (a branch's restore rewinds the run's).
   */
  private settle(live: LiveRun<G>, body: () => { result: RunResult; trace: Trace }, prefixOrderings: PrefixOrderings | null = null, copyTrace = false): RunReport {
    const { context, world, events, choicesBefore, recorder, stop, base, started } = live;
    const session = context.session;
    const finishRecording = (): void => {
      if (recorder !== null) this.recording = recorder.finish({ entries: context.trace.entries, choices: context.trace.choices, events, oraclePhases: this.oraclePhases() });
    };
    let outcome: { result: RunResult; trace: Trace };
    try {
      outcome = body();
    } catch (error) {
      this.endEngine(live);
      // A replay that left the recorded schedule is the replay's answer, not a finding of the run.
      if (error instanceof ReplayDivergence) throw error;
      // A handler that threw or a vCPU host that died fails this run, not the campaign; so does an
      // error of the rig or the scheduler, after which the session is not trusted again.
      const engine = error instanceof SessionError;
      if (!engine) this.sessionSuspect = true;
      const message = error instanceof Error ? (engine ? error.message : `${error.message}\n${error.stack?.split('\n')[1]?.trim() ?? ''}`) : String(error);
      const violations: Violation[] = [...this.unsupportedInstructions()];
      violations.push({ oracle: engine ? 'engine-runs' : 'simulation-runs', detail: message.split('\n').slice(0, 8).join('\n') });
      // The orders produced up to the error count: an engine that threw in a race window was in it.
      const orderings = this.orderingsProduced(events, choicesBefore, violations, prefixOrderings);
      finishRecording();
      const trace = copyTrace ? context.trace.copy() : context.trace;
      return {
        ...base, outcome: 'error', hash: trace.hash, steps: session.clock, choices: trace.choices.length,
        durationMs: performance.now() - started, violations, windows: [], orderings, vcpus: describeVcpusWithCode(this.guestInstance.machine), trace,
      };
    }
    const { result } = outcome;
    const trace = copyTrace ? outcome.trace.copy() : outcome.trace;
    world.result = result;
    // The trace ends with the run; what the engine does while unloading is only observed.
    session.eventSink = context.observe;
    const stopped = stop.early;
    // An instruction vcpusim lacks is the cause of whatever broke after it: it comes first.
    const violations: Violation[] = [...this.unsupportedInstructions()];
    // A suffix cut at its horizon is mid-run: the end and after-uninit oracles have nothing to judge.
    const horizon = result.outcome === 'horizon';
    if (stopped !== null) violations.push(...stopped.violations);
    else if (horizon) this.check(world, 'continuous', violations);
    else {
      if (result.outcome !== 'done') violations.push({ oracle: 'run-completes', detail: explainRunEnd(result, session) });
      this.check(world, 'continuous', violations);
      this.check(world, 'end', violations);
    }
    const vcpus = stopped !== null ? stopped.vcpus : violations.length > 0 ? describeVcpusWithCode(this.guestInstance.machine) : '';
    if (!horizon) this.unloadAndCheck(live, stopped !== null || result.outcome !== 'done', violations);
    const windows = this.windowsReached(world, violations);
    const orderings = this.orderingsProduced(events, choicesBefore, violations, prefixOrderings);
    this.endEngine(live);
    finishRecording();
    return {
      ...base, outcome: stopped !== null ? 'stopped' : result.outcome, steps: result.steps, choices: result.choices, durationMs: performance.now() - started, violations, windows, orderings, vcpus, trace,
      // Taken when asked (it writes out the whole trace): most runs of a campaign never are.
      get hash() {
        return trace.hash;
      },
    };
  }

  /** Unloads the engine and checks the after-uninit oracles; a failed unload is the finding. */
  private unloadAndCheck(live: LiveRun<G>, midway: boolean, violations: Violation[]): void {
    try {
      // A run stopped midway leaves threads wherever they were, and none will run again.
      const unload = live.introspection.unload({ ignoreSafeness: midway });
      if (unload.state === 'unloaded') this.check(live.world, 'after-uninit', violations);
      else violations.push({ oracle: 'engine-unloads', detail: describeFailedUnload(unload, this.guestInstance.machine) });
    } catch (error) {
      // Unloading failed: that is the finding (the after-uninit oracles have nothing sound to check).
      violations.push({ oracle: 'engine-unloads', detail: `uninit threw: ${errorLine(error)}` });
    }
  }

  private endEngine(live: LiveRun<G>): void {
    if (live.branched) live.introspection.stopActors();
    else live.introspection.stop();
  }

  /** When each of the scenario's oracles is checked. */
  private oraclePhases(): Record<string, OraclePhase> {
    return Object.fromEntries(this.definition.oracles.map((oracle) => [oracle.name, oracle.phase]));
  }

  /** A violation per vCPU that took #UD on an instruction vcpusim does not emulate. */
  private unsupportedInstructions(): Violation[] {
    const machine = this.guestInstance.machine;
    const found: Violation[] = [];
    for (let vcpu = 0; vcpu < machine.vcpuCount; vcpu++) {
      if (hitUnsupportedInstruction(machine, vcpu)) found.push({ oracle: 'instructions-supported', detail: `vCPU ${vcpu}: ${describeLastUd(machine, vcpu)}` });
    }
    return found;
  }

  /** The window goals reached; a goal that throws is a violation (its check is wrong), the others still count. */
  private windowsReached(world: World<G>, violations: Violation[]): string[] {
    const reached: string[] = [];
    for (const goal of this.definition.windows) {
      try {
        if (goal.reached(world)) reached.push(goal.name);
      } catch (error) {
        violations.push({ oracle: 'window-goals', detail: `window goal "${goal.name}" threw: ${error instanceof Error ? error.message : String(error)}` });
      }
    }
    return reached;
  }

  /**
   * The orders of the scenario's ordering pairs in the run's events, going on from `prefix` (the
   * scan of the events before a branch point) when given; a pair whose check throws is a violation
   * (its check is wrong).
   */
  private orderingsProduced(events: readonly TimedEvent[], choicesBefore: readonly number[], violations: Violation[], prefix: PrefixOrderings | null): OrderingWitness[] {
    const pairs = this.definition.orderings ?? [];
    if (pairs.length === 0) return [];
    const choiceAt = choiceAtOf(choicesBefore);
    try {
      const scan = prefix?.scan.copy() ?? new OrderingScan(pairs);
      for (let index = prefix?.events ?? 0; index < events.length; index++) scan.feed(events[index].event, index, choiceAt);
      return scan.witnesses(events.length, choiceAt);
    } catch (error) {
      violations.push({ oracle: 'window-goals', detail: `an ordering pair threw: ${error instanceof Error ? error.message : String(error)}` });
      return [];
    }
  }

  /** The ordering pairs' scan of `events` (a branch's prefix), or null when there are no pairs or one throws (each run then scans all and reports it). */
  private orderingScanOf(events: readonly TimedEvent[], choicesBefore: readonly number[]): PrefixOrderings | null {
    const pairs = this.definition.orderings ?? [];
    if (pairs.length === 0) return null;
    const choiceAt = choiceAtOf(choicesBefore);
    try {
      const scan = new OrderingScan(pairs);
      events.forEach((timed, index) => scan.feed(timed.event, index, choiceAt));
      return { scan, events: events.length };
    } catch {
      return null;
    }
  }

  /** Checks the oracles of one phase; an oracle that throws is a broken invariant too (its check is wrong or the state is). */
  private check(world: World<G>, phase: OraclePhase, into: Violation[]): void {
    for (const oracle of this.definition.oracles) {
      if (oracle.phase !== phase) continue;
      let detail: string | null;
      try {
        detail = oracle.check(world);
      } catch (error) {
        detail = `the check threw: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (detail !== null) into.push({ oracle: oracle.name, detail });
    }
  }

  /** Terminates the session's hosts (workers). Safe to call more than once. */
  async close(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session !== null) await session.close();
    await Promise.all(this.retiring);
  }
}

/** Choices made when a run's event at an index happened (the last known for an index past the end). */
function choiceAtOf(choicesBefore: readonly number[]): (index: number) => number {
  return (index) => choicesBefore[Math.min(index, choicesBefore.length - 1)] ?? 0;
}
