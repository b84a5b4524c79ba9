import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { DEFAULT_STRATEGY_PLANS, parseStrategyPlans, rowPassed, rowProblem, runCampaign, type CampaignRow, type CampaignShard, type RowSummary } from '../explore/campaign.ts';
import { RUN_MODES, type RunMode } from '../explore/scenario-rig.ts';
import { STRATEGIES, type StrategyPlan } from '../explore/schedulers/index.ts';
import { campaignJunit } from '../report/junit.ts';
import { formatFailure, replayCommand, rerunCommand } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import { writeRunReports } from '../report/run-reports.ts';
import { formatShrink, shrinkJson, writeShrunk, type ShrinkOutcome } from './shrink-step.ts';
import { ensureWritableDir, integerOption, parseCommandLine, Progress, UsageError, watchStopRequests } from './common.ts';
import type { CliContext } from './run.ts';
import { printTable, rowName } from './campaign-table.ts';
import { writeCorpus } from './corpus-step.ts';
import { mergeCommand } from './campaign-merge.ts';
import { freeSummary, notReplayable, reportReplayable } from './campaign-free.ts';
import { replayableJson, type ReplayableOutcome } from './replayable-step.ts';
import { allScenarios, findScenario, loadScenarioModules } from '../explore/registry.ts';
import { possibleByPair } from '../explore/orderings.ts';

/**
 * The main job: every registered scenario, with all fixes on and with each of its bugs' fixes off, over
 * many seeds spread across a piscina pool (one deterministic run per task). Ends with a table —
 * scenario × fixes → runs, failures, runs that broke the bug's own oracle, first failing seed,
 * windows reached, runs/s — and, for each row that failed, its first failing seed as run again
 * here (the determinism check), with its trace written and the replay command. Exit status 0 when
 * every bug row's oracle broke, no all-fixes-on row failed, and every re-run seed reproduced.
 */

const USAGE = `usage: npx tsx scenarios/campaign.ts [options]
  --runs N                 runs per row (default 500)
  --seed N                 first seed (default 1)
  --strategies L           comma-separated, each ${STRATEGIES.join(' | ')} or pct:D (default ${DEFAULT_STRATEGY_PLANS})
  --mode M                 inline | workers | free (default inline: the vCPUs of a run share its pool
                           thread). free: a stress campaign — every run's vCPU workers really in parallel,
                           the OS interleaving them (strategies and determinism checks do not apply);
                           each row's first failure is then turned into a replayable deterministic run
                           by a search guided by what the free run showed, shrunk, its trace written
  --threads N              pool threads (default: available cores; free: 1, so a run's vCPUs have the cores)
  --explain-runs N         free: the search's budget per row in deterministic runs (default 100)
  --scenario NAME          only this scenario (repeatable)
  --load FILE              also the scenarios a module of your own exports (repeatable)
  --trace-dir DIR          where the first failing trace of each row goes (default traces)
  --shrink-runs N          shrink each failing row's simplest failure (of its first one and each
                           strategy's first) with at most N runs a shrink (default 200; 0: do not
                           shrink), and as many again for the bounded search below its result;
                           the shrunk trace and its story go with the failure's report
  --determinism-sample N   first seeds of each row run again here to check they reproduce (default 2;
                           a row's first failure is always run again)
  --json                   print the result as one JSON object
  --junit FILE             also write the result as JUnit XML (one test case per row), for CI
  --corpus DIR             write each bug row's shrunk failure (free: the one made replayable) into
                           DIR as a recorded failure to keep fixed (DIR/<scenario>--<fixes off>.json,
                           replacing the row's last one; \`npx vcpusim check-traces DIR\` and the AVA
                           macro staysFixed check them)
  --shard I/N              run only shard I of N of every row (seeds at positions ≡ I−1 mod N); with
                           --json, the file \`campaign merge\` combines
  -h, --help               this text
usage: npx tsx scenarios/campaign.ts merge SHARD.json… [--json] [--junit FILE]
  the shards' results as one campaign: the same table, counts, first failing seeds and exit status`;

