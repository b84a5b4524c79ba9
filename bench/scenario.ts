/**
 * npm run bench:scenario — for every built-in scenario, what it takes to find its races and what
 * a run costs:
 *  - seeds to the first failure, failure rate and ordering coverage for each strategy (rr, random,
 *    PCT d=1,2,3, POS, SURW), and the coverage-guided search over random and over PCT (runs to the
 *    first failure, coverage after as many runs);
 *    for each of the scenario's bugs (its fixes off);
 *  - runs/s with every fix on: inline, workers, free-running — next to the floor measured in
 *    the same run: the same guest and runner without the engine (no hooks, so no EPT exits);
 *  - free-running hit rate with the fixes off (and the false-alarm rate with them on);
 *  - per bug: schedules/s with and without branching — random runs from the start against random
 *    suffixes branched from a snapshot taken where the race window opens (the first ordering pair's
 *    side A; half-way through the prefix for a scenario without pairs), whole and cut 100 choices
 *    past the point (continuous oracles only), each with its failures; and runs from the start with
 *    the protocol machines on xstate's interpreter, the method the 10× goal was set against;
 *  - per bug and with every fix on: bounded-exhaustive k ≤ 1 of the schedules after the window
 *    opens, each a suffix from a snapshot there (complete or not within --exhaustive-runs);
 *  - per bug: bounded-exhaustive k ≤ 1 over whole runs (schedules to the first failure, and
 *    whether k ≤ 1 was explored whole), random's first failure shrunk (preemptions and decisive
 *    choices before → after) and the simplest of each strategy's first failure shrunk (the
 *    campaign's choice of start); with every fix on, whether k ≤ 1 finishes without a failure.
 *    Both exhaustive parts bound preemptions and deviations from the default (one line each);
 *  - with every fix on: the first --sharing-runs schedules of the k ≤ 1 searches over whole runs and
 *    from the window run from the start (or the point) and along shared prefixes (each from a
 *    snapshot on the prefix it shares with the one before): schedules/s both ways (each twice, in the order
 *    plain, shared, shared, plain), whether the counts agree; with --exhaustive-threads N > 1 the
 *    same on the pool too;
 * Options: --seeds N (per strategy, default 200), --runs N (per mode, default 100), --scenario NAME
 * (repeatable; default all), --only PART (repeatable; default all: strategies, guided, branching,
 * exhaustive, window-exhaustive, prefix-sharing, shrink, throughput, free), --sharing-runs N (default 1000), --exhaustive-runs N (budget per
 * exploration, default 20000 as in run.ts: every k ≤ 1 search ends within it but unload-dead-slot's —
 * whole runs > 140,000, its window with the fix on 25,957),
 * --bound-by preemptions|deviations (repeatable; default both), --exhaustive-threads N (both
 * exhaustive parts, and prefix-sharing also, on a pool of N threads, default 1; same counts, more schedules/s where cores are free),
 * --shrink-runs N (default 500).
 */
import { parseArgs } from 'node:util';
import { Session } from '../actors/session.ts';
import { SCENARIOS } from '../scenarios/index.ts';
import { runDeterministic } from '../src/explore/deterministic.ts';
import { Prng } from '../src/explore/prng.ts';
import { clockInterrupts, failed, ScenarioRig, type RunMode, type RunReport } from '../src/explore/scenario-rig.ts';
import { createScheduler, type StrategyName } from '../src/explore/schedulers/index.ts';
import { Trace } from '../src/explore/trace.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../src/explore/scenario.ts';
import type { Fixes } from '../src/intro/fixes.ts';
import { MachineSnapshot } from '../src/machine/snapshot.ts';
import { describeBounded, exploreBranchBounded, exploreScenarioBounded } from '../src/explore/exhaustive-run.ts';
import { exploreBranchBoundedOnPool, exploreScenarioBoundedOnPool } from '../src/explore/exhaustive-pool.ts';
import { fileURLToPath } from 'node:url';
import { BOUND_MEASURES, type BoundMeasure, type ExhaustiveResult } from '../src/explore/exhaustive.ts';
import { describePick, describeShrink, shrinkFailingRun, shrinkSimplest, type ShrinkCandidate } from '../src/explore/shrink-run.ts';
import { DEFAULT_STRATEGY_PLANS, parseStrategyPlans } from '../src/explore/campaign.ts';
import { searchCoverage } from '../src/explore/coverage-guided.ts';
import { OrderingCoverage, ORDERING_TEXT } from '../src/explore/orderings.ts';

