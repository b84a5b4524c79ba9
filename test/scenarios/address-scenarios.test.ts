/**
 * Goal: the multi-address instruction of the catalogue (§13.3, PUSH [mem] reading a hooked page
 * and writing a protected one) is found with analyseEveryAddress off and never happens with it on
 * (scenario-suite.ts). Its first push is the bug whatever the schedule: every strategy finds it at
 * seed 1.
 */
import test from 'ava';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { instructionSwapped } from '../../scenarios/instruction-swapped.ts';
import { pushTwoAddresses } from '../../scenarios/push-two-addresses.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: pushTwoAddresses, budgets: [['random', 2, 1], ['pct', 2, 1]], window: 'write-blocked' });

/**
 * Instruction swapped during analysis (§13.2): found with toctouRetry off, never with it on, when
 * the hypervisor carries out an allowed instruction at once (the scenario's model). Under an
 * asynchronous integrator the rule is not enough: a rewrite that exits, is judged and lands before
 * the allowed vCPU runs again swaps the instruction all the same — random finds it with every fix
 * on. That is a property of HVMI's design, shown here rather than hidden.
 */
scenarioSuite({ definition: instructionSwapped, budgets: [['random', 2, 5]], window: 'rewrite-trapped' });

test('instruction-swapped under an asynchronous integrator: every fix on, random still finds the swapped store', async (t) => {
  const rig = ScenarioRig.open({ ...instructionSwapped, hypervisor: { emulation: 'at-next-entry' } }, 'inline');
  t.teardown(() => rig.close());
  let found = null;
  for (let seed = 1; seed <= 10 && found === null; seed++) {
    const report = rig.run({ seed, strategy: 'random', depth: 2, fixes: rig.fixes.defaults() });
    if (failed(report)) found = report;
  }
  if (found === null) return t.fail('no failure in 10 seeds');
  t.is(found.violations[0].oracle, 'critical-area-untouched');
  t.deepEqual(found.fixesOff, []);
  t.log(`seed ${found.seed}: ${found.violations[0].detail}`);
});
