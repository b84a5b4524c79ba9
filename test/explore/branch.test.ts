/**
 * Goal: branching from a snapshot is exact. For every built-in scenario, a run branched in the
 * middle of a prefix — the whole simulation snapshotted there, suffixes run from it, the snapshot
 * restored (dirty RAM pages only) before each — gives runs whose traces replay strictly from the
 * start to the same hash, and the same suffix twice gives one run. Branching at a race window
 * (an ordering pair's side beginning) finds the mem-table race from there. State a snapshot cannot
 * see (a variable a callback closes over) is caught and named, and the workers mode is refused.
 * A suffix's ordering coverage, scanned from the prefix's scan on, equals the whole run's.
 */
import test from 'ava';
import { SCENARIOS } from '../../scenarios/index.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { leakyCounterScenario } from '../support/leaky-scenario.ts';
import { BranchStateLeak, failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { lastPointAtOrBefore, parseBranchPoint } from '../../src/explore/branch.ts';
import { exploreBranchBounded } from '../../src/explore/exhaustive-run.ts';
import { staleViolation } from '../../scenarios/stale-violation.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';

for (const definition of SCENARIOS as readonly ScenarioDefinition<ScenarioGuest>[]) {
  test.serial(`${definition.name}: a branch from a snapshot gives the hash of the same schedule run from the start`, (t) => {
    const rig = ScenarioRig.open(definition, 'inline');
    t.teardown(() => rig.close());
    const fixes = rig.fixes.without(definition.bugs[0].fixesOff);
    const whole = rig.run({ seed: 7, strategy: 'random', depth: 2, fixes });
    const result = rig.branch({
      prefix: { seed: 7, strategy: 'random', depth: 2, fixes },
      at: { choice: Math.floor(whole.choices / 2) },
      suffixes: [21, 22].map((seed) => ({ seed, strategy: 'random' as const })),
    });
    t.true(result.at > 0 && result.at <= whole.choices / 2, `branched at ${result.at} of ${whole.choices}`);
    t.is(result.runs.length, 2);
    // Two restores: before the second suffix, and before the first one again (the built-in check).
    t.is(result.dirtyPages.length, 2);
    for (const pages of result.dirtyPages) t.true(pages < result.ramPages / 4, `${pages} of ${result.ramPages} pages copied back`);
    for (const run of result.runs) {
      t.is(run.strategy, 'branched');
      t.true(run.trace.choices.length > result.at);
      const again = rig.replay(traceJsonOf(run), fixes);
      t.is(again.hash, run.hash, 'the same choices from the start: the same run');
      // The suffix scanned only its own events, going on from the prefix's scan: the same orderings, witnesses and all.
      t.deepEqual(run.orderings, again.orderings);
      t.deepEqual(run.windows, again.windows);
    }
  });
}

test.serial('memtable: branched at the patch window, the suffixes find the race and every failure replays', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
  const result = rig.branch({
    prefix: { seed: 1, strategy: 'random', depth: 2, fixes },
    at: { pair: 'patch-vs-running-peer', side: 'a' },
    suffixes: Array.from({ length: 12 }, (_, index) => ({ seed: index + 1, strategy: 'random' as const })),
  });
  const failures = result.runs.filter(failed);
  t.true(failures.length > 0 && failures.length < result.runs.length, `${failures.length} of ${result.runs.length} suffixes failed`);
  t.is(failures[0].violations[0].oracle, memtableStaleIcache.bugs[0].caughtBy);
  const replayed = rig.replay(traceJsonOf(failures[0]), fixes);
  t.is(replayed.hash, failures[0].hash);
  t.is(replayed.violations[0].oracle, failures[0].violations[0].oracle);
  // The prefix stops before the patch: no suffix's patch started before the branch point.
  const withFix = rig.branch({ prefix: { seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without([]) }, at: { pair: 'patch-vs-running-peer', side: 'a' }, suffixes: [{ seed: 1, strategy: 'random' }] });
  t.false(failed(withFix.runs[0]), 'with every fix on, no suffix fails');
});

test.serial('a recorded trace as the prefix: the same point and the same suffixes as its seed and strategy', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
  const recorded = traceJsonOf(rig.run({ seed: 3, strategy: 'pos', depth: 2, fixes }));
  const suffixes = [5, 6].map((seed) => ({ seed, strategy: 'random' as const }));
  const fromSeed = rig.branch({ prefix: { seed: 3, strategy: 'pos', depth: 2, fixes }, at: { choice: 300 }, suffixes });
  const fromTrace = rig.branch({ prefix: { trace: recorded, fixes }, at: { choice: 300 }, suffixes });
  t.is(fromTrace.at, fromSeed.at);
  t.deepEqual(fromTrace.runs.map((run) => run.hash), fromSeed.runs.map((run) => run.hash));
});