const { values } = parseArgs({ options: {
  seeds: { type: 'string' }, runs: { type: 'string' }, scenario: { type: 'string', multiple: true }, only: { type: 'string', multiple: true }, 'exhaustive-runs': { type: 'string' }, 'shrink-runs': { type: 'string' },
  'bound-by': { type: 'string', multiple: true }, 'exhaustive-threads': { type: 'string' }, 'sharing-runs': { type: 'string' },
} });
const sharingRuns = Number(values['sharing-runs'] ?? 1000);
if (!Number.isInteger(sharingRuns) || sharingRuns < 1) throw new Error(`--sharing-runs must be an integer ≥ 1, got ${values['sharing-runs']}`);
const exhaustiveThreads = Number(values['exhaustive-threads'] ?? 1);
if (!Number.isInteger(exhaustiveThreads) || exhaustiveThreads < 1) throw new Error(`--exhaustive-threads must be an integer ≥ 1, got ${values['exhaustive-threads']}`);
/** Where the pool searches run their schedules (with --exhaustive-threads N > 1). */
const onPool = { threads: exhaustiveThreads, modules: [fileURLToPath(new URL('../scenarios/index.ts', import.meta.url))], taskModule: new URL('../workers/campaign-bootstrap.mjs', import.meta.url) };
const threadsText = (): string => (exhaustiveThreads === 1 ? '' : ` on ${exhaustiveThreads} pool threads`);
const exhaustiveRuns = Number(values['exhaustive-runs'] ?? 20_000);
const measures = (values['bound-by'] ?? BOUND_MEASURES) as readonly BoundMeasure[];
const strangeMeasures = measures.filter((measure) => !BOUND_MEASURES.includes(measure));
if (strangeMeasures.length > 0) throw new Error(`unknown --bound-by ${strangeMeasures.join(', ')}; measures: ${BOUND_MEASURES.join(', ')}`);
const shrinkRuns = Number(values['shrink-runs'] ?? 500);
const seeds = Number(values.seeds ?? 200);
const runs = Number(values.runs ?? 100);
const wanted = values.scenario ?? SCENARIOS.map((s) => s.name);
const PARTS = ['strategies', 'guided', 'branching', 'exhaustive', 'window-exhaustive', 'prefix-sharing', 'shrink', 'throughput', 'free'] as const;
const parts = new Set(values.only ?? PARTS);
const strange = [...parts].filter((part) => !(PARTS as readonly string[]).includes(part));
if (strange.length > 0) throw new Error(`unknown --only ${strange.join(', ')}; parts: ${PARTS.join(', ')}`);
const unknown = wanted.filter((name) => !SCENARIOS.some((s) => s.name === name));
if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')}; built in: ${SCENARIOS.map((s) => s.name).join(', ')}`);

async function findRace(definition: ScenarioDefinition<ScenarioGuest>, strategy: StrategyName, depth: number, fixesOff: readonly string[]): Promise<string> {
  const rig = ScenarioRig.open(definition, 'inline');
  const fixes = rig.fixes.without(fixesOff);
  try {
    let first = 0;
    let failures = 0;
    const coverage = OrderingCoverage.of(definition.orderings ?? []);
    for (let seed = 1; seed <= seeds; seed++) {
      const report = rig.run({ seed, strategy, depth, fixes });
      coverage.add(report.orderings);
      if (failed(report)) {
        failures++;
        if (first === 0) first = seed;
      }
    }
    const name = strategy === 'pct' ? `pct(d=${depth})` : strategy;
    return `  ${name.padEnd(9)} first failing seed ${first === 0 ? `none in ${seeds}` : String(first).padStart(3)}   failures ${String(failures).padStart(3)}/${seeds} (${((100 * failures) / seeds).toFixed(1)}%)${orderingsText(coverage)}`;
  } finally {
    await rig.close();
  }
}

