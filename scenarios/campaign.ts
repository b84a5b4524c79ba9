import { availableParallelism } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Piscina } from 'piscina';
import type { CampaignResult, CampaignTask } from '../workers/campaign.worker.ts';
import { failed, ScenarioRig, type RunMode } from '../src/explore/scenario-rig.ts';
import { STRATEGIES, type StrategyName } from '../src/explore/schedulers/index.ts';
import { DEFAULT_FIXES, fixesWithout, type FixName } from '../src/intro/fixes.ts';
import { formatFailure, replayCommand, rerunCommand } from '../src/report/text.ts';
import { runMain } from './cli.ts';
import { SCENARIOS } from './index.ts';

/**
 * The main job: every registered scenario, with all fixes on and with its bug's fixes off, over
 * many seeds spread across a piscina pool (one deterministic run per task). Ends with a table —
 * scenario × fixes → runs, failures, first failing seed, windows reached, runs/s — and, for each
 * row that failed, the trace of its first failing seed and the command that replays it.
 * Exit status 0 when every fixes-off row found its race and no fixes-on row failed.
 */

const USAGE = `usage: npx tsx scenarios/campaign.ts [options]
  --runs N          runs per row (default 200)
  --seed N          first seed (default 1)
  --strategies L    comma-separated, each ${STRATEGIES.join(' | ')} or pct:D (default random,pct:1,pct:2,pct:3)
  --mode M          inline | workers (default inline: one vCPU host per pool thread)
  --threads N       pool threads (default: available cores)
  --scenario NAME   only this scenario (repeatable)
  --trace-dir DIR   where the first failing trace of each row goes (default traces)
  --json            print the table as JSON`;

interface Plan {
  readonly strategy: StrategyName;
  readonly depth: number;
}

interface Row {
  readonly scenario: string;
  readonly label: 'fixes on' | 'fixes off';
  readonly fixesOff: readonly FixName[];
  readonly results: CampaignResult[];
  readonly windowGoals: readonly string[];
  started: number;
  finished: number;
}

function parsePlans(text: string): Plan[] {
  return text.split(',').map((item) => {
    const [name, depth] = item.trim().split(':');
    if (!(STRATEGIES as readonly string[]).includes(name)) throw new Error(`unknown strategy "${item}" in --strategies (use ${STRATEGIES.join(', ')}, or pct:D)`);
    const d = depth === undefined ? 2 : Number(depth);
    if (!Number.isInteger(d) || d < 1) throw new Error(`bad PCT depth in "${item}"`);
    return { strategy: name as StrategyName, depth: d };
  });
}

