import type { Choice } from './schedule.ts';
import type { Alternative } from './schedule-shape.ts';
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
 *
 * What the bound counts (`measure`): preemptions, as above — CHESS's bound, under which the choices
 * that cost nothing are all explored at every level, so k = 0 alone is exponential in how often
 * the current vCPU cannot go on (a guest whose vCPUs halt and wake often, or wait on one
 * another); or deviations — every choice other than the default costs one, preemption or not,
 * which is delay bounding (Emmi, Qadeer and Rakamarić, POPL 2011) with the default continuation as
 * its deterministic scheduler and any other actor one delay away. Deviation bounding has one
 * schedule at k = 0 and, at k = 1, one per alternative of the default run: it ends on every guest,
 * and covers a subset of what preemption bounding covers at the same k (a free choice spends the
 * budget too), so each guarantees only its own bound.
 */

/** What a bounded search's k counts: switches away from an actor that could go on, or every choice other than the default. */
export type BoundMeasure = 'preemptions' | 'deviations';
export const BOUND_MEASURES: readonly BoundMeasure[] = ['preemptions', 'deviations'];

/** One schedule, run. */
export interface ExhaustiveAttempt<R> {
  readonly oracle: string | null;
  readonly hash: string;
  readonly executed: readonly Choice[];
  readonly points: readonly ChoicePoint[];
  readonly preemptions: number;
  /** Choices that differed from the default continuation (the preemptions among them). */
  readonly deviations: number;
  readonly run: R;
}

export interface ExhaustiveOptions {
  /** The bound k. */
  readonly bound: number;
  /** What k counts (default: preemptions). */
  readonly measure?: BoundMeasure;
  /** Runs at most (default 20,000): the search stops there and says which levels it finished. */
  readonly maxRuns?: number;
  readonly onRun?: (runs: number, level: number) => void;
}

/** The schedules of one k: as many preemptions (or deviations, by the measure) as that. */
export interface ExhaustiveLevel {
  readonly k: number;
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
  readonly measure: BoundMeasure;
  readonly levels: readonly ExhaustiveLevel[];
  readonly runs: number;
  /** Distinct traces among the runs. */
  readonly distinct: number;
  /** The first failing schedule found (lowest k first), or null. */
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
  const measure = options.measure ?? 'preemptions';
  if (!Number.isInteger(bound) || bound < 0) throw new RangeError(`the bound on ${measure} must be an integer ≥ 0, got ${bound}`);
  if (!BOUND_MEASURES.includes(measure)) throw new RangeError(`a bound counts ${BOUND_MEASURES.join(' or ')}, not ${String(measure)}`);
  const costOf = measure === 'preemptions'
    ? (point: ChoicePoint, alternative: Alternative): number => point.preemptionsBefore + (alternative.preempts ? 1 : 0)
    : (point: ChoicePoint): number => point.deviationsBefore + 1;
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
    // FIFO within a level; a schedule's free choices (no preemption, by that measure) join the same level.
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
          const cost = costOf(point, alternative);
          if (cost <= bound) queues[cost].push({ base: result.executed, at, choice: alternative.choice });
        }
      }
    }
    if (!stopped) queue.length = 0;
  }
  // A level above the cut may have more schedules, branching from those not run.
  const levels = counts.map((count, k) => ({ k, ...count, pending: queues[k].length, complete: k < cut }));
  return { bound, measure, levels, runs, distinct: hashes.size, firstFailure, firstFailureAfter, complete: cut > bound };
}
