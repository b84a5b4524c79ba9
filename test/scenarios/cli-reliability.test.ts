/**
 * Goal: the command-line tools never lose work and never leave a mistake unexplained. A window
 * goal or setup() that throws, an unwritable trace directory, a scenario that is not
 * deterministic, a bug row whose own oracle never breaks, a workers-mode campaign, a signal or a
 * launcher that goes away: each gets a clear report, the other results are kept, and the exit
 * status says what happened. Memory does not grow with the number of runs. Method: the real CLIs
 * in child processes, with misbehaving scenarios loaded from test/support/faulty-scenarios.ts.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const FAULTY = join(root, 'test/support/faulty-scenarios.ts');
const BAD = join(root, 'test/support/bad-scenario.ts');

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(script: string, args: string[], nodeArgs: string[] = [], timeoutMs = 180_000): Outcome {
  const result = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', join(root, script), ...args], { cwd: root, encoding: 'utf8', timeout: timeoutMs });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Starts a CLI, waits until its output matches `ready`, sends `signal`, and collects the rest. */
function interrupt(command: string, args: string[], ready: RegExp, signal: NodeJS.Signals, options: { detached?: boolean } = {}): Promise<Outcome & { pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, detached: options.detached === true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no exit in time; stdout:\n${stdout}\nstderr:\n${stderr}`));
    }, 120_000);
    const check = (): void => {
      if (!sent && ready.test(stdout + stderr)) {
        sent = true;
        child.kill(signal);
      }
    };
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); check(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); check(); });
    child.on('exit', (status) => {
      clearTimeout(guard);
      resolve({ status, stdout, stderr, pid: child.pid ?? -1 });
    });
  });
}

test('--help and -h print the usage on stdout with exit 0, for both CLIs', (t) => {
  for (const [script, flag] of [['scenarios/run.ts', '--help'], ['scenarios/run.ts', '-h'], ['scenarios/campaign.ts', '-h']] as const) {
    const help = cli(script, [flag]);
    t.is(help.status, 0, `${script} ${flag}`);
    t.regex(help.stdout, /^usage: npx tsx scenarios\/(run|campaign)\.ts/);
    t.is(help.stderr, '');
  }
});

test('numbers out of range: one error that names the real limits', (t) => {
  const negative = cli('scenarios/run.ts', ['memtable-stale-icache', '--runs', '-3']);
  t.is(negative.status, 2);
  t.regex(negative.stderr, /^error: --runs must be an integer in \[1, 1000000000\], got "-3"\n/);
  const huge = cli('scenarios/run.ts', ['memtable-stale-icache', '--seed', '99999999999999999999']);
  t.is(huge.status, 2);
  t.regex(huge.stderr, /^error: --seed must be an integer ≥ 0 \(at most 2\^53 − 1\), got "99999999999999999999"/);
  const unknown = cli('scenarios/run.ts', ['memtable-stale-icache', '--frobnicate']);
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /^error: unknown option '--frobnicate'/);
});

test('an unwritable --trace-dir is refused before the first run, by both CLIs', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a-file');
  writeFileSync(file, '');
  const unwritable = join(file, 'traces');
  for (const [script, args] of [['scenarios/run.ts', ['memtable-stale-icache', '--bug', '--runs', '50']], ['scenarios/campaign.ts', ['--runs', '50']]] as const) {
    const started = performance.now();
    const run = cli(script, [...args, '--trace-dir', unwritable]);
    t.is(run.status, 2, script);
    t.regex(run.stderr, new RegExp(`^error: --trace-dir ${unwritable} cannot hold trace files \\(.+\\); choose a writable directory with --trace-dir DIR`));
    t.false(/runs/.test(run.stdout), 'no run was made');
    t.log(`${script}: refused after ${Math.round(performance.now() - started)} ms`);
  }
});

test('run.ts: a window goal that throws is a reported violation with seed and trace; setup() that throws names the scenario', (t) => {
  const dir = tempDir(t);
  const window = cli('scenarios/run.ts', ['throwing-window', '--load', FAULTY, '--runs', '2', '--trace-dir', dir]);
  t.is(window.status, 1, window.stderr);
  t.regex(window.stdout, /FAILED {2}throwing-window {2}seed 1 .*\n {2}invariant broken: window-goals\n {4}window goal "broken-goal" threw: the goal has a bug/);
  t.regex(window.stdout, /trace written to .*throwing-window-seed1-/);
  const setup = cli('scenarios/run.ts', ['throwing-setup', '--load', FAULTY]);
  t.is(setup.status, 2);
  t.regex(setup.stderr, /^error: scenario "throwing-setup": setup\(\) threw while building the guest: no guest today\n/);
  const bad = cli('scenarios/run.ts', ['bad-caught-by', '--load', BAD]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /scenario "bad-caught-by" is not well defined: bug "typo" is caughtBy "guest-alvie", which is no oracle/);
});

test('run.ts --check-determinism: Math.random in setup() fails the run and names the first divergent entry', (t) => {
  const run = cli('scenarios/run.ts', ['planted-random', '--load', FAULTY, '--runs', '2', '--check-determinism']);
  t.is(run.status, 1, run.stderr);
  t.regex(run.stdout, /NONDETERMINISTIC: \d of 2 seed\(s\) gave another trace .*seed \d \(hash [0-9a-f]{16}, then [0-9a-f]{16}\):\n {2}entry #\d+ differs\n {4}run 1 : .+\n {4}run 2 : .+/);
  const clean = cli('scenarios/run.ts', ['memtable-stale-icache', '--runs', '2', '--check-determinism']);
  t.is(clean.status, 0, clean.stdout);
  t.regex(clean.stdout, /determinism: every seed gave the same trace hash twice/);
});

test('campaign: nondeterminism, a setup() that throws, a bug row whose oracle never broke — each row named, the others kept', (t) => {
  const dir = tempDir(t);
  const run = cli('scenarios/campaign.ts', ['--load', FAULTY, '--scenario', 'planted-random', '--scenario', 'throwing-setup', '--scenario', 'wrong-oracle', '--runs', '4', '--json', '--trace-dir', dir]);
  t.is(run.status, 1, run.stderr);
  const result = JSON.parse(run.stdout) as { ok: boolean; problems: string[]; rows: { scenario: string; bug: string | null; runs: number; errors: number; failures: number; found: number; passed: boolean; determinism: { nondeterministic: { divergence: string }[] } }[] };
  t.false(result.ok);
  t.is(result.rows.length, 8, 'every row of every scenario was run (3 + 3 + 2)');
  const planted = result.rows.filter((r) => r.scenario === 'planted-random');
  t.true(planted.every((r) => r.determinism.nondeterministic.length > 0 && !r.passed), 'each planted-random row is nondeterministic');
  t.regex(planted[0].determinism.nondeterministic[0].divergence, /^entry #\d+ differs\n {2}pool {2}: .+\n {2}here {2}: /);
  t.true(result.rows.filter((r) => r.scenario === 'throwing-setup').every((r) => r.errors > 0 && r.runs === 0));
  const wrong = result.rows.find((r) => r.scenario === 'wrong-oracle' && r.bug !== null)!;
  t.is(wrong.found, 0);
  t.false(wrong.passed);
  t.true(result.rows.find((r) => r.scenario === 'wrong-oracle' && r.bug === null)!.passed, 'the fixes-on row of a sound scenario still passes');
  t.true(result.problems.some((p) => /^wrong-oracle \(unpaused patch, watched by the wrong oracle\): never-breaks never broke in 4 runs/.test(p)));
  t.true(result.problems.some((p) => /^throwing-setup \(all fixes on\): \d+ task\(s\) failed; first, seed 1: scenario "throwing-setup": setup\(\) threw/.test(p)));
  t.true(result.problems.some((p) => /^planted-random \(all fixes on\): seed \d+ did not reproduce \(nondeterministic\)/.test(p)));
});

test('campaign in workers mode: the first failure is run again, named and replayed in workers mode', (t) => {
  const dir = tempDir(t);
  const run = cli('scenarios/campaign.ts', ['--mode', 'workers', '--runs', '10', '--threads', '1', '--strategies', 'random', '--scenario', 'memtable-stale-icache', '--trace-dir', dir]);
  t.is(run.status, 0, run.stdout + run.stderr);
  t.regex(run.stdout, /trace written to .*-random-workers-off-.*-campaign\.json/);
  t.regex(run.stdout, /rerun: {3}npx tsx scenarios\/run\.ts memtable-stale-icache --seed \d+ --strategy random --mode workers --fix/);
  t.notRegex(run.stdout, /--mode inline/);
});

test('run.ts --replay: a directory or a missing file is named', (t) => {
  const dir = tempDir(t);
  const directory = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', dir]);
  t.is(directory.status, 2);
  t.is(directory.stderr, `error: ${dir} is a directory: give the trace file itself (a .json file a failing run wrote)\n`);
  const missing = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', join(dir, 'nope.json')]);
  t.is(missing.stderr, `error: no trace file at ${join(dir, 'nope.json')}\n`);
});

test('run.ts without a terminal still shows progress (a line every few seconds, and the last)', (t) => {
  const run = cli('scenarios/run.ts', ['memtable-stale-icache', '--runs', '3']);
  t.is(run.status, 0);
  t.regex(run.stderr, /^ {2}3\/3 runs, 0 failing, [\d.]+ runs\/s\n$/m);
});

test('memory stays flat: 300 runs fit in a heap that the old run.ts (every report kept) outgrew', (t) => {
  const run = cli('scenarios/run.ts', ['memtable-stale-icache', '--bug', '--runs', '300', '--strategy', 'random', '--json', '--trace-dir', tempDir(t)], ['--max-old-space-size=120']);
  t.not(run.status, null);
  t.notRegex(run.stderr, /heap out of memory/);
  const report = JSON.parse(run.stdout) as { runs: number; failures: number; traceHashes?: string[] };
  t.is(report.runs, 300);
  t.true(report.failures > 0);
  t.is(report.traceHashes, undefined, 'hashes only when asked for');
});

test('SIGINT: run.ts stops after the current run and prints what it has (exit 130)', async (t) => {
  const run = await interrupt(process.execPath, ['--import', 'tsx', 'scenarios/run.ts', 'memtable-stale-icache', '--runs', '100000'], /\d+\/100000 runs|runs\/s/, 'SIGINT');
  t.is(run.status, 130, run.stderr);
  t.regex(run.stdout, /stopped early \(SIGINT\) after \d+ of 100000 runs/);
  t.regex(run.stdout, /PASS: no invariant broke in \d+ run\(s\)/);
});

test('SIGTERM: the campaign stops after the runs in flight and prints the partial table (exit 143)', async (t) => {
  const run = await interrupt(process.execPath, ['--import', 'tsx', 'scenarios/campaign.ts', '--runs', '100000', '--trace-dir', tempDir(t)], /\[#*-*\] [1-9]\d*\/\d+ runs/, 'SIGTERM');
  t.is(run.status, 143, run.stderr);
  t.regex(run.stdout, /memtable-stale-icache {2}none +\d+ \(stopped\)/);
  t.regex(run.stdout, /campaign: STOPPED \(SIGTERM\)/);
});

test('killing the npx that launched a campaign does not leave the campaign running', async (t) => {
  const marker = tempDir(t);
  const run = await interrupt('npx', ['tsx', 'scenarios/campaign.ts', '--runs', '100000', '--trace-dir', marker], /\[#*-*\] [1-9]\d*\/\d+ runs/, 'SIGTERM', { detached: true });
  t.not(run.status, 0);
  const alive = (): number[] => {
    const ps = spawnSync('pgrep', ['-f', marker], { encoding: 'utf8' });
    return ps.stdout.split('\n').filter(Boolean).map(Number);
  };
  const deadline = performance.now() + 20_000;
  while (alive().length > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
  const left = alive();
  for (const pid of left) process.kill(pid, 'SIGKILL');
  t.deepEqual(left, [], 'no process of the campaign outlived its launcher');
});

test('a trace directory under /proc is one clear error, not a hang', (t) => {
  if (!existsSync('/proc/self')) return t.pass('no /proc here');
  const run = cli('scenarios/run.ts', ['push-two-addresses', '--trace-dir', '/proc/vcpusim-no-such-dir']);
  t.is(run.status, 2, run.stdout + run.stderr);
  t.regex(run.stderr, /--trace-dir \/proc\/vcpusim-no-such-dir cannot hold trace files/);
});