/** "   orderings 7/8 (window 'patch-vs-running-peer A during B' in 12 runs)" — empty for a scenario without pairs. */
function orderingsText(coverage: OrderingCoverage): string {
  if (coverage.pairs.length === 0) return '';
  const { seen, of } = coverage.covered;
  const rare = coverage.rarest((t) => coverage.runsWith(t.pair)[t.ordering] > 0)[0];
  return `   orderings ${seen}/${of}${rare === undefined ? '' : ` (rarest seen: ${rare.pair} ${ORDERING_TEXT[rare.ordering]} in ${coverage.runsWith(rare.pair)[rare.ordering]})`}`;
}

/** The coverage-guided search over `base`, as many runs as the strategies get seeds. */
async function guided(definition: ScenarioDefinition<ScenarioGuest>, base: StrategyName, fixesOff: readonly string[]): Promise<string> {
  if ((definition.orderings ?? []).length === 0) return `  guided    (no ordering pairs declared)`;
  const rig = ScenarioRig.open(definition, 'inline');
  try {
    const result = searchCoverage(rig, rig.fixes.without(fixesOff), { runs: seeds, seed: 1, base });
    const first = result.firstFailureAfter;
    return `  guided(${base}) first failing run ${first === 0 ? `none in ${seeds}` : String(first).padStart(3)}   ${result.aimed} changed runs, ${result.hit} hit their order${orderingsText(result.coverage)}`;
  } finally {
    await rig.close();
  }
}

async function throughput(definition: ScenarioDefinition<ScenarioGuest>, mode: RunMode, fixesOff: readonly string[] = []): Promise<{ perSecond: number; failures: number; windows: number }> {
  const rig = ScenarioRig.open(definition, mode);
  const fixes: Fixes<string> = rig.fixes.without(fixesOff);
  const window = definition.windows[0]?.name;
  try {
    rig.run({ seed: 0, strategy: 'random', depth: 2, fixes }); // warm-up: workers started, code compiled
    const started = performance.now();
    let failures = 0;
    let windows = 0;
    for (let seed = 1; seed <= runs; seed++) {
      const report = rig.run({ seed, strategy: 'random', depth: 2, fixes });
      if (failed(report)) failures++;
      if (window !== undefined && report.windows.includes(window)) windows++;
    }
    return { perSecond: runs / ((performance.now() - started) / 1000), failures, windows };
  } finally {
    await rig.close();
  }
}

/** How far a window-bounded suffix goes past the branch point. */
const BRANCH_HORIZON = 100;

/** Rounds the branching part interleaves its four methods in (a noisy machine drifts between them otherwise). */
const BRANCH_ROUNDS = 5;

/**
 * Schedules/s from the start against schedules/s branched from a snapshot at the race window, all
 * random, `runs` each: from the start; from the start with the protocol machines on xstate's
 * interpreter (every run before table actors: the method the 10× goal was set against); whole
 * suffixes; suffixes cut BRANCH_HORIZON choices past the point. The four take turns, `runs` /
 * BRANCH_ROUNDS schedules each per round, each on its own rig warmed up by one run. The branched
 * figures count everything after the prefix's profile run: the prefix to the point and the
 * snapshot (once, shared by both), every restore and every suffix.
 */
