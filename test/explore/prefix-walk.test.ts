/**
 * Goal: a bounded search that runs each schedule from a snapshot along the prefix it shares with
 * the schedule before (PrefixWalk) makes exactly the runs it makes from the start (or from its
 * branch point) — every schedule's trace hash, preemptions, deviations, choice points, orderings
 * and windows — so its levels, counts and first failure are the same; and it does skip the shared
 * prefixes, moving its snapshot and coming back for another prefix. Method: vas-hook-late with its
 * fix off, its whole k ≤ 1 search run both ways on two rigs; stale-violation's from its window (its fix
 * off), whole suffixes and suffixes cut 60 choices past the point; the search itself with and without
 * sharing; a scenario whose hook callback counts in a closure variable (state no snapshot holds) is
 * refused with the entry that differs, as a branch refuses it.
 */
import test from 'ava';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { leakyCounterScenario } from '../support/leaky-scenario.ts';
import { exploreBounded } from '../../src/explore/exhaustive.ts';
import { attemptOn, attemptSchedule, attemptSuffix, exploreScenarioBounded, suffixAttemptOn } from '../../src/explore/exhaustive-run.ts';
import { BranchStateLeak, ScenarioRig, type RunReport } from '../../src/explore/scenario-rig.ts';
import { staleViolation } from '../../scenarios/stale-violation.ts';
import type { ExhaustiveAttempt } from '../../src/explore/exhaustive.ts';
import type { Choice } from '../../src/explore/schedule.ts';

/** Runs a bounded search, each schedule both ways; the differences found (none expected) and how many were compared. */
function compareEach(
  expectedOf: (choices: readonly Choice[]) => ExhaustiveAttempt<RunReport>, walkedOf: (choices: readonly Choice[]) => ExhaustiveAttempt<RunReport>, maxRuns: number,
): { readonly differences: readonly string[]; readonly compared: number; readonly failures: number } {
  let compared = 0;
  const differences: string[] = [];
  const result = exploreBounded((choices) => {
    const expected = expectedOf(choices);
    const walked = walkedOf(choices);
    compared++;
    const fields = {
      hash: [walked.hash, expected.hash], oracle: [walked.oracle, expected.oracle], preemptions: [walked.preemptions, expected.preemptions],
      deviations: [walked.deviations, expected.deviations], points: [walked.points, expected.points].map((p) => JSON.stringify(p)),
      executed: [walked.executed, expected.executed].map((e) => JSON.stringify(e)), orderings: [walked.run.orderings, expected.run.orderings].map((o) => JSON.stringify(o)),
      windows: [walked.run.windows, expected.run.windows].map((w) => JSON.stringify(w)), outcome: [walked.run.outcome, expected.run.outcome],
    };
    const differing = Object.entries(fields).filter(([, [a, b]]) => a !== b).map(([name]) => name);
    if (differing.length > 0) differences.push(`schedule ${compared} (${choices.length} choices): ${differing.join(', ')} differ`);
    return expected;
  }, { bound: 1, maxRuns });
  return { differences, compared, failures: result.levels.reduce((sum, level) => sum + level.failures, 0) };
}

test.serial('every schedule of a bounded search, run along shared prefixes, is the run from the start: hash, shape, choice points, orderings', (t) => {
  const fromStart = ScenarioRig.open(vasHookLate, 'inline');
  const walking = ScenarioRig.open(vasHookLate, 'inline');
  t.teardown(async () => {
    await fromStart.close();
    await walking.close();
  });
  const fixes = fromStart.fixes.without(vasHookLate.bugs[0].fixesOff);
  const walk = walking.openWalk(1, fixes, 'exhaustive');
  t.teardown(() => walk.close());
  const { differences, compared, failures } = compareEach((choices) => attemptSchedule(fromStart, 1, fixes, choices), (choices) => attemptOn(walk.runChoices(choices)), 3000);
  t.deepEqual(differences, []);
  t.is(compared, 472, 'the whole k ≤ 1 search');
  t.true(failures > 0, 'the race is among the schedules compared');
  // The walk skipped most of the shared prefixes, moved its snapshot and came back to the start for another prefix.
  t.true(walk.reused > compared / 2, `${walk.reused} of ${compared} runs from a snapshot past the start`);
  t.true(walk.savedChoices > 10 * compared, `${walk.savedChoices} choices not run again`);
  t.true(walk.snapshots > 2 && walk.returns > 0, `${walk.snapshots} snapshots, ${walk.returns} returns to the start`);
});

test.serial('from a branch point too: every suffix of the search from the window, cut or not, walked along shared prefixes is the suffix from the point; the branch runs as before after', (t) => {
  const direct = ScenarioRig.open(staleViolation, 'inline');
  const walking = ScenarioRig.open(staleViolation, 'inline');
  t.teardown(async () => {
    await direct.close();
    await walking.close();
  });
  const fixes = direct.fixes.without(staleViolation.bugs[0].fixesOff);
  const request = { prefix: { seed: 1, strategy: 'random' as const, depth: 2, fixes }, at: { pair: staleViolation.orderings![0].name, side: 'a' as const }, suffixes: [] };
  const expected = direct.openBranch(request);
  const branch = walking.openBranch(request);
  t.teardown(() => {
    expected.close();
    branch.close();
  });
  for (const horizon of [undefined, 60]) {
    const walk = branch.walk(horizon);
    const { differences, compared, failures } = compareEach((choices) => attemptSuffix(expected, choices, horizon), (choices) => suffixAttemptOn(walk.runChoices(choices), branch.at), 3000);
    walk.close();
    t.deepEqual(differences, [], `horizon ${horizon}`);
    t.is(compared, 278, 'the whole k ≤ 1 search from the window');
    t.true(failures > 0, 'the stale exit is among the suffixes');
    t.true(walk.reused > compared / 3 && walk.returns > 0, `${walk.reused} runs from a snapshot past the point, ${walk.returns} returns to it`);
    // The branch's own snapshot comes back whole after the walk's.
    const again = attemptSuffix(branch, [], horizon);
    t.is(again.hash, attemptSuffix(expected, [], horizon).hash);
  }
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
