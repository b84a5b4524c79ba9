/**
 * Goal: the command-line tools behave as the README says — run.ts prints one JSON object with
 * --json, exits 1 when a run failed and 0 when none did, writes a trace that --replay follows,
 * and answers bad input with one clear error and exit 2; the campaign spreads runs over a piscina
 * pool and reports the fixes-off row failing and the fixes-on row clean. Method: the real CLIs in
 * child processes.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';

const root = new URL('../../', import.meta.url).pathname;

function cli(script: string, args: string[], timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, script), ...args], { cwd: root, encoding: 'utf8', timeout: timeoutMs });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('run.ts --json: a race found (exit 1), its trace written, and --replay following it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const found = cli('scenarios/run.ts', ['memtable-stale-icache', '--bug', '--runs', '12', '--strategy', 'random', '--json', '--hashes', '--trace-dir', dir]);
  t.is(found.status, 1, found.stderr);
  const report = JSON.parse(found.stdout) as { scenario: string; runs: number; failures: number; firstFailure?: { seed: string; invariant: string; trace: string }; windowsReached: Record<string, number>; traceHashes: string[] };
  t.is(report.scenario, 'memtable-stale-icache');
  t.is(report.runs, 12);
  t.true(report.failures > 0);
  t.is(report.firstFailure?.invariant, 'relocated-at-most-once');
  t.true(existsSync(report.firstFailure!.trace));
  t.is(report.traceHashes.length, 12);
  t.true(report.windowsReached['peer-waiting-at-patch'] > 0);

  const replayed = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', report.firstFailure!.trace, '--trace-dir', dir]);
  t.is(replayed.status, 1);
  t.regex(replayed.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  t.regex(replayed.stdout, /invariant broken: relocated-at-most-once/);
  t.regex(replayed.stdout, /replay: {2}npx tsx scenarios\/run\.ts memtable-stale-icache --replay /);
  t.regex(replayed.stdout, /rerun: {3}npx tsx scenarios\/run\.ts memtable-stale-icache --seed \d+ --strategy random --mode inline --fix icacheFlushOnPatch=off --fix patchedGuard=off/, 'the rerun uses the recorded strategy');

  // --fix applies on top of the recorded fixes (here: one that was already off).
  const same = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', report.firstFailure!.trace, '--fix', 'patchedGuard=off', '--json', '--hashes', '--trace-dir', dir]);
  t.is(JSON.parse(same.stdout).traceHashes[0], report.traceHashes[Number(report.firstFailure!.seed) - 1]);
  const refused = cli('scenarios/run.ts', ['memtable-stale-icache', '--replay', report.firstFailure!.trace, '--seed', '3']);
  t.is(refused.status, 2);
  t.regex(refused.stderr, /--replay follows the recorded seed and schedule; drop --seed/);
});

test('run.ts: fixes on, no failure (exit 0); bad input, one clear error (exit 2)', (t) => {
  const clean = cli('scenarios/run.ts', ['memtable-stale-icache', '--runs', '3', '--strategy', 'pct', '--depth', '3']);
  t.is(clean.status, 0, clean.stderr);
  t.regex(clean.stdout, /PASS: no invariant broke in 3 run\(s\)/);
  const badFix = cli('scenarios/run.ts', ['memtable-stale-icache', '--fix', 'flush=off']);
  t.is(badFix.status, 2);
  t.regex(badFix.stderr, /^error: bad fix setting "flush=off": expected name=on\|off with name one of icacheFlushOnPatch/);
  const badName = cli('scenarios/run.ts', ['no-such-race']);
  t.is(badName.status, 2);
  t.regex(badName.stderr, /unknown scenario "no-such-race"; known scenarios: memtable-stale-icache.* \(a scenario of your own: --load its module\)/);
  const badStrategy = cli('scenarios/run.ts', ['memtable-stale-icache', '--strategy', 'dfs']);
  t.is(badStrategy.status, 2);
  t.regex(badStrategy.stderr, /--strategy must be one of rr, random, pct, pos, surw, got "dfs"/);
});

test('campaign.ts over a piscina pool: every bug row finds its race, the fixes-on row is clean', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-campaign-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const junit = join(dir, 'report', 'campaign.xml');
  mkdirSync(dirname(junit));
  const run = cli('scenarios/campaign.ts', ['--runs', '8', '--threads', '2', '--json', '--scenario', memtableStaleIcache.name, '--trace-dir', dir, '--junit', junit]);
  t.is(run.status, 0, run.stderr);
  const xml = readFileSync(junit, 'utf8');
  t.regex(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="vcpusim campaign" tests="3" failures="0" errors="0"/);
  t.is(xml.match(/<testcase classname="vcpusim\.memtable-stale-icache" name="[^"]+" time="[\d.]+">/g)?.length, 3, 'one test case per row');
  t.regex(xml, /name="stale icache: double relocation \(icacheFlushOnPatch, patchedGuard off\)"/);
  const result = JSON.parse(run.stdout) as { ok: boolean; rows: { bug: string | null; runs: number; failures: number; found: number; trace: string | null }[] };
  t.true(result.ok);
  t.is(result.rows.length, 1 + memtableStaleIcache.bugs.length, 'all fixes on, and one row per bug of the scenario');
  const off = result.rows.find((r) => r.bug !== null && r.bug.startsWith('stale icache'))!;
  const on = result.rows.find((r) => r.bug === null)!;
  t.true(result.rows.filter((r) => r.bug !== null).every((r) => r.found > 0), 'every bug row broke its own oracle');
  t.is(off.runs, 8);
  t.true(off.failures > 0);
  t.true(existsSync(off.trace!), 'the first failing seed was re-run and its trace written');
  const perfetto = off.trace!.replace(/\.json$/, '.perfetto.json');
  t.true(existsSync(perfetto), 'and its Perfetto trace next to it');
  t.true((JSON.parse(readFileSync(perfetto, 'utf8')) as { traceEvents: unknown[] }).traceEvents.length > 100);
  t.is(on.failures, 0);
});

test('a scenario-declared fix works like HVMI\'s: --list shows it, --fix and --bug switch it, its trace replays', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const list = cli('scenarios/run.ts', ['--list']);
  t.regex(list.stdout, /stale-violation — .*\n(.*\n)*? {2}fix staleExitRetry: retry an EPT exit raised before the hook/);
  t.regex(list.stdout, / {2}bug: stale exit reaches the new hook: --fix staleExitRetry=off \(caught by callbacks-see-fresh-exits\)/);
  const off = cli('scenarios/run.ts', ['stale-violation', '--fix', 'staleExitRetry=off', '--strategy', 'random', '--trace-dir', dir]);
  t.is(off.status, 1, off.stderr);
  t.regex(off.stdout, /FAILED {2}stale-violation {2}seed 1 {2}random {2}inline {2}fixes off: staleExitRetry\n {2}invariant broken: callbacks-see-fresh-exits/);
  const trace = /trace written to (\S+)/.exec(off.stdout)?.[1];
  t.truthy(trace);
  const replay = cli('scenarios/run.ts', ['stale-violation', '--replay', trace!]);
  t.is(replay.status, 1);
  t.regex(replay.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  const bad = cli('scenarios/run.ts', ['stale-violation', '--fix', 'staleExitRetri=off']);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /bad fix setting "staleExitRetri=off": expected name=on\|off with name one of icacheFlushOnPatch, .*icacheSwapHook, staleExitRetry/);
});

test('campaign --shard 1/2 and 2/2, merged, equal one unsharded run: the same rows, counts and first failing seeds', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-shards-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const common = ['--runs', '10', '--threads', '1', '--json', '--scenario', memtableStaleIcache.name, '--trace-dir', dir, '--strategies', 'random,pct:2'];
  const whole = cli('scenarios/campaign.ts', common);
  t.is(whole.status, 0, whole.stderr);
  const files = [1, 2].map((index) => {
    const shard = cli('scenarios/campaign.ts', [...common, '--shard', `${index}/2`]);
    t.is(shard.status, 0, shard.stderr);
    const path = join(dir, `shard-${index}.json`);
    writeFileSync(path, shard.stdout);
    return path;
  });
  const merged = cli('scenarios/campaign.ts', ['merge', ...files, '--json']);
  t.is(merged.status, 0, merged.stderr);
  type Row = { bug: string | null; runs: number; failures: number; found: number; firstFailure: { seed: number } | null; firstFound: { seed: number } | null; windows: Record<string, number>; byStrategy: Record<string, { runs: number; failures: number; found: number; firstFailingSeed: number | null }> };
  const essence = (rows: Row[]) => rows.map((r) => ({ bug: r.bug, runs: r.runs, failures: r.failures, found: r.found, firstFailure: r.firstFailure?.seed ?? null, firstFound: r.firstFound?.seed ?? null, windows: r.windows, byStrategy: r.byStrategy }));
  const one = JSON.parse(whole.stdout) as { ok: boolean; rows: Row[] };
  const two = JSON.parse(merged.stdout) as { ok: boolean; rows: Row[] };
  t.deepEqual(essence(two.rows), essence(one.rows));
  t.is(two.ok, one.ok);
  // Each bug row's shrink starts from the simplest of the strategies' first failures, and says which.
  type Shrunk = { oracle: string; preemptions: number; pickedFrom: { label: string; tried: { label: string; oracle: string | null; preemptions: number }[] } };
  const bugRows = (JSON.parse(whole.stdout) as { rows: (Row & { shrunk?: Shrunk })[] }).rows.filter((row) => row.bug !== null);
  t.true(bugRows.length > 0);
  for (const row of bugRows) {
    const tried = row.shrunk!.pickedFrom.tried;
    const offered = Object.values(row.byStrategy).filter((s) => (row.found > 0 ? s.found > 0 : s.failures > 0)).length;
    t.is(tried.length, offered, `${row.bug}: one run offered per strategy that found the bug`);
    t.true(tried.some((run) => run.label === row.shrunk!.pickedFrom.label));
    const starts = tried.filter((run) => run.oracle === row.shrunk!.oracle).map((run) => run.preemptions);
    t.true(row.shrunk!.preemptions <= Math.min(...starts), `${row.bug}: no more preemptions than the simplest start`);
  }
  const halves = files.map((f) => (JSON.parse(readFileSync(f, 'utf8')) as { rows: Row[] }).rows[0].runs);
  t.deepEqual(halves, [5, 5], 'each shard ran half of every row');
  // Each shard shrank its own rows' failures: the merge keeps the simplest of them.
  type ShardShrunkRow = { bug: string | null; shrunk?: { preemptions: number; decisive: number; trace: string } };
  const shardRows = files.map((f) => (JSON.parse(readFileSync(f, 'utf8')) as { rows: ShardShrunkRow[] }).rows);
  const mergedRows = (JSON.parse(merged.stdout) as { rows: (ShardShrunkRow & { shrunk?: { shard: number } })[] }).rows;
  for (const [r, row] of mergedRows.entries()) {
    const offered = shardRows.map((rows) => rows[r].shrunk).filter((x) => x !== undefined);
    if (offered.length === 0) {
      t.is(row.shrunk, undefined);
      continue;
    }
    t.is(row.shrunk!.preemptions, Math.min(...offered.map((x) => x.preemptions)), `${row.bug}: the fewest preemptions over the shards`);
    t.is(row.shrunk!.trace, shardRows[row.shrunk!.shard - 1][r].shrunk!.trace, 'the trace its shard wrote');
  }
  t.true(mergedRows.some((row) => row.shrunk !== undefined));
  const table = cli('scenarios/campaign.ts', ['merge', ...files]);
  t.regex(table.stdout, /: shrunk to \d+ decisive choices? \/ \d+ preemptions? \(shard [12], seed \d+, the simplest over the shards\) \S+\.json/);
  t.regex(table.stdout, /30 runs merged from 2 shard\(s\)/);
  t.regex(table.stdout, /campaign: OK/);
});

test('campaign merge refuses shards that are not the slices of one campaign, with one clear error', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-shards-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'one.json');
  const shard = cli('scenarios/campaign.ts', ['--runs', '2', '--threads', '1', '--json', '--scenario', memtableStaleIcache.name, '--trace-dir', dir, '--strategies', 'random', '--shard', '1/2']);
  writeFileSync(path, shard.stdout);
  const missing = cli('scenarios/campaign.ts', ['merge', path]);
  t.is(missing.status, 2);
  t.regex(missing.stderr, /is shard 1\/2, but 1 shard file\(s\) were given: merge needs all 2/);
  const twice = cli('scenarios/campaign.ts', ['merge', path, path]);
  t.regex(twice.stderr, /shard 1\/2 is given twice/);
  const withBadShrunk = JSON.parse(shard.stdout) as { rows: Record<string, unknown>[] };
  withBadShrunk.rows[0].shrunk = { oracle: 'guest-alive', minimal: true, seed: '1', trace: null, preemptions: 'many', decisive: 1 };
  writeFileSync(join(dir, 'bad-shrunk.json'), JSON.stringify(withBadShrunk));
  const badShrunk = cli('scenarios/campaign.ts', ['merge', join(dir, 'bad-shrunk.json')]);
  t.is(badShrunk.status, 2);
  t.regex(badShrunk.stderr, /bad-shrunk\.json: rows\[0\]\.shrunk\.preemptions should be a number, got "many"/);
  writeFileSync(join(dir, 'bad.json'), '{"campaign": {"runs": 2}}');
  const bad = cli('scenarios/campaign.ts', ['merge', join(dir, 'bad.json')]);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /bad\.json: campaign\.shard should be an object/);
  const shardOption = cli('scenarios/campaign.ts', ['--shard', '3/2']);
  t.is(shardOption.status, 2);
  t.regex(shardOption.stderr, /--shard "3\/2": expected I\/N with 1 ≤ I ≤ N/);
});

test('npx vcpusim: the commands behind one entry, each with --help; replay takes the scenario from the trace', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-bin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = (args: string[]) => {
    const result = spawnSync(process.execPath, [join(root, 'bin/vcpusim.mjs'), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  };
  const help = bin(['--help']);
  t.is(help.status, 0);
  t.regex(help.stdout, /run <scenario>.*\n.*campaign .*\n.*campaign merge.*\n.*replay <trace\.json>/);
  t.regex(bin(['run', '--help']).stdout, /--replay FILE/);
  t.regex(bin(['campaign', '--help']).stdout, /--shard I\/N/);
  t.regex(bin(['replay', '--help']).stdout, /follows the trace a failing run wrote/);
  t.regex(bin(['shrink', '--help']).stdout, /fewest preemptions/);
  const unknown = bin(['frob']);
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /unknown command "frob"; the commands: run, campaign, replay, shrink, report, check-traces/);
  const found = bin(['run', 'push-two-addresses', '--bug', '--strategy', 'random', '--trace-dir', dir, '--json']);
  t.is(found.status, 1, found.stderr);
  const trace = (JSON.parse(found.stdout) as { firstFailure: { trace: string } }).firstFailure.trace;
  const replay = bin(['replay', trace]);
  t.is(replay.status, 1, replay.stderr);
  t.regex(replay.stdout, /replay followed all \d+ recorded choices; trace hash (\w+) \(recorded \1\)/);
  const html = join(dir, 'run.html');
  const report = bin(['report', trace, '--html', html]);
  t.is(report.status, 1, report.stderr);
  t.regex(readFileSync(html, 'utf8'), /^<!doctype html>/i);
  const nothing = bin(['report', trace]);
  t.is(nothing.status, 2);
  t.regex(nothing.stderr, /give at least one/);
});

test('campaign --json lists each row\'s strategies in the order of --strategies, whatever order the pool answered in', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-order-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = cli('scenarios/campaign.ts', ['--runs', '12', '--threads', '2', '--json', '--scenario', memtableStaleIcache.name, '--trace-dir', dir, '--strategies', 'surw,pct:2,random']);
  t.is(run.status, 0, run.stderr);
  const rows = (JSON.parse(run.stdout) as { rows: { byStrategy: Record<string, unknown> }[] }).rows;
  for (const row of rows) t.deepEqual(Object.keys(row.byStrategy), ['surw', 'pct(d=2)', 'random']);
});
