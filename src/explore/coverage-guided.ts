import type { Fixes } from '../intro/fixes.ts';
import { OrderingCoverage, type Ordering, type OrderingWitness, type Span } from './orderings.ts';
import { Prng } from './prng.ts';
import { failed, type RunReport, type ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { StrategyName } from './schedulers/index.ts';
import type { ListedChoice } from './schedulers/lenient.ts';
import { logUniformSlice } from './schedulers/choice-draws.ts';

/**
 * Coverage-guided exploration: runs that produced an ordering no run had before are kept; the next
 * runs go after the orderings still missing (once none is, the rarest) by changing a kept run's schedule where the pair
 * happened — a vCPU made to run before the other side began (to turn the order around), or inside
 * the other side's interval (to make them overlap) — and following the changed list leniently.
 * Fresh random seeds keep coming in between. The whole search is decided by its seed: each run's
 * seed, each kept schedule and each change come from it, so the same call gives the same runs, and
 * every run's trace replays strictly like any other ("covering").
 */

export interface CoverageSearchOptions {
  /** Runs in all (fresh and changed). */
  readonly runs: number;
  /** Decides the search: the fresh runs' seeds and every change. */
  readonly seed: number;
  /** Share of runs that are fresh seeds once there is something to change (default 0.25). */
  readonly freshShare?: number;
  /** The strategy of the fresh runs (default random; PCT d=2 for pct). */
  readonly base?: StrategyName;
  /** Changed runs aimed at one ordering that may miss it before it is given up as out of reach (default 8). */
  readonly attempts?: number;
  /** Called after every run. */
  readonly onRun?: (runs: number, coverage: OrderingCoverage) => void;
}

/** A run that produced a new ordering, and how. */
export interface NewOrdering {
  readonly pair: string;
  readonly ordering: Ordering;
  /** 1-based run number. */
  readonly run: number;
  /** "fresh seed N" or "changed run M toward <ordering>". */
  readonly how: string;
}

export interface CoverageSearchResult {
  readonly coverage: OrderingCoverage;
  readonly runs: number;
  readonly found: readonly NewOrdering[];
  readonly firstFailure: RunReport | null;
  /** 1-based run number of the first failure (0: none). */
  readonly firstFailureAfter: number;
  /** Changed runs, and how many of them produced the ordering they went after. */
  readonly aimed: number;
  readonly hit: number;
  /** Orderings never produced that the search gave up on after `attempts` aimed runs: likely out of reach. */
  readonly givenUp: readonly string[];
}

/** A kept run: the seed it ran with (the engine's randomness), its schedule and its orderings. */
interface Kept {
  readonly seed: number;
  readonly choices: readonly ListedChoice[];
  readonly witnesses: readonly OrderingWitness[];
  readonly run: number;
}

export function searchCoverage<G extends ScenarioGuest>(rig: ScenarioRig<G>, fixes: Fixes<string>, options: CoverageSearchOptions): CoverageSearchResult {
  const pairs = rig.definition.orderings ?? [];
  if (pairs.length === 0) throw new Error(`scenario "${rig.definition.name}" declares no ordering pairs: a coverage-guided search has nothing to cover`);
  const prng = new Prng(options.seed).fork('coverage');
  const freshShare = options.freshShare ?? 0.25;
  const slice = rig.definition.bounds.slice;
  const coverage = OrderingCoverage.of(pairs);
  const kept: Kept[] = [];
  const found: NewOrdering[] = [];
  let firstFailure: RunReport | null = null;
  let firstFailureAfter = 0;
  let aimed = 0;
  let hit = 0;
  const attempts = options.attempts ?? 8;
  /** Aimed runs that missed, per "pair ordering" still unseen. */
  const misses = new Map<string, number>();
  for (let run = 1; run <= options.runs; run++) {
    // What is missing first; once every ordering was seen, the rarest (a race window is usually one).
    const reachable = (t: { pair: string; ordering: Ordering }): boolean => (misses.get(`${t.pair} ${t.ordering}`) ?? 0) < attempts && kept.some((k) => k.witnesses.some((w) => w.pair === t.pair));
    const wanted = coverage.unseen().filter(reachable);
    const targets = wanted.length > 0 ? wanted : coverage.rarest(reachable);
    let report: RunReport;
    let choices: readonly ListedChoice[];
    let seed: number;
    let how: string;
    let target: { pair: string; ordering: Ordering } | null = null;
    if (targets.length === 0 || prng.chance(freshShare)) {
      seed = options.seed + run;
      report = rig.run({ seed, strategy: options.base ?? 'random', depth: 2, fixes });
      choices = report.trace.choices;
      how = `fresh seed ${seed}`;
    } else {
      target = prng.pick(targets);
      const parents = kept.filter((k) => k.witnesses.some((w) => w.pair === target?.pair));
      const parent = prng.pick(parents);
      const witness = prng.pick(parent.witnesses.filter((w) => w.pair === target?.pair));
      seed = parent.seed;
      const followed = rig.runChoices(seed, aim(parent.choices, witness, target.ordering, prng, slice, rig.definition.vcpus), fixes, { label: 'covering' });
      report = followed.report;
      choices = followed.followed;
      how = `changed run ${parent.run} toward ${target.ordering}`;
      aimed++;
    }
    const before = new Set(coverage.unseen().map((t) => `${t.pair}\u0000${t.ordering}`));
    coverage.add(report.orderings);
    const fresh = report.orderings.filter((w) => before.has(`${w.pair}\u0000${w.ordering}`));
    if (target !== null) {
      const aimedAt = target;
      if (report.orderings.some((w) => w.pair === aimedAt.pair && w.ordering === aimedAt.ordering)) hit++;
      else if (before.has(`${aimedAt.pair}\u0000${aimedAt.ordering}`)) misses.set(`${aimedAt.pair} ${aimedAt.ordering}`, (misses.get(`${aimedAt.pair} ${aimedAt.ordering}`) ?? 0) + 1);
    }
    if (fresh.length > 0) {
      kept.push({ seed, choices, witnesses: report.orderings, run });
      for (const w of fresh) found.push({ pair: w.pair, ordering: w.ordering, run, how });
    }
    if (firstFailure === null && failed(report)) {
      firstFailure = report;
      firstFailureAfter = run;
    }
    options.onRun?.(run, coverage);
  }
  const givenUp = coverage.unseen().map((t) => `${t.pair} ${t.ordering}`).filter((key) => (misses.get(key) ?? 0) >= attempts);
  return { coverage, runs: options.runs, found, firstFailure, firstFailureAfter, aimed, hit, givenUp };
}

/**
 * The parent's schedule changed toward `want` for the pair `witness` shows. To put B before A,
 * B's vCPU runs just before A began; A before B, the other way round; to make them overlap, the
 * vCPU of one side runs inside the other's interval (a choice made there lands at a preemption
 * point of a handler, or between a vCPU's exit and its handling).
 */
function aim(choices: readonly ListedChoice[], witness: OrderingWitness, want: Ordering, prng: Prng, slice: number, vcpus: number): ListedChoice[] {
  const { a, b } = witness;
  // The vCPU acts there: it runs a slice and the exit it stops at is handled at once; a vCPU that
  // is already stopped at an exit cannot run (the follower skips the slice) and has that exit handled.
  // Inside a handler only the slice can happen there; the handling waits for the handler to end.
  const insertRuns = (vcpus: readonly number[], from: number, to: number): ListedChoice[] => {
    const at = Math.max(0, Math.min(choices.length, from + (to > from ? prng.below(to - from + 1) : 0)));
    const inserted: ListedChoice[] = vcpus.map((vcpu) => ({ kind: 'run', vcpu, steps: logUniformSlice(prng, 4 * slice) }));
    return [...choices.slice(0, at), ...inserted, { kind: 'handle', vcpu: vcpus[0] }, ...choices.slice(at)];
  };
  const insertRun = (vcpu: number, from: number, to: number): ListedChoice[] => insertRuns([vcpu], from, to);
  const before = (first: Span, second: Span): ListedChoice[] => {
    // The first side's vCPU runs somewhat before the second began; with no vCPU to run, the second's is delayed.
    const back = 1 + prng.below(8);
    if (first.vcpu >= 0) return insertRun(first.vcpu, Math.max(0, second.choiceFrom - back), second.choiceFrom);
    return dropRunsOf(choices, second.vcpu, Math.max(0, second.choiceFrom - back * 4), second.choiceFrom + 1);
  };
  switch (want) {
    case 'b-before-a': return before(b, a);
    case 'a-before-b': return before(a, b);
    case 'a-during-b': {
      const [inner, outer] = b.choiceTo > b.choiceFrom && (a.vcpu >= 0 || prng.chance(0.5)) ? [a, b] : [b, a];
      // Or the outer side begins earlier: its vCPU acts shortly before the inner side began (a peer
      // that exits at a load just before the patch is still waiting when the patch happens).
      if (outer.vcpu >= 0 && prng.chance(0.5)) return insertRun(outer.vcpu, Math.max(0, inner.choiceFrom - 1 - prng.below(8)), inner.choiceFrom);
      // The inner side's own vCPU may be stopped there, or be the one whose handler the outer side
      // is: every vCPU gets a slice there, the inner side's first, the others in a random order.
      const others = Array.from({ length: vcpus }, (_, v) => v).filter((v) => v !== inner.vcpu);
      for (let i = others.length - 1; i > 0; i--) {
        const j = prng.below(i + 1);
        [others[i], others[j]] = [others[j], others[i]];
      }
      const order = inner.vcpu >= 0 ? [inner.vcpu, ...others] : others;
      return insertRuns(order, outer.choiceFrom, Math.max(outer.choiceFrom, outer.choiceTo));
    }
  }
}

/** The schedule without `vcpu`'s slices in [from, to): that vCPU falls behind there. */
function dropRunsOf(choices: readonly ListedChoice[], vcpu: number, from: number, to: number): ListedChoice[] {
  return choices.filter((choice, index) => index < from || index >= to || choice.kind !== 'run' || choice.vcpu !== vcpu);
}

/** "patch-vs-waiting-peer: B before A at run 1 (fresh seed 2); A during B at run 9 (changed run 1 toward a-during-b)". */
export function describeFound(found: readonly NewOrdering[]): string[] {
  return found.map((f) => `${f.pair} ${f.ordering} first at run ${f.run} (${f.how})`);
}
