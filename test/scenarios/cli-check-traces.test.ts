/**
 * Goal: `vcpusim check-traces` checks a corpus of recorded failures as a CI step would — every
 * trace of a directory, each judged on its own interleaving; a damaged file is reported and the
 * others still checked (in JUnit XML too, a test case per trace); the exit status says whether every one stays fixed; usage mistakes are
 * one error line and status 2. Method: traces of memtable's double relocation written by real
 * runs, the real CLI in a child process.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { firstMemtableFailure, writeFirstMemtableFailure } from '../support/memtable-failures.ts';
import { driftingMemtable } from '../support/drifting-scenario.ts';
import { ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { readTraceFile, writeRunTrace } from '../../src/report/trace-file.ts';

const root = new URL('../../', import.meta.url).pathname;

function checkTraces(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [join(root, 'bin/vcpusim.mjs'), 'check-traces', ...args], { cwd: root, encoding: 'utf8', timeout: 180_000, env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('a directory of recorded failures: each checked, a damaged file reported without losing the others, the exit status 0 only when all stay fixed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-check-traces-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const corpus = join(dir, 'corpus');
  mkdirSync(corpus);
  const good = await writeFirstMemtableFailure(corpus, memtableStaleIcache.bugs[0].fixesOff);
  const three = await writeFirstMemtableFailure(dir, [...memtableStaleIcache.bugs[0].fixesOff, 'pauseWhilePatching']);

  const clean = checkTraces([corpus]);
  t.is(clean.status, 0, clean.stdout + clean.stderr);
  t.regex(clean.stdout, /without the fixes: relocated-at-most-once breaks again, entry for entry/);
  t.regex(clean.stdout, /1 recorded failure\(s\), 1 kept fixed: 1 replayed exactly, 0 drifted but still failing without the fixes; 0 regression\(s\), 0 gone, 0 not checked/);

  writeFileSync(join(corpus, 'damaged.json'), '{ "format": "vcpusim-trace"');
  copyFileSync(three, join(corpus, 'three.json'));
  const junit = join(dir, 'junit', 'traces.xml');
  const mixed = checkTraces([corpus, '--junit', junit]);
  t.is(mixed.status, 1);
  const xml = readFileSync(junit, 'utf8');
  t.regex(xml, /<testsuites name="vcpusim recorded failures" tests="3" failures="1" errors="0"/);
  t.regex(xml, /<testcase classname="vcpusim.recorded" name="damaged.json" time="[\d.]+">\n {6}<failure message="[^"]*not JSON[^"]*" type="not-checked">/);
  t.regex(xml, /<testcase classname="vcpusim.recorded.memtable-stale-icache" name="three.json" time="[\d.]+">\n {6}<system-out>[^<]*breaks again, entry for entry/);
  t.regex(mixed.stdout, /damaged\.json: NOT CHECKED — .*damaged\.json: not JSON/);
  t.regex(mixed.stdout, /3 recorded failure\(s\), 2 kept fixed: 2 replayed exactly, .*; 0 regression\(s\), 0 gone, 1 not checked/);

  const regression = checkTraces([three, '--with-fix', 'pauseWhilePatching', '--json', '--trace-dir', dir]);
  t.is(regression.status, 1, regression.stderr);
  const [line, summary] = regression.stdout.trim().split('\n').map((text) => JSON.parse(text) as Record<string, unknown>);
  t.like(line, { reproduction: 'exact', holds: false, keptFixed: false, oracle: 'relocated-at-most-once', fixedViolations: ['relocated-at-most-once', 'no-overlapping-patches', 'no-slack-leak'] });
  t.true(typeof line.fixedTrace === 'string' && existsSync(line.fixedTrace), 'the fixed run that broke wrote its trace');
  t.like(summary, { ok: false, regressions: 1, kept: 0 });
  t.is(checkTraces([good]).status, 0);
});

test('check-traces usage mistakes: one error line, status 2', (t) => {
  const none = checkTraces([]);
  t.is(none.status, 2);
  t.regex(none.stderr, /^error: give the traces: a directory of them, or trace files\n/);
  const missing = checkTraces(['/nonexistent/traces']);
  t.is(missing.status, 2);
  t.regex(missing.stderr, /^error: no trace file or directory at \/nonexistent\/traces\n/);
  const drift = checkTraces(['.', '--drift', 'sometimes']);
  t.is(drift.status, 2);
  t.regex(drift.stderr, /--drift must be allowed or refused, got "sometimes"/);
  const help = checkTraces(['--help']);
  t.is(help.status, 0);
  t.regex(help.stdout, /^usage: npx vcpusim check-traces/);
});

test('--update writes a drifted recording again as it runs now: the same seed, fixes and invariant, and the next check replays it exactly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-check-update-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rig = ScenarioRig.open(driftingMemtable, 'inline');
  const file = writeRunTrace(dir, firstMemtableFailure(rig, memtableStaleIcache.bugs[0].fixesOff));
  await rig.close();
  const before = readTraceFile(file);
  const module = join(root, 'test/support/drifting-scenario.ts');
  const changed = { VCPUSIM_TEST_CLOCK_EVERY: '1550' };

  const drifted = checkTraces([file, '--load', module], changed);
  t.is(drifted.status, 0, drifted.stdout + drifted.stderr);
  t.regex(drifted.stdout, /without the fixes: drifted — /);
  t.regex(drifted.stdout, /1 kept fixed: 0 replayed exactly, 1 drifted but still failing without the fixes;/);
  t.is(checkTraces([file, '--load', module, '--drift', 'refused'], changed).status, 1, 'refused drift fails');
  t.deepEqual(readTraceFile(file), before, 'nothing written without --update');

  const updated = checkTraces([file, '--load', module, '--update', '--drift', 'refused'], changed);
  t.is(updated.status, 0, updated.stdout + updated.stderr);
  t.regex(updated.stdout, /written again as it runs now \(trace hash \w+\): the next check replays it exactly/);
  t.regex(updated.stdout, /; 1 written again\n$/);
  const after = readTraceFile(file);
  t.like(after, { scenario: before.scenario, seed: before.seed, fixesOff: before.fixesOff, broke: before.broke, strategy: 'followed' });
  t.not(after.hash, before.hash);

  const exact = checkTraces([file, '--load', module, '--drift', 'refused'], changed);
  t.is(exact.status, 0, exact.stdout + exact.stderr);
  t.regex(exact.stdout, /breaks again, entry for entry/);
});

test('campaign --corpus writes each bug row\'s shrunk failure under the row\'s own name, and check-traces keeps them fixed', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-corpus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const corpus = join(dir, 'corpus');
  const campaign = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scenarios/campaign.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  const run = campaign(['--scenario', 'push-two-addresses', '--runs', '8', '--threads', '1', '--json', '--trace-dir', join(dir, 'traces'), '--corpus', corpus]);
  t.is(run.status, 0, run.stderr);
  const written = (JSON.parse(run.stdout) as { corpus: { written: string[]; missing: string[] } }).corpus;
  t.deepEqual(written, { dir: corpus, written: [join(corpus, 'push-two-addresses--analyseEveryAddress.json')], missing: [] });
  t.like(readTraceFile(written.written[0]), { scenario: 'push-two-addresses', fixesOff: ['analyseEveryAddress'], broke: 'protected-table-unchanged', strategy: 'shrunk' });
  const checked = checkTraces([corpus]);
  t.is(checked.status, 0, checked.stdout + checked.stderr);
  t.regex(checked.stdout, /1 recorded failure\(s\), 1 kept fixed: 1 replayed exactly/);
  for (const [args, message] of [
    [['--shrink-runs', '0'], /--corpus writes each bug row's shrunk failure: not with --shrink-runs 0/],
  ] as const) {
    const refused = campaign(['--scenario', 'push-two-addresses', '--runs', '2', '--corpus', corpus, ...args]);
    t.is(refused.status, 2);
    t.regex(refused.stderr, message);
  }
});
