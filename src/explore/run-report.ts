import type { ProtocolInterpreter } from '../../actors/table-actor.ts';
import type { Fixes } from '../intro/fixes.ts';
import type { InterruptSource, RunResult } from './deterministic.ts';
import type { OrderingWitness } from './orderings.ts';
import type { PrefixWalk, WalkOptions } from './prefix-walk.ts';
import type { BranchSuffix } from './branch.ts';
import type { Seed } from './prng.ts';
import type { ScenarioDefinition, ScenarioGuest } from './scenario.ts';
import type { StrategyName } from './schedulers/index.ts';
import type { ChoicePoint, ListedChoice } from './schedulers/lenient.ts';
import type { ScheduleShape } from './schedule-shape.ts';
import { traceToJson, type TraceJson } from './trace-json.ts';
import type { Trace } from './trace.ts';

/**
 * What a scenario rig takes and gives (scenario-rig.ts): run modes and requests, the report of a
 * run, a run that followed a list of choices, an open branch point — and the small functions over
 * them that callers outside the rig use.
 */

/** inline / workers: deterministic (scheduler-driven); free: workers in parallel, OS-scheduled. */
export type RunMode = 'inline' | 'workers' | 'free';
export const RUN_MODES: readonly RunMode[] = ['inline', 'workers', 'free'];

export interface RunRequest {
  readonly seed: Seed;
  readonly strategy: StrategyName;
  /** PCT depth d. */
  readonly depth: number;
  /** The built-in fixes and the scenario's own (see `ScenarioRig.fixes`). */
  readonly fixes: Fixes<string>;
}

/** How a run is carried out beyond its request. */
export interface RunOptions {
  /**
   * Record the run for the Perfetto and HTML reports (`ScenarioRig.lastRecording`): actor states,
   * registers and code at every exit. Off by default; a recorded run has the same trace hash.
   */
  readonly record?: boolean;
}

export interface Violation {
  readonly oracle: string;
  readonly detail: string;
}

export interface RunReport {
  readonly scenario: string;
  readonly seed: string;
  /** "rr", "random", "pct(d=2)", "free" or "replay". */
  readonly strategy: string;
  readonly mode: RunMode;
  /** Fixes that were off (built-in and scenario-declared). */
  readonly fixesOff: readonly string[];
  /** How the run ended; `stopped`: a continuous oracle broke and the run ended there. */
  readonly outcome: RunResult['outcome'] | 'stopped' | 'error';
  readonly hash: string;
  readonly steps: number;
  readonly choices: number;
  readonly durationMs: number;
  /** Broken invariants, in the scenario's oracle order; the first is "the invariant that broke". */
  readonly violations: readonly Violation[];
  /** Names of the window goals reached. */
  readonly windows: readonly string[];
  /** The orders of the scenario's ordering pairs this run produced, each with its first witness. */
  readonly orderings: readonly OrderingWitness[];
  /** Every vCPU's RIP with its code (filled for failed runs). */
  readonly vcpus: string;
  readonly trace: Trace;
}

/**
 * The guest clock of the deterministic modes: one interrupt source per vCPU, their periods a little
 * apart so the vCPUs' ticks drift against each other.
 */
export function clockInterrupts(definition: Pick<ScenarioDefinition<ScenarioGuest>, 'clockVector' | 'vcpus' | 'bounds'>): InterruptSource[] {
  const { clockVector, vcpus, bounds } = definition;
  if (clockVector === undefined) return [];
  return Array.from({ length: vcpus }, (_, vcpu) => ({ vcpu, vector: clockVector, everySteps: bounds.clockEverySteps + 97 * vcpu }));
}

/**
 * The run's trace as JSON, with what a replay needs (scenario, seed, strategy, mode, fixes) and the
 * invariant it broke: its first, unless `broke` names the one it is kept for (a bug's own).
 */
export function traceJsonOf(report: RunReport, broke: string | undefined = report.violations[0]?.oracle): TraceJson {
  if (report.mode === 'free') throw new Error('a free-running run has no schedule to write as a trace');
  return traceToJson(report.trace, {
    scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: report.mode, fixesOff: report.fixesOff, ...(broke !== undefined ? { broke } : {}),
  });
}

/** The run failed: an oracle broke, the run did not complete, or the engine threw. */
export function failed(report: RunReport): boolean {
  return report.violations.length > 0;
}

/** A run that followed a list of choices: its report, its shape, and its choices with slices anchored. */
export interface FollowedRun {
  readonly report: RunReport;
  readonly shape: ScheduleShape;
  readonly followed: readonly ListedChoice[];
  /** Listed choices that were not possible when their turn came (skipped). */
  readonly skipped: number;
  /** With `alternatives`: what else could have acted at each choice. */
  readonly points: readonly ChoicePoint[];
}

/** How a rig runs its sessions. */
export interface RigOptions {
  /** Who runs the protocol machines (default: tables; 'xstate' for xstate's interpreter, e.g. to compare). */
  readonly interpreter?: ProtocolInterpreter;
}

/** A branch point, open: suffixes run from its snapshot one at a time (`ScenarioRig.openBranch`). */
export interface OpenBranch {
  /** Choices of the prefix: every suffix goes on after them. */
  readonly at: number;
  /** The point as asked for. */
  readonly asked: string;
  readonly objects: number;
  readonly ramPages: number;
  readonly prefixMs: number;
  readonly snapshotMs: number;
  /** RAM pages copied back by each restore so far, and the time all restores took. */
  readonly dirtyPages: readonly number[];
  readonly restoreMs: number;
  /** One suffix of `suffix.strategy` seeded by `suffix.seed`, to the end of the run or `horizon` choices past the point. */
  run(suffix: BranchSuffix, horizon?: number): RunReport;
  /**
   * One suffix that follows `choices` leniently from the point, then the default continuation —
   * `ScenarioRig.runChoices` from the snapshot instead of the start (the shape and the points
   * count from the point).
   */
  runChoices(choices: readonly ListedChoice[], options?: { readonly alternatives?: boolean; readonly horizon?: number }): FollowedRun;
  /**
   * Suffixes that share prefixes past the point (a bounded search's), each from a snapshot along
   * the shared part, the point's own when none is further on (see PrefixWalk): `walk.runChoices(list)`
   * is `runChoices(list, { alternatives: true, horizon })`. Close it before the branch runs anything else.
   */
  walk(horizon?: number, options?: WalkOptions): PrefixWalk;
  /** Releases the snapshot; the rig's next run starts afresh. */
  close(): void;
}