async function branching(definition: ScenarioDefinition<ScenarioGuest>, fixesOff: readonly string[]): Promise<string> {
  const rigs = { start: ScenarioRig.open(definition, 'inline'), xstate: ScenarioRig.open(definition, 'inline', { interpreter: 'xstate' }), branch: ScenarioRig.open(definition, 'inline') };
  const fixes = rigs.start.fixes.without(fixesOff);
  try {
    const prefix = rigs.start.run({ seed: 1, strategy: 'random', depth: 2, fixes });
    rigs.xstate.run({ seed: 1, strategy: 'random', depth: 2, fixes });
    const pair = definition.orderings?.[0];
    const opened = performance.now();
    const open = rigs.branch.openBranch({
      prefix: { seed: 1, strategy: 'random', depth: 2, fixes },
      at: pair !== undefined ? { pair: pair.name, side: 'a' } : { choice: Math.floor(prefix.choices / 2) },
      suffixes: [{ seed: 1, strategy: 'random' }],
    });
    const openMs = performance.now() - opened;
    try {
      const pointMs = open.prefixMs + open.snapshotMs;
      const methods = {
        start: { ms: 0, failures: 0, run: (seed: number) => rigs.start.run({ seed, strategy: 'random', depth: 2, fixes }) },
        xstate: { ms: 0, failures: 0, run: (seed: number) => rigs.xstate.run({ seed, strategy: 'random', depth: 2, fixes }) },
        whole: { ms: pointMs, failures: 0, run: (seed: number) => open.run({ seed, strategy: 'random' }) },
        cut: { ms: pointMs, failures: 0, run: (seed: number) => open.run({ seed, strategy: 'random' }, BRANCH_HORIZON) },
      };
      const perRound = Math.ceil(runs / BRANCH_ROUNDS);
      for (let first = 1; first <= runs; first += perRound) {
        for (const method of Object.values(methods)) {
          const began = performance.now();
          for (let seed = first; seed < Math.min(runs + 1, first + perRound); seed++) if (failed(method.run(seed))) method.failures++;
          method.ms += performance.now() - began;
        }
      }
      const rate = (method: { ms: number }): number => runs / (method.ms / 1000);
      const [start, xstate] = [rate(methods.start), rate(methods.xstate)];
      const restores = Math.max(1, open.dirtyPages.length);
      const branched = (what: string, method: { ms: number; failures: number }): string =>
        `  schedules/s branched at choice ${open.at} of ${prefix.choices} (${open.asked}), ${what}: ${rate(method).toFixed(1)} (${method.failures}/${runs} failed) — ${(rate(method) / start).toFixed(1)}× (${(rate(method) / xstate).toFixed(1)}× the filed method)`;
      return [
        `  schedules/s from the start: ${start.toFixed(1)} (${methods.start.failures}/${runs} failed)`,
        `  schedules/s from the start on xstate's interpreter (the method when issue 13 was filed): ${xstate.toFixed(1)} (${methods.xstate.failures}/${runs} failed)`,
        branched('whole suffixes', methods.whole),
        branched(`suffixes cut ${BRANCH_HORIZON} choices past the point`, methods.cut),
        `  the point: prefix ${open.prefixMs.toFixed(1)} ms, snapshot of ${open.objects} objects ${open.snapshotMs.toFixed(1)} ms (${openMs.toFixed(0)} ms with the profile run); `
          + `a restore ${(open.restoreMs / restores).toFixed(2)} ms copying ${(open.dirtyPages.reduce((a, b) => a + b, 0) / restores).toFixed(1)} of ${open.ramPages} pages`,
      ].join('\n');
    } finally {
      open.close();
    }
  } catch (error) {
    return `  schedules/s with branching: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
  } finally {
    await Promise.all(Object.values(rigs).map((rig) => rig.close()));
  }
}

/** Bounded-exhaustive, k ≤ 1, of the schedules after the window opens (branched from random seed 1's run there). */
async function windowExhaustive(definition: ScenarioDefinition<ScenarioGuest>, fixesOff: readonly string[], measure: BoundMeasure): Promise<string> {
  const pair = definition.orderings?.[0];
  if (pair === undefined) return `  exhaustive k ≤ 1 ${measure} from the window: (no ordering pair declared)`;
  const rig = ScenarioRig.open(definition, 'inline');
  const started = performance.now();
  try {
    const spec = { prefix: { seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without(fixesOff) }, at: { pair: pair.name, side: 'a' }, horizon: null } as const;
    const open = rig.openBranch({ ...spec, suffixes: [] });
    try {
      const search = { bound: 1, measure, maxRuns: exhaustiveRuns };
      const result = exhaustiveThreads === 1 ? exploreBranchBounded(open, search) : await exploreBranchBoundedOnPool(rig, open, spec, { ...search, ...onPool });
      const seconds = (performance.now() - started) / 1000;
      const found = result.firstFailure === null ? 'no failing schedule' : `first failing schedule the ${result.firstFailureAfter}th`;
      return `  exhaustive k ≤ 1 ${measure} from the window (choice ${open.at}): ${describeBounded(result).join('; ')} — ${found}; ${result.runs} schedules in ${seconds.toFixed(1)} s${threadsText()} (${(result.runs / seconds).toFixed(1)}/s)`;
    } finally {
      open.close();
    }
  } catch (error) {
    return `  exhaustive k ≤ 1 ${measure} from the window: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
  } finally {
    await rig.close();
  }
}

