/**
 * Goal: with the icache flush and the `Patched` guard off, the race is found by the real run —
 * a second relocation of the same load, caught by the oracles — within a stated budget for each
 * strategy; a failing run's trace replays to the same failure (inline and in workers); free-
 * running finds it too; and turning off the pause while patching brings its own crash back.
 * Budgets (measured over seeds 1..200: rr 100%, random 41%, PCT d=2 31.5%, d=3 42.5%): the first
 * failure within 20 seeds for random and PCT d=2/3, at seed 1 for rr; PCT d=1 cannot find it
 * (one priority order never leaves a second vCPU waiting on the load).
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { explore, exploreScenario } from '../../src/ava.ts';
import { failed, ScenarioRig, traceJsonOf, type RunReport } from '../../src/explore/scenario-rig.ts';
import type { StrategyName } from '../../src/explore/schedulers/index.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';
import { DEFAULT_FIXES, fixesWithout } from '../../src/intro/fixes.ts';

const bugOff = fixesWithout(memtableStaleIcache.bugs[0].fixesOff);
const BUDGET = 20;

function firstFailure(rig: ScenarioRig<ReturnType<typeof memtableStaleIcache.setup>>, strategy: StrategyName, depth: number, fixes = bugOff): RunReport | null {
  for (let seed = 1; seed <= BUDGET; seed++) {
    const report = rig.run({ seed, strategy, depth, fixes });
    if (failed(report)) return report;
  }
  return null;
}

for (const [strategy, depth] of [['rr', 2], ['random', 2], ['pct', 2], ['pct', 3]] as const) {
  test(`fixes off: ${strategy}${strategy === 'pct' ? ` d=${depth}` : ''} finds the double relocation within ${BUDGET} seeds`, async (t) => {
    const { found: report } = await exploreScenario(t, memtableStaleIcache, { seeds: BUDGET, strategy, depth, fixesOff: 'bug', expect: 'finds-bug' });
    if (report === null) return;
    t.log(`first failing seed ${report.seed}: ${report.violations.map((v) => v.oracle).join(', ')}`);
    t.regex(report.violations[0].detail, /relocated 2 times/);
    t.true(report.windows.includes('stale-icache-decode'), 'the waiting vCPU decoded the stale MOV');
    t.true(report.windows.includes('peer-waiting-at-patch'));
    const names = report.violations.map((v) => v.oracle);
    // The leaked cloak of the first relocation is undone by the memory cloak's own uninit (HVMI's
    // IntMemClkUnInit, after mem-tables), so the image and hooks come back; the slack does not.
    for (const consequence of ['no-overlapping-patches', 'no-slack-leak']) t.true(names.includes(consequence), consequence);
  });
}

test('PCT d=1 cannot find it: one fixed priority order never leaves a peer waiting on the load', explore, memtableStaleIcache, {
  seeds: BUDGET, strategy: 'pct', depth: 1, fixesOff: 'bug', expect: 'no-failure',
});

test('a failing trace, written as JSON, replays to the same failure inline and in workers', async (t) => {
  const inline = ScenarioRig.open(memtableStaleIcache, 'inline');
  const workers = ScenarioRig.open(memtableStaleIcache, 'workers');
  t.teardown(() => Promise.all([inline.close(), workers.close()]));
  const report = firstFailure(inline, 'random', 2);
  if (report === null) return t.fail('no failure to replay');
  const recorded = parseTraceJson(JSON.stringify(traceJsonOf(report)));
  for (const rig of [inline, workers]) {
    const replay = rig.replay(recorded, bugOff);
    t.is(replay.hash, report.hash, `${rig.mode}: same trace hash`);
    t.deepEqual(replay.violations, report.violations, `${rig.mode}: same broken invariants, same details`);
  }
  // The recorded schedule does not fit a run with the fixes on: the replay says where it departs.
  t.throws(() => inline.replay(recorded, DEFAULT_FIXES), { name: 'ReplayDivergence', message: /diverged at entry #\d+/ });
});

test('free-running (workers in parallel, OS scheduling) finds it too', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'free');
  t.teardown(() => rig.close());
  const runs = 20;
  let found = 0;
  for (let seed = 1; seed <= runs; seed++) if (failed(rig.run({ seed, strategy: 'random', depth: 2, fixes: bugOff }))) found++;
  t.log(`fixes off: race found in ${found}/${runs} free-running runs`);
  t.true(found > 0);
  let falseAlarms = 0;
  for (let seed = 1; seed <= 10; seed++) if (failed(rig.run({ seed, strategy: 'random', depth: 2, fixes: DEFAULT_FIXES }))) falseAlarms++;
  t.is(falseAlarms, 0, 'fixes on: no failure');
  // A handler's resume lets the vCPUs run while it goes on: an unpaused patch is caught half-written.
  let crashes = 0;
  for (let seed = 1; seed <= 40; seed++) if (failed(rig.run({ seed, strategy: 'random', depth: 2, fixes: fixesWithout(['pauseWhilePatching']) }))) crashes++;
  t.log(`pauseWhilePatching off: guest crash in ${crashes}/40 free-running runs`);
  t.true(crashes > 0);
});

test('patching without pausing: a vCPU runs the new JMP into a handler not yet written, and bug-checks', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = fixesWithout(['pauseWhilePatching']);
  let report: RunReport | null = null;
  for (let seed = 1; seed <= BUDGET && report === null; seed++) {
    const run = rig.run({ seed, strategy: 'random', depth: 2, fixes });
    if (failed(run)) report = run;
  }
  if (report === null) return t.fail('no failure');
  t.is(report.violations[0].oracle, 'guest-alive');
  t.regex(report.violations[0].detail, /bug-checked: vector 14 .* inside the mem-table handler/);
  t.true(report.windows.includes('vcpu-ran-mid-patch'));
  t.true(report.trace.choices.some((c) => c.kind === 'proceed'), 'the scheduler chose at preemption points inside the handler');
  const replay = rig.replay(traceJsonOf(report), fixes);
  t.is(replay.hash, report.hash);
  t.deepEqual(replay.violations, report.violations);
});

test('either mitigation alone prevents the double relocation: the flush, or the Patched guard', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  for (const off of [['icacheFlushOnPatch'], ['patchedGuard'], ['patchedGuard', 'toctouRetry', 'peerPatchedRetry']] as const) {
    const failures: number[] = [];
    let windows = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const report = rig.run({ seed, strategy: 'random', depth: 2, fixes: fixesWithout(off) });
      if (failed(report)) failures.push(seed);
      if (report.windows.includes('peer-waiting-at-patch')) windows++;
    }
    t.deepEqual(failures, [], `only ${off.join(', ')} off`);
    t.true(windows > 5, `the race window was reached (${windows}/60) with only ${off.join(', ')} off`);
  }
});
