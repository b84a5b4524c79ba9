import { Piscina } from 'piscina';
import { failed, ScenarioRig, type RunMode, type RunReport } from './scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from './scenario.ts';
import { STRATEGIES, type StrategyName, type StrategyPlan } from './schedulers/index.ts';
import type { TraceJson } from './trace-json.ts';
import type { RunRecording } from './recorder.ts';
import { firstDivergence } from './trace.ts';
import { errorLine } from './error-line.ts';
import { recordShrunk, type ShrinkFound, type ShrunkFailure } from './shrink-run.ts';
import type { ShrinkTask } from './campaign-shrink.ts';
import type { FreeObservation } from './free-observation.ts';
import { makeReplayable, type ReplayableFailure } from './replayable-failure.ts';
import { OrderingCoverage, type Ordering } from './orderings.ts';

/**
 * A campaign: many seeds of many scenarios, one deterministic run per piscina task, rows of
 * (scenario, fixes) run one after another so each row's runs/s is its own. Results are added up
 * as they arrive (memory does not grow with the number of runs) with a bounded number of tasks in
 * flight, so a stop request ends the campaign after the runs already started. After each row, a
 * sample of its seeds — always including its first failure — is run again here, on a guest built
 * in this thread: the same seed must give the same trace hash, or the row is reported
 * nondeterministic with the first entry where the two runs part. A free-running campaign (mode
 * free) has no seeds to run again: each row's first failure comes back with what the hypervisor
 * side observed of it, and a guided deterministic search here turns it into a replayable run.
 */

/** One task: one run. */
export interface CampaignTask {
  readonly scenario: string;
  readonly seed: number;
  readonly strategy: StrategyName;
  readonly depth: number;
  readonly mode: RunMode;
  readonly fixesOff: readonly string[];
  /** Modules of scenarios that are not built in, loaded by the pool thread first (absolute paths). */
  readonly modules: readonly string[];
  /** Send the run's trace back (for a determinism check that failed). */
  readonly withTrace?: boolean;
  /** Send the trace hash back even if the run passes (a seed of the determinism sample). */
  readonly withHash?: boolean;
  /** Free-running: the invariant a failure's observation targets when the run broke it (the row's bug's). */
  readonly caughtBy?: string | null;
}

/** What a run sends back: small and structured-clone friendly. */
export interface CampaignResult {
  readonly seed: number;
  readonly strategy: string;
  readonly failed: boolean;
  /** Every broken oracle, first the one that broke first. */
  readonly oracles: readonly string[];
  /** First line of the first violation. */
  readonly detail: string | null;
  readonly windows: readonly string[];
  /** The orders of the scenario's ordering pairs the run produced. */
  readonly orderings?: readonly { readonly pair: string; readonly ordering: Ordering }[];
  /** The trace hash: of every failing run, and of a passing one whose task asked (taking it writes out the whole trace). */
  readonly hash?: string;
  readonly steps: number;
  readonly durationMs: number;
  /** The task itself failed (the scenario could not be built, the rig threw): no run result. */
  readonly error?: string;
  readonly trace?: TraceJson;
  /** A free-running failure as the hypervisor side saw it, for the search that makes it replayable. */
  readonly observation?: FreeObservation;
}

/** The strategies a campaign mixes unless told otherwise (seed k runs plan k mod plans). */
export const DEFAULT_STRATEGY_PLANS = 'random,pct:2,pct:3,pos,surw';

/** "random,pct:2" → plans; one clear error for a bad item. */
export function parseStrategyPlans(text: string): StrategyPlan[] {
  return text.split(',').map((item) => {
    const [name, depth] = item.trim().split(':');
    if (!(STRATEGIES as readonly string[]).includes(name)) throw new Error(`unknown strategy "${item}" (use ${STRATEGIES.join(', ')}, or pct:D)`);
    const d = depth === undefined ? 2 : Number(depth);
    if (!Number.isInteger(d) || d < 1) throw new Error(`bad PCT depth in "${item}": D must be an integer ≥ 1`);
    return { strategy: name as StrategyName, depth: d };
  });
}

export interface CampaignRow {
  readonly scenario: string;
  /** The bug this row brings back, or null for the all-fixes-on row. */
  readonly bug: string | null;
  /** The oracle that must break for the bug to count as found (null for the all-fixes-on row). */
  readonly caughtBy: string | null;
  readonly fixesOff: readonly string[];
  readonly windowGoals: readonly string[];
  /** The scenario's ordering pairs and the orders each can have (none: no coverage to report). */
  readonly orderingPairs?: Readonly<Record<string, readonly Ordering[]>>;
}

