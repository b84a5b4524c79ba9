import { decodeChoices, encodeChoices } from './choice-codec.ts';
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
  /** End the search at the first failing schedule (its level and those above are then not complete). */
  readonly stopAtFailure?: boolean;
  /**
   * Only a run that breaks this invariant first counts as failing (a shrinker looking for the same
   * bug with fewer preemptions); default: any broken invariant.
   */
  readonly target?: string;
}

/** The schedules of one k: as many preemptions (or deviations, by the measure) as that. */
export interface ExhaustiveLevel {
  readonly k: number;
  /** Schedules run at this level, and how many of them broke an invariant (the target, when one is given). */
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
  /** The first failing schedule found (lowest k first; one breaking the target first, when given), or null. */
  readonly firstFailure: ExhaustiveAttempt<R> | null;
  /** How many schedules had run when it was found (0: none failed). */
  readonly firstFailureAfter: number;
  /** Every level up to the bound is complete: a bounded guarantee. */
  readonly complete: boolean;
}

/**
 * A schedule to run: a run's first `at` choices, then `choice` instead of the one it made. The run's
 * choices are kept as words (choice-codec.ts), one array for all its children: a level can hold
 * tens of thousands of runs' choices, and as objects those filled a 4 GB heap.
 */
interface Pending {
  readonly base: Int32Array;
  readonly at: number;
  readonly choice: Choice | null;
}

/**
 * The search's state, level by level: which schedules are known and which ran. Results must be
 * recorded in the order the schedules were taken — so a search that runs several at once (on a
 * pool) knows the same schedules, counts the same failures and reports the same first failure as
 * one that runs them one by one. Within a level, schedules are taken FIFO; a schedule's free
 * choices (no preemption, by the measure) join the same level, its others the level they cost.
 */
export class BoundedFrontier<R> {
  readonly bound: number;
  readonly measure: BoundMeasure;
  private readonly maxRuns: number;
  private readonly stopAtFailure: boolean;
  private readonly target: string | undefined;
  private readonly costOf: (point: ChoicePoint, alternative: Alternative) => number;
  /** Per level, its schedules in the order they are taken (null once taken: its run's choices may go). */
  private readonly queues: (Pending | null)[][];
  private readonly counts: { schedules: number; failures: number }[];
  private readonly hashes = new Set<string>();
  /** The level being searched, and the next of its schedules to take and to record. */
  private level = 0;
  private taken = 0;
  private recorded = 0;
  private ran = 0;
  private firstFailure: ExhaustiveAttempt<R> | null = null;
  private firstFailureAfter = 0;
  /** The level the budget ran out in (levels below it are complete); bound + 1 when it did not. */
  private cut: number;
  /** Schedules of the cut level that ran. */
  private cutRecorded = 0;
  /** The last pending schedule's run choices, decoded. */
  private decodedFrom: Int32Array | null = null;
  private decoded: readonly Choice[] = [];

  constructor(options: ExhaustiveOptions) {
    const { bound } = options;
    const measure = options.measure ?? 'preemptions';
    if (!Number.isInteger(bound) || bound < 0) throw new RangeError(`the bound on ${measure} must be an integer ≥ 0, got ${bound}`);
    if (!BOUND_MEASURES.includes(measure)) throw new RangeError(`a bound counts ${BOUND_MEASURES.join(' or ')}, not ${String(measure)}`);
    this.bound = bound;
    this.measure = measure;
    this.costOf = measure === 'preemptions'
      ? (point, alternative) => point.preemptionsBefore + (alternative.preempts ? 1 : 0)
      : (point) => point.deviationsBefore + 1;
    this.maxRuns = options.maxRuns ?? 20_000;
    this.stopAtFailure = options.stopAtFailure === true;
    this.target = options.target;
    this.queues = Array.from({ length: bound + 1 }, () => []);
    this.queues[0].push({ base: new Int32Array(0), at: 0, choice: null });
    this.counts = Array.from({ length: bound + 1 }, () => ({ schedules: 0, failures: 0 }));
    this.cut = bound + 1;
  }

  /** Schedules run (results recorded). */
  get runs(): number {
    return this.ran;
  }

  /** Asked to stop at the first failure, and it came. */
  private get stoppedByFailure(): boolean {
    return this.stopAtFailure && this.firstFailure !== null;
  }

  /** Schedules taken whose results are not recorded yet. */
  get outstanding(): number {
    return this.taken - this.recorded;
  }

