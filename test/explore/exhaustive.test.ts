/**
 * Goal: bounded-exhaustive exploration enumerates exactly the schedules with at most k
 * preemptions — counted by hand on a toy — and finds a real race at its preemption bound with a
 * guarantee for the levels below. Method: the toy of toy-schedule.ts (threads of 6 and 4 steps, one
 * step per choice point: 2 schedules without a preemption, (6−1)+(4−1) = 8 with one, 5·3 + 3·5 = 30
 * with two; the race needs thread 1 to step while thread 0 has done exactly 3); then the stale-icache
 * race of vas-hook-late (hooked without pausing) with its fix off and on.
 */
import test from 'ava';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { exploreBounded } from '../../src/explore/exhaustive.ts';
import { describeBounded, exploreScenarioBounded } from '../../src/explore/exhaustive-run.ts';
import { ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { toyBoundedAttempt } from './toy-schedule.ts';

test('the toy: exactly 2, 8 and 30 schedules with 0, 1 and 2 preemptions, all distinct, failures counted by hand', (t) => {
  const result = exploreBounded(toyBoundedAttempt, { bound: 2 });
  t.true(result.complete);
  t.deepEqual(result.levels.map((l) => l.schedules), [2, 8, 30]);
  t.is(result.distinct, 40);
  t.deepEqual(result.levels.map((l) => l.failures), [0, 1, 6]);
  t.is(result.firstFailure?.preemptions, 1);
  t.is(result.firstFailureAfter, 2 + 3, 'after both schedules without a preemption, the third of those with one');
  t.like(result.firstFailure?.executed[0], { kind: 'run', vcpu: 0 });
});

test('the toy: a budget ends the search with the levels below it complete and says so', (t) => {
  const result = exploreBounded(toyBoundedAttempt, { bound: 2, maxRuns: 15 });
  t.false(result.complete);
  t.is(result.runs, 15);
  t.deepEqual(result.levels.map((l) => l.complete), [true, true, false]);
  t.is(result.levels[2].schedules, 5);
  t.true(result.levels[2].pending > 0);
});

test('vas-hook-late: every schedule with at most one preemption, run — the unpaused hook (which PCT misses) is found at k = 1, none fails with the fixes on, and a failing schedule replays', async (t) => {
  const rig = ScenarioRig.open(vasHookLate, 'inline');
  t.teardown(() => rig.close());
  const bug = exploreScenarioBounded(rig, 1, rig.fixes.without(['pauseAroundVasHook']), { bound: 1, maxRuns: 3000 });
  t.log(describeBounded(bug).join('\n'));
  t.true(bug.complete, 'k ≤ 1 is explored completely within 3000 runs');
  t.is(bug.levels[0].failures, 0, 'no schedule without a preemption breaks it');
  t.true(bug.levels[1].failures > 0, 'a one-preemption schedule breaks it');
  t.is(bug.firstFailure?.oracle, 'vas-view-matches-memory');
  t.is(bug.distinct, bug.runs, 'every schedule ran differently');
  const failing = bug.firstFailure!.run;
  t.is(failing.strategy, 'exhaustive');
  t.is(rig.replay(traceJsonOf(failing), rig.fixes.without(['pauseAroundVasHook'])).hash, failing.hash);
  const fixed = exploreScenarioBounded(rig, 1, rig.fixes.defaults(), { bound: 1, maxRuns: 3000 });
  t.log(describeBounded(fixed).join('\n'));
  t.true(fixed.complete);
  t.true(fixed.levels.every((l) => l.failures === 0));
});
