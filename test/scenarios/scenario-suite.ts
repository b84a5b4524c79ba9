import test from 'ava';
import { explore, exploreScenario } from '../../src/ava.ts';
import { ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import type { StrategyName } from '../../src/explore/schedulers/index.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

/**
 * The suite every scenario must pass (README "Keeping a race fixed"): its first bug found with its
 * fixes off within a stated budget per strategy, no failure over 500 seeds (random and PCT d=1..3)
 * with every fix on while its race window is reached, and a failing run that replays to the same
 * hash and the same broken invariants inline and in workers. A scenario whose bug is HVMI's known
 * limitation has it with every fix on: finding it is its all-fixes-on test.
 */
export interface SuiteSpec {
  readonly definition: ScenarioDefinition<ScenarioGuest>;
  /** [strategy, PCT depth, budget in seeds] for the first bug. */
  readonly budgets: readonly (readonly [StrategyName, number, number])[];
  /** A window goal that runs with every fix on must reach, and in how many of the 500 at least. */
  readonly window: string;
  readonly windowRuns?: number;
  /** Seeds with every fix on (default 500). */
  readonly seeds?: number;
}

export function scenarioSuite(spec: SuiteSpec): void {
  const { definition, budgets, window } = spec;
  const bug = definition.bugs[0];
  const limitation = bug.knownLimitation === true;
  for (const [strategy, depth, budget] of budgets) {
    test(`${definition.name}: with ${limitation ? 'every fix on (HVMI\'s known limitation)' : `${bug.fixesOff.join(', ')} off`}, ${strategy}${strategy === 'pct' ? ` d=${depth}` : ''} finds it within ${budget} seeds`, explore, definition, {
      seeds: budget, strategy, depth, fixesOff: 'bug', expect: 'finds-bug',
    });
  }

  const seeds = spec.seeds ?? 500;
  if (!limitation) test(`${definition.name}: fixes on, ${seeds} seeds (random and PCT d=1..3), no invariant broken, the race window reached`, explore, definition, {
    seeds,
    strategy: (seed) => (seed % 2 === 0 ? { strategy: 'random', depth: 2 } : { strategy: 'pct', depth: 1 + (seed % 3) }),
    expect: 'no-failure',
    window: { name: window, atLeast: spec.windowRuns ?? Math.floor(seeds / 10) },
  });

  test(`${definition.name}: a failing run replays to the same hash and violations, inline and in workers`, async (t) => {
    const inline = ScenarioRig.open(definition, 'inline');
    const workers = ScenarioRig.open(definition, 'workers');
    t.teardown(() => Promise.all([inline.close(), workers.close()]));
    const [strategy, depth, budget] = budgets[0];
    const { found: report } = await exploreScenario(t, definition, { seeds: budget, strategy, depth, fixesOff: 'bug', expect: 'finds-bug' });
    if (report === null) return;
    const recorded = parseTraceJson(JSON.stringify(traceJsonOf(report)));
    const fixes = inline.fixes.without(recorded.fixesOff ?? []);
    for (const rig of [inline, workers]) {
      const replay = rig.replay(recorded, fixes);
      t.is(replay.hash, report.hash, `${rig.mode}: same trace hash`);
      t.deepEqual(replay.violations, report.violations, `${rig.mode}: same broken invariants`);
    }
    const again = workers.run({ seed: report.seed, strategy, depth, fixes });
    t.is(again.hash, report.hash, 'the same seed in workers mode is the same run');
  });
}
