/**
 * Goal: stress campaigns that end replayable, as the README says — `campaign.ts --mode free` runs
 * every row free-running with its hit rate, turns each row's first failure into a deterministic
 * trace that `run.ts --replay` follows to the same invariant, and refuses what cannot apply to
 * free-running runs; `run.ts --mode free --explain` does the same for one scenario's first
 * failure. Method: the real CLIs in child processes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;

function cli(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, script), ...args], { cwd: root, encoding: 'utf8', timeout: 240_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

interface FreeRowJson {
  readonly bug: string | null;
  readonly runs: number;
  readonly failures: number;
  readonly found: number;
  readonly freeRunning: boolean;
  readonly passed: boolean;
  readonly trace: string | null;
  readonly replayable?: { readonly replayable: boolean; readonly oracle: string; readonly trace: string; readonly strategy: string; readonly hash: string; readonly shrunk?: { readonly oracle: string; readonly trace: string } };
}

test('campaign.ts --mode free: rows run free-running with hit rates, each first failure written as a trace that replays to the same invariant', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-free-campaign-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = cli('scenarios/campaign.ts', ['--mode', 'free', '--runs', '6', '--json', '--scenario', 'stale-violation', '--trace-dir', dir, '--corpus', join(dir, 'corpus')]);
  t.is(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { ok: boolean; mode: string; threads: number; free: { summary: string; notReplayable: string[] }; corpus: { written: string[] }; rows: FreeRowJson[] };
  t.true(result.ok);
  t.is(result.mode, 'free');
  t.is(result.threads, 1, 'one free run at a time: its vCPUs have the cores');
  t.deepEqual(result.rows.map((row) => row.bug), [null, 'stale exit reaches the new hook']);
  const [clean, bug] = result.rows;
  t.true(clean.freeRunning && clean.passed);
  t.is(clean.failures, 0);
  t.is(bug.runs, 6);
  t.true(bug.found > 0, 'the stale exit is hit free-running');
  const replayable = bug.replayable;
  if (replayable === undefined) return t.fail('the bug row has no replayable outcome');
  t.true(replayable.replayable, result.free.notReplayable.join('\n'));
  t.is(replayable.oracle, 'callbacks-see-fresh-exits');
  t.is(bug.trace, replayable.trace);
  t.true(existsSync(replayable.trace));
  t.is(replayable.shrunk?.oracle, 'callbacks-see-fresh-exits');
  t.regex(result.free.summary, /^1 of 1 bug row\(s\) hit free-running; 1 of 1 row\(s\) with a failure turned it replayable$/);
  // The failure made replayable is kept as a recorded failure too, naming the bug's invariant.
  t.deepEqual(result.corpus.written, [join(dir, 'corpus', 'stale-violation--staleExitRetry.json')]);
  const kept = spawnSync(process.execPath, [join(root, 'bin/vcpusim.mjs'), 'check-traces', join(dir, 'corpus')], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  t.is(kept.status, 0, kept.stdout + kept.stderr);
  t.regex(kept.stdout, /without the fixes: callbacks-see-fresh-exits breaks again, entry for entry/);

  const replayed = cli('scenarios/run.ts', ['stale-violation', '--replay', replayable.trace, '--trace-dir', dir]);
  t.is(replayed.status, 1);
  t.regex(replayed.stdout, new RegExp(`replay followed all \\d+ recorded choices; trace hash ${replayable.hash} \\(recorded ${replayable.hash}\\)`));
  t.regex(replayed.stdout, /invariant broken: callbacks-see-fresh-exits/);

  const table = cli('scenarios/campaign.ts', ['--mode', 'free', '--runs', '3', '--scenario', 'stale-violation', '--trace-dir', dir, '--shrink-runs', '0']);
  t.is(table.status, 0, table.stderr);
  t.regex(table.stdout, /REPLAYABLE {2}stale-violation \(stale exit reaches the new hook\): free-running seed \d+ broke callbacks-see-fresh-exits/);
  t.regex(table.stdout, /found in run \d+ of the deterministic search: /);
  t.regex(table.stdout, /replayable\n/);
  t.regex(table.stdout, /\d+ \(callbacks-see-fresh-exits, \d+%\)/);
  t.regex(table.stdout, /yes: run \d+ \(\w+/);
  t.regex(table.stdout, /campaign \(free-running\): OK — no failure with every fix on that a deterministic run reproduces/);
});

test('run.ts --mode free --explain: the first free-running failure of the mem-table race turned replayable and shrunk', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-explain-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = cli('scenarios/run.ts', ['memtable-stale-icache', '--mode', 'free', '--bug', '--runs', '10', '--explain', '--json', '--trace-dir', dir]);
  t.is(run.status, 1, run.stderr);
  const result = JSON.parse(run.stdout) as { failures: number; firstFailure: { invariant: string }; replayable: NonNullable<FreeRowJson['replayable']> & { foundInRun: number; runs: number } };
  t.true(result.failures > 0);
  t.is(result.replayable.oracle, result.firstFailure.invariant);
  t.true(result.replayable.replayable);
  t.true(existsSync(result.replayable.trace));
  t.true(existsSync(result.replayable.shrunk!.trace));
  const replayed = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', result.replayable.shrunk!.trace, '--trace-dir', dir]);
  t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  t.regex(replayed.stdout, new RegExp(`invariant broken: ${result.replayable.oracle}`));
});

test('free-running options are refused where they cannot apply, with one clear error (exit 2)', (t) => {
  const explain = cli('scenarios/run.ts', ['memtable-stale-icache', '--explain']);
  t.is(explain.status, 2);
  t.regex(explain.stderr, /--explain turns a free-running failure into a replayable one: use it with --mode free/);
  const sharded = cli('scenarios/campaign.ts', ['--mode', 'free', '--shard', '1/2']);
  t.is(sharded.status, 2);
  t.regex(sharded.stderr, /a free-running campaign is not sharded/);
  const budget = cli('scenarios/campaign.ts', ['--explain-runs', '5']);
  t.is(budget.status, 2);
  t.regex(budget.stderr, /--explain-runs goes with --mode free/);
});
