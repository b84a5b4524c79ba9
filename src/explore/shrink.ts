import { formatChoice } from './schedule.ts';
import { actorOf } from './schedule-shape.ts';
import type { ListedChoice } from './schedulers/lenient.ts';

/**
 * Shrinking a failing schedule: fewest preemptions first, then fewest decisive choices, keeping
 * the same broken oracle. The schedule is a list of choices followed leniently (choices that no
 * longer apply are skipped, the default continuation finishes the run), so any cut of the list is
 * a schedule to try. Candidates, tried in this order from the best schedule so far:
 *
 * 1. cut the list at a preemption (that preemption and every later one go), or cut everything
 *    before one (slices are anchored to their vCPU's progress, so what follows still means the
 *    same places in the code);
 * 2. delete chunks of the list, halves down to pairs (delta debugging);
 * 3. delete one preemption, or the run of choices it started until the preempted actor acts again;
 * 4. delete any single choice; merge two slices of one vCPU; drop a hypervisor fault.
 *
 * A candidate is taken when it breaks the same oracle first and has fewer preemptions, or as many
 * and fewer decisive choices (those up to the last one the default continuation would not have
 * made: the rest of the run is the default's). The search ends when a whole sweep over the best
 * schedule's candidates improves nothing — so shrinking the result again changes nothing — or
 * when the run budget is spent. Everything is deterministic: same input, same result.
 */

/** One candidate, run. */
export interface ShrinkAttempt<R> {
  /** The oracle the run broke first, or null when it broke none. */
  readonly oracle: string | null;
  readonly preemptions: number;
  /** Indices (in `executed`) of the preempting choices, and who each switched away from. */
  readonly preemptionAt: readonly number[];
  readonly preempted: readonly number[];
  /** Choices up to and including the last one the default continuation would not have made. */
  readonly decisive: number;
  /** The choices the run actually made. */
  readonly executed: readonly ListedChoice[];
  /** Whatever the caller keeps of a run (its report). */
  readonly run: R;
}

export interface ShrinkOptions {
  /** Runs the shrinker may make, the input's included (default 2000). */
  readonly maxRuns?: number;
  /** Called after each run (progress). */
  readonly onRun?: (runs: number, best: { preemptions: number; decisive: number }) => void;
}

export interface ShrinkResult<R> {
  readonly oracle: string;
  readonly from: { readonly choices: number; readonly preemptions: number; readonly decisive: number };
  /** The best schedule found (its choices are `best.executed`; `best.decisive` of them matter). */
  readonly best: ShrinkAttempt<R>;
  /** Runs made. */
  readonly runs: number;
  /** A whole sweep over the result's candidates improved nothing (false: the budget ran out first). */
  readonly minimal: boolean;
}

/** The input itself does not break the oracle when followed (nothing to shrink). */
export class ShrinkInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShrinkInputError';
  }
}

class BudgetSpent extends Error {}

const keyOf = (choices: readonly ListedChoice[]): string => choices.map((c) => ('until' in c ? `${formatChoice(c)}@${c.until}` : formatChoice(c))).join(';');

/** A slice without its anchor: it runs for its steps wherever its vCPU is. */
const unanchored = (choice: ListedChoice): ListedChoice => (choice.kind === 'run' && 'until' in choice ? { kind: 'run', vcpu: choice.vcpu, steps: choice.steps } : choice);

/**
 * Candidate lists derived from the best schedule so far, most promising first: each family of
 * cuts made to the list with its slices anchored and, next to it, to the list with plain slices
 * (a cut keeps either where each vCPU stops, or how long each slice is — races need one or the other).
 */
function candidates<R>(best: ShrinkAttempt<R>): ListedChoice[][] {
  const anchored = best.executed.slice(0, best.decisive);
  const plain = anchored.map(unanchored);
  const families = [anchored, plain].map((list) => cutsOf(list, best.preemptionAt, best.preempted));
  return families[0].flatMap((family, k) => [...family, ...families[1][k]]);
}