/** A failing (or finding) run of a row, enough to report it and run it again. */
export interface RowRun {
  readonly seed: number;
  readonly plan: StrategyPlan;
  readonly strategy: string;
  readonly oracle: string;
  readonly detail: string | null;
  readonly hash: string;
}

/** A seed that gave another trace when run again here. */
export interface Nondeterminism {
  readonly seed: number;
  readonly poolHash: string;
  readonly hereHash: string;
  /** Where the two traces part (or why it could not be told). */
  readonly divergence: string;
}

export interface RowSummary extends CampaignRow {
  readonly runs: number;
  /** Runs that broke any invariant. */
  readonly failures: number;
  /** Runs that broke `caughtBy` (the bug found); 0 for the all-fixes-on row. */
  readonly found: number;
  readonly firstFailure: RowRun | null;
  /** The first run that broke `caughtBy`. */
  readonly firstFound: RowRun | null;
  /** Tasks that failed to produce a run, and the first such error with its seed. */
  readonly errors: number;
  readonly firstError: { readonly seed: number; readonly message: string } | null;
  /** Runs that reached each window goal. */
  readonly windows: Readonly<Record<string, number>>;
  /** Runs that produced each order of each ordering pair (absent: the scenario declares none). */
  readonly orderings?: Readonly<Record<string, Readonly<Record<Ordering, number>>>>;
  readonly byStrategy: Readonly<Record<string, { runs: number; failures: number; found: number; firstFailingSeed: number | null }>>;
  readonly runsPerSecond: number;
  /** False when the campaign was stopped during this row. */
  readonly complete: boolean;
  /** Seeds run again here, and those whose trace differed. */
  readonly determinism: { readonly checked: readonly number[]; readonly nondeterministic: readonly Nondeterminism[] };
  /** The row's first failure as run again here (its trace, for the report): not sent as JSON. */
  readonly report?: RunReport;
  /** That run's recording, for its Perfetto trace: not sent as JSON either. */
  readonly recording?: RunRecording;
  /** The simplest of the row's failures (its first, each strategy's first) shrunk, when the campaign shrinks: not sent as JSON as it is. */
  readonly shrunk?: ShrunkFailure;
  /** Why that run could not be shrunk, when it could not. */
  readonly shrinkError?: string;
  /** The row ran free-running: no seed reproduces a run, a bug not hit is no failure of the row. */
  readonly freeRunning?: boolean;
  /** Free-running: the row's first failure turned replayable (or why not): not sent as JSON as it is. */
  readonly replayable?: ReplayableFailure;
}

/**
 * A row passes when its bug was found (or, for the all-fixes-on row, nothing broke), no task failed,
 * every seed reproduced. Free-running, the OS picks the interleavings and may never pick a bug's;
 * what fails a row is a failure with every fix on that the search made replayable — one it could
 * not reproduce in any deterministic schedule is reported as free-running only (the free mode's
 * hypervisor is not the deterministic model: wall-clock timer, asynchronous replies).
 */
export function rowPassed(row: RowSummary): boolean {
  const freeOnly = row.freeRunning === true && row.replayable?.search?.found == null;
  const expected = row.bug === null ? row.failures === 0 || freeOnly : row.found > 0 || row.freeRunning === true;
  return expected && row.errors === 0 && row.determinism.nondeterministic.length === 0;
}

/** Why a row did not pass, in one line. */
export function rowProblem(row: RowSummary): string | null {
  if (rowPassed(row)) return null;
  const name = `${row.scenario} (${row.bug ?? 'all fixes on'})`;
  if (row.determinism.nondeterministic.length > 0) return `${name}: seed ${row.determinism.nondeterministic[0].seed} did not reproduce (nondeterministic)`;
  if (row.errors > 0) return `${name}: ${row.errors} task(s) failed; first, seed ${row.firstError?.seed}: ${row.firstError?.message}`;
  if (row.bug === null) return `${name}: ${row.failures} run(s) failed with every fix on; first, seed ${row.firstFailure?.seed}: ${row.firstFailure?.oracle}`;
  const other = row.failures > 0 ? ` (${row.failures} run(s) failed, but none broke ${row.caughtBy}; first: ${row.firstFailure?.oracle})` : '';
  return `${name}: ${row.caughtBy} never broke in ${row.runs} runs${other}`;
}