function bar(done: number, total: number, failing: number, started: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const rate = done / ((performance.now() - started) / 1000);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} runs · ${failing} failing · ${rate.toFixed(1)} runs/s`;
}

/** Writes the trace of the row's first failure (as run again here) and prints its report. */
function reportFirstFailure(row: RowSummary, dir: string, mode: RunMode, quiet: boolean): string | null {
  const report = row.report;
  const first = row.firstFound ?? row.firstFailure;
  if (report === undefined || first === null) {
    if (first !== null && row.determinism.nondeterministic.length === 0) {
      process.stderr.write(`warning: ${rowName(row)}: seed ${first.seed} failed in the pool (${first.oracle}) but not when run again here — no trace written\n`);
    }
    return null;
  }
  let path: string | null = null;
  try {
    path = writeRunTrace(dir, report, '-campaign');
    if (row.recording !== undefined) writeRunReports(dir, report, row.recording, { suffix: '-campaign', tracePath: path });
  } catch (error) {
    process.stderr.write(`warning: ${rowName(row)}: the trace of seed ${report.seed} could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  if (!quiet) {
    const spec = { scenario: report.scenario, seed: report.seed, strategy: first.plan.strategy, depth: first.plan.depth, mode, fixesOff: report.fixesOff };
    const replay = path === null ? null : replayCommand(report.scenario, path, report.fixesOff);
    process.stdout.write(`${formatFailure(report, { rerun: rerunCommand(spec), replay }, path)}\n\n`);
  }
  return path;
}

/** Writes the row's shrunk failure (trace, Perfetto trace with its story) and prints how it happens. */
function reportShrunk(row: RowSummary, dir: string, quiet: boolean): ShrinkOutcome | null {
  if (row.shrinkError !== undefined) process.stderr.write(`warning: ${rowName(row)}: ${row.shrinkError}\n`);
  if (row.shrunk === undefined) return null;
  const outcome = writeShrunk(row.shrunk, dir, '-campaign', rowName(row));
  if (!quiet) process.stdout.write(`SHRUNK ${rowName(row)}\n${formatShrink(outcome)}\n\n`);
  return outcome;
}

/** `--shard I/N`: one of N slices, I from 1. */
function parseShard(value: string | undefined): CampaignShard | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (match === null || count < 1 || index < 1 || index > count) throw new UsageError(`--shard ${JSON.stringify(value)}: expected I/N with 1 ≤ I ≤ N, e.g. --shard 2/4`);
  return { index, count };
}

const formatPlan = (plan: StrategyPlan): string => (plan.strategy === 'pct' ? `pct:${plan.depth}` : plan.strategy);

