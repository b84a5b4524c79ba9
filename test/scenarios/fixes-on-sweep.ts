import type { ExecutionContext } from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { failed, ScenarioRig, type RunRequest } from '../../src/explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/explore/scenario.ts';

/**
 * Runs a scenario (the memtable one by default) with every fix on over `seeds` seeds with
 * `plan(seed)`'s strategy and asserts no invariant broke in any run; returns how often each
 * window goal was reached.
 */
export async function sweepFixesOn(
  t: ExecutionContext,
  seeds: readonly number[],
  plan: (seed: number) => Pick<RunRequest, 'strategy' | 'depth'>,
  definition: ScenarioDefinition<ScenarioGuest> = memtableStaleIcache,
): Promise<Record<string, number>> {
  const rig = ScenarioRig.open(definition, 'inline');
  t.teardown(() => rig.close());
  const windows: Record<string, number> = Object.fromEntries(definition.windows.map((w) => [w.name, 0]));
  const failures: string[] = [];
  for (const seed of seeds) {
    const report = rig.run({ seed, ...plan(seed), fixes: rig.fixes.defaults() });
    if (failed(report)) failures.push(`seed ${seed} ${report.strategy}: ${report.violations[0].oracle}: ${report.violations[0].detail}`);
    for (const name of report.windows) windows[name]++;
  }
  t.deepEqual(failures, [], `${definition.name}: with every fix on, no run breaks an invariant`);
  t.log(`${definition.name}: ${seeds.length} runs; windows reached: ${Object.entries(windows).map(([name, n]) => `${name} ${n}`).join(', ')}`);
  return windows;
}