export interface CampaignOptions {
  readonly rows: readonly CampaignRow[];
  readonly runs: number;
  readonly firstSeed: number;
  readonly plans: readonly StrategyPlan[];
  readonly mode: RunMode;
  readonly threads: number;
  /** The piscina task module (file URL). */
  readonly taskModule: URL;
  /** Scenario modules the pool threads load (absolute paths). */
  readonly modules: readonly string[];
  /** The scenario definitions by name, for the runs made here. */
  readonly scenario: (name: string) => ScenarioDefinition<ScenarioGuest>;
  /** Seeds per row (its first ones) run again here besides its first failure; 0: only failures. */
  readonly determinismSample: number;
  readonly onProgress?: (done: number, total: number, failing: number) => void;
  /** Polled before each task: true ends the campaign after the runs in flight. */
  readonly shouldStop?: () => boolean;
  /** Runs the shrinker may make on each of a row's failures it shrinks (0 or absent: failures are not shrunk). */
  readonly shrinkRuns?: number;
  /** Run only this shard of every row: the seeds whose position in the row is ≡ index − 1 (mod count). */
  readonly shard?: CampaignShard;
  /** Free-running: deterministic runs the search may make to turn a row's first failure replayable (default 100). */
  readonly explainRuns?: number;
}

/** One of `count` slices of a campaign (index 1..count); merged, the slices make the whole run. */
export interface CampaignShard {
  readonly index: number;
  readonly count: number;
}

/** Positions (0-based) of a row's seeds that a shard runs. */
export function shardPositions(runs: number, shard: CampaignShard | undefined): number[] {
  const all = Array.from({ length: runs }, (_, k) => k);
  return shard === undefined ? all : all.filter((k) => k % shard.count === shard.index - 1);
}

/** Adds up one row's results as they arrive. */
class RowAccumulator {
  runs = 0;
  failures = 0;
  found = 0;
  errors = 0;
  firstFailure: RowRun | null = null;
  firstFound: RowRun | null = null;
  firstError: { seed: number; message: string } | null = null;
  readonly windows: Record<string, number> = {};
  readonly orderings: OrderingCoverage;
  private readonly byStrategy: Record<string, { runs: number; failures: number; found: number }> = {};
  /** Each strategy's lowest seed: results arrive in the pool's order, the report lists strategies in the plans' (seed k runs plan k mod plans). */
  private readonly lowestSeed: Record<string, number> = {};
  /** Each strategy's first failing run and first run that broke `caughtBy`: what the shrink may start from. */
  private readonly firstsBy: Record<string, { failure: RowRun | null; found: RowRun | null }> = {};
  /** Hashes of the sample seeds (the first ones of the row). */
  readonly sampleHashes = new Map<number, string>();
  /** Free-running: what was observed of the first failure and of the first run that broke `caughtBy`. */
  firstFailureSeen: FreeObservation | null = null;
  firstFoundSeen: FreeObservation | null = null;

  constructor(private readonly row: CampaignRow, private readonly sampleSeeds: ReadonlySet<number>) {
    for (const goal of row.windowGoals) this.windows[goal] = 0;
    this.orderings = new OrderingCoverage(row.orderingPairs ?? {});
  }

  /** Per strategy, in the order of the campaign's plans (not the order results came back in). */
  strategies(): RowSummary['byStrategy'] {
    return Object.fromEntries(this.strategyNames().map((name) => [name, { ...this.byStrategy[name]!, firstFailingSeed: this.firstsBy[name]?.failure?.seed ?? null }]));
  }

  /** Each strategy's first run of the kind shown (one that found the bug, else any failure), in the plans' order. */
  firstsOfEachStrategy(): RowRun[] {
    const found = this.firstFound !== null;
    return this.strategyNames().flatMap((name) => {
      const run = found ? this.firstsBy[name]?.found : this.firstsBy[name]?.failure;
      return run != null ? [run] : [];
    });
  }

  private strategyNames(): string[] {
    return Object.keys(this.byStrategy).sort((a, b) => this.lowestSeed[a]! - this.lowestSeed[b]!);
  }

