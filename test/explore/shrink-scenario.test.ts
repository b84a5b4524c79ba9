/**
 * Goal: shrinking works on real races — the failure found by a random run of a catalogue scenario
 * shrinks to a schedule that breaks the same invariant with no more preemptions, that shrinking
 * again leaves unchanged, whose trace file replays strictly (inline and with a worker per vCPU),
 * and whose story names its preemptions with the instructions disassembled.
 */
import test, { type ExecutionContext } from 'ava';
import type { Fixes } from '../../src/intro/fixes.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { pteCmpxchgAccessed } from '../../scenarios/pte-cmpxchg-accessed.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import { describePick, describeSearch, describeShrink, shrinkFailingReports, shrinkFailingRun, shrinkSimplest, type ShrinkMeasures } from '../../src/explore/shrink-run.ts';
import { formatStory } from '../../src/explore/story.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

const CASES: readonly { readonly definition: ScenarioDefinition<ScenarioGuest>; readonly what: string }[] = [
  { definition: memtableStaleIcache as ScenarioDefinition<ScenarioGuest>, what: 'one preemption' },
  { definition: pteCmpxchgAccessed as ScenarioDefinition<ScenarioGuest>, what: 'a few preemptions' },
];

for (const { definition, what } of CASES) {
  test(`${definition.name}: a random failure shrinks to ${what}, stably, and replays strictly`, async (t) => {
    const rig = ScenarioRig.open(definition, 'inline');
    t.teardown(() => rig.close());
    const fixes = rig.fixes.without(definition.bugs[0].fixesOff);
    let failing = null;
    for (let seed = 1; seed <= 40 && failing === null; seed++) {
      const report = rig.run({ seed, strategy: 'random', depth: 2, fixes });
      if (failed(report)) failing = report;
    }
    if (failing === null) return t.fail('no random seed up to 40 failed');
    const shrunk = shrinkFailingRun(rig, { seed: failing.seed, choices: failing.trace.choices }, fixes, { maxRuns: 400 });
    t.log(`seed ${failing.seed}: ${describeShrink(shrunk)}`);
    t.is(shrunk.report.violations[0]?.oracle, failing.violations[0].oracle);
    t.true(shrunk.minimal);
    t.true(shrunk.preemptions <= shrunk.from.preemptions);
    t.true(shrunk.preemptions >= 1, 'the race needs a preemption');
    t.true(shrunk.decisive < failing.choices);

    const again = shrinkFailingRun(rig, { seed: shrunk.report.seed, choices: shrunk.report.trace.choices }, fixes, { maxRuns: 400 });
    t.is(again.report.hash, shrunk.report.hash, 'shrinking the shrunk run changes nothing');
    t.is(again.preemptions, shrunk.preemptions);
    t.is(again.decisive, shrunk.decisive);

    const file = parseTraceJson(JSON.stringify(traceJsonOf(shrunk.report)), 'shrunk trace');
    t.is(file.strategy, 'shrunk');
    const inline = rig.replay(file, fixes);
    t.is(inline.hash, shrunk.report.hash);
    t.is(inline.violations[0]?.oracle, shrunk.oracle);
    const workers = ScenarioRig.open(definition, 'workers');
    try {
      t.is(workers.replay(file, fixes).hash, shrunk.report.hash, 'the shrunk trace replays with a worker per vCPU');
    } finally {
      await workers.close();
    }

    const story = formatStory(shrunk.story, shrunk.report.violations[0]);
    t.log(`\n${story}`);
    t.is(shrunk.preemptionNotes.length, shrunk.preemptions);
    for (let k = 1; k <= shrunk.preemptions; k++) t.true(story.includes(`preemption ${k}:`), `preemption ${k} is told`);
    t.regex(story, /at [0-9a-f]+: \S+/, 'instructions are disassembled');
    t.regex(story, new RegExp(`then ${shrunk.oracle} broke`));
  });
}

