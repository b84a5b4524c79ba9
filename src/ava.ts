import { basename } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { failed, ScenarioRig, type RunReport } from './explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from './explore/scenario.ts';
import type { StrategyName } from './explore/schedulers/index.ts';
import { readTraceFile, writeRunTrace } from './report/trace-file.ts';
import { checkRecordedFailure, keptFixed, type RecordedFailureCheck } from './explore/recorded-failure.ts';
import { formatRecordedFailureCheck } from './report/recorded-failure-text.ts';
import { commandsOf, formatFailure } from './report/text.ts';
import { describeBounded, exploreBranchBounded, exploreScenarioBounded } from './explore/exhaustive-run.ts';
import type { BoundMeasure, ExhaustiveResult } from './explore/exhaustive.ts';
import { describeBranchPoint, type BranchPoint } from './explore/branch.ts';
import { breaksFirstAs, SHRINK_OFFERS, shrinkFailingReports } from './explore/shrink-run.ts';
import { errorLine } from './explore/error-line.ts';
import type { Fixes } from './intro/fixes.ts';
import { formatShrink, writeShrunk } from './cli/shrink-step.ts';

/**
 * An AVA macro that explores a scenario — how a race stays fixed in a test suite:
 *
 *   import test from 'ava';
 *   import { explore } from 'vcpusim/ava';
 *   test('double relocation stays fixed', explore, memtableStaleIcache, { seeds: 500, strategy: 'random', expect: 'no-failure' });
 *   test('without its fixes the race is found', explore, memtableStaleIcache, { seeds: 20, strategy: 'pct', depth: 2, fixesOff: 'bug', expect: 'finds-bug' });
 *
 * A failure message carries the seed, the broken invariant, the commands that rerun and replay
 * the run, and where its trace was written.
 */

/** The strategy of one seed. */
export interface SeedPlan {
  readonly strategy: StrategyName;
  readonly depth: number;
}

export interface ExploreOptions {
  /** How many seeds (1..n), or an explicit list. */
  readonly seeds: number | readonly number[];
  /** The strategy of every seed, or a plan that picks one per seed (a sweep that mixes them). */
  readonly strategy: StrategyName | ((seed: number) => SeedPlan);
  /** PCT's depth with a fixed strategy (default 2). */
  readonly depth?: number;
  /** Fixes switched off: their names, or 'bug' for those of the scenario's first bug (its own race). Default: none. */
  readonly fixesOff?: readonly string[] | 'bug';
  /**
   * 'no-failure': no seed breaks an invariant. 'finds-bug': a seed breaks the invariant of the bug
   * whose fixes are off (its `caughtBy`), and the search stops there.
   */
  readonly expect: 'no-failure' | 'finds-bug';
  /** Hosts: all in this thread (default) or one worker per vCPU. */
  readonly mode?: 'inline' | 'workers';
  /** With 'no-failure': a window goal at least this many runs must reach — evidence the race window was explored. */
  readonly window?: { readonly name: string; readonly atLeast: number };
  /** Where a failing run's trace is written (default `traces`). */
  readonly traceDir?: string;
  /**
   * A run that fails 'no-failure' is shrunk with at most this many runs and its story ends the
   * failure message — the few preemptions that matter and the events around them (default 200; 0: do not).
   * The shrinker starts from the simplest of it and up to four more seeds of the next twenty that
   * break the same invariant (the message says which it shrank); each run shrunk may take this many
   * greedy runs and as many again for the search below its result.
   */
  readonly shrinkRuns?: number;
}

/** What an exploration found, for a test that goes on to look at it (`t.context` is not used). */
export interface Exploration {
  readonly runs: number;
  /** The first failing run ('finds-bug'), or null. */
  readonly found: RunReport | null;
  /** How many runs reached each window goal. */
  readonly windows: Readonly<Record<string, number>>;
}

