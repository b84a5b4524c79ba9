import { RUN_MODES, ScenarioRig, type RunMode, type RunReport, type RunRequest } from '../explore/scenario-rig.ts';
import { fixCatalogOf, RIG_ORACLES, type ScenarioDefinition, type ScenarioGuest } from '../explore/scenario.ts';
import { parseStrategyLabel, STRATEGIES, type StrategyName } from '../explore/schedulers/index.ts';
import { RunTally } from '../explore/tally.ts';
import type { TraceJson } from '../explore/trace-json.ts';
import { firstDivergence } from '../explore/trace.ts';
import { BUILTIN_FIXES } from '../intro/fixes.ts';
import { commandsOf, formatFailure, replayCommand, rerunCommand } from '../report/text.ts';
import { isScheduleLabel } from '../explore/schedulers/lenient.ts';
import { readTraceFile, writeRunTrace } from '../report/trace-file.ts';
import { writeReports, type ReportTargets } from '../report/run-reports.ts';
import type { RunRecording } from '../explore/recorder.ts';
import { ensureWritableDir, ensureWritableFileDir, integerOption, parseCommandLine, Progress, UsageError, watchStopRequests, yieldToEventLoop } from './common.ts';
import { allScenarios, findScenario, loadScenarioModules } from '../explore/registry.ts';
import { formatShrink, shrinkFailures, shrinkJson, type ShrinkOutcome } from './shrink-step.ts';
import { breaksFirstAs, SHRINK_OFFERS } from '../explore/shrink-run.ts';
import { explainFreeFailure, formatReplayable, replayableJson, type ReplayableOutcome } from './replayable-step.ts';
import { observeFreeRun, type FreeObservation } from '../explore/free-observation.ts';
import { formatFixDifferential, replayWithFix } from '../explore/fix-differential.ts';
import { coverCommand } from './cover-step.ts';
import { branchCommand } from './branch-step.ts';
import { parseBranchPoint, type BranchPoint, type BranchPrefix } from '../explore/branch.ts';
import { BOUND_MEASURES, type BoundMeasure } from '../explore/exhaustive.ts';
import { exhaustiveCommand } from './exhaustive-step.ts';
import type { Fixes } from '../intro/fixes.ts';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

/** Where a CLI finds its scenarios: the modules of the built-in ones (absolute paths). */
export interface CliContext {
  readonly builtIn: readonly string[];
}

/**
 * Runs one scenario: `npx tsx scenarios/run.ts <name> [options]`. Prints a verdict; for the first
 * failing run, the seed, the invariant that broke, every vCPU's RIP disassembled, where the trace
 * was written and the commands that replay it. Memory stays flat however many runs: only counts
 * and the first failure are kept, and its trace is written as soon as it happens. Exit status: 0
 * no failure, 1 a run failed (or a seed did not reproduce), 2 bad input, 128+n stopped by signal n.
 */

