/**
 * Goal: the coverage-guided search goes after the orders its base strategy misses, and stays
 * replayable. On the mem-table race with the patch unpaused, PCT rarely lets a vCPU run while the
 * patch is half written; the search, by changing a kept PCT run's schedule inside the patch,
 * produces that order from a changed run within 30 runs and finds the failure it leads to. The
 * same seed gives the same search; the failing run's trace (labelled "covering") replays
 * strictly; an order that cannot happen is given up after its aimed runs missed. `run.ts --cover`
 * prints the coverage and exits 1 on a failure.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { searchCoverage } from '../../src/explore/coverage-guided.ts';
import { ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

const root = new URL('../../', import.meta.url).pathname;

test('guided over PCT: the unpaused patch is overlapped by a changed run, the failure found replays, the search is decided by its seed', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(['pauseWhilePatching']);
  const result = searchCoverage(rig, fixes, { runs: 30, seed: 1, base: 'pct' });
  t.log(result.coverage.describe().join('\n'));
  const overlap = result.found.find((f) => f.pair === 'patch-vs-running-peer' && f.ordering === 'a-during-b');
  t.truthy(overlap, 'a vCPU ran while the patch was half written');
  t.regex(overlap?.how ?? '', /^changed run \d+ toward a-during-b$/);
  t.true(result.hit > 0 && result.aimed > result.hit);
  t.true(result.givenUp.includes('patch-vs-waiting-peer a-before-b'), 'a peer never exits at a load already relocated');

  const failure = result.firstFailure;
  if (failure === null) return t.fail('no failure in 30 runs');
  t.is(failure.strategy, 'covering');
  t.is(failure.violations[0].oracle, 'guest-alive');
  const replayed = rig.replay(parseTraceJson(JSON.stringify(traceJsonOf(failure))), fixes);
  t.is(replayed.hash, failure.hash);
  t.is(replayed.violations[0]?.oracle, 'guest-alive');

  const again = searchCoverage(rig, fixes, { runs: 30, seed: 1, base: 'pct' });
  t.deepEqual(again.found, result.found);
  t.deepEqual(again.coverage.toJSON(), result.coverage.toJSON());
  t.is(again.firstFailure?.hash, failure.hash);
});

test('a scenario with no ordering pairs has nothing to cover', async (t) => {
  const rig = ScenarioRig.open({ ...(memtableStaleIcache as ScenarioDefinition<ScenarioGuest>), orderings: [] }, 'inline');
  t.teardown(() => rig.close());
  t.throws(() => searchCoverage(rig, rig.fixes.defaults(), { runs: 1, seed: 1 }), { message: /declares no ordering pairs/ });
});

test('run.ts --cover prints the coverage per pair and exits 1 on a failure; it refuses options that choose runs', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-cover-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scenarios/run.ts'), 'memtable-stale-icache', ...args], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const found = run(['--cover', '20', '--fix', 'pauseWhilePatching=off', '--json', '--trace-dir', dir]);
  t.is(found.status, 1, found.stderr);
  const report = JSON.parse(found.stdout) as { cover: { runs: number; base: string; covered: { seen: number; of: number }; coverage: Record<string, Record<string, number>> }; firstFailure: { invariant: string; trace: string } };
  t.is(report.cover.runs, 20);
  t.is(report.cover.base, 'pct');
  t.is(report.cover.covered.of, 8);
  t.true(report.cover.coverage['patch-vs-running-peer']['a-during-b'] > 0);
  t.is(report.firstFailure.invariant, 'guest-alive');
  const clash = run(['--cover', '5', '--runs', '3']);
  t.is(clash.status, 2);
  t.regex(clash.stderr, /--cover makes its own runs: drop --runs/);
});
