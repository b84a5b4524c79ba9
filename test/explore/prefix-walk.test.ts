/**
 * Goal: a bounded search over whole runs that runs each schedule from a snapshot along the prefix
 * it shares with the schedule before (PrefixWalk) makes exactly the runs it makes from the start —
 * every schedule's trace hash, preemptions, deviations and choice points — so its levels, counts
 * and first failure are the same; and it does skip the shared prefixes. Method: vas-hook-late with
 * its fix off (the race is found at k = 1), each schedule run both ways on two rigs; the search
 * itself with and without sharing; a scenario whose hook callback counts in a closure variable
 * (state no snapshot holds) is refused with the entry that differs, as a branch refuses it.
 */
import test from 'ava';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { leakyCounterScenario } from '../support/leaky-scenario.ts';
import { exploreBounded } from '../../src/explore/exhaustive.ts';
import { attemptOn, attemptSchedule, exploreScenarioBounded } from '../../src/explore/exhaustive-run.ts';
import { BranchStateLeak, ScenarioRig } from '../../src/explore/scenario-rig.ts';

test.serial('every schedule of a bounded search, run along shared prefixes, is the run from the start: hash, shape and choice points', (t) => {
  const fromStart = ScenarioRig.open(vasHookLate, 'inline');
  const walking = ScenarioRig.open(vasHookLate, 'inline');
  t.teardown(async () => {
    await fromStart.close();
    await walking.close();
  });
  const fixes = fromStart.fixes.without(vasHookLate.bugs[0].fixesOff);
  const walk = walking.openWalk(1, fixes, 'exhaustive');
  t.teardown(() => walk.close());
  let compared = 0;
  const differences: string[] = [];
  const result = exploreBounded((choices) => {
    const expected = attemptSchedule(fromStart, 1, fixes, choices);
    const walked = attemptOn(walk.runChoices(choices));
    compared++;
    const same = walked.hash === expected.hash && walked.oracle === expected.oracle && walked.preemptions === expected.preemptions
      && walked.deviations === expected.deviations && JSON.stringify(walked.points) === JSON.stringify(expected.points)
      && JSON.stringify(walked.executed) === JSON.stringify(expected.executed) && JSON.stringify(walked.run.orderings) === JSON.stringify(expected.run.orderings);
    if (!same) differences.push(`schedule ${compared} (${choices.length} choices): ${walked.hash} vs ${expected.hash}`);
    return expected;
  }, { bound: 1, maxRuns: 160 });
  t.deepEqual(differences, []);
  t.is(compared, 160);
  t.true(result.levels[1].failures > 0, 'the race is among the schedules compared');
  // The walk skipped most of the shared prefixes: it did not run every schedule from the start.
  t.true(walk.reused > compared / 2, `${walk.reused} of ${compared} runs from a snapshot past the start`);
  t.true(walk.savedChoices > 10 * compared, `${walk.savedChoices} choices not run again`);
});

test.serial('the search along shared prefixes ends with the same levels, counts and first failure as the search from the start', (t) => {
  const rig = ScenarioRig.open(vasHookLate, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(vasHookLate.bugs[0].fixesOff);
  const shared = exploreScenarioBounded(rig, 1, fixes, { bound: 1, maxRuns: 3000 });
  const plain = exploreScenarioBounded(rig, 1, fixes, { bound: 1, maxRuns: 3000, sharePrefixes: false });
  t.true(shared.complete);
  t.deepEqual(shared.levels, plain.levels);
  t.is(shared.distinct, plain.distinct);
  t.is(shared.firstFailureAfter, plain.firstFailureAfter);
  t.is(shared.firstFailure?.hash, plain.firstFailure?.hash);
  t.true((shared.firstFailure?.run.trace.choices.length ?? 0) > 0);
  // A run of the rig after the walk closed starts afresh.
  t.is(rig.runChoices(1, shared.firstFailure!.executed, fixes).report.hash, plain.firstFailure!.hash);
});

test.serial('state a snapshot cannot see (a closure variable of a hook callback) is refused with the entry that differs', (t) => {
  const rig = ScenarioRig.open(leakyCounterScenario, 'inline');
  t.teardown(() => rig.close());
  const error = t.throws(() => exploreScenarioBounded(rig, 1, rig.fixes.without([]), { bound: 1, maxRuns: 400 }), { instanceOf: BranchStateLeak });
  t.regex(error.message, /engine\.state/);
  t.regex(error.message, /note counted writes=/);
  // Without sharing, the same search runs (each schedule from the start: nothing to leak).
  t.notThrows(() => exploreScenarioBounded(rig, 1, rig.fixes.without([]), { bound: 1, maxRuns: 60, sharePrefixes: false }));
});
