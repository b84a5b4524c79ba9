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
import test, { type ExecutionContext } from 'ava';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { leakyCounterScenario } from '../support/leaky-scenario.ts';
import { exploreBounded } from '../../src/explore/exhaustive.ts';
import { attemptOn, attemptSchedule, attemptSuffix, exploreBranchBounded, exploreScenarioBounded, suffixAttemptOn } from '../../src/explore/exhaustive-run.ts';
import { BranchStateLeak, ScenarioRig, type RunReport } from '../../src/explore/scenario-rig.ts';
import { staleViolation } from '../../scenarios/stale-violation.ts';
import type { ExhaustiveAttempt } from '../../src/explore/exhaustive.ts';
import type { Choice } from '../../src/explore/schedule.ts';
import { runExhaustiveTaskOn, shareBranchSpec, type BranchSpec, type ExhaustiveTask } from '../../src/explore/exhaustive-pool.ts';
import { encodeChoices, encodePoints } from '../../src/explore/choice-codec.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import type { NtGuest } from '../../src/guest/nt-guest.ts';

/** Two rigs of `definition` (one runs from the start or the point, the other walks), closed with the test. */
function twoRigs<G extends ScenarioGuest>(t: ExecutionContext, definition: ScenarioDefinition<G>): [ScenarioRig<G>, ScenarioRig<G>] {
  const rigs: [ScenarioRig<G>, ScenarioRig<G>] = [ScenarioRig.open(definition, 'inline'), ScenarioRig.open(definition, 'inline')];
  t.teardown(async () => {
    await Promise.all(rigs.map((rig) => rig.close()));
  });
  return rigs;
}

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
  const [fromStart, walking] = twoRigs(t, vasHookLate);
  const fixes = fromStart.fixes.without(vasHookLate.bugs[0].fixesOff);
  const walk = walking.openWalk(1, fixes, 'exhaustive');
  t.teardown(() => walk.close());
  const { differences, compared, failures } = compareEach((choices) => attemptSchedule(fromStart, 1, fixes, choices), (choices) => attemptOn(walk.runChoices(choices)), 3000);
  t.deepEqual(differences, []);
  t.is(compared, 472, 'the whole k ≤ 1 search');
  t.true(failures > 0, 'the race is among the schedules compared');
  // The walk skipped most of the shared prefixes, moved its snapshot and came back to the start for another prefix.
  t.true(walk.stats.reused > compared / 2, `${walk.stats.reused} of ${compared} runs from a snapshot past the start`);
  t.true(walk.stats.savedChoices > 10 * compared, `${walk.stats.savedChoices} choices not run again`);
  t.true(walk.stats.snapshots > 2 && walk.stats.returns > 0, `${walk.stats.snapshots} snapshots, ${walk.stats.returns} returns to the start`);
});

test.serial('from a branch point too: every suffix of the search from the window, cut or not, walked along shared prefixes is the suffix from the point; the branch runs as before after', (t) => {
  const [direct, walking] = twoRigs(t, staleViolation);
  const fixes = direct.fixes.without(staleViolation.bugs[0].fixesOff);
  const request = { prefix: { seed: 1, strategy: 'random' as const, depth: 2, fixes }, at: { pair: staleViolation.orderings![0].name, side: 'a' as const }, suffixes: [] };
  const expected = direct.openBranch(request);
  const branch = walking.openBranch(request);
  t.teardown(() => {
    expected.close();
    branch.close();
  });
  for (const horizon of [undefined, 60]) {
    // Moving every 8 choices, so moves and returns to the point happen on this short search too.
    const walk = branch.walk(horizon, { moveEvery: 8 });
    const { differences, compared, failures } = compareEach((choices) => attemptSuffix(expected, choices, horizon), (choices) => suffixAttemptOn(walk.runChoices(choices), branch.at), 3000);
    walk.close();
    t.deepEqual(differences, [], `horizon ${horizon}`);
    t.is(compared, 278, 'the whole k ≤ 1 search from the window');
    t.true(failures > 0, 'the stale exit is among the suffixes');
    t.true(walk.stats.reused > compared / 4 && walk.stats.returns > 0, `${walk.stats.reused} runs from a snapshot past the point, ${walk.stats.returns} returns to it`);
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

test.serial('a leak shows on the first run again even when the walk never leaves its point (suffixes cut 10 choices past a branch point)', (t) => {
  const rig = ScenarioRig.open(leakyCounterScenario, 'inline');
  t.teardown(() => rig.close());
  const open = rig.openBranch({ prefix: { seed: 3, strategy: 'random', depth: 2, fixes: rig.fixes.without([]) }, at: { choice: 20 }, suffixes: [] });
  t.teardown(() => open.close());
  const error = t.throws(() => exploreBranchBounded(open, { bound: 1, maxRuns: 50, horizon: 10 }), { instanceOf: BranchStateLeak });
  t.regex(error.message, /note counted writes=/);
});

test.serial('a run whose engine cannot start is the run from the start: an error report, the search goes on', (t) => {
  const failingStart = {
    ...(vasHookLate as unknown as ScenarioDefinition<NtGuest>),
    engine: {
      start() {
        throw new Error('no engine today');
      },
    },
  } satisfies ScenarioDefinition<NtGuest>;
  const rig = ScenarioRig.open(failingStart, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without([]);
  const shared = exploreScenarioBounded(rig, 1, fixes, { bound: 1, maxRuns: 50 });
  const plain = exploreScenarioBounded(rig, 1, fixes, { bound: 1, maxRuns: 50, sharePrefixes: false });
  t.deepEqual(shared.levels, plain.levels);
  t.is(shared.firstFailure?.hash, plain.firstFailure?.hash);
  t.regex(shared.firstFailure?.run.violations[0]?.detail ?? '', /no engine today/);
});

test.serial('pool tasks walk too: each task\'s result is the one from the start (whole runs) or from the point (a branch spec), words for words', (t) => {
  const [reference, thread] = twoRigs(t, staleViolation);
  const fixesOff = staleViolation.bugs[0].fixesOff;
  const fixes = reference.fixes.without(fixesOff);
  const spec: BranchSpec = { prefix: { seed: 1, strategy: 'random', depth: 2, fixes }, at: { pair: staleViolation.orderings![0].name, side: 'a' }, horizon: null };
  for (const branch of [null, shareBranchSpec(spec)]) {
    const differences: string[] = [];
    // The reference branch is opened once the whole runs are done: a branch holds its rig's session.
    const open = branch === null ? null : reference.openBranch({ ...spec, suffixes: [] });
    const task = (choices: readonly Choice[]): ExhaustiveTask => ({ scenario: staleViolation.name, modules: [], mode: 'inline', fixesOff, seed: 1, choices: encodeChoices(choices), branch, sharePrefixes: true });
    const result = exploreBounded((choices) => {
      const expected = open === null ? attemptSchedule(reference, 1, fixes, choices) : attemptSuffix(open, choices);
      const got = runExhaustiveTaskOn(thread, task(choices));
      const same = got.hash === expected.hash && got.oracle === expected.oracle && got.preemptions === expected.preemptions && got.deviations === expected.deviations
        && String(got.executed) === String(encodeChoices(expected.executed)) && String(got.points) === String(encodePoints(expected.points, choices.length));
      if (!same) differences.push(`${choices.length} choices: ${got.hash} vs ${expected.hash}`);
      return expected;
    }, { bound: 1, maxRuns: 300 });
    open?.close();
    t.deepEqual(differences, [], branch === null ? 'whole runs' : 'from the branch point');
    t.true(result.runs > 200);
  }
});
