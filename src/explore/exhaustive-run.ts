import type { Fixes } from '../intro/fixes.ts';
import { exploreBounded, type ExhaustiveAttempt, type ExhaustiveOptions, type ExhaustiveResult } from './exhaustive.ts';
import type { Choice } from './schedule.ts';
import type { Seed } from './prng.ts';
import type { FollowedRun, OpenBranch, RunReport, ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';

/**
 * Bounded-exhaustive exploration of a scenario on its rig: every schedule with at most `bound`
 * preemptions (see exhaustive.ts for what a schedule and a choice point are), each a real run with
 * the given fixes; `seed` only feeds the engine's own randomness, the schedule comes from the search.
 */
export function exploreScenarioBounded<G extends ScenarioGuest>(rig: ScenarioRig<G>, seed: Seed, fixes: Fixes<string>, options: ExhaustiveOptions & WalkOption): ExhaustiveResult<RunReport> {
  if (rig.mode !== 'inline' || options.sharePrefixes === false) return exploreBounded((choices) => attemptSchedule(rig, seed, fixes, choices), options);
  const walk = rig.openWalk(seed, fixes, 'exhaustive');
  try {
    return exploreBounded((choices) => attemptOn(walk.runChoices(choices)), options);
  } finally {
    walk.close();
  }
}

/** Whether a search over whole runs runs each schedule from a snapshot along the prefix it shares with the one before (inline). */
export interface WalkOption {
  /** Default true in inline mode; false runs every schedule from the start (the same runs, slower). */
  readonly sharePrefixes?: boolean;
}

/** One schedule of a bounded search over whole runs, run on `rig` from the start. */
export function attemptSchedule<G extends ScenarioGuest>(rig: ScenarioRig<G>, seed: Seed, fixes: Fixes<string>, choices: readonly Choice[]): ExhaustiveAttempt<RunReport> {
  return attemptOn(rig.runChoices(seed, choices, fixes, { alternatives: true, label: 'exhaustive' }));
}

/** A schedule's run as the search records it (a whole run: its choices from the start). */
export function attemptOn(run: FollowedRun): ExhaustiveAttempt<RunReport> {
  return suffixAttemptOn(run, 0);
}

/**
 * The same search from a branch point: every schedule *after the point* with at most `bound`
 * preemptions, each a suffix run from the snapshot (the prefix is not run again, and is the same
 * for all). A bounded guarantee for the window that opens there, given that prefix; its schedules
 * count from the point (the default continuation starts afresh there), and each failing one's
 * trace, prefix included, replays from the start.
 */
export function exploreBranchBounded(branch: OpenBranch, options: ExhaustiveOptions & WalkOption & { readonly horizon?: number }): ExhaustiveResult<RunReport> {
  if (options.sharePrefixes === false) return exploreBounded((choices) => attemptSuffix(branch, choices, options.horizon), options);
  const walk = branch.walk(options.horizon);
  try {
    return exploreBounded((choices) => suffixAttemptOn(walk.runChoices(choices), branch.at), options);
  } finally {
    walk.close();
  }
}

/** One schedule of a bounded search from a branch point: a suffix from its snapshot (choices and points count from the point). */
export function attemptSuffix(branch: OpenBranch, choices: readonly Choice[], horizon?: number): ExhaustiveAttempt<RunReport> {
  return suffixAttemptOn(branch.runChoices(choices, { alternatives: true, ...(horizon === undefined ? {} : { horizon }) }), branch.at);
}

/** A suffix's run as the search records it: its choices from the branch point `at` on. */
export function suffixAttemptOn({ report, shape, points }: FollowedRun, at: number): ExhaustiveAttempt<RunReport> {
  return { oracle: report.violations[0]?.oracle ?? null, hash: report.hash, executed: at === 0 ? report.trace.choices : report.trace.choices.slice(at), points, preemptions: shape.preemptions, deviations: shape.deviations, run: report };
}

/** "k = 1: 612 schedules, all explored, 0 failures" — one line per level. */
export function describeBounded(result: ExhaustiveResult<RunReport>): string[] {
  return result.levels.map((level) => {
    const coverage = level.complete ? 'all explored' : `${level.pending > 0 ? `≥ ${level.schedules + level.pending} known, ` : ''}not all explored (run budget)`;
    return `k = ${level.k}: ${level.schedules} schedule${level.schedules === 1 ? '' : 's'}, ${coverage}, ${level.failures} failure${level.failures === 1 ? '' : 's'}`;
  });
}
