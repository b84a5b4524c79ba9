import type { ScenarioDefinition, ScenarioGuest } from './scenario.ts';

/**
 * Types a scenario definition: the guest type comes from `setup()`, the scenario's own fix names
 * from `fixes`, so a bug that switches off a fix that does not exist is a type error. Returns the
 * definition unchanged.
 */
export function defineScenario<G extends ScenarioGuest, const F extends string = never>(definition: ScenarioDefinition<G, F>): ScenarioDefinition<G, F> {
  return definition;
}
