/**
 * Goal: run.ts --perfetto FILE / --html FILE write the first failing run of the command (the last
 * run when none failed, the replayed run with --replay), say where, and refuse a target that
 * cannot be written before any run. Method: the real CLI in child processes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromeTraceProblems } from '../report/chrome-trace-format.ts';

const root = new URL('../../', import.meta.url).pathname;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scenarios/run.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const temporary = (t: { teardown(fn: () => void): void }): string => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-reports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const metadataOf = (path: string): Record<string, unknown> => (JSON.parse(readFileSync(path, 'utf8')) as { metadata: Record<string, unknown> }).metadata;

test('the first failing run is written as a Perfetto trace and an HTML timeline, and so is its replay', (t) => {
  const dir = temporary(t);
  const perfetto = join(dir, 'reports', 'run.perfetto.json');
  const html = join(dir, 'reports', 'run.html');
  const found = run(['memtable-stale-icache', '--bug', '--runs', '10', '--strategy', 'random', '--trace-dir', dir, '--perfetto', perfetto, '--html', html]);
  t.is(found.status, 1, found.stderr);
  const seed = /^FAILED {2}memtable-stale-icache {2}seed (\d+)/m.exec(found.stdout)?.[1];
  t.not(seed, undefined, found.stdout);
  t.true(found.stdout.includes(`perfetto trace of the first failing run written to ${perfetto} (open it in ui.perfetto.dev or chrome://tracing)`), found.stdout);
  t.true(found.stdout.includes(`html timeline of the first failing run written to ${html} (open it in a browser)`), found.stdout);
  const trace = JSON.parse(readFileSync(perfetto, 'utf8'));
  t.deepEqual(chromeTraceProblems(trace), []);
  t.is(metadataOf(perfetto).seed, seed);
  const tracePath = /trace written to (\S+)/.exec(found.stdout)?.[1] ?? '';
  const page = readFileSync(html, 'utf8');
  t.true(page.includes(`--replay ${tracePath}`), 'the page carries the replay command');

  const replayed = run(['memtable-stale-icache', '--replay', tracePath, '--trace-dir', dir, '--perfetto', perfetto]);
  t.is(replayed.status, 1, replayed.stderr);
  t.is(metadataOf(perfetto).traceHash, /trace hash (\w+)/.exec(replayed.stdout)?.[1]);
});

test('without a failure the last run is written; --json says where', (t) => {
  const dir = temporary(t);
  const perfetto = join(dir, 'last.json');
  const passed = run(['unload-in-detour', '--runs', '2', '--strategy', 'random', '--trace-dir', dir, '--json', '--perfetto', perfetto]);
  t.is(passed.status, 0, passed.stderr);
  const out = JSON.parse(passed.stdout) as { failures: number; reports: { perfetto: string; html: string | null } };
  t.is(out.failures, 0);
  t.deepEqual(out.reports, { perfetto, html: null });
  t.is(metadataOf(perfetto).seed, '2');
});

test('a report target that cannot be written is refused before any run', (t) => {
  const dir = temporary(t);
  const directory = run(['unload-in-detour', '--html', dir]);
  t.is(directory.status, 2);
  t.regex(directory.stderr, /--html takes a file to write, got the directory /);
  const underFile = run(['unload-in-detour', '--trace-dir', dir, '--perfetto', join(root, 'package.json', 'x.json')]);
  t.is(underFile.status, 2);
  t.regex(underFile.stderr, /--perfetto .*package\.json\/x\.json cannot be written: its folder .*package\.json is a file, not a directory/);
  t.is(underFile.stdout, '', 'no run started');
  t.false(existsSync(join(dir, 'x.json')));
});