const seedList = (seeds: ExploreOptions['seeds']): readonly number[] => (typeof seeds === 'number' ? Array.from({ length: seeds }, (_, k) => k + 1) : seeds);

function fixesOffOf(definition: ScenarioDefinition<ScenarioGuest>, option: ExploreOptions['fixesOff']): readonly string[] {
  if (option === 'bug') return definition.bugs[0].fixesOff;
  return option ?? [];
}

/** The bug whose fixes are exactly those off (else the scenario's first): whose invariant 'finds-bug' expects. */
function bugOf(definition: ScenarioDefinition<ScenarioGuest>, off: readonly string[]): ScenarioDefinition<ScenarioGuest>['bugs'][number] {
  return definition.bugs.find((b) => b.fixesOff.length === off.length && b.fixesOff.every((f) => off.includes(f))) ?? definition.bugs[0];
}

/** The report of a failing run (a seed's, or a search's schedule) as a test failure message: what broke, and how to see it again. */
export function failureMessage(report: RunReport, traceDir: string): string {
  let tracePath: string | null = null;
  let traceProblem = '';
  if (report.mode !== 'free') {
    try {
      tracePath = writeRunTrace(traceDir, report);
    } catch (error) {
      traceProblem = `\n  (the trace could not be written to ${traceDir}: ${error instanceof Error ? error.message : String(error)})`;
    }
  }
  // A seed reruns from its strategy; a schedule of a search (exhaustive, shrunk) only from its trace.
  return formatFailure(report, commandsOf(report, tracePath), tracePath) + traceProblem;
}

/** An exploration and its verdict: null when it met `expect`, else why not (the test's failure message). */
export interface ExplorationVerdict extends Exploration {
  readonly failure: string | null;
  /** What to log when it passed. */
  readonly summary: string;
}

/** Runs the exploration the options describe and judges it, without asserting anything. */
export async function runExploration(definition: ScenarioDefinition<ScenarioGuest>, options: ExploreOptions): Promise<ExplorationVerdict> {
  const rig = ScenarioRig.open(definition, options.mode ?? 'inline');
  try {
    const off = fixesOffOf(definition, options.fixesOff);
    const fixes = rig.fixes.without(off);
    const plan = typeof options.strategy === 'function' ? options.strategy : (): SeedPlan => ({ strategy: options.strategy as StrategyName, depth: options.depth ?? 2 });
    const bug = bugOf(definition, off);
    const windows: Record<string, number> = Object.fromEntries(definition.windows.map((w) => [w.name, 0]));
    const seeds = seedList(options.seeds);
    const traceDir = options.traceDir ?? 'traces';
    let runs = 0;
    const verdict = (found: RunReport | null, failure: string | null, summary = ''): ExplorationVerdict => ({ runs, found, windows, failure, summary });
    for (const seed of seeds) {
      const report = rig.run({ seed, ...plan(seed), fixes });
      runs++;
      for (const name of report.windows) windows[name] = (windows[name] ?? 0) + 1;
      if (!failed(report)) continue;
      if (options.expect === 'no-failure') {
        const offers = [report, ...moreFailures(rig, seeds.slice(runs), plan, fixes, report, options.shrinkRuns)];
        const story = shrunkStory(rig, offers, fixes, traceDir, options.shrinkRuns);
        return verdict(report, `${definition.name}: seed ${seed} broke an invariant (${runs} of ${seeds.length} seeds run)\n${failureMessage(report, traceDir)}${story}`);
      }
      if (report.violations[0].oracle !== bug.caughtBy) {
        return verdict(report, `${definition.name}: seed ${seed} failed, but first on ${report.violations[0].oracle}, not ${bug.caughtBy} (the bug "${bug.name}")\n${failureMessage(report, traceDir)}`);
      }
      return verdict(report, null, `${definition.name}: "${bug.name}" found at seed ${seed} (${report.strategy}): ${report.violations[0].detail.split('\n')[0]}`);
    }
    if (options.expect === 'finds-bug') {
      return verdict(null, `${definition.name}: "${bug.name}" (${off.join(', ') || 'no fix'} off) not found in ${seeds.length} seed(s) ${describeSeeds(seeds)}`);
    }
    const summary = `${definition.name}: ${runs} runs, none failed; windows reached: ${Object.entries(windows).map(([name, n]) => `${name} ${n}`).join(', ') || 'none defined'}`;
    if (options.window !== undefined) {
      const reached = windows[options.window.name];
      if (reached === undefined) return verdict(null, `${definition.name} has no window goal "${options.window.name}" (${Object.keys(windows).join(', ')})`, summary);
      if (reached < options.window.atLeast) return verdict(null, `window "${options.window.name}" reached in ${reached} of ${runs} runs; at least ${options.window.atLeast} expected`, summary);
    }
    return verdict(null, null, summary);
  } finally {
    await rig.close();
  }
}