/** The families of cuts of `list`, in the order they are tried. */
function cutsOf(list: readonly ListedChoice[], preemptionAt: readonly number[], preempted: readonly number[]): ListedChoice[][][] {
  const n = list.length;
  const without = (from: number, to: number): ListedChoice[] => [...list.slice(0, from), ...list.slice(to)];
  const ends = preemptionAt.map((at) => list.slice(0, at));
  const starts = [...preemptionAt].reverse().filter((at) => at > 0).map((at) => list.slice(at));
  const chunks: ListedChoice[][] = [];
  for (let size = 2 ** Math.floor(Math.log2(Math.max(1, n >> 1))); size >= 2; size >>= 1) {
    for (let from = 0; from < n; from += size) chunks.push(without(from, Math.min(n, from + size)));
  }
  const preemptions = preemptionAt.flatMap((at, k) => {
    let back = at + 1;
    while (back < n && actorOf(list[back]) !== preempted[k]) back++;
    return back > at + 1 ? [without(at, at + 1), without(at, back)] : [without(at, at + 1)];
  });
  const singles = Array.from({ length: n }, (_, k) => without(n - 1 - k, n - k));
  const merges: ListedChoice[][] = [];
  for (let at = 0; at + 1 < n; at++) {
    const [a, b] = [list[at], list[at + 1]];
    if (a.kind === 'run' && b.kind === 'run' && a.vcpu === b.vcpu) {
      const merged: ListedChoice = 'until' in b ? { kind: 'run', vcpu: a.vcpu, steps: a.steps + b.steps, until: b.until } : { kind: 'run', vcpu: a.vcpu, steps: a.steps + b.steps };
      merges.push([...list.slice(0, at), merged, ...list.slice(at + 2)]);
    }
  }
  const faults = list.flatMap((choice, at) => (choice.kind === 'handle' && choice.fault !== undefined ? [[...list.slice(0, at), { kind: 'handle', vcpu: choice.vcpu } as ListedChoice, ...list.slice(at + 1)]] : []));
  return [ends, starts, chunks, preemptions, singles, merges, faults];
}

/**
 * Shrinks `input` (a failing run's choices). `attempt` runs a list of choices leniently and says
 * what happened; the target oracle is the one the input breaks first.
 */
export function shrinkSchedule<R>(input: readonly ListedChoice[], attempt: (choices: readonly ListedChoice[]) => ShrinkAttempt<R>, options: ShrinkOptions = {}): ShrinkResult<R> {
  const maxRuns = options.maxRuns ?? 2000;
  if (!Number.isInteger(maxRuns) || maxRuns < 1) throw new RangeError(`the shrink budget must be a positive number of runs, got ${maxRuns}`);
  let runs = 0;
  const tried = new Set<string>();
  const run = (choices: readonly ListedChoice[]): ShrinkAttempt<R> => {
    if (runs >= maxRuns) throw new BudgetSpent();
    runs++;
    const result = attempt(choices);
    options.onRun?.(runs, best ?? { preemptions: result.preemptions, decisive: result.decisive });
    return result;
  };
  let best: ShrinkAttempt<R> | null = null;
  const first = run(input);
  if (first.oracle === null) throw new ShrinkInputError('the schedule breaks no oracle when it is followed: there is no failure to shrink');
  const oracle = first.oracle;
  best = first;
  tried.add(keyOf(first.executed.slice(0, first.decisive)));
  const better = (a: ShrinkAttempt<R>, b: ShrinkAttempt<R>): boolean => a.oracle === oracle && (a.preemptions < b.preemptions || (a.preemptions === b.preemptions && a.decisive < b.decisive));
  /** Runs `choices` unless tried before (a list tried before lost to a best no better than today's). */
  const offer = (choices: readonly ListedChoice[]): boolean => {
    const key = keyOf(choices);
    if (tried.has(key)) return false;
    tried.add(key);
    const result = run(choices);
    tried.add(keyOf(result.executed.slice(0, result.decisive)));
    if (!better(result, best!)) return false;
    best = result;
    return true;
  };
  let minimal = false;
  try {
    bisectPreemptions(offer, () => best!);
    for (;;) {
      let improved = false;
      let list = candidates(best);
      for (let i = 0; i < list.length; i++) {
        if (!offer(list[i])) continue;
        improved = true;
        list = candidates(best);
      }
      if (!improved) break;
    }
    minimal = true;
  } catch (error) {
    if (!(error instanceof BudgetSpent)) throw error;
  }
  const result = best as ShrinkAttempt<R>;
  return { oracle, from: { choices: input.length, preemptions: first.preemptions, decisive: first.decisive }, best: result, runs, minimal };
}

/**
 * A quick first cut: binary search for an early preemption at which the list can end. Not exact
 * (whether a cut still fails is not monotone in where it is), only a fast start for the sweeps.
 */
function bisectPreemptions<R>(offer: (choices: readonly ListedChoice[]) => boolean, current: () => ShrinkAttempt<R>): void {
  for (const form of [unanchored, (c: ListedChoice): ListedChoice => c]) {
    // The end first: the earliest preemption the list can stop at.
    let best = current();
    let at = best.preemptionAt;
    let list = best.executed.slice(0, best.decisive).map(form);
    let lo = 0;
    let hi = at.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (offer(list.slice(0, at[mid]))) hi = mid;
      else lo = mid + 1;
    }
    // Then the start: the latest preemption the list can begin at.
    best = current();
    at = best.preemptionAt;
    list = best.executed.slice(0, best.decisive).map(form);
    lo = 0;
    hi = at.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (offer(list.slice(at[mid - 1]))) lo = mid;
      else hi = mid - 1;
    }
  }
}