test.serial('suffixes cut at a horizon stop there, judged by the continuous oracles alone, and find the race as whole suffixes do', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
  const request = { prefix: { seed: 1, strategy: 'random' as const, depth: 2, fixes }, at: { pair: 'patch-vs-running-peer', side: 'a' as const }, suffixes: Array.from({ length: 12 }, (_, index) => ({ seed: index + 1, strategy: 'random' as const })) };
  const whole = rig.branch(request);
  const cut = rig.branch({ ...request, horizon: 80 });
  t.is(cut.at, whole.at);
  for (const [index, run] of cut.runs.entries()) {
    if (failed(run)) {
      t.is(run.outcome, 'stopped', 'a failure is a continuous oracle that broke before the horizon');
      t.is(run.hash, whole.runs[index].hash, 'the same suffix, cut or whole, up to where it broke');
    } else {
      t.is(run.outcome, 'horizon');
      t.is(run.choices, cut.at + 80);
      t.false(failed(whole.runs[index]) && whole.runs[index].outcome === 'stopped' && whole.runs[index].choices <= cut.at + 80);
    }
  }
  t.true(cut.runs.some(failed));
});

test.serial('a callback that keeps its count in a closure variable is caught by the branch check, with the entry that differs', (t) => {
  const rig = ScenarioRig.open(leakyCounterScenario, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without([]);
  const error = t.throws(() => rig.branch({ prefix: { seed: 3, strategy: 'random', depth: 2, fixes }, at: { choice: 20 }, suffixes: [{ seed: 1, strategy: 'random' }] }), { instanceOf: BranchStateLeak });
  t.regex(error.message, /engine\.state/);
  t.regex(error.message, /note counted writes=/);
});

test.serial('bounded-exhaustive from a branch point: every schedule after the window opens with at most one preemption, the failures replaying from the start', (t) => {
  const rig = ScenarioRig.open(staleViolation, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(staleViolation.bugs[0].fixesOff);
  const at = { pair: staleViolation.orderings![0].name, side: 'a' as const };
  const open = rig.openBranch({ prefix: { seed: 1, strategy: 'random', depth: 2, fixes }, at, suffixes: [] });
  const result = exploreBranchBounded(open, { bound: 1 });
  open.close();
  t.true(result.complete);
  t.deepEqual(result.levels.map((level) => level.k), [0, 1]);
  t.is(result.distinct, result.runs, 'every schedule a different run');
  t.true(result.levels[1].failures > 0);
  const failure = result.firstFailure!;
  t.true(failure.run.trace.choices.length > open.at, 'the trace holds the prefix and the suffix');
  const replayed = rig.replay(traceJsonOf(failure.run), fixes);
  t.is(replayed.hash, failure.run.hash);
  t.is(replayed.violations[0].oracle, failure.oracle!);
  // With every fix on, no schedule without a preemption after the point fails.
  const fixed = rig.openBranch({ prefix: { seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without([]) }, at, suffixes: [] });
  const clean = exploreBranchBounded(fixed, { bound: 0 });
  fixed.close();
  t.true(clean.complete);
  t.is(clean.levels[0].failures, 0);
});

test('branch points: parsing, and the last top-level point at or before a choice', (t) => {
  t.deepEqual(parseBranchPoint('choice:40'), { choice: 40 });
  t.deepEqual(parseBranchPoint('pair:patch-vs-running-peer'), { pair: 'patch-vs-running-peer', side: 'a' });
  t.deepEqual(parseBranchPoint('pair:x:b'), { pair: 'x', side: 'b' });
  t.is(parseBranchPoint('choice:'), null);
  t.is(lastPointAtOrBefore([0, 1, 4, 9], 8), 4);
  t.is(lastPointAtOrBefore([0, 1, 4, 9], 9), 9);
  t.is(lastPointAtOrBefore([3], 2), null);
});

test.serial('the workers mode is refused with the reason; an unknown pair names the pairs there are', (t) => {
  const workers = ScenarioRig.open(memtableStaleIcache, 'workers');
  t.teardown(() => workers.close());
  t.throws(() => workers.branch({ prefix: { seed: 1, strategy: 'random', depth: 2, fixes: workers.fixes.without([]) }, at: { choice: 5 }, suffixes: [] }), { message: /inline mode/ });
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  t.throws(() => rig.branch({ prefix: { seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without([]) }, at: { pair: 'nope', side: 'a' }, suffixes: [] }), { message: /no ordering pair "nope"; its pairs: patch-vs-waiting-peer/ });
});
