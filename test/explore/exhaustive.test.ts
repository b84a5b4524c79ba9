/**
 * Goal: bounded-exhaustive exploration enumerates exactly the schedules with at most k
 * preemptions — counted by hand on a toy — and finds a real race at its preemption bound with a
 * guarantee for the levels below. Method: the toy of toy-schedule.ts (threads of 6 and 4 steps, one
 * step per choice point: 2 schedules without a preemption, (6−1)+(4−1) = 8 with one, 5·3 + 3·5 = 30
 * with two; the race needs thread 1 to step while thread 0 has done exactly 3); then the stale-icache
 * race of vas-hook-late (hooked without pausing) with its fix off and on. Bounded by deviations
 * instead, the toy has 1, 6 and 18 (see that test); on unload-in-detour, whose preemption-free
 * choices explode, k ≤ 1 then has exactly one schedule per alternative of the default run.
 */
import test from 'ava';
import { unloadInDetour } from '../../scenarios/unload-in-detour.ts';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { exploreBounded, exploreBoundedAsync } from '../../src/explore/exhaustive.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeBounded, exploreScenarioBounded } from '../../src/explore/exhaustive-run.ts';
import { ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { toyBoundedAttempt } from './toy-schedule.ts';
import { decodeChoices, decodePoints, encodeChoices, encodePoints } from '../../src/explore/choice-codec.ts';
import type { Choice } from '../../src/explore/schedule.ts';

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

test('the toy, bounded by deviations: exactly 1, 6 and 18 schedules with 0, 1 and 2, failures counted by hand, each one a preemption-bounded schedule too', (t) => {
  // k = 0: the default (thread 0's 6 steps, then thread 1's 4). k = 1: thread 1 steps instead at
  // one of the 6 points where thread 0 could go on (the first is free to preemption bounding, not
  // here); then thread 1 goes on. k = 2: each of those switches back at one of thread 1's 3
  // remaining points. The race (thread 1 steps at thread 0's 3rd) fails the k = 1 schedule that
  // switches there and its 3 children.
  const hashes = (into: Set<string>) => (choices: Parameters<typeof toyBoundedAttempt>[0]) => {
    const attempt = toyBoundedAttempt(choices);
    into.add(attempt.hash);
    return attempt;
  };
  const byDeviation = new Set<string>();
  const byPreemption = new Set<string>();
  const result = exploreBounded(hashes(byDeviation), { bound: 2, measure: 'deviations' });
  t.is(result.measure, 'deviations');
  t.true(result.complete);
  t.deepEqual(result.levels.map((l) => l.schedules), [1, 6, 18]);
  t.deepEqual(result.levels.map((l) => l.failures), [0, 1, 3]);
  t.is(result.distinct, 25);
  t.is(result.firstFailure?.deviations, 1);
  t.is(result.firstFailure?.preemptions, 1);
  t.is(exploreBounded(hashes(byPreemption), { bound: 2 }).measure, 'preemptions');
  t.true([...byDeviation].every((hash) => byPreemption.has(hash)), 'a deviation is at most one preemption: the deviation-bounded schedules are among the preemption-bounded ones');
  t.throws(() => exploreBounded(toyBoundedAttempt, { bound: 1, measure: 'delays' as never }), { message: /a bound counts preemptions or deviations, not delays/ });
});

test('the toy: stopping at the first failure runs no schedule after it, and says which levels are complete', (t) => {
  const full = exploreBounded(toyBoundedAttempt, { bound: 2 });
  const stopped = exploreBounded(toyBoundedAttempt, { bound: 2, stopAtFailure: true });
  t.is(stopped.runs, full.firstFailureAfter);
  t.is(stopped.firstFailureAfter, full.firstFailureAfter);
  t.deepEqual(stopped.firstFailure?.executed, full.firstFailure?.executed);
  t.false(stopped.complete);
  t.deepEqual(stopped.levels.map((l) => [l.schedules, l.complete]), [[2, true], [3, false], [0, false]]);
  t.is(stopped.levels[1].pending, 8 - 3);
});

test('the toy: with a target invariant only runs that break it first count as failing (what the shrinker searches for)', (t) => {
  const any = exploreBounded(toyBoundedAttempt, { bound: 2 });
  const same = exploreBounded(toyBoundedAttempt, { bound: 2, target: 'toy-race' });
  t.deepEqual(same.levels, any.levels);
  t.is(same.firstFailureAfter, any.firstFailureAfter);
  const other = exploreBounded(toyBoundedAttempt, { bound: 2, target: 'another-invariant', stopAtFailure: true });
  t.deepEqual(other.levels.map((l) => l.failures), [0, 0, 0]);
  t.is(other.firstFailure, null);
  t.true(other.complete, 'no run counts as failing, so nothing stops the search');
  t.is(other.runs, 40);
});

test('the toy: a budget ends the search with the levels below it complete and says so', (t) => {
  const result = exploreBounded(toyBoundedAttempt, { bound: 2, maxRuns: 15 });
  t.false(result.complete);
  t.is(result.runs, 15);
  t.deepEqual(result.levels.map((l) => l.complete), [true, true, false]);
  t.is(result.levels[2].schedules, 5);
  t.true(result.levels[2].pending > 0);
});

test('the toy with several schedules running at once, finishing out of order: the same levels, counts, first failure and budget cut as one by one', async (t) => {
  // Each attempt finishes after a delay that does not follow the order they were taken in.
  let taken = 0;
  const late = async (choices: Parameters<typeof toyBoundedAttempt>[0]) => {
    await sleep([3, 0, 2, 5, 1][taken++ % 5]);
    return toyBoundedAttempt(choices);
  };
  for (const options of [{ bound: 2 }, { bound: 2, measure: 'deviations' as const }, { bound: 2, maxRuns: 15 }, { bound: 1, maxRuns: 10 }, { bound: 2, stopAtFailure: true }]) {
    const levelsSeen: number[] = [];
    const parallel = await exploreBoundedAsync(late, { ...options, concurrency: 4, onRun: (_, level) => levelsSeen.push(level) });
    t.deepEqual(parallel, exploreBounded(toyBoundedAttempt, options), JSON.stringify(options));
    t.deepEqual(levelsSeen, [...levelsSeen].sort((a, b) => a - b), 'a level ends before the next begins');
  }
  t.true(taken > 40);
  await t.throwsAsync(exploreBoundedAsync(late, { bound: 1, concurrency: 0 }), { message: /concurrency must be an integer ≥ 1, got 0/ });
  // A schedule that fails while an older one still runs ends the search with its error, once.
  let started = 0;
  const broken = async (choices: Parameters<typeof toyBoundedAttempt>[0]) => {
    const index = started++;
    await sleep(index === 3 ? 0 : 20);
    if (index === 3) throw new Error('the run threw outside the engine');
    return toyBoundedAttempt(choices);
  };
  const unhandled: unknown[] = [];
  const listener = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', listener);
  t.teardown(() => process.off('unhandledRejection', listener));
  await t.throwsAsync(exploreBoundedAsync(broken, { bound: 2, concurrency: 4 }), { message: 'the run threw outside the engine' });
  await sleep(30);
  t.deepEqual(unhandled, [], 'a command line would have died of an unhandled rejection');
});

test('choices and choice points as words for the pool: every kind of choice and a hypervisor fault come back as they went', (t) => {
  const choices: Choice[] = [
    { kind: 'run', vcpu: 2, steps: 150 }, { kind: 'handle', vcpu: 1 }, { kind: 'handle', vcpu: 0, fault: 'duplicate-exit' }, { kind: 'handle', vcpu: 3, fault: 'late-flush' },
    { kind: 'timer' }, { kind: 'daemon' }, { kind: 'irq', vcpu: 1, vector: 0xef }, { kind: 'proceed' }, { kind: 'see-code', vcpu: 2 },
  ];
  t.deepEqual(decodeChoices(encodeChoices(choices)), choices);
  const points = [
    { alternatives: [], preemptionsBefore: 0, deviationsBefore: 0 },
    { alternatives: [{ choice: choices[0], preempts: true }, { choice: choices[8], preempts: false }], preemptionsBefore: 1, deviationsBefore: 2 },
    { alternatives: [{ choice: choices[7], preempts: false }], preemptionsBefore: 1, deviationsBefore: 3 },
  ];
  const decoded = decodePoints(encodePoints(points, 1), 1);
  t.is(decoded.length, 3);
  t.false(0 in decoded, 'nothing before the schedule\'s own choices');
  t.deepEqual(decoded.slice(1), points.slice(1));
  t.throws(() => decodeChoices(new Int32Array([9, 0, 0])), { message: /choice code 9 at word 0 is no choice/ });
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

test('unload-in-detour, every fix on: preemption bounding\'s k = 0 ends (the daemon\'s handler switches no actor; only which vCPU runs when the current one cannot is free), and k ≤ 1 bounded by deviations is one schedule per alternative of the default run, none failing', (t) => {
  const rig = ScenarioRig.open(unloadInDetour, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.defaults();
  const byPreemption = exploreScenarioBounded(rig, 1, fixes, { bound: 0, maxRuns: 300 });
  t.log(describeBounded(byPreemption).join('\n'));
  t.true(byPreemption.complete, 'k = 0 has fewer than 300 schedules');
  t.true(byPreemption.levels[0].schedules > 1, 'the free choices are explored');
  t.is(byPreemption.levels[0].failures, 0);
  const defaultRun = rig.runChoices(1, [], fixes, { alternatives: true });
  const alternatives = defaultRun.points.reduce((sum, point) => sum + point.alternatives.length, 0);
  const byDeviation = exploreScenarioBounded(rig, 1, fixes, { bound: 1, measure: 'deviations', maxRuns: 3000 });
  t.log(describeBounded(byDeviation).join('\n'));
  t.true(byDeviation.complete);
  t.deepEqual(byDeviation.levels.map((l) => l.schedules), [1, alternatives]);
  t.deepEqual(byDeviation.levels.map((l) => l.failures), [0, 0]);
});