/** `scenarios/campaign.ts`: returns the exit status. */
export async function campaignCommand(argv: readonly string[], context: CliContext): Promise<number> {
  if (argv[0] === 'merge') return mergeCommand(argv.slice(1));
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseCommandLine(argv, {
      runs: { type: 'string' }, seed: { type: 'string' }, strategies: { type: 'string' }, mode: { type: 'string' }, threads: { type: 'string' },
      scenario: { type: 'string', multiple: true }, 'trace-dir': { type: 'string' }, 'determinism-sample': { type: 'string' }, 'shrink-runs': { type: 'string' }, json: { type: 'boolean' }, junit: { type: 'string' }, corpus: { type: 'string' }, shard: { type: 'string' },
      help: { type: 'boolean', short: 'h' }, load: { type: 'string', multiple: true }, 'explain-runs': { type: 'string' },
    }));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n(npx tsx scenarios/campaign.ts --help lists the options)\n`);
    return 2;
  }
  const text = (name: string): string | undefined => values[name] as string | undefined;
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const runs = integerOption(text('runs'), '--runs', 500, 1, 100_000_000);
  const firstSeed = integerOption(text('seed'), '--seed', 1, 0, Number.MAX_SAFE_INTEGER - runs + 1);
  const mode = (text('mode') ?? 'inline') as RunMode;
  const free = mode === 'free';
  const threads = integerOption(text('threads'), '--threads', free ? 1 : availableParallelism(), 1, 256);
  const determinismSample = integerOption(text('determinism-sample'), '--determinism-sample', 2, 0, 1000);
  const shrinkRuns = integerOption(text('shrink-runs'), '--shrink-runs', 200, 0, 1_000_000);
  const explainRuns = integerOption(text('explain-runs'), '--explain-runs', 100, 1, 1_000_000);
  const shard = parseShard(text('shard'));
  if (!(RUN_MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode must be one of ${RUN_MODES.join(', ')}, got "${mode}"`);
  if (free && shard !== undefined) throw new UsageError('--shard splits seeds that replay; a free-running campaign is not sharded (run it whole on each machine)');
  if (!free && text('explain-runs') !== undefined) throw new UsageError('--explain-runs goes with --mode free (it turns free-running failures into replayable runs)');
  const plans = parseStrategyPlans(text('strategies') ?? DEFAULT_STRATEGY_PLANS);
  const modules = [...context.builtIn, ...((values.load as string[] | undefined) ?? [])].map((path) => resolve(path));
  await loadScenarioModules(modules);
  const known = allScenarios();
  const wanted = (values.scenario as string[] | undefined) ?? known.map((s) => s.name);
  const unknown = wanted.filter((name) => !known.some((s) => s.name === name));
  if (unknown.length > 0) throw new UsageError(`unknown scenario ${unknown.map((n) => `"${n}"`).join(', ')}; known: ${known.map((s) => s.name).join(', ')}`);
  const traceDir = text('trace-dir') ?? 'traces';
  ensureWritableDir(traceDir);
  const junit = text('junit');
  // Checked now, so a wrong path is found before the runs, not after them.
  if (junit !== undefined) ensureWritableDir(dirname(resolve(junit)));
  const corpus = text('corpus');
  if (corpus !== undefined) {
    if (shrinkRuns === 0) throw new UsageError('--corpus writes each bug row\'s shrunk failure: not with --shrink-runs 0');
    ensureWritableDir(corpus, '--corpus');
  }
  const scenarios = known.filter((s) => wanted.includes(s.name));
  const quiet = values.json === true;

  const rows: CampaignRow[] = scenarios.flatMap((definition) => {
    const windowGoals = definition.windows.map((w) => w.name);
    const orderingPairs = possibleByPair(definition.orderings ?? []);
    return [
      { scenario: definition.name, bug: null, caughtBy: null, fixesOff: [], windowGoals, orderingPairs },
      ...definition.bugs.map((bug) => ({ scenario: definition.name, bug: bug.name, caughtBy: bug.caughtBy, fixesOff: bug.fixesOff, windowGoals, orderingPairs })),
    ];
  });
  const stop = watchStopRequests();
  const progress = new Progress(!quiet);
  const started = performance.now();
  let summary: RowSummary[];
  try {
    summary = await runCampaign({
      rows, runs, firstSeed, plans, mode, threads, determinismSample, modules, shard, shrinkRuns, explainRuns,
      taskModule: new URL('../../workers/campaign-bootstrap.mjs', import.meta.url),
      scenario: findScenario,
      shouldStop: () => stop.requested !== null,
      onProgress: (done, total, failing) => progress.update(bar(done, total, failing, started), done === total),
    });
  } finally {
    stop.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  const stopped = stop.requested;
  // A shard sees a part of each row's seeds: a bug it did not find may be found by another
  // shard, so only the merge judges that; anything else that broke is final here.
  const sharded = shard !== undefined && shard.count > 1;
  const deferred = (row: RowSummary): boolean => sharded && row.bug !== null && row.found === 0 && row.errors === 0 && row.determinism.nondeterministic.length === 0;
  const problems = summary.filter((row) => !deferred(row)).map(rowProblem).filter((p): p is string => p !== null);
  const ok = stopped === null && problems.length === 0 && summary.every((row) => rowPassed(row) || deferred(row));
  const traces = new Map<RowSummary, string | null>();
  const shrinks = new Map<RowSummary, ShrinkOutcome>();
  const replayables = new Map<RowSummary, ReplayableOutcome>();
  for (const row of summary) {
    // A free-running failure has no trace of its own: the replayable run found for it stands in.
    const replayable = free ? reportReplayable(row, traceDir, quiet) : null;
    if (replayable !== null) replayables.set(row, replayable);
    traces.set(row, free ? replayable?.tracePath ?? null : reportFirstFailure(row, traceDir, mode, quiet));
    const shrink = reportShrunk(row, traceDir, quiet);
    if (shrink !== null) shrinks.set(row, shrink);
  }
  if (junit !== undefined) writeFileSync(junit, campaignJunit({ rows: summary, seconds, traces, stopped: stopped?.why ?? null }));
  const kept = corpus !== undefined ? writeCorpus(summary, corpus) : null;
  for (const line of kept?.missing ?? []) process.stderr.write(`warning: --corpus: ${line}\n`);
  if (quiet) {
    const rowsJson = summary.map((row) => {
      const { report: _report, recording: _recording, shrunk: _shrunk, replayable: _replayable, ...plain } = row;
      const shrink = shrinks.get(row);
      const replayable = replayables.get(row);
      return {
        ...plain, passed: rowPassed(row), trace: traces.get(row) ?? null, ...(shrink !== undefined ? { shrunk: shrinkJson(shrink) } : {}),
        ...(replayable !== undefined ? { replayable: replayableJson(replayable) } : {}),
      };
    });
    const campaign = { runs, firstSeed, strategies: plans.map(formatPlan), mode, shard: shard ?? { index: 1, count: 1 } };
    const freeJson = free ? { free: { summary: freeSummary(summary), notReplayable: notReplayable(summary) } } : {};
    process.stdout.write(`${JSON.stringify({ campaign, seconds, threads, mode, ok, problems, ...freeJson, ...(kept !== null ? { corpus: kept } : {}), ...(stopped !== null ? { stopped: stopped.why } : {}), rows: rowsJson })}\n`);
    return stopped?.exitCode ?? (ok ? 0 : 1);
  }
  printTable(summary);
  const total = summary.reduce((sum, row) => sum + row.runs, 0);
  process.stdout.write(`\n${total} runs in ${seconds.toFixed(1)} s on ${threads} pool thread(s), ${mode} vCPU hosts — ${(total / seconds).toFixed(1)} runs/s\n`);
  if (kept !== null) process.stdout.write(`corpus: ${kept.written.length} recorded failure(s) written to ${kept.dir}${kept.missing.length > 0 ? ` (${kept.missing.length} bug row(s) without one)` : ''} — npx vcpusim check-traces ${kept.dir} checks them\n`);
  if (stopped !== null) {
    process.stdout.write(`campaign: STOPPED (${stopped.why}) — ${summary.length} of ${rows.length} row(s) started; the figures above are partial\n`);
    return stopped.exitCode;
  }
  if (free) {
    const unexplained = notReplayable(summary);
    const verdict = ok ? 'OK — no failure with every fix on that a deterministic run reproduces' : `UNEXPECTED\n${problems.map((p) => `  ${p}`).join('\n')}`;
    const freeOnly = unexplained.length === 0 ? '' : `  free-running only (no deterministic run of the search reproduced it):\n${unexplained.map((line) => `    ${line}\n`).join('')}`;
    process.stdout.write(`campaign (free-running): ${verdict}\n  ${freeSummary(summary)}\n${freeOnly}`);
  } else if (ok && sharded) process.stdout.write(`campaign: shard ${shard.index}/${shard.count} OK so far — no all-fixes-on row failed, every re-run seed reproduced; whether each bug was found is for \`campaign merge\`\n`);
  else if (ok) process.stdout.write('campaign: OK — every bug row broke its oracle, no all-fixes-on row failed, every re-run seed reproduced\n');
  else process.stdout.write(`campaign: UNEXPECTED\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  return ok ? 0 : 1;
}