/** A rig of pte-cmpxchg-accessed (closed with the test) and its bug's fixes. */
function pteRig(t: ExecutionContext): { rig: ScenarioRig<ScenarioGuest>; fixes: Fixes<string> } {
  const definition = pteCmpxchgAccessed as ScenarioDefinition<ScenarioGuest>;
  const rig = ScenarioRig.open(definition, 'inline');
  t.teardown(() => rig.close());
  return { rig, fixes: rig.fixes.without(definition.bugs[0].fixesOff) };
}

test('pte-cmpxchg-accessed: of several failing runs, the simplest is shrunk, and a start that beats the others is enough', (t) => {
  const { rig, fixes } = pteRig(t);
  const failing = (strategy: 'random' | 'pct', depth: number, seed: number) => {
    const report = rig.run({ seed, strategy, depth, fixes });
    t.true(failed(report), `${strategy} seed ${seed} fails`);
    return { seed, choices: report.trace.choices, label: `seed ${seed} (${report.strategy})` };
  };
  // Random's failure stalls in a local minimum with 3 preemptions (greedy alone: no search below it); PCT's, failing with one, shrinks to one.
  const random = failing('random', 2, 1);
  const pct = failing('pct', 2, 12);
  const alone = shrinkFailingRun(rig, random, fixes, { maxRuns: 400, searchRuns: 0 });
  t.is(alone.search, undefined);
  const best = shrinkSimplest(rig, [random, pct], fixes, { maxRuns: 400 });
  t.log(describePick(best));
  t.true(best.preemptions < alone.preemptions, `the simplest start beats the first failure alone (${best.preemptions} against ${alone.preemptions})`);
  t.is(best.oracle, alone.oracle);
  t.is(best.pickedFrom?.label, pct.label);
  const [first, second] = best.pickedFrom!.tried;
  t.true(first.preemptions > second.preemptions, 'each run is listed with the preemptions it failed with');
  t.is(first.shrunkTo, undefined, 'the first failure is not shrunk once a simpler one shrank to a minimal single preemption');
  t.deepEqual(second.shrunkTo, { preemptions: best.preemptions, decisive: best.decisive, runs: best.runs - 1, minimal: true }, 'its search, then one recorded run');
  t.is(best.pickedFrom!.runs, 2 + second.shrunkTo!.runs + 1, 'each run followed once, the one search, the recording');
  t.is(shrinkFailingRun(rig, pct, fixes, { maxRuns: 400 }).report.hash, best.report.hash, 'the same result as shrinking that run alone');
  // A target no run breaks first leaves the first run's invariant as the target.
  t.is(shrinkSimplest(rig, [random, pct], fixes, { maxRuns: 400, target: 'no-such-invariant' }).report.hash, best.report.hash);
  t.regex(describePick(best) ?? '', /the simplest of 2 runs offered/);

  // With `enough: 0` a one-preemption result does not stop the search: both are shrunk, the best kept.
  const both = shrinkSimplest(rig, [random, pct], fixes, { maxRuns: 400, enough: 0 });
  t.true(both.pickedFrom!.tried.every((tried) => tried.shrunkTo !== undefined));
  t.is(both.report.hash, best.report.hash);
});

test('shrinkSimplest lists and skips a run that does not break the target invariant, and refuses an empty list', (t) => {
  const { rig, fixes } = pteRig(t);
  const report = rig.run({ seed: 12, strategy: 'pct', depth: 2, fixes });
  const passing = rig.run({ seed: 1, strategy: 'pct', depth: 2, fixes: rig.fixes.without([]) });
  t.false(failed(passing));
  // A schedule that passes (with the bug's fixes off too) is offered second: listed, not shrunk.
  const shrunk = shrinkSimplest(rig, [
    { seed: report.seed, choices: report.trace.choices, label: 'failing' },
    { seed: passing.seed, choices: [], label: 'default run' },
  ], fixes, { maxRuns: 400 });
  const other = shrunk.pickedFrom!.tried[1];
  t.log(describePick(shrunk));
  t.is(other.oracle, null);
  t.is(other.shrunkTo, undefined);
  t.regex(describePick(shrunk) ?? '', /default run \(breaks nothing when followed\)/);
  t.is(shrunk.pickedFrom?.label, 'failing');
  t.throws(() => shrinkSimplest(rig, [], fixes), { instanceOf: RangeError });
  t.throws(() => shrinkFailingReports(rig, [], fixes), { instanceOf: RangeError, message: /at least one failing run/ });
});

