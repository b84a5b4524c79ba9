import type { Fixes } from '../intro/fixes.ts';
import type { FreeObservation } from './free-observation.ts';
import { Prng } from './prng.ts';
import type { RunRecording } from './recorder.ts';
import { exitTrailsOf, retraced, type Retraced } from './retrace.ts';
import { retraceSchedule } from './retrace-schedule.ts';
import { varySchedule } from './retrace-variations.ts';
import { traceJsonOf, type RunReport, type ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { ListedChoice } from './schedulers/lenient.ts';
import { firstDivergence } from './trace.ts';

/**
 * Turning a free-running failure into a replayable one (rr's chaos mode records; this explains):
 * a deterministic search for a schedule that breaks the same invariant first, guided by what the
 * free run showed. First the schedule that retraces the free run's observed order
 * (retrace-schedule.ts); then, interleaved, seeded variations of it (retrace-variations.ts) and
 * plain random and PCT seeds, in case the free run's interleaving cannot be retraced at all. Every
 * run is a real deterministic run of the scenario; everything is decided by the free run's seed,
 * so the search itself is repeatable. The run found is replayed strictly from its trace before it
 * is reported: its trace is proven to reproduce the failure.
 */

/** How a run of the search was made. */
export type SearchMethod =
  /** The schedule that retraces the free run's order, as observed. */
  | { readonly kind: 'guided' }
  /** That schedule with a few seeded edits. */
  | { readonly kind: 'variation'; readonly edits: readonly string[] }
  /** A seeded run of a strategy, as the deterministic modes make them. */
  | { readonly kind: 'seed'; readonly strategy: 'random' | 'pct'; readonly depth: number; readonly seed: string };

export interface ReplayableOptions {
  /** Deterministic runs the search may make (default 200). */
  readonly maxRuns?: number;
  /** Told after every run: how many so far, and how the last was made. */
  readonly onRun?: (runs: number, method: SearchMethod) => void;
  /** Polled before every run: true ends the search there (a stop request), with what it has. */
  readonly shouldStop?: () => boolean;
}

/** The deterministic run that broke the free run's invariant first. */
export interface FoundRun {
  /** Which run of the search it was (1: the first). */
  readonly run: number;
  readonly method: SearchMethod;
  /** The run, as its strict replay from its trace gave it (strategy guided, random or pct(d=N)). */
  readonly report: RunReport;
  /** That replay's recording, for the Perfetto and HTML reports. */
  readonly recording: RunRecording | null;
  /** How much of the free run it retraced. */
  readonly retrace: Retraced;
}

export interface ReplayableSearch {
  readonly oracle: string;
  readonly runs: number;
  readonly maxRuns: number;
  /** Runs by kind: guided (the observed order and its variations), random and PCT seeds. */
  readonly runsBy: Readonly<Record<'guided' | 'random' | 'pct', number>>;
  /** Null: no run within the budget broke the invariant first. */
  readonly found: FoundRun | null;
  /** How much of the free run the observed order retraced, and the most any guided run did. */
  readonly retrace: { readonly observed: Retraced; readonly closest: Retraced };
  /** Runs that broke another invariant first, by that invariant. */
  readonly otherFailures: Readonly<Record<string, number>>;
}

/** Runs in a cycle of the search after the first: two guided variations, a random seed, a PCT seed. */
const CYCLE: readonly ('variation' | 'random' | 'pct')[] = ['variation', 'variation', 'random', 'pct'];
const PCT_DEPTHS = [2, 3];

type SeedMethod = Extract<SearchMethod, { kind: 'seed' }>;

/** One run to make: a seed of a strategy, or a guided schedule to follow. */
type Attempt = { readonly method: SeedMethod } | { readonly method: Exclude<SearchMethod, SeedMethod>; readonly schedule: readonly ListedChoice[] };

/** Searches, on `rig` (a deterministic mode), a run that breaks `observation.oracle` first. */
export function findReplayable<G extends ScenarioGuest>(rig: ScenarioRig<G>, observation: FreeObservation, fixes: Fixes<string>, options: ReplayableOptions = {}): ReplayableSearch {
  if (rig.mode === 'free') throw new Error('the search runs deterministic schedules: open the rig inline or with workers');
  const maxRuns = options.maxRuns ?? 200;
  const freeTrails = exitTrailsOf(observation.steps.flatMap((step) => (step.kind === 'event' ? [step.event] : [])));
  const base = retraceSchedule(observation, rig.definition.bounds.stepsMax);
  const prng = new Prng(`free-to-replayable:${observation.seed}`);
  const runsBy = { guided: 0, random: 0, pct: 0 };
  const otherFailures: Record<string, number> = {};
  const none: Retraced = { exits: 0, retraced: 0 };
  let observed: Retraced | null = null;
  let closest: Retraced | null = null;
  let runs = 0;
  const result = (found: FoundRun | null): ReplayableSearch => ({
    oracle: observation.oracle, runs, maxRuns, runsBy, found, retrace: { observed: observed ?? none, closest: closest ?? none }, otherFailures,
  });
  while (runs < maxRuns && options.shouldStop?.() !== true) {
    const attempt = attemptOf(runs, base, prng, runsBy, observation.seed);
    const { method } = attempt;
    const report = 'schedule' in attempt
      ? rig.runChoices(observation.seed, attempt.schedule, fixes, { label: 'guided' }).report
      : rig.run({ seed: attempt.method.seed, strategy: attempt.method.strategy, depth: attempt.method.depth, fixes });
    runs++;
    const trail = retraced(freeTrails, exitTrailsOf(rig.lastEvents.map((timed) => timed.event)));
    if (method.kind === 'seed') runsBy[method.strategy]++;
    else {
      runsBy.guided++;
      if (method.kind === 'guided') observed = trail;
      if (closest === null || trail.retraced > closest.retraced) closest = trail;
    }
    options.onRun?.(runs, method);
    const broke = report.violations[0]?.oracle;
    if (broke === observation.oracle) return result({ run: runs, method, ...replayStrictly(rig, report, fixes), retrace: trail });
    if (broke !== undefined) otherFailures[broke] = (otherFailures[broke] ?? 0) + 1;
  }
  return result(null);
}

/** The k-th run: the observed order first, then the cycle; a variation is drawn here. */
function attemptOf(k: number, base: readonly ListedChoice[], prng: Prng, runsBy: { readonly random: number; readonly pct: number }, freeSeed: string): Attempt {
  if (k === 0) return { method: { kind: 'guided' }, schedule: base };
  const kind = CYCLE[(k - 1) % CYCLE.length];
  if (kind === 'variation') {
    const { schedule, edits } = varySchedule(base, prng);
    return { method: { kind: 'variation', edits }, schedule };
  }
  // Seeds count up from the free run's own, which fed the engine's randomness there too.
  const next = (count: number): string => String((BigInt(freeSeed) + BigInt(count)) & SEED_MASK);
  if (kind === 'random') return { method: { kind: 'seed', strategy: 'random', depth: 2, seed: next(runsBy.random) } };
  return { method: { kind: 'seed', strategy: 'pct', depth: PCT_DEPTHS[runsBy.pct % PCT_DEPTHS.length], seed: next(runsBy.pct) } };
}

const SEED_MASK = (1n << 64n) - 1n;

/** The run again from its trace, strictly and recorded: the trace must give the same run. */
function replayStrictly<G extends ScenarioGuest>(rig: ScenarioRig<G>, report: RunReport, fixes: Fixes<string>): { report: RunReport; recording: RunRecording | null } {
  const replayed = rig.replay(traceJsonOf(report), fixes, { record: true });
  if (replayed.hash !== report.hash) {
    const where = firstDivergence(report.trace.entries, replayed.trace.entries, ['run', 'replay']) ?? 'the entries agree; the hashes do not';
    throw new Error(`the run found (trace ${report.hash}) replayed as ${replayed.hash}: the scenario is not deterministic\n${where}`);
  }
  return { report: replayed, recording: rig.lastRecording };
}
