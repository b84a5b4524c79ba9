/**
 * Goal: the timer races of the catalogue (§13.14) — a tick between the two halves of Windows'
 * privilege removal, and a timer that reads a running vCPU — are found with their fixes off and
 * never happen with every fix on (scenario-suite.ts for the first). Random lands ticks in the
 * transient; PCT, with one vCPU running, ticks at a fixed phase and does not.
 */
import test from 'ava';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { timerTokenTransient } from '../../scenarios/timer-token-transient.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: timerTokenTransient, budgets: [['random', 2, 10]], window: 'tick-in-transient', windowRuns: 100 });

test('timer-token-transient: with timerFriendly off, the first tick reads a running vCPU and the framework reports it', async (t) => {
  const rig = ScenarioRig.open(timerTokenTransient, 'inline');
  t.teardown(() => rig.close());
  const report = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes: rig.fixes.without(['timerFriendly']) });
  t.true(failed(report));
  t.is(report.violations[0].oracle, 'engine-runs');
  t.regex(report.violations[0].detail, /timer callback threw: VcpuAccessError: vCPU \d is running.*TIMER_FRIENDLY/);
});