/** Bounded-exhaustive, k ≤ 1: where the first failing schedule came, and whether the levels were explored whole. */
async function exhaustive(definition: ScenarioDefinition<ScenarioGuest>, fixesOff: readonly string[], measure: BoundMeasure): Promise<string> {
  const rig = ScenarioRig.open(definition, 'inline');
  const started = performance.now();
  try {
    const fixes = rig.fixes.without(fixesOff);
    const search = { bound: 1, measure, maxRuns: exhaustiveRuns };
    const result = exhaustiveThreads === 1
      ? exploreScenarioBounded(rig, 1, fixes, search)
      : await exploreScenarioBoundedOnPool(rig, 1, fixes, { ...search, ...onPool });
    const seconds = (performance.now() - started) / 1000;
    const levels = describeBounded(result).join('; ');
    const found = result.firstFailure === null ? 'no failing schedule' : `first failing schedule the ${result.firstFailureAfter}th, with ${result.firstFailure.preemptions} preemption(s), ${result.firstFailure.deviations} deviation(s)`;
    return `  exhaustive k ≤ 1 ${measure}: ${levels} — ${found}; ${result.runs} schedules in ${seconds.toFixed(1)} s${threadsText()} (${(result.runs / seconds).toFixed(1)}/s)`;
  } finally {
    await rig.close();
  }
}

interface TimedSearch {
  readonly result: ExhaustiveResult<RunReport>;
  readonly perSecond: number;
}

/** A search run each way twice, in the order plain, shared, shared, plain (neither gains from warming up first): each way's result and mean rate. */
async function bothWays(timed: (sharePrefixes: boolean) => Promise<TimedSearch>): Promise<[TimedSearch, TimedSearch]> {
  const [plain, shared, sharedAgain, plainAgain] = [await timed(false), await timed(true), await timed(true), await timed(false)];
  return [{ result: plain.result, perSecond: (plain.perSecond + plainAgain.perSecond) / 2 }, { result: shared.result, perSecond: (shared.perSecond + sharedAgain.perSecond) / 2 }];
}

/** One line: a search's first schedules without and with shared prefixes, schedules/s both ways, counts compared. */
function compareSharing(what: string, plainly: string, plain: TimedSearch, shared: TimedSearch): string {
  const same = JSON.stringify(plain.result.levels) === JSON.stringify(shared.result.levels) && plain.result.distinct === shared.result.distinct
    && plain.result.firstFailure?.hash === shared.result.firstFailure?.hash;
  return `  ${what}, the first ${plain.result.runs} schedules: ${plainly} ${plain.perSecond.toFixed(1)}/s, along shared prefixes `
    + `${shared.perSecond.toFixed(1)}/s (${(shared.perSecond / plain.perSecond).toFixed(2)}×), ${same ? 'the same counts and first failure' : 'THE COUNTS DIFFER'}`;
}

/** A search's schedules per second, from its start to its result (a pool's start included). */
async function timedSearch(search: () => ExhaustiveResult<RunReport> | Promise<ExhaustiveResult<RunReport>>): Promise<TimedSearch> {
  const started = performance.now();
  const result = await search();
  return { result, perSecond: result.runs / ((performance.now() - started) / 1000) };
}

/**
 * The k ≤ 1 searches' first schedules (whole runs, and from the window), without and with shared
 * prefixes: one by one, and with --exhaustive-threads N > 1 on the pool as well (each thread walks
 * its own share of the schedules along their prefixes).
 */