/**
 * Runs that break what `first` broke first, from the seeds after it — at most SHRINK_OFFERS − 1 of
 * them within MORE_SEEDS_TO_SHRINK seeds, none when no shrink is asked for: the greedy shrinker
 * ends where its start leads it, so it is offered the simplest of a few (as `run.ts --shrink`).
 */
function moreFailures(rig: ScenarioRig<ScenarioGuest>, rest: readonly number[], plan: (seed: number) => SeedPlan, fixes: Fixes<string>, first: RunReport, shrinkRuns = 200): RunReport[] {
  if (shrinkRuns <= 0) return [];
  const more: RunReport[] = [];
  for (const seed of rest.slice(0, MORE_SEEDS_TO_SHRINK)) {
    if (more.length >= SHRINK_OFFERS - 1) break;
    const report = rig.run({ seed, ...plan(seed), fixes });
    if (breaksFirstAs(report, first)) more.push(report);
  }
  return more;
}

/** Seeds after the first failing one that `moreFailures` runs at most. */
const MORE_SEEDS_TO_SHRINK = 20;

/**
 * The simplest of `failing` shrunk and told (its trace written next to the run's), or '' when not
 * asked for; a shrink that fails says why.
 */
function shrunkStory(rig: ScenarioRig<ScenarioGuest>, failing: readonly RunReport[], fixes: Fixes<string>, traceDir: string, runs = 200): string {
  if (runs <= 0) return '';
  try {
    const shrunk = shrinkFailingReports(rig, failing, fixes, { maxRuns: runs });
    return `\n${formatShrink(writeShrunk(shrunk, traceDir, '', failing[0].scenario))}`;
  } catch (error) {
    return `\n  (the failing run could not be shrunk: ${errorLine(error)})`;
  }
}

/** A verdict as the test's outcome: its summary logged (when it has one), its failure failing the test. */
function assertVerdict(t: ExecutionContext, verdict: { readonly summary: string; readonly failure: string | null }): void {
  if (verdict.summary !== '') t.log(verdict.summary);
  if (verdict.failure !== null) t.fail(verdict.failure);
  else t.pass();
}

/** Runs the exploration and asserts what the options expect (the macro's body). */
export async function exploreScenario(t: ExecutionContext, definition: ScenarioDefinition<ScenarioGuest>, options: ExploreOptions): Promise<Exploration> {
  const result = await runExploration(definition, options);
  assertVerdict(t, result);
  return { runs: result.runs, found: result.found, windows: result.windows };
}

const describeSeeds = (seeds: readonly number[]): string => (seeds.length > 0 ? `(${seeds[0]}…${seeds[seeds.length - 1]})` : '');