const USAGE = `usage: npx tsx scenarios/run.ts <scenario> [options]
  --seed N              first seed (default 1)
  --runs N              seeds N, N+1, … (default 1)
  --strategy S          ${STRATEGIES.join(' | ')} (default pct)
  --depth D             PCT depth d (default 2)
  --mode M              ${RUN_MODES.join(' | ')} (default inline)
  --fix name=off        turn one mitigation off (repeatable): HVMI's, or one the scenario declares
                        (--list shows each scenario's own); HVMI's:
${BUILTIN_FIXES.map((fix) => `                          ${fix.name}: ${fix.description}`).join('\n')}
  --bug                 turn off the fixes whose absence brings the scenario's own race back
  --replay FILE         follow a recorded trace (written by a failing run): its seed, schedule, mode and
                        fixes (--fix changes fixes on top of the recorded ones, --mode the host)
  --shrink              shrink the first failing run (or the replayed one): the fewest preemptions, then
                        the fewest decisive choices, that still break the same invariant; with --runs, the
                        simplest of the first ${SHRINK_OFFERS} runs that break it (the greedy shrinker ends where its
                        start leads it); writes the shrunk trace, prints how the race happens, and
                        --perfetto/--html show that run
  --shrink-runs N       the shrinker's budget in runs, per failing run shrunk (default 2000), and as many
                        again for the bounded search below its result (every schedule with fewer preemptions)
  --explain             with --mode free: turn the first free-running failure into a replayable one — a
                        deterministic search guided by the free run's observed order (then variations of
                        it, random and PCT seeds) for a run that breaks the same invariant first; writes
                        its trace (proven by a strict replay), shrinks it and prints how the race happens
  --explain-runs N      the search's budget in deterministic runs (default 200)
  --exhaustive K        instead of seeds: every schedule with at most K preemptions (or deviations, see
                        --bound-by), level by level (a bounded guarantee when it finishes); --seed
                        feeds only the engine's randomness;
                        with --branch-at, the schedules after the point of the --seed/--strategy run
                        (or the --replay trace), each run from a snapshot there
  --exhaustive-runs N   its budget in runs (default 20000)
  --threads N           with --exhaustive: run N schedules at once on a pool of threads (default 1; from a
                        branch point each thread runs the prefix once and its suffixes from its own
                        snapshot); the result — every count, the first failure — is the one-by-one search's
  --bound-by WHAT       what --exhaustive's K counts: preemptions (default; CHESS: switching away from a
                        vCPU or handler that could go on; the other choices are free and all explored)
                        or deviations (delay bounding: every choice other than the default costs one;
                        k = 1 is one schedule per alternative of the default run, so it ends on guests
                        whose free choices explode)
  --cover N             instead of seeds: a coverage-guided search of N runs over the scenario's ordering
                        pairs — fresh --strategy seeds, and runs that produced a new order changed toward
                        the orders never seen (then the rarest); prints the coverage per pair
  --branch-at POINT     run the --seed/--strategy schedule (or the --replay trace) once to POINT, snapshot
                        the whole simulation there and explore --branches suffixes from it (suffix seeds
                        1..N, --strategy) without running the prefix again (inline); POINT: choice:N (the
                        last top-level choice point at or before N choices) or pair:NAME[:a|b] (just
                        before that side of an ordering pair first begins: the race window opening)
  --branches N          suffixes to explore from the branch point (default 100)
  --horizon N           with --branch-at: cut every suffix N choices past the point — the window only,
                        judged by the continuous oracles (a failure still replays whole from its trace)
  --with-fix NAME       with --replay: follow the recorded schedule again with fix NAME on (repeatable)
                        and say where the runs part and whether the invariant now holds: proof the
                        fix removes the failure on this interleaving (exit 0 when nothing breaks)
  --check-determinism   run every seed a second time on a separately built guest; a different trace
                        hash fails, naming the first entry that differs
  --trace-dir DIR       where the first failing run's trace goes (default traces)
  --perfetto FILE       write the first failing run (or the last run, when none failed) as a Perfetto /
                        Chrome trace (JSON; open it in ui.perfetto.dev or chrome://tracing)
  --html FILE           write the same run as a self-contained HTML timeline (open it in a browser)
  --json                one machine-readable JSON object on stdout
  --hashes              with --json: every run's trace hash (memory grows with --runs)
  --load FILE           register the scenarios a module of your own exports (repeatable)
  --list                the scenarios, their bugs, oracles and window goals
  -h, --help            this text
--list names the scenarios`;

interface Options {
  readonly scenario: string;
  readonly seed: number;
  readonly runs: number;
  readonly strategy: StrategyName;
  readonly depth: number;
  readonly mode: RunMode;
  /** --mode was given (a replay otherwise uses the recorded mode). */
  readonly modeGiven: boolean;
  readonly fixSettings: readonly string[];
  readonly bug: boolean;
  readonly replay: string | null;
  readonly checkDeterminism: boolean;
  /** Bounded-exhaustive exploration up to this many preemptions or deviations (`boundBy`; null: seeds and a strategy). */
  readonly exhaustive: number | null;
  readonly exhaustiveRuns: number;
  /** Pool threads of a bounded search over whole runs (1: in this thread). */
  readonly threads: number;
  /** What the exhaustive bound counts. */
  readonly boundBy: BoundMeasure;
  /** A coverage-guided search of this many runs (null: seeds and a strategy). */
  readonly cover: number | null;
  /** Branch from a snapshot at this point (null: runs from the start). */
  readonly branchAt: BranchPoint | null;
  readonly branches: number;
  /** Suffixes cut this many choices past the branch point (null: whole). */
  readonly horizon: number | null;
  /** With a replay: fixes to switch on for the fix-differential replay. */
  readonly withFix: readonly string[];
  /** Shrink the first failure, with this many runs at most (null: do not shrink). */
  readonly shrinkRuns: number | null;
  /** Free-running: turn the first failure replayable — the search's and the shrinker's budgets (null: do not). */
  readonly explain: { readonly runs: number; readonly shrinkRuns: number } | null;
  readonly traceDir: string;
  readonly json: boolean;
  readonly hashes: boolean;
  /** Where the reports of the first failing run (or the last run) go; null: not asked for. */
  readonly reports: ReportTargets;
}

