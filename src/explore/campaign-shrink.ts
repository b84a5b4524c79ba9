import type { RunMode, ScenarioRig } from './scenario-rig.ts';
import { failed } from './scenario-rig.ts';
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
  /** The shrinker's budget for each run it shrinks. */
  readonly maxRuns: number;
}

/** Runs a shrink task on a pool thread's rig. */
export function runShrinkTaskOn<G extends ScenarioGuest>(rig: ScenarioRig<G>, task: ShrinkTask): ShrinkFound {
  const fixes = rig.fixes.without(task.fixesOff);
  const candidates: ShrinkCandidate[] = [];
  for (const [index, run] of task.runs.entries()) {
    const report = rig.run({ seed: run.seed, strategy: run.strategy, depth: run.depth, fixes });
    if (failed(report)) candidates.push({ seed: run.seed, choices: report.trace.choices, label: run.label });
    else if (index === 0) throw new Error(`${run.label} did not fail when run again for the shrink`);
  }
  return findSimplest(rig, candidates, fixes, { maxRuns: task.maxRuns });
}
