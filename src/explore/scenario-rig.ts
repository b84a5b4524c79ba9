import { errorLine } from './error-line.ts';
import { Introspection } from '../../actors/introspection.ts';
import { Session, SessionError } from '../../actors/session.ts';
import type { VcpuHost } from '../host/hosts.ts';
import type { Introcore } from '../intro/engine.ts';
import { ScenarioEngine } from '../intro/extension.ts';
import type { FixCatalog, Fixes } from '../intro/fixes.ts';
import { MachineSnapshot } from '../machine/snapshot.ts';
import { DeterministicRun, type InterruptSource, type RunResult } from './deterministic.ts';
import type { BranchRequest, BranchResult } from './branch.ts';
import type { PrefixWalk, WalkOptions } from './prefix-walk.ts';
export { BranchStateLeak, type BranchRequest, type BranchResult } from './branch.ts';
export { clockInterrupts, failed, RUN_MODES, traceJsonOf, type FollowedRun, type OpenBranch, type RigOptions, type RunMode, type RunOptions, type RunReport, type RunRequest, type Violation } from './run-report.ts';
import { clockInterrupts, type FollowedRun, type OpenBranch, type RigOptions, type RunMode, type RunOptions, type RunReport, type RunRequest, type Violation } from './run-report.ts';
import { runFree } from './free-running.ts';
import type { EarlyStop, LiveRun, RigRunner, RunBodyResult, RunContext } from './live-run.ts';
import { Prng, seedValue, type Seed } from './prng.ts';
import { RunRecorder, type RunRecording } from './recorder.ts';
import { replayTrace } from './replay.ts';
import { branchOn, openBranchOn } from './rig-branch.ts';
import { openWalkOn } from './rig-walk.ts';
import { checkOracles, oraclePhases, orderingsProduced, unsupportedInstructions, windowsReached, type PrefixOrderings } from './run-judging.ts';
import { fixCatalogOf, type ScenarioDefinition, type ScenarioGuest, type TimedEvent } from './scenario.ts';
import { CountingScheduler, createScheduler, RoundRobinScheduler } from './schedulers/index.ts';
import { LenientScheduler, SHRUNK_STRATEGY, type ChoiceWatcher, type ListedChoice, type ScheduleLabel } from './schedulers/lenient.ts';
import { ScheduleShape } from './schedule-shape.ts';
import type { Scheduler } from './schedule.ts';
import type { TraceJson } from './trace-json.ts';
import { Trace } from './trace.ts';
import { explainRunEnd } from './run-end.ts';
import { describeFailedUnload } from './unload-report.ts';
import { ReplayDivergence } from './schedulers/replay.ts';
import { describeVcpusWithCode } from './vcpu-report.ts';