type Parsed = { readonly kind: 'help' } | { readonly kind: 'list'; readonly load: readonly string[] } | { readonly kind: 'run'; readonly options: Options; readonly load: readonly string[] };

/** `--list`: every scenario with its bugs, oracles and window goals, and the rig's own oracles. */
function listScenarios(): string {
  const scenarios = allScenarios().map((s) => [
    `${s.name} — ${s.title} (${s.vcpus} vCPUs)`,
    `  ${s.description}`,
    ...fixCatalogOf(s).own.map((fix) => `  fix ${fix.name}: ${fix.description}`),
    ...s.bugs.map((bug) => (bug.fixesOff.length === 0
      ? `  known limitation (every fix on): ${bug.name} (caught by ${bug.caughtBy})`
      : `  bug: ${bug.name}: --fix ${bug.fixesOff.map((f) => `${f}=off`).join(' --fix ')} (caught by ${bug.caughtBy})`)),
    ...s.oracles.map((o) => `  oracle ${o.name} [${o.phase}]: ${o.description}`),
    ...s.windows.map((w) => `  window ${w.name}: ${w.description}`),
    ...(s.orderings ?? []).map((pair) => `  ordering pair ${pair.name}: ${pair.description}`),
  ].join('\n'));
  const rig = ['checked on every run of every scenario:', ...Object.entries(RIG_ORACLES).map(([name, what]) => `  oracle ${name}: ${what}`)].join('\n');
  return [...scenarios, rig].join('\n\n');
}

