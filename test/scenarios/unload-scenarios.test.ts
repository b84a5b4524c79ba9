/**
 * Goal: the unload races of the catalogue (§13.11, 13.12, 13.13) are found with their fix off and
 * never happen with every fix on (scenario-suite.ts), on six preemptible threads over three vCPUs.
 * Budgets (measured over seeds 1..40): unload-in-detour random 60%, PCT d=2 and rr 100%;
 * unload-dead-slot random 95%, PCT d=2 and rr 100% (first at seed 1); unload-nested-pause every
 * strategy 100% (the first unload attempt always runs into it).
 */
import test from 'ava';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { unloadDeadSlot } from '../../scenarios/unload-dead-slot.ts';
import { unloadInDetour } from '../../scenarios/unload-in-detour.ts';
import { unloadNestedPause } from '../../scenarios/unload-nested-pause.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: unloadInDetour, budgets: [['pct', 2, 3], ['random', 2, 10]], window: 'unload-retried' });
scenarioSuite({ definition: unloadDeadSlot, budgets: [['random', 2, 3], ['pct', 2, 3]], window: 'unload-retried' });
scenarioSuite({ definition: unloadNestedPause, budgets: [['random', 2, 1], ['pct', 3, 1]], window: 'pause-nested-three-deep' });

test('free-running: an idle vCPU halted for its clock interrupt is woken, so threaded runs complete; the race is found there too', async (t) => {
  const rig = ScenarioRig.open(unloadInDetour, 'free');
  t.teardown(() => rig.close());
  // Before idle vCPUs were woken, about 3 runs in 10 ended at the wall-clock bound with one halted.
  const clean = Array.from({ length: 10 }, (_, k) => rig.run({ seed: k + 1, strategy: 'random', depth: 2, fixes: rig.fixes.defaults() }));
  t.deepEqual(clean.filter(failed).map((r) => r.violations.map((v) => `${v.oracle}: ${v.detail.split('\n')[0]}`)), []);
  const buggy = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without(['threadSafenessCheck']) });
  t.true(failed(buggy));
});
