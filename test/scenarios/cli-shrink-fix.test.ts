/**
 * Goal: the commands that explain a failure behave as the README says — `run.ts --shrink` writes
 * a shrunk trace that replays, with its story; `vcpusim shrink` does the same from a trace file;
 * `--replay F --with-fix NAME` proves a fix on the recorded interleaving (exit 0) and refuses a fix
 * that is already on or a missing --replay (exit 2). Method: the real CLIs in child processes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scenarios/run.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('run.ts --shrink, vcpusim shrink and --replay --with-fix: a failure shrunk, replayed, and its fix proven on it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-shrink-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const found = cli(['memtable-stale-icache', '--bug', '--runs', '10', '--strategy', 'random', '--shrink', '--json', '--trace-dir', dir]);
  t.is(found.status, 1, found.stderr);
  const report = JSON.parse(found.stdout) as {
    firstFailure: { trace: string; invariant: string };
    shrunk: { oracle: string; seed: string; preemptions: number; from: { preemptions: number }; minimal: boolean; trace: string; story: { text: string }[]; pickedFrom?: { label: string; tried: { label: string; seed: string; oracle: string | null; preemptions: number }[] } };
  };
  t.is(report.shrunk.oracle, report.firstFailure.invariant);
  // Several of the ten runs fail: the simplest of the first few that break the same invariant is shrunk, and the report says which.
  const tried = report.shrunk.pickedFrom?.tried ?? [];
  t.true(tried.length >= 2 && tried.length <= 5, JSON.stringify(report.shrunk.pickedFrom));
  t.true(tried.every((run) => run.oracle === report.firstFailure.invariant && run.label === `seed ${run.seed}`));
  t.is(report.shrunk.pickedFrom?.label, `seed ${report.shrunk.seed}`);
  t.is(report.shrunk.from.preemptions, Math.min(...tried.map((run) => run.preemptions)));
  t.true(report.shrunk.preemptions <= report.shrunk.from.preemptions);
  t.true(report.shrunk.minimal);
  t.true(existsSync(report.shrunk.trace));
  t.true(report.shrunk.story.some((line) => /^preemption 1:/.test(line.text)));

  const replayed = cli(['memtable-stale-icache', '--replay', report.shrunk.trace, '--trace-dir', dir]);
  t.is(replayed.status, 1);
  t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  t.regex(replayed.stdout, /FAILED {2}memtable-stale-icache {2}seed \d+ {2}shrunk/);

  const bin = spawnSync(process.execPath, [join(root, 'bin/vcpusim.mjs'), 'shrink', report.firstFailure.trace, '--trace-dir', dir], { cwd: root, encoding: 'utf8', timeout: 180_000 });
  t.is(bin.status, 1, bin.stderr);
  t.regex(bin.stdout, /SHRUNK\n {2}shrunk from \d+ choices \/ \d+ preemptions to \d+ decisive choices? \/ \d+ preemptions? \(\d+ runs; no single cut/);
  t.regex(bin.stdout, /how it happens/);

  const proven = cli(['memtable-stale-icache', '--replay', report.shrunk.trace, '--with-fix', 'icacheFlushOnPatch']);
  t.is(proven.status, 0, proven.stdout + proven.stderr);
  t.regex(proven.stdout, /FIX-DIFFERENTIAL: the recorded schedule again with icacheFlushOnPatch on/);
  t.regex(proven.stdout, /the runs part at entry #\d+ differs/);
  t.regex(proven.stdout, /with the fix no invariant broke: it removes this failure on this interleaving/);

  const alreadyOn = cli(['memtable-stale-icache', '--replay', report.shrunk.trace, '--with-fix', 'pauseWhilePatching']);
  t.is(alreadyOn.status, 2);
  t.regex(alreadyOn.stderr, /--with-fix pauseWhilePatching: that fix is already on in this replay/);
  const noReplay = cli(['memtable-stale-icache', '--with-fix', 'icacheFlushOnPatch']);
  t.is(noReplay.status, 2);
  t.regex(noReplay.stderr, /--with-fix replays a recorded failure with a fix on: give the trace with --replay FILE/);
});

test('run.ts --exhaustive 1: every schedule with at most one preemption (or one deviation, --bound-by), levels in JSON, the failing one written; clashing options refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-exhaustive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const found = cli(['vas-hook-late', '--fix', 'pauseAroundVasHook=off', '--exhaustive', '1', '--json', '--trace-dir', dir]);
  t.is(found.status, 1, found.stderr);
  const result = JSON.parse(found.stdout) as { exhaustive: { complete: boolean; levels: { k: number; schedules: number; failures: number; complete: boolean }[] }; firstFailure: { invariant: string; preemptions: number; trace: string } };
  t.true(result.exhaustive.complete);
  t.deepEqual(result.exhaustive.levels.map((l) => l.k), [0, 1]);
  t.is(result.exhaustive.levels[0].failures, 0);
  t.is(result.firstFailure.invariant, 'vas-view-matches-memory');
  t.is(result.firstFailure.preemptions, 1);
  const replayed = cli(['vas-hook-late', '--replay', result.firstFailure.trace, '--trace-dir', dir]);
  t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  // Bounded by deviations: one schedule at k = 0, one per alternative of the default run at k = 1.
  const byDeviation = cli(['vas-hook-late', '--fix', 'pauseAroundVasHook=off', '--exhaustive', '1', '--bound-by', 'deviations', '--json', '--trace-dir', dir]);
  t.is(byDeviation.status, 1, byDeviation.stderr);
  const deviations = JSON.parse(byDeviation.stdout) as { exhaustive: { measure: string; complete: boolean; levels: { k: number; schedules: number; failures: number }[] }; firstFailure: { invariant: string; deviations: number } };
  t.is(deviations.exhaustive.measure, 'deviations');
  t.true(deviations.exhaustive.complete);
  t.deepEqual(deviations.exhaustive.levels.map((l) => l.k), [0, 1]);
  t.is(deviations.exhaustive.levels[0].schedules, 1);
  t.is(deviations.firstFailure.invariant, 'vas-view-matches-memory');
  t.is(deviations.firstFailure.deviations, 1);
  // A budget that runs out inside k = 0 points at the other measure.
  const outran = cli(['unload-nested-pause', '--exhaustive', '1', '--exhaustive-runs', '5', '--trace-dir', dir]);
  t.is(outran.status, 0, outran.stderr);
  t.regex(outran.stdout, /not a guarantee: the run budget \(--exhaustive-runs 5\) ran out first\n  k = 0 alone outran it: .* --bound-by deviations/);
  const badMeasure = cli(['vas-hook-late', '--exhaustive', '1', '--bound-by', 'delays']);
  t.is(badMeasure.status, 2);
  t.regex(badMeasure.stderr, /--bound-by must be preemptions or deviations, got "delays"/);
  t.regex(cli(['vas-hook-late', '--bound-by', 'deviations']).stderr, /--bound-by goes with --exhaustive K/);
  const clash = cli(['vas-hook-late', '--exhaustive', '1', '--runs', '5']);
  t.is(clash.status, 2);
  t.regex(clash.stderr, /--exhaustive makes its own schedules: drop --runs/);
  // From a branch point: the schedules after the window opens.
  const branched = cli(['stale-violation', '--bug', '--strategy', 'random', '--branch-at', 'pair:renewal-vs-pending-write', '--exhaustive', '1', '--json', '--trace-dir', dir]);
  t.is(branched.status, 1, branched.stderr);
  const window = JSON.parse(branched.stdout) as { exhaustive: { complete: boolean; branchedAt: number }; firstFailure: { invariant: string; trace: string } };
  t.true(window.exhaustive.complete);
  t.true(window.exhaustive.branchedAt > 0);
  t.is(window.firstFailure.invariant, 'callbacks-see-fresh-exits');
  t.regex(cli(['stale-violation', '--replay', window.firstFailure.trace, '--trace-dir', dir]).stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
});

test('run.ts --exhaustive 1 --threads 2: the schedules run on a pool, over whole runs and from a branch point, and every count and the first failure (its trace, to the hash) are the one-by-one search\'s', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-exhaustive-pool-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  type Bounded = { exhaustive: { levels: unknown[]; runs: number; distinct: number; complete: boolean; threads: number }; firstFailure: { invariant: string; preemptions: number; deviations: number; trace: string } };
  const run = (threads: string[]) => {
    const out = join(dir, `t${threads.length}`);
    const result = cli(['vas-hook-late', '--fix', 'pauseAroundVasHook=off', '--exhaustive', '1', '--exhaustive-runs', '300', ...threads, '--json', '--trace-dir', out]);
    t.is(result.status, 1, result.stderr);
    return JSON.parse(result.stdout) as Bounded;
  };
  const one = run([]);
  const pooled = run(['--threads', '2']);
  t.is(one.exhaustive.threads, 1);
  t.is(pooled.exhaustive.threads, 2);
  t.false(pooled.exhaustive.complete, 'the budget of 300 cuts k = 1 short, at the same schedule');
  const { threads: _one, ...countsOne } = one.exhaustive;
  const { threads: _two, ...countsPooled } = pooled.exhaustive;
  t.deepEqual({ ...countsPooled, seconds: 0 }, { ...countsOne, seconds: 0 });
  t.like(pooled.firstFailure, { invariant: one.firstFailure.invariant, preemptions: one.firstFailure.preemptions, deviations: one.firstFailure.deviations });
  const hashOf = (path: string) => (JSON.parse(readFileSync(path, 'utf8')) as { hash: string }).hash;
  t.is(hashOf(pooled.firstFailure.trace), hashOf(one.firstFailure.trace));
  t.regex(cli(['vas-hook-late', '--threads', '2']).stderr, /--threads goes with --exhaustive K/);
  // From a branch point: each pool thread runs the prefix once and its suffixes from its own snapshot.
  const branched = (threads: string[]) => {
    const result = cli(['stale-violation', '--bug', '--strategy', 'random', '--branch-at', 'pair:renewal-vs-pending-write', '--exhaustive', '1', ...threads, '--json', '--trace-dir', join(dir, `b${threads.length}`)]);
    t.is(result.status, 1, result.stderr);
    return JSON.parse(result.stdout) as Bounded & { exhaustive: { branchedAt: number } };
  };
  const windowOne = branched([]);
  const windowPooled = branched(['--threads', '2']);
  t.is(windowPooled.exhaustive.threads, 2);
  t.is(windowPooled.exhaustive.branchedAt, windowOne.exhaustive.branchedAt);
  t.deepEqual(windowPooled.exhaustive.levels, windowOne.exhaustive.levels);
  t.is(windowPooled.exhaustive.distinct, windowOne.exhaustive.distinct);
  t.is(hashOf(windowPooled.firstFailure.trace), hashOf(windowOne.firstFailure.trace));
  // A recorded trace as the prefix: the threads read it from shared memory, once each.
  const replayed = (threads: string[]) => {
    const result = cli(['stale-violation', '--replay', windowOne.firstFailure.trace, '--branch-at', 'choice:10', '--exhaustive', '1', ...threads, '--json', '--trace-dir', join(dir, `r${threads.length}`)]);
    t.is(result.status, 1, result.stderr);
    return JSON.parse(result.stdout) as Bounded & { exhaustive: { branchedAt: number } };
  };
  const traceOne = replayed([]);
  const tracePooled = replayed(['--threads', '2']);
  t.deepEqual(tracePooled.exhaustive.levels, traceOne.exhaustive.levels);
  t.is(tracePooled.exhaustive.distinct, traceOne.exhaustive.distinct);
  t.is(hashOf(tracePooled.firstFailure.trace), hashOf(traceOne.firstFailure.trace));
});

test('run.ts --branch-at: suffixes explored from a snapshot at the patch window, whole and cut at a horizon; the failing suffix replays from the start', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-branch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  type Branched = { branch: { at: number; suffixes: number; failures: number; horizon: number | null; meanDirtyPages: number; ramPages: number }; firstFailure: { invariant: string; trace: string; suffixSeed: number } };
  for (const horizon of [[], ['--horizon', '60']]) {
    const found = cli(['memtable-stale-icache', '--bug', '--strategy', 'random', '--branch-at', 'pair:patch-vs-running-peer', '--branches', '12', ...horizon, '--json', '--trace-dir', dir]);
    t.is(found.status, 1, found.stderr);
    const result = JSON.parse(found.stdout) as Branched;
    t.is(result.branch.suffixes, 12);
    t.true(result.branch.failures > 0 && result.branch.failures < 12, `${result.branch.failures} of 12 failed`);
    t.true(result.branch.meanDirtyPages > 0 && result.branch.meanDirtyPages < result.branch.ramPages / 100);
    t.is(result.branch.horizon, horizon.length === 0 ? null : 60);
    t.is(result.firstFailure.invariant, 'relocated-at-most-once');
    const replayed = cli(['memtable-stale-icache', '--replay', result.firstFailure.trace, '--trace-dir', dir]);
    t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
    t.regex(replayed.stdout, /relocated-at-most-once/);
    // The failing trace as a prefix: branch just before its end and explore around the failure.
    const around = cli(['memtable-stale-icache', '--replay', result.firstFailure.trace, '--branch-at', `choice:${result.branch.at}`, '--branches', '4', '--strategy', 'random', '--trace-dir', dir]);
    t.regex(around.stdout, /4 random suffixes branched from the trace of branched seed 1 at choice \d+/, around.stderr);
  }
  const text = cli(['memtable-stale-icache', '--bug', '--strategy', 'random', '--branch-at', 'choice:300', '--branches', '3', '--trace-dir', dir]);
  t.regex(text.stdout, /3 random suffixes branched from random seed 1 at choice \d+ \(choice 300\)/);
  t.regex(text.stdout, /a restore: [\d.]+ of 2,048 RAM pages copied back/);
  const bad = cli(['memtable-stale-icache', '--branch-at', 'window:x']);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /--branch-at must be choice:N or pair:NAME\[:a\|b\], got "window:x"/);
  const clash = cli(['memtable-stale-icache', '--branch-at', 'choice:5', '--mode', 'workers']);
  t.regex(clash.stderr, /--branch-at snapshots the run in this thread: use --mode inline/);
  const alone = cli(['memtable-stale-icache', '--horizon', '5']);
  t.regex(alone.stderr, /--horizon goes with --branch-at POINT/);
});