function bar(done: number, total: number, failing: number, started: number): string {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const rate = done / ((performance.now() - started) / 1000);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} runs · ${failing} failing · ${rate.toFixed(1)} runs/s`;
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string' }, seed: { type: 'string' }, strategies: { type: 'string' }, mode: { type: 'string' }, threads: { type: 'string' },
      scenario: { type: 'string', multiple: true }, 'trace-dir': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const runs = Number(values.runs ?? 200);
  const firstSeed = Number(values.seed ?? 1);
  const threads = Number(values.threads ?? availableParallelism());
  const mode = (values.mode ?? 'inline') as RunMode;
  if (!Number.isSafeInteger(runs) || runs < 1 || !Number.isSafeInteger(firstSeed) || firstSeed < 0 || !Number.isSafeInteger(threads) || threads < 1) {
    throw new Error(`--runs, --seed and --threads must be integers (runs ≥ 1, seed ≥ 0, threads ≥ 1)\n${USAGE}`);
  }
  if (mode !== 'inline' && mode !== 'workers') throw new Error(`--mode must be inline or workers (free-running has no seeds to spread)\n${USAGE}`);
  const plans = parsePlans(values.strategies ?? 'random,pct:1,pct:2,pct:3');
  const scenarios = values.scenario === undefined ? SCENARIOS : SCENARIOS.filter((s) => values.scenario!.includes(s.name));
  if (scenarios.length === 0) throw new Error(`no scenario matches ${values.scenario!.join(', ')}; built-in: ${SCENARIOS.map((s) => s.name).join(', ')}`);

  const rows: Row[] = scenarios.flatMap((definition) => [
    { scenario: definition.name, label: 'fixes on' as const, fixesOff: [], results: [], windowGoals: definition.windows.map((w) => w.name), started: 0, finished: 0 },
    { scenario: definition.name, label: 'fixes off' as const, fixesOff: definition.bugFixes, results: [], windowGoals: definition.windows.map((w) => w.name), started: 0, finished: 0 },
  ]);
  const total = rows.length * runs;
  const pool = new Piscina<CampaignTask, CampaignResult>({
    filename: new URL('../workers/campaign-bootstrap.mjs', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
  });
  const started = performance.now();
  let done = 0;
  let failing = 0;
  let lastPrint = 0;
  const progress = (): void => {
    if (values.json === true) return;
    const now = performance.now();
    if (process.stderr.isTTY) process.stderr.write(`\r${bar(done, total, failing, started)}`);
    else if (done === total || now - lastPrint > 5000) {
      lastPrint = now;
      process.stderr.write(`${bar(done, total, failing, started)}\n`);
    }
  };
  try {
    // Rows one after the other, so each row's runs/s is its own throughput on the whole pool.
    for (const row of rows) {
      row.started = performance.now();
      await Promise.all(
        Array.from({ length: runs }, async (_, k) => {
          const plan = plans[k % plans.length];
          const result = await pool.run({ scenario: row.scenario, seed: firstSeed + k, strategy: plan.strategy, depth: plan.depth, mode, fixesOff: row.fixesOff });
          row.results.push(result);
          done++;
          if (result.failed) failing++;
          progress();
        }),
      );
      row.finished = performance.now();
    }
  } finally {
    await pool.destroy();
  }
  if (process.stderr.isTTY && values.json !== true) process.stderr.write('\n');
  const seconds = (performance.now() - started) / 1000;

  const summary = rows.map((row) => {
    const failures = row.results.filter((r) => r.failed).sort((a, b) => a.seed - b.seed);
    const windows: Record<string, number> = {};
    for (const goal of row.windowGoals) windows[goal] = row.results.filter((r) => r.windows.includes(goal)).length;
    const byStrategy: Record<string, { runs: number; failures: number; firstFailingSeed: number | null }> = {};
    for (const r of row.results) {
      const entry = (byStrategy[r.strategy] ??= { runs: 0, failures: 0, firstFailingSeed: null });
      entry.runs++;
      if (r.failed) {
        entry.failures++;
        if (entry.firstFailingSeed === null || r.seed < entry.firstFailingSeed) entry.firstFailingSeed = r.seed;
      }
    }
    return {
      scenario: row.scenario,
      fixes: row.label,
      fixesOff: row.fixesOff,
      runs: row.results.length,
      failures: failures.length,
      firstFailingSeed: failures[0]?.seed ?? null,
      firstFailure: failures[0] === undefined ? null : { seed: failures[0].seed, strategy: failures[0].strategy, invariant: failures[0].invariant, detail: failures[0].detail },
      windows,
      byStrategy,
      runsPerSecond: row.results.length / ((row.finished - row.started) / 1000),
    };
  });
  const ok = summary.every((row) => (row.fixes === 'fixes on' ? row.failures === 0 : row.failures > 0));

  // Re-run each row's first failing seed here to write its trace (deterministic: the same run).
  const traces: Record<string, string> = {};
  for (const row of summary) {
    if (row.firstFailure === null) continue;
    const definition = SCENARIOS.find((s) => s.name === row.scenario)!;
    const plan = plans[(row.firstFailure.seed - firstSeed) % plans.length];
    const rig = ScenarioRig.open(definition, 'inline');
    try {
      const fixes = row.fixesOff.length > 0 ? fixesWithout(row.fixesOff) : DEFAULT_FIXES;
      const report = rig.run({ seed: row.firstFailure.seed, strategy: plan.strategy, depth: plan.depth, fixes });
      if (!failed(report)) continue;
      const dir = values['trace-dir'] ?? 'traces';
      mkdirSync(dir, { recursive: true });
      const path = join(dir, `${report.scenario}-seed${report.seed}-${report.strategy.replace(/[^a-z0-9]+/gi, '')}-campaign.json`);
      writeFileSync(path, JSON.stringify(report.trace.toJson({ scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: 'inline', fixesOff: report.fixesOff })));
      traces[`${row.scenario}/${row.fixes}`] = path;
      if (values.json !== true) {
        const spec = { scenario: report.scenario, seed: report.seed, strategy: plan.strategy, depth: plan.depth, mode: 'inline' as const, fixesOff: report.fixesOff };
        process.stdout.write(`${formatFailure(report, { rerun: rerunCommand(spec), replay: replayCommand(report.scenario, path, report.fixesOff) }, path)}\n\n`);
      }
    } finally {
      await rig.close();
    }
  }

  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ seconds, threads, mode, rows: summary.map((row) => ({ ...row, trace: traces[`${row.scenario}/${row.fixes}`] ?? null })), ok })}\n`);
    return ok ? 0 : 1;
  }
  const header = ['scenario', 'fixes', 'runs', 'failures', 'first failing seed', 'windows reached', 'runs/s'];
  const table = summary.map((row) => [
    row.scenario,
    row.fixesOff.length > 0 ? `off: ${row.fixesOff.join(', ')}` : 'all on',
    String(row.runs),
    String(row.failures),
    row.firstFailingSeed === null ? '—' : `${row.firstFailingSeed} (${row.firstFailure?.invariant})`,
    `${Object.values(row.windows).filter((n) => n > 0).length}/${Object.keys(row.windows).length}`,
    row.runsPerSecond.toFixed(1),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...table.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  process.stdout.write(`${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('  ')}\n${table.map(line).join('\n')}\n\n`);
  for (const row of summary) {
    const strategies = Object.entries(row.byStrategy).map(([name, s]) => `${name} ${s.failures}/${s.runs}${s.firstFailingSeed !== null ? ` (first ${s.firstFailingSeed})` : ''}`).join(', ');
    process.stdout.write(`${row.scenario} ${row.fixes}: failures by strategy: ${strategies}\n`);
    process.stdout.write(`  windows: ${Object.entries(row.windows).map(([name, n]) => `${name} ${n}`).join(', ')}\n`);
  }
  process.stdout.write(`\n${total} runs in ${seconds.toFixed(1)} s on ${threads} thread(s), ${mode} hosts — ${(total / seconds).toFixed(1)} runs/s\n`);
  process.stdout.write(ok ? 'campaign: OK — every fixes-off row found its race, no fixes-on row failed\n' : 'campaign: UNEXPECTED — a fixes-off row found nothing or a fixes-on row failed\n');
  return ok ? 0 : 1;
}

runMain(main);
