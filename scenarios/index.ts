import type { ScenarioDefinition, ScenarioGuest } from '../src/explore/scenario.ts';
import { memtableStaleIcache } from './memtable-stale-icache.ts';

/**
 * Every built-in scenario, by CLI name. A new race adds its module here; the CLI, the campaign
 * and the tests pick it up from this list.
 */
export const SCENARIOS: readonly ScenarioDefinition<ScenarioGuest>[] = [memtableStaleIcache];

export function findScenario(name: string): ScenarioDefinition<ScenarioGuest> {
  const found = SCENARIOS.find((s) => s.name === name);
  if (found === undefined) {
    throw new Error(`unknown scenario "${name}"; built-in scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  return found;
}