async function prefixSharing(definition: ScenarioDefinition<ScenarioGuest>, fixesOff: readonly string[]): Promise<string> {
  const rig = ScenarioRig.open(definition, 'inline');
  try {
    const fixes = rig.fixes.without(fixesOff);
    const search = { bound: 1, maxRuns: sharingRuns };
    const lines = [compareSharing('whole runs k ≤ 1', 'from the start', ...await bothWays((sharePrefixes) => timedSearch(() => exploreScenarioBounded(rig, 1, fixes, { ...search, sharePrefixes }))))];
    if (exhaustiveThreads > 1) {
      const onThreads = (sharePrefixes: boolean) => timedSearch(() => exploreScenarioBoundedOnPool(rig, 1, fixes, { ...search, sharePrefixes, ...onPool }));
      lines.push(compareSharing(`whole runs k ≤ 1${threadsText()}`, 'from the start', ...await bothWays(onThreads)));
    }
    const pair = definition.orderings?.[0];
    if (pair !== undefined) {
      const spec = { prefix: { seed: 1, strategy: 'random', depth: 2, fixes }, at: { pair: pair.name, side: 'a' }, horizon: null } as const;
      const open = rig.openBranch({ ...spec, suffixes: [] });
      try {
        const fromPoint = (sharePrefixes: boolean) => timedSearch(() => exploreBranchBounded(open, { ...search, sharePrefixes }));
        lines.push(compareSharing(`from the window (choice ${open.at}) k ≤ 1`, 'from the point', ...await bothWays(fromPoint)));
        if (exhaustiveThreads > 1) {
          const onThreads = (sharePrefixes: boolean) => timedSearch(() => exploreBranchBoundedOnPool(rig, open, spec, { ...search, sharePrefixes, ...onPool }));
          lines.push(compareSharing(`from the window (choice ${open.at}) k ≤ 1${threadsText()}`, 'from the point', ...await bothWays(onThreads)));
        }
      } finally {
        open.close();
      }
    }
    return lines.join('\n');
  } finally {
    await rig.close();
  }
}

/**
 * Random's first failure shrunk: preemptions and decisive choices before → after; then the
 * simplest of the campaign's strategies' first failures (each strategy over seeds 1..N here, where
 * the campaign gives seed k to plan k mod plans), offered to the shrinker as the campaign offers a row's.
 */