test('pte-cmpxchg-accessed: where the greedy shrink stalls, the bounded search below it finds a schedule with fewer preemptions and proves none has fewer still', (t) => {
  const { rig, fixes } = pteRig(t);
  const report = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes });
  const random = { seed: report.seed, choices: report.trace.choices };
  const greedy = shrinkFailingRun(rig, random, fixes, { maxRuns: 400, searchRuns: 0 });
  const shrunk = shrinkFailingRun(rig, random, fixes, { maxRuns: 400 });
  t.log(describeShrink(shrunk));
  t.is(greedy.preemptions, 3);
  t.is(shrunk.preemptions, 1);
  t.is(shrunk.oracle, greedy.oracle);
  t.is(shrunk.report.violations[0].oracle, greedy.oracle, 'the recorded run breaks the same invariant first');
  t.like(shrunk.search, { from: 3, found: 'adopted' });
  // Every schedule without a preemption ran, and none broke it: one preemption is the fewest.
  t.true(shrunk.search!.cleanLevels >= 1);
  t.regex(describeShrink(shrunk), /the bounded search found it below the greedy result's 3 preemptions; no schedule with fewer preemptions breaks it \(at the choice points, this seed: every one without a preemption ran; \d+ schedules? searched\)/);
  t.true(shrunk.runs > greedy.runs, 'the search\'s runs are counted');
  // Stable: shrinking the result again changes nothing.
  const again = shrinkFailingRun(rig, { seed: shrunk.report.seed, choices: shrunk.report.trace.choices }, fixes, { maxRuns: 400 });
  t.is(again.report.hash, shrunk.report.hash);
  t.like(again.search, { from: 1, found: null });
  t.true(again.search!.cleanLevels >= 1);
});

test('what the search below a greedy result says, case by case: a proof only where every level below ran clean', (t) => {
  const measures = (preemptions: number, search: ShrinkMeasures['search']): ShrinkMeasures => ({
    oracle: 'x', from: { choices: 100, preemptions: 40, decisive: 90 }, preemptions, decisive: 5, runs: 50, minimal: true, ...(search === undefined ? {} : { search }),
  });
  t.is(describeSearch(measures(2, undefined)), '');
  t.is(describeSearch(measures(2, { from: 2, schedules: 30, cleanLevels: 2, found: null })), 'no schedule with fewer preemptions breaks it (at the choice points, this seed: every one with at most 1 preemption ran; 30 schedules searched)');
  t.is(describeSearch(measures(3, { from: 3, schedules: 200, cleanLevels: 1, found: null })), 'no schedule without a preemption breaks it (at the choice points, this seed; the search\'s 200 schedules ran out among those with 1)');
  t.is(describeSearch(measures(3, { from: 3, schedules: 200, cleanLevels: 0, found: null })), 'a search of 200 schedules with fewer preemptions found none (its budget ran out among those without a preemption)');
  t.is(describeSearch(measures(0, { from: 2, schedules: 3, cleanLevels: 0, found: 'adopted' })), 'the bounded search found it below the greedy result\'s 2 preemptions (3 schedules searched): it needs no preemption');
  t.is(describeSearch(measures(1, { from: 4, schedules: 9, cleanLevels: 1, found: 'adopted' })), 'the bounded search found it below the greedy result\'s 4 preemptions; no schedule with fewer preemptions breaks it (at the choice points, this seed: every one without a preemption ran; 9 schedules searched)');
  t.is(describeSearch(measures(4, { from: 4, schedules: 9, cleanLevels: 1, found: 'not-reproduced' })), 'the bounded search found a schedule with fewer preemptions that broke nothing when followed again (nondeterminism?); 9 schedules searched');
});