function parse(argv: readonly string[]): Parsed {
  const { values, positionals } = parseCommandLine(argv, {
    seed: { type: 'string' }, runs: { type: 'string' }, strategy: { type: 'string' }, depth: { type: 'string' }, mode: { type: 'string' },
    fix: { type: 'string', multiple: true }, bug: { type: 'boolean' }, replay: { type: 'string' }, 'trace-dir': { type: 'string' },
    'check-determinism': { type: 'boolean' }, json: { type: 'boolean' }, hashes: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    list: { type: 'boolean' }, load: { type: 'string', multiple: true }, perfetto: { type: 'string' }, html: { type: 'string' },
    shrink: { type: 'boolean' }, 'shrink-runs': { type: 'string' }, 'with-fix': { type: 'string', multiple: true },
    exhaustive: { type: 'string' }, 'exhaustive-runs': { type: 'string' }, threads: { type: 'string' }, 'bound-by': { type: 'string' }, cover: { type: 'string' }, 'branch-at': { type: 'string' }, branches: { type: 'string' }, horizon: { type: 'string' }, explain: { type: 'boolean' }, 'explain-runs': { type: 'string' },
  });
  const load = (values.load as string[] | undefined) ?? [];
  const text = (name: string): string | undefined => values[name] as string | undefined;
  if (values.help === true) return { kind: 'help' };
  if (values.list === true) return { kind: 'list', load };
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name a scenario' : `one scenario at a time, got ${positionals.join(' ')}`);
  if (values.replay !== undefined) {
    // A replay follows the recorded seed and schedule: options that would choose them are refused.
    // With --branch-at, --strategy and --depth choose the suffixes, after the recorded prefix.
    const suffixes = values['branch-at'] !== undefined ? ['strategy', 'depth'] : [];
    const chosen = ['seed', 'runs', 'strategy', 'depth', 'bug', 'check-determinism'].filter((name) => values[name] !== undefined && !suffixes.includes(name));
    if (chosen.length > 0) throw new UsageError(`--replay follows the recorded seed and schedule; drop ${chosen.map((name) => `--${name}`).join(', ')}`);
  }
  const strategy = text('strategy') ?? 'pct';
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`);
  const mode = text('mode') ?? 'inline';
  if (!(RUN_MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode must be one of ${RUN_MODES.join(', ')}, got "${mode}"`);
  if (mode === 'free' && values['check-determinism'] === true) throw new UsageError('--check-determinism needs a deterministic mode (inline or workers); free-running is the OS\'s schedule');
  if (values.hashes === true && values.json !== true) throw new UsageError('--hashes goes with --json');
  if (values['shrink-runs'] !== undefined && values.shrink !== true && values.explain !== true) throw new UsageError('--shrink-runs goes with --shrink or --explain');
  if (values['explain-runs'] !== undefined && values.explain !== true) throw new UsageError('--explain-runs goes with --explain');
  if (values.explain === true && mode !== 'free') throw new UsageError('--explain turns a free-running failure into a replayable one: use it with --mode free (a deterministic failure has its trace already)');
  if (values['with-fix'] !== undefined && values.replay === undefined) throw new UsageError('--with-fix replays a recorded failure with a fix on: give the trace with --replay FILE');
  if (values['exhaustive-runs'] !== undefined && values.exhaustive === undefined) throw new UsageError('--exhaustive-runs goes with --exhaustive K');
  if (values['bound-by'] !== undefined && values.exhaustive === undefined) throw new UsageError('--bound-by goes with --exhaustive K');
  if (values.threads !== undefined && values.exhaustive === undefined) throw new UsageError('--threads goes with --exhaustive K (a campaign spreads seeds over threads: scenarios/campaign.ts)');
  const boundBy = text('bound-by') ?? 'preemptions';
  if (!(BOUND_MEASURES as readonly string[]).includes(boundBy)) throw new UsageError(`--bound-by must be ${BOUND_MEASURES.join(' or ')}, got "${boundBy}"`);
  if (values.exhaustive !== undefined) {
    // From a branch point, --strategy, --depth and --replay choose the prefix.
    const clash = ['runs', ...(values['branch-at'] === undefined ? ['strategy', 'depth', 'replay'] : []), 'shrink', 'check-determinism', 'perfetto', 'html', 'with-fix'].filter((name) => values[name] !== undefined);
    if (clash.length > 0) throw new UsageError(`--exhaustive makes its own schedules: drop ${clash.map((name) => `--${name}`).join(', ')}`);
  }
  if (values.cover !== undefined) {
    const clash = ['runs', 'depth', 'replay', 'shrink', 'exhaustive', 'check-determinism', 'perfetto', 'html', 'with-fix', 'explain'].filter((name) => values[name] !== undefined);
    if (clash.length > 0) throw new UsageError(`--cover makes its own runs: drop ${clash.map((name) => `--${name}`).join(', ')}`);
  }
  for (const name of ['branches', 'horizon']) if (values[name] !== undefined && values['branch-at'] === undefined) throw new UsageError(`--${name} goes with --branch-at POINT`);
  if (values['branch-at'] !== undefined) {
    const clash = ['runs', 'shrink', 'cover', 'check-determinism', 'perfetto', 'html', 'with-fix', 'explain', ...(values.exhaustive !== undefined ? ['branches'] : [])].filter((name) => values[name] !== undefined);
    if (clash.length > 0) throw new UsageError(`--branch-at makes its own runs: drop ${clash.map((name) => `--${name}`).join(', ')}`);
    if (values.mode !== undefined && mode !== 'inline') throw new UsageError('--branch-at snapshots the run in this thread: use --mode inline (the default)');
  }
  const branchText = text('branch-at');
  const branchAt = branchText === undefined ? null : parseBranchPoint(branchText);
  if (branchText !== undefined && branchAt === null) throw new UsageError(`--branch-at must be choice:N or pair:NAME[:a|b], got "${branchText}"`);
  if (values['with-fix'] !== undefined && values.shrink === true) throw new UsageError('--with-fix and --shrink are two commands: shrink first, then replay the shrunk trace --with-fix');
  if (values.shrink === true && mode === 'free') throw new UsageError('--shrink needs a deterministic mode (inline or workers): a free-running run has no schedule to shrink');
  const runs = integerOption(text('runs'), '--runs', 1, 1, 1_000_000_000);
  return {
    kind: 'run',
    load,
    options: {
      scenario: positionals[0],
      seed: integerOption(text('seed'), '--seed', 1, 0, Number.MAX_SAFE_INTEGER - runs + 1),
      runs,
      strategy: strategy as StrategyName,
      depth: integerOption(text('depth'), '--depth', 2, 1, 1000),
      mode: mode as RunMode,
      modeGiven: values.mode !== undefined,
      fixSettings: (values.fix as string[] | undefined) ?? [],
      bug: values.bug === true,
      replay: text('replay') ?? null,
      checkDeterminism: values['check-determinism'] === true,
      withFix: (values['with-fix'] as string[] | undefined) ?? [],
      exhaustive: values.exhaustive === undefined ? null : integerOption(text('exhaustive'), '--exhaustive', 1, 0, 10),
      exhaustiveRuns: integerOption(text('exhaustive-runs'), '--exhaustive-runs', 20_000, 1, 100_000_000),
      threads: integerOption(text('threads'), '--threads', 1, 1, 256),
      boundBy: boundBy as BoundMeasure,
      cover: values.cover === undefined ? null : integerOption(text('cover'), '--cover', 200, 1, 100_000_000),
      branchAt,
      branches: integerOption(text('branches'), '--branches', 100, 1, 100_000_000),
      horizon: values.horizon === undefined ? null : integerOption(text('horizon'), '--horizon', 100, 1, 100_000_000),
      shrinkRuns: values.shrink === true ? integerOption(text('shrink-runs'), '--shrink-runs', 2000, 1, 1_000_000) : null,
      explain: values.explain === true
        ? { runs: integerOption(text('explain-runs'), '--explain-runs', 200, 1, 1_000_000), shrinkRuns: integerOption(text('shrink-runs'), '--shrink-runs', 2000, 1, 1_000_000) }
        : null,
      traceDir: text('trace-dir') ?? 'traces',
      json: values.json === true,
      hashes: values.hashes === true,
      reports: { perfetto: reportPath(text('perfetto'), '--perfetto'), html: reportPath(text('html'), '--html') },
    },
  };
}