async function shrink(definition: ScenarioDefinition<ScenarioGuest>, fixesOff: readonly string[]): Promise<string> {
  const rig = ScenarioRig.open(definition, 'inline');
  const fixes = rig.fixes.without(fixesOff);
  try {
    const firsts: (ShrinkCandidate & { readonly strategy: string })[] = [];
    for (const plan of parseStrategyPlans(DEFAULT_STRATEGY_PLANS)) {
      for (let seed = 1; seed <= seeds; seed++) {
        const report = rig.run({ seed, strategy: plan.strategy, depth: plan.depth, fixes });
        if (failed(report)) {
          firsts.push({ seed, choices: report.trace.choices, label: `seed ${seed} (${report.strategy})`, strategy: plan.strategy });
          break;
        }
      }
    }
    if (firsts.length === 0) return `  shrink: no strategy found a failure in ${seeds} seeds`;
    const lines: string[] = [];
    const random = firsts.find((first) => first.strategy === 'random');
    let started = performance.now();
    if (random !== undefined) {
      const shrunk = shrinkFailingRun(rig, random, fixes, { maxRuns: shrinkRuns });
      lines.push(`  shrink (${random.label}): ${describeShrink(shrunk)}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } else lines.push(`  shrink: random found no failure in ${seeds} seeds`);
    started = performance.now();
    const simplest = shrinkSimplest(rig, firsts, fixes, { maxRuns: shrinkRuns });
    lines.push(`  shrink, simplest start: ${describePick(simplest) ?? `only ${firsts[0].label} failed`}`, `    ${describeShrink(simplest)}, ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return lines.join('\n');
  } finally {
    await rig.close();
  }
}

/** The same guest and runner with no engine: the floor a run cannot go below. */
async function bareFloor(definition: ScenarioDefinition<ScenarioGuest>): Promise<number> {
  const guest = definition.setup();
  const snapshot = new MachineSnapshot(guest.machine);
  const session = Session.open({
    machine: guest.machine,
    hosts: 'inline',
    handler: (context) => (guest.guestCall(context.vcpuId, context.self) === 'stop' ? { action: 'shutdown' } : { action: 'allowedVirtual' }),
  });
  try {
    const once = (seed: number): void => {
      snapshot.restore(guest.machine);
      guest.resetObservations();
      const trace = new Trace();
      session.restart({ events: (event, clock) => trace.recordEvent(event, clock) });
      const scheduler = createScheduler('random', new Prng(seed), { vcpus: definition.vcpus, slice: definition.bounds.slice });
      const result = runDeterministic({ session, scheduler, trace, stepsMax: definition.bounds.stepsMax, interrupts: clockInterrupts(definition) });
      if (result.outcome !== 'done') throw new Error(`bare run ${seed}: ${result.outcome}`);
    };
    once(0);
    const started = performance.now();
    for (let seed = 1; seed <= runs; seed++) once(seed);
    return runs / ((performance.now() - started) / 1000);
  } finally {
    await session.close();
  }
}

for (const definition of SCENARIOS.filter((s) => wanted.includes(s.name))) {
  const window = definition.windows[0]?.name ?? '(no window goal)';
  console.log(`\n== ${definition.name} ==`);
  for (const bug of definition.bugs) {
    console.log(`${bug.name} (off: ${bug.fixesOff.join(', ')}), seeds 1..${seeds}:`);
    if (parts.has('strategies')) for (const [strategy, depth] of [['rr', 0], ['random', 0], ['pct', 1], ['pct', 2], ['pct', 3], ['pos', 0], ['surw', 0]] as const) console.log(await findRace(definition, strategy, depth, bug.fixesOff));
    if (parts.has('guided')) for (const base of ['random', 'pct'] as const) console.log(await guided(definition, base, bug.fixesOff));
    if (parts.has('branching')) console.log(await branching(definition, bug.fixesOff));
    if (parts.has('exhaustive')) for (const measure of measures) console.log(await exhaustive(definition, bug.fixesOff, measure));
    if (parts.has('window-exhaustive')) for (const measure of measures) console.log(await windowExhaustive(definition, bug.fixesOff, measure));
    if (parts.has('shrink')) console.log(await shrink(definition, bug.fixesOff));
  }
  if (parts.has('exhaustive')) for (const measure of measures) console.log(`every fix on:\n${await exhaustive(definition, [], measure)}`);
  if (parts.has('window-exhaustive')) for (const measure of measures) console.log(`every fix on:\n${await windowExhaustive(definition, [], measure)}`);
  if (parts.has('prefix-sharing')) console.log(`every fix on:\n${await prefixSharing(definition, [])}`);

  if (parts.has('throughput')) {
    console.log(`\nruns/s, all fixes on, random strategy, ${runs} runs each (after one warm-up run):`);
    const floor = await bareFloor(definition);
    console.log(`  floor: same guest and runner, no engine (no EPT exits)   ${floor.toFixed(1)} runs/s`);
    for (const mode of ['inline', 'workers', 'free'] as const) {
      const { perSecond, failures, windows } = await throughput(definition, mode);
      console.log(`  ${mode.padEnd(8)} ${perSecond.toFixed(1).padStart(6)} runs/s  (${(floor / perSecond).toFixed(1)}× the floor's time per run)  failures ${failures}/${runs}, ${window} window in ${windows}`);
    }
  }

  if (parts.has('free')) {
    for (const bug of definition.bugs) {
      const free = await throughput(definition, 'free', bug.fixesOff);
      console.log(`free-running, ${bug.name} (off: ${bug.fixesOff.join(', ')}), ${runs} runs: found in ${free.failures}/${runs} (${((100 * free.failures) / runs).toFixed(0)} per 100); ${window} window in ${free.windows}`);
    }
  }
}