  add(result: CampaignResult, plan: StrategyPlan): void {
    if (result.error !== undefined) {
      this.errors++;
      if (this.firstError === null || result.seed < this.firstError.seed) this.firstError = { seed: result.seed, message: result.error };
      return;
    }
    this.runs++;
    if (this.sampleSeeds.has(result.seed) && result.hash !== undefined) this.sampleHashes.set(result.seed, result.hash);
    for (const goal of result.windows) this.windows[goal] = (this.windows[goal] ?? 0) + 1;
    this.orderings.add(result.orderings ?? []);
    const entry = (this.byStrategy[result.strategy] ??= { runs: 0, failures: 0, found: 0 });
    this.lowestSeed[result.strategy] = Math.min(this.lowestSeed[result.strategy] ?? result.seed, result.seed);
    entry.runs++;
    if (!result.failed) return;
    const run: RowRun = { seed: result.seed, plan, strategy: result.strategy, oracle: result.oracles[0], detail: result.detail, hash: result.hash ?? '' };
    this.failures++;
    entry.failures++;
    const firsts = (this.firstsBy[result.strategy] ??= { failure: null, found: null });
    if (firsts.failure === null || result.seed < firsts.failure.seed) firsts.failure = run;
    if (this.firstFailure === null || result.seed < this.firstFailure.seed) {
      this.firstFailure = run;
      this.firstFailureSeen = result.observation ?? null;
    }
    if (this.row.caughtBy !== null && result.oracles.includes(this.row.caughtBy)) {
      this.found++;
      entry.found++;
      if (firsts.found === null || result.seed < firsts.found.seed) firsts.found = { ...run, oracle: this.row.caughtBy };
      if (this.firstFound === null || result.seed < this.firstFound.seed) {
        this.firstFound = { ...run, oracle: this.row.caughtBy };
        this.firstFoundSeen = result.observation ?? null;
      }
    }
  }
}

/** Runs kept here (main thread) for re-running seeds: one rig per scenario and mode. */
class LocalRigs {
  private readonly rigs = new Map<string, ScenarioRig<ScenarioGuest>>();

  constructor(private readonly scenario: (name: string) => ScenarioDefinition<ScenarioGuest>) {}

  get(name: string, mode: RunMode): ScenarioRig<ScenarioGuest> {
    const key = `${name}/${mode}`;
    let rig = this.rigs.get(key);
    if (rig === undefined) {
      rig = ScenarioRig.open(this.scenario(name), mode);
      this.rigs.set(key, rig);
    }
    return rig;
  }

  async close(): Promise<void> {
    await Promise.all([...this.rigs.values()].map((rig) => rig.close()));
    this.rigs.clear();
  }
}

/**
 * The rows to run: a scenario whose bug is a known limitation (HVMI's own behaviour, found with
 * every fix on) has that bug's row as its all-fixes-on row, expecting the bug's oracle to break —
 * so its plain all-fixes-on row, which would expect nothing to break, is left out.
 */
export function rowsToRun(rows: readonly CampaignRow[], scenario: (name: string) => ScenarioDefinition<ScenarioGuest>): CampaignRow[] {
  return rows.filter((row) => row.bug !== null || !scenario(row.scenario).bugs.some((bug) => bug.knownLimitation === true));
}