/** The macro: `test(title?, explore, scenario, options)`. */
export const explore = test.macro<[ScenarioDefinition<ScenarioGuest>, ExploreOptions]>({
  async exec(t, definition, options) {
    await exploreScenario(t, definition, options);
  },
  title(provided, definition, options) {
    if (provided !== undefined && provided !== '') return provided;
    const off = fixesOffOf(definition, options.fixesOff);
    const seeds = typeof options.seeds === 'number' ? `${options.seeds} seeds` : `${options.seeds.length} seeds`;
    const strategy = typeof options.strategy === 'function' ? 'mixed strategies' : `${options.strategy}${options.strategy === 'pct' ? ` d=${options.depth ?? 2}` : ''}`;
    return `${definition.name}: ${options.expect} with ${off.length > 0 ? `${off.join(', ')} off` : 'every fix on'}, ${seeds}, ${strategy}`;
  },
});

/**
 * The bounded guarantee in a test suite: every schedule with at most `bound` preemptions (or
 * deviations) is run — over whole runs, or after a branch point — and none may break an invariant:
 *
 *   test('the unpaused VAS hook stays fixed for every schedule with one preemption', exploreBounded, vasHookLate, { bound: 1, expect: 'no-failure' });
 *   test('one preemption finds it without its fix', exploreBounded, vasHookLate, { bound: 1, fixesOff: ['pauseAroundVasHook'], expect: 'finds-bug' });
 *
 * A search the budget cuts short guarantees nothing, so 'no-failure' fails then (raise `maxRuns`,
 * bound deviations instead, or search from the window with `branchAt`).
 */
export interface BoundedOptions {
  /** k: schedules with at most this many preemptions (or deviations, by `measure`). */
  readonly bound: number;
  /** What k counts (default preemptions). */
  readonly measure?: BoundMeasure;
  /** Fixes switched off: their names, or 'bug' for those of the scenario's first bug. Default: none. */
  readonly fixesOff?: readonly string[] | 'bug';
  /**
   * 'no-failure': every schedule up to the bound was run and none broke an invariant. 'finds-bug':
   * the first failing schedule (fewest preemptions first) breaks the invariant of the bug whose
   * fixes are off.
   */
  readonly expect: 'no-failure' | 'finds-bug';
  /** Runs at most (default 20,000). */
  readonly maxRuns?: number;
  /** Only the schedules after this point of the `prefix` run: the guarantee for the window that opens there. */
  readonly branchAt?: BranchPoint;
  /** The run up to `branchAt` (default random seed 1). */
  readonly prefix?: { readonly seed: number; readonly strategy: StrategyName; readonly depth?: number };
  /** Hosts of whole runs: this thread (default) or one worker per vCPU; from a branch point, this thread. */
  readonly mode?: 'inline' | 'workers';
  /** Where a failing schedule's trace is written (default `traces`). */
  readonly traceDir?: string;
  /** A schedule that fails 'no-failure' is shrunk with at most this many greedy runs, and as many for the search below, and told (default 200; 0: do not). */
  readonly shrinkRuns?: number;
}

/** A bounded search and its verdict: `failure` is null when it met `expect`, else the test's failure message. */
export interface BoundedVerdict {
  readonly result: ExhaustiveResult<RunReport>;
  readonly failure: string | null;
  /** The levels, one line each ("k = 1: 438 schedules, all explored, 0 failures"). */
  readonly summary: string;
}