/**
 * Runs a scenario, one seed at a time, on one machine and one session: each run restores the
 * machine's initial snapshot, restarts the session (no new workers), starts a fresh engine with
 * the run's fixes, runs the guest to the end, checks the oracles, unloads the engine, checks the
 * after-uninit oracles and records which window goals were reached.
 */

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
  /** What branches and walks drive their runs through. */
  private readonly runner: RigRunner<G>;

  private constructor(
    readonly definition: ScenarioDefinition<G>,
    readonly mode: RunMode,
    private readonly options: RigOptions,
  ) {
    this.fixes = fixCatalogOf(definition);
    this.guestInstance = buildGuest(definition);
    this.snapshot = new MachineSnapshot(this.guestInstance.machine);
    const rig = this;
    this.runner = {
      definition,
      get guest() {
        return rig.guestInstance;
      },
      begin: (seed, strategy, fixes, options) => this.begin(seed, strategy, fixes, options),
      settle: (live, body, prefixOrderings, copyTrace) => this.settle(live, body, prefixOrderings, copyTrace),
      startRecording: (context) => this.startRecording(context),
      loop: (context, scheduler) => this.loop(context, scheduler),
      endEngine: (live) => this.endEngine(live),
      distrustSession: () => {
        this.sessionSuspect = true;
      },
      eventEstimate: (fixes) => this.eventEstimate(fixes),
      runChoices: (seed, choices, fixes, options) => this.runChoices(seed, choices, fixes, options),
    };
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
    this.inlineOnly('branching from a snapshot', 'the snapshot holds');
    return branchOn(this.runner, request);
  }

  /**
   * Opens a branch point (inline mode): finds the point on one full run of the prefix, runs the
   * prefix again to it and snapshots the whole simulation there. Suffixes then run from it one at
   * a time, each after a restore (dirty RAM pages only) but the first — a search that decides its
   * next suffix from the last (the bounded-exhaustive one) drives it run by run. Close it when done:
   * the rig's next run starts afresh. Throws when the point is never reached.
   */
  openBranch(request: Pick<BranchRequest, 'prefix' | 'at' | 'suffixes'>): OpenBranch {
    this.inlineOnly('branching from a snapshot', 'the snapshot holds');
    return openBranchOn(this.runner, request);
  }

  /**
   * A walk over whole runs whose lists of choices share prefixes (inline mode): each list's run,
   * as `runChoices(seed, list, fixes, { alternatives: true, label })` makes it, from a snapshot
   * along the prefix it shares with the lists before it (see PrefixWalk). It holds the rig's
   * session: close it before the rig runs anything else.
   */
  openWalk(seed: Seed, fixes: Fixes<string>, label: ScheduleLabel, options: WalkOptions = {}): PrefixWalk {
    this.inlineOnly('a walk along shared prefixes', 'its snapshots hold');
    return openWalkOn(this.runner, seed, fixes, label, options);
  }

  /** Snapshots hold each CPU's objects, which a worker keeps in its own thread. */
  private inlineOnly(what: string, snapshots: string): void {
    if (this.mode !== 'inline') throw new Error(`${what} needs the inline mode (${snapshots} each CPU's objects, which a worker keeps in its own thread): got ${this.mode}`);
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
  private deterministic(context: RunContext, scheduler: Scheduler): RunBodyResult {
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

  private execute(seed: Seed, strategy: string, fixes: Fixes<string>, options: RunOptions, body: (run: RunContext) => RunBodyResult): RunReport {
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
        checkOracles(this.definition, world, 'continuous', broken);
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
  private settle(live: LiveRun<G>, body: () => RunBodyResult, prefixOrderings: PrefixOrderings | null = null, copyTrace = false): RunReport {
    const { context, world, events, choicesBefore, recorder, stop, base, started } = live;
    const session = context.session;
    const finishRecording = (): void => {
      if (recorder !== null) this.recording = recorder.finish({ entries: context.trace.entries, choices: context.trace.choices, events, oraclePhases: oraclePhases(this.definition) });
    };
    let outcome: RunBodyResult;
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
      const violations: Violation[] = [...unsupportedInstructions(this.guestInstance.machine)];
      violations.push({ oracle: engine ? 'engine-runs' : 'simulation-runs', detail: message.split('\n').slice(0, 8).join('\n') });
      // The orders produced up to the error count: an engine that threw in a race window was in it.
      const orderings = orderingsProduced(this.definition, events, choicesBefore, violations, prefixOrderings);
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
    const violations: Violation[] = [...unsupportedInstructions(this.guestInstance.machine)];
    // A suffix cut at its horizon is mid-run: the end and after-uninit oracles have nothing to judge.
    const horizon = result.outcome === 'horizon';
    if (stopped !== null) violations.push(...stopped.violations);
    else if (horizon) checkOracles(this.definition, world, 'continuous', violations);
    else {
      if (result.outcome !== 'done') violations.push({ oracle: 'run-completes', detail: explainRunEnd(result, session) });
      checkOracles(this.definition, world, 'continuous', violations);
      checkOracles(this.definition, world, 'end', violations);
    }
    const vcpus = stopped !== null ? stopped.vcpus : violations.length > 0 ? describeVcpusWithCode(this.guestInstance.machine) : '';
    if (!horizon) this.unloadAndCheck(live, stopped !== null || result.outcome !== 'done', violations);
    const windows = windowsReached(this.definition, world, violations);
    const orderings = orderingsProduced(this.definition, events, choicesBefore, violations, prefixOrderings);
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
      if (unload.state === 'unloaded') checkOracles(this.definition, live.world, 'after-uninit', violations);
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

  /** Terminates the session's hosts (workers). Safe to call more than once. */
  async close(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session !== null) await session.close();
    await Promise.all(this.retiring);
  }
}
