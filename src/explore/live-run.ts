import type { EventSink } from '../../actors/events.ts';
import type { Introspection } from '../../actors/introspection.ts';
import type { Session } from '../../actors/session.ts';
import type { Fixes } from '../intro/fixes.ts';
import { runResult, type DeterministicRun, type RunResult } from './deterministic.ts';
import type { Prng, Seed } from './prng.ts';
import type { RunRecorder } from './recorder.ts';
import type { PrefixOrderings } from './run-judging.ts';
import type { FollowedRun, RunOptions, RunReport, Violation } from './run-report.ts';
import type { ScenarioDefinition, ScenarioGuest, TimedEvent, World } from './scenario.ts';
import type { Scheduler } from './schedule.ts';
import type { ListedChoice, ScheduleLabel } from './schedulers/lenient.ts';
import type { Trace } from './trace.ts';

/**
 * A run as the rig holds it while it goes, and the narrow part of the rig that branches and walks
 * drive runs through (rig-branch.ts, rig-walk.ts): they pause a run, snapshot it and finish it
 * many times, which a run from the start never does.
 */

/** What a run body gets: the session, a fresh trace, the run's generator, the window log, engine start. */
export interface RunContext {
  readonly session: Session;
  readonly trace: Trace;
  readonly prng: Prng;
  readonly observe: EventSink;
  readonly startEngine: () => void;
  /** The run is over: every vCPU stopped, or a continuous oracle broke. */
  readonly done: (session: Session) => boolean;
}

/** The first continuous oracle that broke, and where every vCPU was at that moment. */
export interface EarlyStop {
  readonly violations: Violation[];
  readonly vcpus: string;
}

/** One run's state outside the session: what `settle` turns into a report (one per suffix of a branch). */
export interface LiveRun<G extends ScenarioGuest> {
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

/** The run outcome and trace a run body hands to `settle`. */
export interface RunBodyResult {
  readonly result: RunResult;
  readonly trace: Trace;
}

/** What of the rig a branch or a walk drives its runs through. */
export interface RigRunner<G extends ScenarioGuest> {
  readonly definition: ScenarioDefinition<G>;
  /** The guest the runs use. */
  readonly guest: G;
  /** Everything one run needs, made fresh from the initial snapshot (the run itself has not started). */
  begin(seed: Seed, strategy: string, fixes: Fixes<string>, options: RunOptions): LiveRun<G>;
  /** Runs `body` and turns its outcome, or its error, into the run's report (see ScenarioRig). */
  settle(live: LiveRun<G>, body: () => RunBodyResult, prefixOrderings?: PrefixOrderings | null, copyTrace?: boolean): RunReport;
  /** The trace records every event from here on; the engine starts. */
  startRecording(context: RunContext): void;
  /** A resumable run loop with the scenario's bounds, clock and faults. */
  loop(context: RunContext, scheduler: Scheduler): DeterministicRun;
  /** Stops the run's engine (a branched run keeps its WASM objects). */
  endEngine(live: LiveRun<G>): void;
  /** The session's state is unknown (an error outside the engine): the next run gets a new one. */
  distrustSession(): void;
  /** SURW's estimate of each actor's interesting events with these fixes. */
  eventEstimate(fixes: Fixes<string>): readonly number[];
  /** A whole run following `choices` leniently (ScenarioRig.runChoices). */
  runChoices(seed: Seed, choices: readonly ListedChoice[], fixes: Fixes<string>, options: RunOptions & { readonly alternatives?: boolean; readonly label?: ScheduleLabel }): FollowedRun;
}

/** One suffix from the branch point `at` (a walk's point 0): to the end of the run, or to its horizon; `onPoint` sees each top-level point (choices past `at`). */
export function runSuffix<G extends ScenarioGuest>(live: LiveRun<G>, loop: DeterministicRun, at: number, horizon: number | undefined, onPoint?: (choices: number) => void): RunBodyResult {
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
