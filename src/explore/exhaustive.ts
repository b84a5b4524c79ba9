import type { Choice } from './schedule.ts';
import type { ChoicePoint } from './schedulers/lenient.ts';

/**
 * Bounded-exhaustive exploration, CHESS-style iterative preemption bounding: every schedule with
 * at most `bound` preemptions, level by level (all with 0, then all with 1, …), each run for real.
 *
 * A schedule is the default continuation (see ScheduleShape) with some choices replaced: at a
 * choice point, another actor acts instead — another vCPU runs a slice or has its exit handled,
 * or the handler goes on — after which the default continues with it. Choices that switch away
 * from an actor that could go on cost a preemption; the others (which vCPU runs when the current
 * one cannot) cost nothing and are explored too. Enumeration is a tree: a schedule branches only
 * at choice points after its own last replacement, so each is run once. What is *not* explored:
 * the environment's timing (timer ticks, the daemon and interrupts come when due), hypervisor
 * faults, and switches inside a slice (preemption points are the default's choice points: slice
 * ends, exits, the handler's preemption points) — the guarantee is bounded in those terms.
 * Two schedules that give the same trace count once among the distinct runs.
 */

/** One schedule, run. */
export interface ExhaustiveAttempt<R> {
  readonly oracle: string | null;
  readonly hash: string;
  readonly executed: readonly Choice[];
  readonly points: readonly ChoicePoint[];
  readonly preemptions: number;
  readonly run: R;
}

export interface ExhaustiveOptions {
  /** The preemption bound k. */
  readonly bound: number;
  /** Runs at most (default 20,000): the search stops there and says which levels it finished. */
  readonly maxRuns?: number;
  readonly onRun?: (runs: number, level: number) => void;
}

/** One preemption count's schedules. */
export interface ExhaustiveLevel {
  readonly preemptions: number;
  /** Schedules run at this level, and how many of them broke an invariant. */
  readonly schedules: number;
  readonly failures: number;
  /** Every schedule of this level was run. */
  readonly complete: boolean;
  /** Schedules known to be at this level but not run (when incomplete; more may branch from them). */
  readonly pending: number;
}

export interface ExhaustiveResult<R> {
  readonly bound: number;
  readonly levels: readonly ExhaustiveLevel[];
  readonly runs: number;
  /** Distinct traces among the runs. */
  readonly distinct: number;
  /** The first failing schedule found (fewest preemptions first), or null. */
  readonly firstFailure: ExhaustiveAttempt<R> | null;
  /** How many schedules had run when it was found (0: none failed). */
  readonly firstFailureAfter: number;
  /** Every level up to the bound is complete: a bounded guarantee. */
  readonly complete: boolean;
}

/** A schedule to run: a run's first `at` choices, then `choice` instead of the one it made. */
interface Pending {
  readonly base: readonly Choice[];
  readonly at: number;
  readonly choice: Choice | null;
}

export function exploreBounded<R>(attempt: (choices: readonly Choice[]) => ExhaustiveAttempt<R>, options: ExhaustiveOptions): ExhaustiveResult<R> {
  const { bound } = options;
  if (!Number.isInteger(bound) || bound < 0) throw new RangeError(`the preemption bound must be an integer ≥ 0, got ${bound}`);
  const maxRuns = options.maxRuns ?? 20_000;
  const queues: Pending[][] = Array.from({ length: bound + 1 }, () => []);
  queues[0].push({ base: [], at: 0, choice: null });
  const counts = Array.from({ length: bound + 1 }, () => ({ schedules: 0, failures: 0 }));
  const hashes = new Set<string>();
  let runs = 0;
  let firstFailure: ExhaustiveAttempt<R> | null = null;
  let firstFailureAfter = 0;
  let stopped = false;
  /** The level the budget ran out in (levels below it are complete); bound + 1 when it did not. */
  let cut = bound + 1;
  for (let level = 0; level <= bound && !stopped; level++) {
    const queue = queues[level];
    // FIFO within a level; a schedule's free choices (no preemption) join the same level.
    for (let next = 0; next < queue.length; next++) {
      if (runs >= maxRuns) {
        queue.splice(0, next);
        stopped = true;
        cut = level;
        break;
      }
      const pending = queue[next];
      const list = pending.choice === null ? [] : [...pending.base.slice(0, pending.at), pending.choice];
      const result = attempt(list);
      runs++;
      options.onRun?.(runs, level);
      hashes.add(result.hash);
      counts[level].schedules++;
      if (result.oracle !== null) {
        counts[level].failures++;
        if (firstFailure === null) {
          firstFailure = result;
          firstFailureAfter = runs;
        }
      }
      for (let at = list.length; at < result.points.length; at++) {
        const point = result.points[at];
        for (const alternative of point.alternatives) {
          const cost = point.preemptionsBefore + (alternative.preempts ? 1 : 0);
          if (cost <= bound) queues[cost].push({ base: result.executed, at, choice: alternative.choice });
        }
      }
    }
    if (!stopped) queue.length = 0;
  }
  // A level above the cut may have more schedules, branching from those not run.
  const levels = counts.map((count, preemptions) => ({ preemptions, ...count, pending: queues[preemptions].length, complete: preemptions < cut }));
  return { bound, levels, runs, distinct: hashes.size, firstFailure, firstFailureAfter, complete: cut > bound };
}
