/**
 * Goal: the commands that explain a failure behave as the README says — `run.ts --shrink` writes
 * a shrunk trace that replays, with its story; `vcpusim shrink` does the same from a trace file;
 * `--replay F --with-fix NAME` proves a fix on the recorded interleaving (exit 0) and refuses a fix
 * that is already on or a missing --replay (exit 2). Method: the real CLIs in child processes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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
  const report = JSON.parse(found.stdout) as { firstFailure: { trace: string; invariant: string }; shrunk: { oracle: string; preemptions: number; from: { preemptions: number }; minimal: boolean; trace: string; story: { text: string }[] } };
  t.is(report.shrunk.oracle, report.firstFailure.invariant);
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

test('run.ts --exhaustive 1: every schedule with at most one preemption, levels in JSON, the failing one written; clashing options refused', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-exhaustive-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const found = cli(['vas-hook-late', '--fix', 'pauseAroundVasHook=off', '--exhaustive', '1', '--json', '--trace-dir', dir]);
  t.is(found.status, 1, found.stderr);
  const result = JSON.parse(found.stdout) as { exhaustive: { complete: boolean; levels: { preemptions: number; schedules: number; failures: number; complete: boolean }[] }; firstFailure: { invariant: string; preemptions: number; trace: string } };
  t.true(result.exhaustive.complete);
  t.deepEqual(result.exhaustive.levels.map((l) => l.preemptions), [0, 1]);
  t.is(result.exhaustive.levels[0].failures, 0);
  t.is(result.firstFailure.invariant, 'vas-view-matches-memory');
  t.is(result.firstFailure.preemptions, 1);
  const replayed = cli(['vas-hook-late', '--replay', result.firstFailure.trace, '--trace-dir', dir]);
  t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  const clash = cli(['vas-hook-late', '--exhaustive', '1', '--runs', '5']);
  t.is(clash.status, 2);
  t.regex(clash.stderr, /--exhaustive makes its own schedules: drop --runs/);
});