/** A report file named on the command line: not a directory (its folder is checked before the first run). */
function reportPath(path: string | undefined, flag: string): string | null {
  if (path === undefined) return null;
  if (path === '' || (existsSync(path) && statSync(path).isDirectory())) throw new UsageError(`${flag} takes a file to write, got ${path === '' ? 'nothing' : `the directory ${path}`}`);
  return path;
}

/** A recorded trace to replay for `scenario`: read, checked, its fixes known to this build. */
function loadReplay(path: string, scenario: ScenarioDefinition<ScenarioGuest>): TraceJson {
  const recorded = readTraceFile(path);
  if (recorded.scenario !== undefined && recorded.scenario !== scenario.name) throw new Error(`${path} is a trace of "${recorded.scenario}", not "${scenario.name}"`);
  const catalog = fixCatalogOf(scenario);
  const unknown = (recorded.fixesOff ?? []).filter((name) => !catalog.has(name));
  if (unknown.length > 0) {
    throw new Error(`${path} switches off ${unknown.map((n) => `"${n}"`).join(', ')}, which ${scenario.name} does not have (its fixes: ${catalog.names.join(', ')})`);
  }
  return recorded;
}

/** Seeds whose second run (on a separately built guest) gave another trace. */
interface Nondeterminism {
  count: number;
  first: { readonly seed: string; readonly hashes: readonly [string, string]; readonly divergence: string } | null;
}

