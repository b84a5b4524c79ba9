/**
 * Goal: shrinking works on real races — the failure found by a random run of a catalogue scenario
 * shrinks to a schedule that breaks the same invariant with no more preemptions, that shrinking
 * again leaves unchanged, whose trace file replays strictly (inline and with a worker per vCPU),
 * and whose story names its preemptions with the instructions disassembled.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { pteCmpxchgAccessed } from '../../scenarios/pte-cmpxchg-accessed.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import { describeShrink, shrinkFailingRun } from '../../src/explore/shrink-run.ts';
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
