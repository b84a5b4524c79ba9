/**
 * Goal: replaying a failing schedule with a fix switched on proves (or refutes) that the fix
 * removes the failure on that very interleaving: the same choices are followed, the first point
 * where the runs part is named, and the verdict is the fixed run's own oracles.
 * Method: the stale-icache race of memtable-stale-icache, found by random with its two fixes off
 * (and, for the control, an unrelated page-table fix off too); each fix switched on alone; the
 * unrelated one switched on changes nothing.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { NothingToFixError, replayWithFix } from '../../src/explore/fix-differential.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';

const BUG = [...memtableStaleIcache.bugs[0].fixesOff, 'duplicateWriteDrop'];

async function failingTrace() {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  const fixes = rig.fixes.without(BUG);
  for (let seed = 1; seed <= 40; seed++) {
    const report = rig.run({ seed, strategy: 'random', depth: 2, fixes });
    if (failed(report)) return { rig, fixes, trace: traceJsonOf(report), oracle: report.violations[0].oracle };
  }
  await rig.close();
  throw new Error('no random seed up to 40 failed');
}

test('each of the race\'s fixes, switched on, removes the failure on the recorded interleaving; the runs part where the fix acts', async (t) => {
  const { rig, fixes, trace, oracle } = await failingTrace();
  t.teardown(() => rig.close());
  for (const fix of memtableStaleIcache.bugs[0].fixesOff) {
    const diff = replayWithFix(rig, trace, fixes, rig.fixes.apply(fixes, [`${fix}=on`]));
    t.is(diff.oracle, oracle);
    t.is(diff.recorded.hash, trace.hash, 'the recorded run is replayed exactly first');
    t.true(diff.holds, `${fix} on: ${diff.fixed.violations.map((v) => v.oracle).join(', ')}`);
    t.true(diff.oracleHolds);
    t.not(diff.divergence, null);
    t.regex(diff.divergence!, /^entry #\d+ differs\n {2}failed: .+\n {2}fixed : /);
    t.log(`${fix}: ${diff.divergence!.split('\n').slice(0, 3).join(' | ')}`);
  }
});

test('a fix unrelated to the race changes nothing on the schedule: the runs do not part and the invariant still breaks', async (t) => {
  const { rig, fixes, trace, oracle } = await failingTrace();
  t.teardown(() => rig.close());
  const diff = replayWithFix(rig, trace, fixes, rig.fixes.apply(fixes, ['duplicateWriteDrop=on']));
  t.false(diff.holds);
  t.false(diff.oracleHolds);
  t.is(diff.divergence, null);
  t.is(diff.skipped, 0);
  t.is(diff.fixed.hash, trace.hash, 'the same choices, the same run');
  t.is(diff.fixed.violations[0].oracle, oracle);
});

test('a recorded run that does not fail is refused: there is nothing for a fix to remove', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(BUG);
  const passing = rig.run({ seed: 1, strategy: 'rr', depth: 2, fixes: rig.fixes.defaults() });
  t.false(failed(passing));
  t.throws(() => replayWithFix(rig, traceJsonOf(passing), rig.fixes.defaults(), fixes), { instanceOf: NothingToFixError });
});