/** `scenarios/run.ts`: returns the exit status. */
export async function runCommand(argv: readonly string[], context: CliContext): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n(npx tsx scenarios/run.ts --help lists the options)\n`);
    return 2;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  await loadScenarioModules([...context.builtIn, ...parsed.load]);
  if (parsed.kind === 'list') {
    process.stdout.write(`${listScenarios()}\n`);
    return 0;
  }
  const options = parsed.options;
  const definition = findScenario(options.scenario);
  let mode = options.mode;
  const recorded = options.replay === null ? null : loadReplay(options.replay, definition);
  const catalog = fixCatalogOf(definition);
  let base = options.bug ? catalog.without(definition.bugs[0].fixesOff) : catalog.defaults();
  if (recorded !== null) {
    // The recorded fixes, with any --fix applied on top.
    base = catalog.without(recorded.fixesOff ?? []);
    if (!options.modeGiven) mode = recorded.mode;
    if (mode === 'free') throw new Error('a recorded trace replays in a deterministic mode: use --mode inline or --mode workers');
  }
  const fixes = catalog.apply(base, options.fixSettings);
  if (recorded !== null && options.withFix.length > 0) return fixDifferential(definition, mode, recorded, fixes, options);
  if (options.cover !== null) {
    if (mode === 'free') throw new UsageError('--cover runs deterministic schedules: use --mode inline or workers');
    if ((definition.orderings ?? []).length === 0) throw new UsageError(`scenario "${definition.name}" declares no ordering pairs: --cover has nothing to cover (see "Ordering coverage" in the README)`);
    return coverCommand(definition, mode, fixes, {
      runs: options.cover, seed: options.seed, base: options.strategy, traceDir: options.traceDir, json: options.json, progress: new Progress(!options.json),
    });
  }
  const prefix: BranchPrefix = recorded !== null ? { trace: recorded, fixes } : { seed: options.seed, strategy: options.strategy, depth: options.depth, fixes };
  if (options.branchAt !== null && options.exhaustive !== null) {
    ensureWritableDir(options.traceDir);
    return exhaustiveCommand(definition, 'inline', fixes, {
      bound: options.exhaustive, measure: options.boundBy, maxRuns: options.exhaustiveRuns, seed: options.seed, traceDir: options.traceDir, json: options.json, progress: new Progress(!options.json),
      branch: { prefix, at: options.branchAt, horizon: options.horizon },
      pool: options.threads > 1 ? { threads: options.threads, modules: [...context.builtIn, ...parsed.load].map((path) => resolve(path)) } : null,
    });
  }
  if (options.branchAt !== null) {
    ensureWritableDir(options.traceDir);
    return branchCommand(definition, {
      prefix,
      at: options.branchAt, branches: options.branches, horizon: options.horizon, strategy: options.strategy, depth: options.depth, seed: options.seed,
      traceDir: options.traceDir, json: options.json, progress: new Progress(!options.json),
    });
  }
  if (options.exhaustive !== null) {
    if (mode === 'free') throw new UsageError('--exhaustive runs deterministic schedules: use --mode inline or workers');
    ensureWritableDir(options.traceDir);
    return exhaustiveCommand(definition, mode, fixes, {
      bound: options.exhaustive, measure: options.boundBy, maxRuns: options.exhaustiveRuns, seed: options.seed, traceDir: options.traceDir, json: options.json, progress: new Progress(!options.json), branch: null,
      pool: options.threads > 1 ? { threads: options.threads, modules: [...context.builtIn, ...parsed.load].map((path) => resolve(path)) } : null,
    });
  }
  if (mode !== 'free' || options.explain !== null) ensureWritableDir(options.traceDir);
  for (const [path, flag] of [[options.reports.perfetto, '--perfetto'], [options.reports.html, '--html']] as const) {
    if (path !== null) ensureWritableFileDir(path, flag);
  }
  const record = options.reports.perfetto !== null || options.reports.html !== null;

  const tally = new RunTally(definition.windows.map((w) => w.name), options.hashes, definition.orderings ?? []);
  const nondeterminism: Nondeterminism = { count: 0, first: null };
  let tracePath: string | null = null;
  const keepFirstTrace = (report: RunReport): void => {
    if (report !== tally.firstFailure || report.mode === 'free') return;
    try {
      tracePath = writeRunTrace(options.traceDir, report);
    } catch (error) {
      // The results stand without the file; say so and go on.
      process.stderr.write(`warning: the trace of seed ${report.seed} could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  };
  // The reports show the first failing run, written when it happens; the last run's recording is
  // kept (and replaced) only until a run fails, for the case that none does.
  let reports: ReportTargets | null = null;
  let lastRun: { readonly report: RunReport; readonly recording: RunRecording } | null = null;
  const writeRunReports = (report: RunReport, recording: RunRecording): void => {
    try {
      reports = writeReports(options.reports, report, recording, tracePath);
    } catch (error) {
      reports = { perfetto: null, html: null };
      process.stderr.write(`warning: the reports of seed ${report.seed} could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  };
  const keepReports = (report: RunReport, recording: RunRecording | null): void => {
    if (!record || reports !== null || recording === null) return;
    if (report === tally.firstFailure) writeRunReports(report, recording);
    else lastRun = { report, recording };
  };
  const rig = ScenarioRig.open(definition, mode);
  let twin: ScenarioRig<ScenarioGuest> | null = null;
  const stop = watchStopRequests();
  const progress = new Progress(!options.json && (options.runs > 1 || options.shrinkRuns !== null || options.explain !== null));
  const started = performance.now();
  let shrink: ShrinkOutcome | null = null;
  // The first free-running failure as the hypervisor side saw it: read before the next run replaces it.
  let observed: FreeObservation | null = null;
  let replayable: ReplayableOutcome | null = null;
  /** The first failing runs that break what the first failure breaks first: where the shrinker may start. */
  const shrinkOffers: RunReport[] = [];
  const offerToShrink = (report: RunReport): void => {
    const first = tally.firstFailure;
    if (options.shrinkRuns !== null && shrinkOffers.length < SHRINK_OFFERS && first !== null && report.mode !== 'free' && breaksFirstAs(report, first)) shrinkOffers.push(report);
  };
  try {
    if (recorded !== null) {
      const report = rig.replay(recorded, fixes, { record });
      tally.add(report);
      keepFirstTrace(report);
      keepReports(report, rig.lastRecording);
    } else {
      for (let k = 0; k < options.runs && stop.requested === null; k++) {
        const request: RunRequest = { seed: options.seed + k, strategy: options.strategy, depth: options.depth, fixes };
        const report = rig.run(request, { record });
        tally.add(report);
        offerToShrink(report);
        if (options.explain !== null && report === tally.firstFailure) observed = observeFreeRun(report, rig.lastEvents);
        keepFirstTrace(report);
        keepReports(report, rig.lastRecording);
        if (options.checkDeterminism) {
          twin ??= ScenarioRig.open(definition, mode);
          const again = twin.run(request);
          if (again.hash !== report.hash) {
            nondeterminism.count++;
            nondeterminism.first ??= {
              seed: report.seed,
              hashes: [report.hash, again.hash],
              divergence: firstDivergence(report.trace.entries, again.trace.entries, ['run 1', 'run 2']) ?? 'the entries agree; the hashes do not',
            };
          }
        }
        const rate = (k + 1) / ((performance.now() - started) / 1000);
        progress.update(`  ${k + 1}/${options.runs} runs, ${tally.failures} failing, ${rate.toFixed(1)} runs/s`, k + 1 === options.runs);
        await yieldToEventLoop();
      }
    }
    const failing = tally.firstFailure;
    if (options.shrinkRuns !== null && failing !== null && stop.requested === null) {
      shrink = shrinkFailures(rig, shrinkOffers.length > 0 ? shrinkOffers : [failing], fixes, { maxRuns: options.shrinkRuns, traceDir: options.traceDir, reports: options.reports, progress });
      if (shrink.reports !== null && record) reports = shrink.reports;
    }
    if (options.explain !== null && observed !== null && stop.requested === null) {
      replayable = await explainFreeFailure(definition, observed, { explainRuns: options.explain.runs, shrinkRuns: options.explain.shrinkRuns, traceDir: options.traceDir, progress, shouldStop: () => stop.requested !== null });
    }
  } finally {
    stop.dispose();
    await Promise.all([rig.close(), twin?.close()]);
  }
  const seconds = (performance.now() - started) / 1000;
  const unwritten = lastRun as { readonly report: RunReport; readonly recording: RunRecording } | null;
  if (reports === null && unwritten !== null) writeRunReports(unwritten.report, unwritten.recording);
  return summarize(options, definition.name, mode, recorded, tally, nondeterminism, tracePath, seconds, stop.requested, reports, shrink, replayable);
}

/** `--replay F --with-fix NAME`: the recorded schedule again with the fixes on; 0 when nothing breaks then. */
async function fixDifferential(definition: ScenarioDefinition<ScenarioGuest>, mode: RunMode, recorded: TraceJson, fixes: Fixes<string>, options: Options): Promise<number> {
  const catalog = fixCatalogOf(definition);
  const values = fixes as Readonly<Record<string, boolean>>;
  for (const name of options.withFix) {
    if (!catalog.has(name)) throw new UsageError(`--with-fix ${name}: ${definition.name} has no such fix (its fixes: ${catalog.names.join(', ')})`);
    if (values[name] === true) throw new UsageError(`--with-fix ${name}: that fix is already on in this replay (the trace's fixes off: ${(recorded.fixesOff ?? []).join(', ') || 'none'})`);
  }
  const rig = ScenarioRig.open(definition, mode === 'free' ? 'inline' : mode);
  try {
    const diff = replayWithFix(rig, recorded, fixes, catalog.apply(fixes, options.withFix.map((name) => `${name}=on`)));
    if (options.json) {
      process.stdout.write(`${JSON.stringify({
        scenario: definition.name, withFix: options.withFix, oracle: diff.oracle, holds: diff.holds, oracleHolds: diff.oracleHolds, choices: diff.choices, skipped: diff.skipped,
        divergence: diff.divergence, recordedHash: diff.recorded.hash, fixedHash: diff.fixed.hash, fixedViolations: diff.fixed.violations.map((v) => v.oracle),
      })}\n`);
    } else {
      process.stdout.write(`${definition.name}: replay of ${options.replay} (seed ${recorded.seed})\n${formatFixDifferential(diff, options.withFix)}\n`);
    }
    return diff.holds ? 0 : 1;
  } finally {
    await rig.close();
  }
}

/** Where the reports went, as lines of the summary. */
function reportLines(reports: ReportTargets | null, failed: boolean): string {
  if (reports === null) return '';
  const which = failed ? 'the first failing run' : 'the last run';
  return [
    reports.perfetto !== null ? `  perfetto trace of ${which} written to ${reports.perfetto} (open it in ui.perfetto.dev or chrome://tracing)\n` : '',
    reports.html !== null ? `  html timeline of ${which} written to ${reports.html} (open it in a browser)\n` : '',
  ].join('');
}

function summarize(
  options: Options, scenario: string, mode: RunMode, recorded: TraceJson | null, tally: RunTally, nondeterminism: Nondeterminism,
  tracePath: string | null, seconds: number, stopped: { why: string; exitCode: number } | null, reports: ReportTargets | null, shrink: ShrinkOutcome | null,
  replayable: ReplayableOutcome | null,
): number {
  const first = tally.firstFailure;
  const status = stopped !== null ? stopped.exitCode : tally.failures > 0 || nondeterminism.count > 0 ? 1 : 0;
  if (options.json) {
    const out = {
      scenario,
      runs: tally.runs,
      failures: tally.failures,
      ...(first !== null ? { firstFailure: { seed: first.seed, invariant: first.violations[0].oracle, trace: tracePath } } : {}),
      failuresByOracle: tally.byOracle,
      windowsReached: tally.windows,
      orderings: tally.orderings.toJSON(),
      ...(options.checkDeterminism ? { nondeterministic: nondeterminism } : {}),
      ...(tally.hashes !== null ? { traceHashes: tally.hashes } : {}),
      ...(stopped !== null ? { stopped: stopped.why } : {}),
      ...(reports !== null ? { reports: { perfetto: reports.perfetto, html: reports.html } } : {}),
      ...(shrink !== null ? { shrunk: shrinkJson(shrink) } : {}),
      ...(replayable !== null ? { replayable: replayableJson(replayable) } : {}),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return status;
  }
  const how = mode === 'free' ? 'free-running' : `${tally.strategy ?? options.strategy}, ${mode}`;
  const what = recorded !== null ? `replay of ${options.replay}` : `${tally.runs} run(s), ${how}`;
  const fixesNote = tally.fixesOff.length > 0 ? `fixes off: ${tally.fixesOff.join(', ')}` : 'all fixes on';
  process.stdout.write(`${scenario}: ${what}, ${fixesNote} — ${seconds.toFixed(1)} s (${(tally.runs / seconds).toFixed(1)} runs/s)\n`);
  if (stopped !== null) process.stdout.write(`  stopped early (${stopped.why}) after ${tally.runs} of ${options.runs} runs; the figures below are for those\n`);
  if (recorded !== null) {
    process.stdout.write(`  replay followed all ${recorded.choices.length} recorded choices; trace hash ${tally.lastHash} (recorded ${recorded.hash})\n`);
  }
  process.stdout.write(`  windows reached: ${Object.entries(tally.windows).map(([name, n]) => `${name} ${n}/${tally.runs}`).join(', ')}\n`);
  if (tally.orderings.pairs.length > 0) {
    const { seen, of } = tally.orderings.covered;
    process.stdout.write(`  orderings covered ${seen}/${of} (runs that produced each):\n${tally.orderings.describe().map((line) => `    ${line}\n`).join('')}`);
  }
  if (nondeterminism.first !== null) {
    const n = nondeterminism.first;
    process.stdout.write(`NONDETERMINISTIC: ${nondeterminism.count} of ${tally.runs} seed(s) gave another trace when run again on a separately built guest; `
      + `the first, seed ${n.seed} (hash ${n.hashes[0]}, then ${n.hashes[1]}):\n  ${n.divergence.replaceAll('\n', '\n  ')}\n`
      + '  something outside the seed decides (Math.random, Date.now, host timing, state kept between runs)\n');
  } else if (options.checkDeterminism) {
    process.stdout.write(`  determinism: every seed gave the same trace hash twice\n`);
  }
  if (first === null) {
    if (nondeterminism.count === 0) process.stdout.write(`PASS: no invariant broke in ${tally.runs} run(s)\n`);
    process.stdout.write(reportLines(reports, false));
    return status;
  }
  // A replay reruns with the recorded strategy, not this invocation's defaults.
  const plan = parseStrategyLabel(first.strategy) ?? { strategy: options.strategy, depth: options.depth };
  const spec = { scenario, seed: first.seed, strategy: plan.strategy, depth: plan.depth, mode, fixesOff: first.fixesOff };
  const byOracle = Object.entries(tally.byOracle).map(([oracle, n]) => `${oracle} ${n}`).join(', ');
  process.stdout.write(`${tally.failures} of ${tally.runs} run(s) failed (${byOracle}); the first:\n`);
  const commands = isScheduleLabel(first.strategy) ? commandsOf(first, tracePath) : { rerun: rerunCommand(spec), replay: tracePath === null ? null : replayCommand(scenario, tracePath, first.fixesOff) };
  process.stdout.write(`${formatFailure(first, commands, tracePath)}\n`);
  if (shrink !== null) process.stdout.write(`SHRUNK\n${formatShrink(shrink)}\n`);
  if (replayable !== null) process.stdout.write(`${formatReplayable(replayable, scenario)}\n`);
  process.stdout.write(reportLines(reports, true).replaceAll('the first failing run', shrink !== null && shrink.reports !== null ? 'the shrunk run' : 'the first failing run'));
  return status;
}

