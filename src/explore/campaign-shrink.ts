import type { RunMode, ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { StrategyName } from './schedulers/index.ts';
import { findSimplest, type ShrinkCandidate, type ShrinkFound } from './shrink-run.ts';

/**
 * A campaign row's shrink as one pool task: the pool thread runs the offered failures again from
 * their seeds and searches (`findSimplest`) while the next row's runs go on; the main thread then
 * records the schedule found (`recordShrunk`) for its trace, story and reports.
 */

/** One run offered to the shrink, named as the report names it. */
export interface ShrinkTaskRun {
  readonly seed: number;
  readonly strategy: StrategyName;
  readonly depth: number;
  readonly label: string;
}

export interface ShrinkTask {
  readonly scenario: string;
  readonly mode: RunMode;
  readonly fixesOff: readonly string[];
  /** Scenario modules the pool thread loads first (absolute paths). */
  readonly modules: readonly string[];
  /** The row's failure shown in its report first (it names the invariant), then each strategy's first. */
  readonly runs: readonly ShrinkTaskRun[];
  /** The shrinker's budget for each run it shrinks (and as many again for the search below its result). */
  readonly maxRuns: number;
  /** The invariant of the row's bug when a run broke it (runs breaking another first are not shrunk). */
  readonly target?: string;
}

/** Runs a shrink task on a pool thread's rig. */
export function runShrinkTaskOn<G extends ScenarioGuest>(rig: ScenarioRig<G>, task: ShrinkTask): ShrinkFound {
  const fixes = rig.fixes.without(task.fixesOff);
  // Every run goes in, failing again or not: one that no longer fails is listed as such (it did in
  // the pool before — a sign of nondeterminism the reader should see), and the first must fail.
  const candidates: ShrinkCandidate[] = task.runs.map((run) => {
    const report = rig.run({ seed: run.seed, strategy: run.strategy, depth: run.depth, fixes });
    return { seed: run.seed, choices: report.trace.choices, label: run.label };
  });
  return findSimplest(rig, candidates, fixes, { maxRuns: task.maxRuns, ...(task.target !== undefined ? { target: task.target } : {}) });
}
