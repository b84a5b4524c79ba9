import test from 'ava';
import { failed, ScenarioRig, traceJsonOf, type RunReport } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';
import type { StrategyName } from '../../src/explore/schedulers/index.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';
import { sweepFixesOn } from './fixes-on-sweep.ts';

/**
 * The suite every scenario must pass (README "Keeping a race fixed"): its first bug found with its
 * fixes off within a stated budget per strategy, no failure over 500 seeds (random and PCT d=1..3)
 * with every fix on while its race window is reached, and a failing run that replays to the same
 * hash and the same broken invariants inline and in workers.
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

function firstFailure(rig: ScenarioRig<ScenarioGuest>, strategy: StrategyName, depth: number, budget: number): RunReport | null {
  const fixes = rig.fixes.without(rig.definition.bugs[0].fixesOff);
  for (let seed = 1; seed <= budget; seed++) {
    const report = rig.run({ seed, strategy, depth, fixes });
    if (failed(report)) return report;
  }
  return null;
}

export function scenarioSuite(spec: SuiteSpec): void {
  const { definition, budgets, window } = spec;
  const bug = definition.bugs[0];
  for (const [strategy, depth, budget] of budgets) {
    test(`${definition.name}: with ${bug.fixesOff.join(', ')} off, ${strategy}${strategy === 'pct' ? ` d=${depth}` : ''} finds it within ${budget} seeds`, async (t) => {
      const rig = ScenarioRig.open(definition, 'inline');
      t.teardown(() => rig.close());
      const report = firstFailure(rig, strategy, depth, budget);
      if (report === null) return t.fail(`no failure in seeds 1..${budget}`);
      t.log(`first failing seed ${report.seed}: ${report.violations[0].oracle}: ${report.violations[0].detail.split('\n')[0]}`);
      t.is(report.violations[0].oracle, bug.caughtBy);
      t.deepEqual(report.fixesOff, bug.fixesOff);
    });
  }

  const seeds = spec.seeds ?? 500;
  test(`${definition.name}: fixes on, ${seeds} seeds (random and PCT d=1..3), no invariant broken, the race window reached`, async (t) => {
    const list = Array.from({ length: seeds }, (_, k) => k + 1);
    const windows = await sweepFixesOn(t, list, (seed) => (seed % 2 === 0 ? { strategy: 'random', depth: 2 } : { strategy: 'pct', depth: 1 + (seed % 3) }), definition);
    const least = spec.windowRuns ?? Math.floor(seeds / 10);
    t.true(windows[window] >= least, `${window} reached in ${windows[window]} runs (at least ${least} expected)`);
  });

  test(`${definition.name}: a failing run replays to the same hash and violations, inline and in workers`, async (t) => {
    const inline = ScenarioRig.open(definition, 'inline');
    const workers = ScenarioRig.open(definition, 'workers');
    t.teardown(() => Promise.all([inline.close(), workers.close()]));
    const [strategy, depth, budget] = budgets[0];
    const report = firstFailure(inline, strategy, depth, budget);
    if (report === null) return t.fail('no failure to replay');
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