  /**
   * The next schedule to run (its choices), or null when none can be taken now: the level's known
   * schedules are all taken (the ones outstanding may add more), the budget is spent, or the search is done.
   */
  take(): readonly Choice[] | null {
    this.advance();
    if (this.level > this.bound) return null;
    const queue = this.queues[this.level];
    if (this.taken >= queue.length || this.ran + this.outstanding >= this.maxRuns || this.stoppedByFailure) return null;
    const pending = queue[this.taken]!;
    queue[this.taken++] = null;
    if (pending.choice === null) return [];
    // Siblings come one after another: their run's choices are decoded once for all of them.
    if (pending.base !== this.decodedFrom) {
      this.decodedFrom = pending.base;
      this.decoded = decodeChoices(pending.base);
    }
    return [...this.decoded.slice(0, pending.at), pending.choice];
  }

  /** The result of the oldest schedule taken and not yet recorded, whose choices were `list`. */
  record(list: readonly Choice[], result: ExhaustiveAttempt<R>): number {
    if (this.outstanding === 0) throw new Error('a result was recorded for no schedule taken');
    const level = this.level;
    if (this.stoppedByFailure) {
      // Taken after the failure, while it ran: the search ended before this one.
      this.taken--;
      return level;
    }
    this.recorded++;
    this.ran++;
    this.hashes.add(result.hash);
    this.counts[level].schedules++;
    if (result.oracle !== null && (this.target === undefined || result.oracle === this.target)) {
      this.counts[level].failures++;
      if (this.firstFailure === null) {
        this.firstFailure = result;
        this.firstFailureAfter = this.ran;
      }
    }
    let base: Int32Array | null = null;
    for (let at = list.length; at < result.points.length; at++) {
      const point = result.points[at];
      for (const alternative of point.alternatives) {
        const cost = this.costOf(point, alternative);
        if (cost > this.bound) continue;
        base ??= encodeChoices(result.executed);
        this.queues[cost].push({ base, at, choice: alternative.choice });
      }
    }
    return level;
  }

  result(): ExhaustiveResult<R> {
    this.advance();
    // A level above the cut may have more schedules, branching from those not run.
    const levels = this.counts.map((count, k) => ({ k, ...count, pending: k < this.cut ? 0 : this.queues[k].length - (k === this.cut ? this.cutRecorded : 0), complete: k < this.cut }));
    return {
      bound: this.bound, measure: this.measure, levels, runs: this.ran, distinct: this.hashes.size,
      firstFailure: this.firstFailure, firstFailureAfter: this.firstFailureAfter, complete: this.cut > this.bound,
    };
  }

  /** Moves past a level whose schedules all ran; stops the search where the budget ran out (or at a failure, if asked). */
  private advance(): void {
    while (this.level <= this.bound && this.outstanding === 0) {
      const queue = this.queues[this.level];
      const left = this.recorded < queue.length;
      if ((left && this.ran >= this.maxRuns) || this.stoppedByFailure) {
        // The level in hand is cut unless its last schedule was the one that failed.
        this.cut = left ? this.level : this.level + 1;
        this.cutRecorded = left ? this.recorded : 0;
        this.level = this.bound + 1;
        return;
      }
      if (left) return;
      queue.length = 0;
      this.level++;
      this.taken = 0;
      this.recorded = 0;
    }
  }
}

/** The search run one schedule after another. */
export function exploreBounded<R>(attempt: (choices: readonly Choice[]) => ExhaustiveAttempt<R>, options: ExhaustiveOptions): ExhaustiveResult<R> {
  const frontier = new BoundedFrontier<R>(options);
  for (let list = frontier.take(); list !== null; list = frontier.take()) {
    const level = frontier.record(list, attempt(list));
    options.onRun?.(frontier.runs, level);
  }
  return frontier.result();
}

/**
 * The same search with up to `concurrency` schedules running at once (on a pool of threads):
 * results are recorded in the order the schedules were taken, so every count, the first failure
 * and its place are those of `exploreBounded`. A level ends before the next begins (the budget and
 * "fewest preemptions first" are per level), so parallelism dips at each level's tail.
 */
export async function exploreBoundedAsync<R>(attempt: (choices: readonly Choice[]) => Promise<ExhaustiveAttempt<R>>, options: ExhaustiveOptions & { readonly concurrency: number }): Promise<ExhaustiveResult<R>> {
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError(`concurrency must be an integer ≥ 1, got ${options.concurrency}`);
  const frontier = new BoundedFrontier<R>(options);
  const running: { readonly list: readonly Choice[]; readonly result: Promise<ExhaustiveAttempt<R>> }[] = [];
  for (;;) {
    while (running.length < options.concurrency) {
      const list = frontier.take();
      if (list === null) break;
      const result = attempt(list);
      // Awaited in order: one that fails while an older one runs must not count as unhandled meanwhile.
      result.catch(() => undefined);
      running.push({ list, result });
    }
    const oldest = running.shift();
    if (oldest === undefined) break;
    const level = frontier.record(oldest.list, await oldest.result);
    options.onRun?.(frontier.runs, level);
  }
  return frontier.result();
}