/** Runs the bounded search the options describe and judges it, without asserting anything. */
export async function runBoundedExploration(definition: ScenarioDefinition<ScenarioGuest>, options: BoundedOptions): Promise<BoundedVerdict> {
  const off = fixesOffOf(definition, options.fixesOff);
  const rig = ScenarioRig.open(definition, options.branchAt === undefined ? (options.mode ?? 'inline') : 'inline');
  try {
    const fixes = rig.fixes.without(off);
    // Finding the bug needs its first failure only (fewest preemptions first); a guarantee needs every schedule.
    const search = {
      bound: options.bound, stopAtFailure: options.expect === 'finds-bug',
      ...(options.measure === undefined ? {} : { measure: options.measure }), ...(options.maxRuns === undefined ? {} : { maxRuns: options.maxRuns }),
    };
    let where = 'whole runs';
    let result: ExhaustiveResult<RunReport>;
    if (options.branchAt === undefined) {
      result = exploreScenarioBounded(rig, 1, fixes, search);
    } else {
      const prefix = options.prefix ?? { seed: 1, strategy: 'random' as const };
      const open = rig.openBranch({ prefix: { seed: prefix.seed, strategy: prefix.strategy, depth: prefix.depth ?? 2, fixes }, at: options.branchAt, suffixes: [] });
      try {
        result = exploreBranchBounded(open, search);
        where = `after choice ${open.at} (${describeBranchPoint(options.branchAt)}) of ${prefix.strategy} seed ${prefix.seed}`;
      } finally {
        open.close();
      }
    }
    const measure = result.measure === 'preemptions' ? 'preemption' : 'deviation';
    const summary = `${definition.name}, ${off.length > 0 ? `${off.join(', ')} off` : 'every fix on'}, at most ${result.bound} ${measure}(s), ${where}:\n${describeBounded(result).map((line) => `  ${line}`).join('\n')}`;
    const failing = result.firstFailure?.run ?? null;
    const traceDir = options.traceDir ?? 'traces';
    const which = `schedule ${result.firstFailureAfter} of the search (${result.firstFailure?.preemptions} preemption(s), ${result.firstFailure?.deviations} deviation(s))`;
    if (options.expect === 'no-failure') {
      if (failing !== null) {
        const story = shrunkStory(rig, [failing], fixes, traceDir, options.shrinkRuns);
        return { result, summary, failure: `${definition.name}: ${which} broke an invariant\n${summary}\n${failureMessage(failing, traceDir)}${story}` };
      }
      if (!result.complete) {
        return { result, summary, failure: `${definition.name}: not a guarantee — the budget of ${result.runs} runs ran out before every schedule was run (raise maxRuns, bound deviations, or search from the window with branchAt)\n${summary}` };
      }
      return { result, summary, failure: null };
    }
    const bug = bugOf(definition, off);
    if (failing === null) {
      const why = result.complete ? 'no schedule up to the bound breaks it' : 'the budget ran out first';
      return { result, summary, failure: `${definition.name}: "${bug.name}" (${off.join(', ') || 'no fix'} off) not found: ${why}\n${summary}` };
    }
    if (failing.violations[0].oracle !== bug.caughtBy) {
      return { result, summary, failure: `${definition.name}: ${which} failed, but first on ${failing.violations[0].oracle}, not ${bug.caughtBy} (the bug "${bug.name}")\n${failureMessage(failing, traceDir)}` };
    }
    return { result, summary: `${summary}\n"${bug.name}" found by ${which}: ${failing.violations[0].detail.split('\n')[0]}`, failure: null };
  } finally {
    await rig.close();
  }
}

/** The macro: `test(title?, exploreBounded, scenario, options)`. */
export const exploreBounded = test.macro<[ScenarioDefinition<ScenarioGuest>, BoundedOptions]>({
  async exec(t, definition, options) {
    assertVerdict(t, await runBoundedExploration(definition, options));
  },
  title(provided, definition, options) {
    if (provided !== undefined && provided !== '') return provided;
    const off = fixesOffOf(definition, options.fixesOff);
    const where = options.branchAt === undefined ? '' : ` after ${describeBranchPoint(options.branchAt)}`;
    const measure = (options.measure ?? 'preemptions').replace(/s$/, options.bound === 1 ? '' : 's');
    return `${definition.name}: ${options.expect} with ${off.length > 0 ? `${off.join(', ')} off` : 'every fix on'}, every schedule with at most ${options.bound} ${measure}${where}`;
  },
});