export async function runCampaign(options: CampaignOptions): Promise<RowSummary[]> {
  const { runs, firstSeed, plans, mode, threads, modules } = options;
  const rows = rowsToRun(options.rows, options.scenario);
  const pool = new Piscina<CampaignTask, CampaignResult>({ filename: options.taskModule.href, minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
  // The same threads run the rows' shrinks: piscina's `name` picks the task function, this view its types.
  const shrinkPool = pool as unknown as Piscina<ShrinkTask, ShrinkFound>;
  const local = new LocalRigs(options.scenario);
  const positions = shardPositions(runs, options.shard);
  const total = rows.length * positions.length;
  const inFlightMax = threads * 4;
  let done = 0;
  let failing = 0;
  const summaries: RowSummary[] = [];
  const shrinks: PendingShrink[] = [];
  const stopping = (): boolean => options.shouldStop?.() === true;
  try {
    // Warm-up, not counted: each thread loads the code and builds its rig before the clock starts.
    const warm = rows[0];
    if (warm !== undefined) {
      await Promise.all(Array.from({ length: threads }, () => pool.run({ scenario: warm.scenario, seed: 0, strategy: plans[0].strategy, depth: plans[0].depth, mode, fixesOff: warm.fixesOff, modules })));
    }
    for (const row of rows) {
      if (stopping()) break;
      const started = performance.now();
      const sampleSeeds = new Set(positions.slice(0, options.determinismSample).map((k) => firstSeed + k));
      const acc = new RowAccumulator(row, sampleSeeds);
      const task = (k: number): CampaignTask => {
        const plan = plans[k % plans.length];
        const seed = firstSeed + k;
        return { scenario: row.scenario, seed, strategy: plan.strategy, depth: plan.depth, mode, fixesOff: row.fixesOff, modules, caughtBy: row.caughtBy, withHash: sampleSeeds.has(seed) };
      };
      const inFlight = new Set<Promise<void>>();
      let submitted = 0;
      while (submitted < positions.length && !stopping()) {
        const k = positions[submitted++];
        const plan = plans[k % plans.length];
        const promise = pool.run(task(k)).then((result) => {
          acc.add(result, plan);
          done++;
          if (result.failed || result.error !== undefined) failing++;
          options.onProgress?.(done, total, failing);
        });
        inFlight.add(promise);
        void promise.finally(() => inFlight.delete(promise));
        if (inFlight.size >= inFlightMax) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      const seconds = (performance.now() - started) / 1000;
      const free = mode === 'free';
      const check = free ? { determinism: { checked: [], nondeterministic: [] } } : await checkRow(row, acc, mode, local, pool, (seed) => task(seed - firstSeed));
      // The shrink is searched on the pool while the next row runs; its result is recorded here at the end.
      if (check.report !== undefined && (options.shrinkRuns ?? 0) > 0 && !stopping()) {
        const shown = acc.firstFound ?? acc.firstFailure!;
        const runs = [shown, ...acc.firstsOfEachStrategy().filter((run) => run.seed !== shown.seed)]
          .map((run) => ({ seed: run.seed, strategy: run.plan.strategy, depth: run.plan.depth, label: `seed ${run.seed} (${run.strategy})` }));
        const target = acc.firstFound !== null && row.caughtBy !== null ? { target: row.caughtBy } : {};
        const task: ShrinkTask = { scenario: row.scenario, mode, fixesOff: row.fixesOff, modules, runs, maxRuns: options.shrinkRuns!, ...target };
        const shrink: PendingShrink = { promise: Promise.resolve(), settled: null };
        const at = summaries.length;
        shrink.promise = shrinkPool.run(task, { name: 'runShrinkTask' }).then(
          (found: ShrinkFound) => {
            shrink.settled = { at, found };
          },
          (error: unknown) => {
            shrink.settled = { at, shrinkError: `the shrink could not be made: ${errorLine(error)}` };
          },
        );
        shrinks.push(shrink);
      }
      // Free-running, the failure shown is made replayable on a deterministic rig here, then shrunk.
      const seen = acc.firstFoundSeen ?? acc.firstFailureSeen;
      const replayable = free && seen !== null && !stopping() ? { replayable: replayRowFailure(local, seen, row, options) } : {};
      summaries.push({
        ...row,
        runs: acc.runs,
        failures: acc.failures,
        found: acc.found,
        firstFailure: acc.firstFailure,
        firstFound: acc.firstFound,
        errors: acc.errors,
        firstError: acc.firstError,
        windows: acc.windows,
        orderings: acc.orderings.toJSON(),
        byStrategy: acc.strategies(),
        runsPerSecond: acc.runs / seconds,
        complete: submitted === positions.length,
        determinism: check.determinism,
        ...(check.report !== undefined ? { report: check.report } : {}),
        ...(check.recording !== undefined ? { recording: check.recording } : {}),
        ...(free ? { freeRunning: true } : {}),
        ...replayable,
      });
    }
    // A stopped campaign does not wait for the shrinks still running (the pool's end drops them),
    // but keeps those already answered.
    for (const shrink of shrinks) {
      if (!stopping()) await shrink.promise;
      if (shrink.settled === null) continue;
      const row = summaries[shrink.settled.at];
      summaries[shrink.settled.at] = { ...row, ...recordRowShrink(local.get(row.scenario, mode), row, shrink.settled) };
    }
  } finally {
    await Promise.all([pool.destroy(), local.close()]);
  }
  return summaries;
}

/**
 * Records the schedule the pool's shrink found for a row, on this thread's rig (its trace, story and
 * reports are made here). A shrink that could not be made (the scenario is not deterministic, the
 * rig threw) leaves the failure unshrunk: the row's result stands, and the summary says why.
 */
function recordRowShrink(rig: ScenarioRig<ScenarioGuest>, row: CampaignRow, shrink: RowShrink): { shrunk: ShrunkFailure } | { shrinkError: string } {
  if ('shrinkError' in shrink) return { shrinkError: shrink.shrinkError };
  try {
    return { shrunk: recordShrunk(rig, shrink.found, rig.fixes.without(row.fixesOff)) };
  } catch (error) {
    return { shrinkError: `seed ${String(shrink.found.seed)}'s shrunk schedule could not be recorded: ${errorLine(error)}` };
  }
}

/** A failing row's shrink, searched on the pool; `settled` once its answer is in. */
interface PendingShrink {
  promise: Promise<void>;
  settled: RowShrink | null;
}

/** A row's shrink as the pool answered: the schedule found, or why there is none. */
type RowShrink = { readonly at: number; readonly found: ShrinkFound } | { readonly at: number; readonly shrinkError: string };

/**
 * The row's first free-running failure made replayable on a deterministic rig here (inline), and
 * the run found shrunk. A scenario that cannot be built here is said, not thrown.
 */
function replayRowFailure(local: LocalRigs, seen: FreeObservation, row: CampaignRow, options: CampaignOptions): ReplayableFailure {
  let rig: ScenarioRig<ScenarioGuest>;
  try {
    rig = local.get(row.scenario, 'inline');
  } catch (error) {
    const { steps: _steps, ...observation } = seen;
    return { observation, search: null, shrunk: null, error: `the scenario could not be built here: ${error instanceof Error ? error.message : String(error)}` };
  }
  return makeReplayable(rig, seen, rig.fixes.without(row.fixesOff), {
    maxRuns: options.explainRuns ?? 100, shrinkRuns: options.shrinkRuns ?? 0, ...(options.shouldStop !== undefined ? { shouldStop: options.shouldStop } : {}),
  });
}

/**
 * Runs the row's sample seeds and its first failure again here. A different hash is a
 * nondeterministic row: the pool's trace is fetched and compared entry by entry.
 */
async function checkRow(
  row: CampaignRow, acc: RowAccumulator, mode: RunMode, local: LocalRigs, pool: Piscina<CampaignTask, CampaignResult>, taskOf: (seed: number) => CampaignTask,
): Promise<{ determinism: RowSummary['determinism']; report?: RunReport; recording?: RunRecording }> {
  const wanted = new Map<number, string>(acc.sampleHashes);
  const shown = acc.firstFound ?? acc.firstFailure;
  if (shown !== null) wanted.set(shown.seed, shown.hash);
  const nondeterministic: Nondeterminism[] = [];
  let report: RunReport | undefined;
  let recording: RunRecording | undefined;
  let rig: ScenarioRig<ScenarioGuest>;
  try {
    rig = local.get(row.scenario, mode);
  } catch (error) {
    // The scenario cannot be built here either: the tasks' errors usually say so already.
    if (acc.errors === 0) {
      acc.errors++;
      acc.firstError = { seed: -1, message: `building it in the main thread: ${error instanceof Error ? error.message : String(error)}` };
    }
    return { determinism: { checked: [], nondeterministic } };
  }
  for (const [seed, poolHash] of [...wanted].sort((a, b) => a[0] - b[0])) {
    const task = taskOf(seed);
    const shownSeed = seed === shown?.seed;
    // The failure shown is recorded too: its Perfetto trace goes next to its trace file.
    const here = rig.run({ seed, strategy: task.strategy, depth: task.depth, fixes: rig.fixes.without(row.fixesOff) }, { record: shownSeed });
    if (shownSeed && failed(here)) {
      report = here;
      recording = rig.lastRecording ?? undefined;
    }
    if (here.hash === poolHash) continue;
    const pooled = await pool.run({ ...task, withTrace: true });
    const divergence = pooled.trace === undefined
      ? `the pool's run failed this time: ${pooled.error ?? 'no trace'}`
      : firstDivergence(pooled.trace.entries, here.trace.entries, ['pool', 'here']) ?? 'the entries agree; the hashes do not';
    nondeterministic.push({ seed, poolHash, hereHash: here.hash, divergence });
  }
  return { determinism: { checked: [...wanted.keys()].sort((a, b) => a - b), nondeterministic }, ...(report !== undefined ? { report } : {}), ...(recording !== undefined ? { recording } : {}) };
}