/**
 * A failure found once, kept fixed on its own interleaving: the trace a failing run wrote (best
 * shrunk) checked into the suite, one test per file —
 *
 *   for (const file of traceFilesIn('test/traces')) test(staysFixed, SCENARIOS, { trace: file });
 *
 * Without the fixes it was recorded with off, its schedule must still break the invariant it broke
 * (else the test would keep nothing fixed: it fails as "gone", to be recorded again); with every
 * fix on (or `withFix`), the same choices must break nothing. A recording that no longer replays
 * entry for entry because the scenario or the engine changed, but still breaks its invariant, has
 * drifted: logged, or a failure with `drift: 'refused'`.
 */
export interface StaysFixedOptions {
  /** The trace file of a failing run (run.ts, the campaign and failing tests write them). */
  readonly trace: string;
  /** Fixes switched on for the fixed run (default: every fix). */
  readonly withFix?: readonly string[];
  /** A recording that drifted but still fails: 'allowed' (default: logged) or 'refused' (the test fails). */
  readonly drift?: 'allowed' | 'refused';
  /** Hosts: this thread (default) or one worker per vCPU. */
  readonly mode?: 'inline' | 'workers';
  /** Where the fixed run's trace is written when it breaks (default `traces`). */
  readonly traceDir?: string;
}

/** The check and its verdict: `failure` is null when the recorded failure stays fixed. */
export interface StaysFixedVerdict {
  readonly check: RecordedFailureCheck;
  readonly failure: string | null;
  readonly summary: string;
}

/** The scenario a trace names, among those given (a trace that names none needs exactly one). */
function scenarioOfTrace(scenarios: ScenarioDefinition<ScenarioGuest> | readonly ScenarioDefinition<ScenarioGuest>[], name: string | undefined, file: string): ScenarioDefinition<ScenarioGuest> {
  const list: readonly ScenarioDefinition<ScenarioGuest>[] = Array.isArray(scenarios) ? scenarios : [scenarios as ScenarioDefinition<ScenarioGuest>];
  if (name === undefined) {
    if (list.length === 1) return list[0];
    throw new Error(`${file} does not name its scenario: give the one scenario it belongs to`);
  }
  const found = list.find((definition) => definition.name === name);
  if (found === undefined) throw new Error(`${file} is a trace of scenario "${name}", which is not among those given (${list.map((d) => d.name).join(', ')})`);
  return found;
}

/** Checks the recorded failure and judges it, without asserting anything. */
export async function runStaysFixed(scenarios: ScenarioDefinition<ScenarioGuest> | readonly ScenarioDefinition<ScenarioGuest>[], options: StaysFixedOptions): Promise<StaysFixedVerdict> {
  const recorded = readTraceFile(options.trace);
  const definition = scenarioOfTrace(scenarios, recorded.scenario, options.trace);
  const rig = ScenarioRig.open(definition, options.mode ?? 'inline');
  try {
    const check = checkRecordedFailure(rig, recorded, options.withFix);
    const summary = formatRecordedFailureCheck(check, options.trace);
    if (keptFixed(check, options.drift)) return { check, summary, failure: null };
    const failure = check.holds
      ? (check.reproduction === 'drifted' ? `${summary}\n(drift: 'refused': write it again as it runs now with \`npx vcpusim check-traces ${options.trace} --update\`)` : summary)
      : `${summary}\n${failureMessage(check.fixed, options.traceDir ?? 'traces')}`;
    return { check, summary, failure };
  } finally {
    await rig.close();
  }
}

/** The macro: `test(title?, staysFixed, scenario or scenarios, { trace })`. */
export const staysFixed = test.macro<[ScenarioDefinition<ScenarioGuest> | readonly ScenarioDefinition<ScenarioGuest>[], StaysFixedOptions]>({
  async exec(t, scenarios, options) {
    assertVerdict(t, await runStaysFixed(scenarios, options));
  },
  title(provided, _scenarios, options) {
    if (provided !== undefined && provided !== '') return provided;
    return `${basename(options.trace)} stays fixed with ${options.withFix === undefined ? 'every fix' : options.withFix.join(', ')} on`;
  },
});
