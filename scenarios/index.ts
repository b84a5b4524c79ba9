import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { validateScenario, type ScenarioDefinition, type ScenarioGuest } from '../src/explore/scenario.ts';
import { FIX_NAMES } from '../src/intro/fixes.ts';
import { memtableStaleIcache } from './memtable-stale-icache.ts';

/**
 * Every built-in scenario, by CLI name, and the scenarios loaded from a user's own modules
 * (`--load file.ts` on both CLIs). The CLI, the campaign and the tests pick them up from here.
 * Each definition is checked when it is registered, so a bug caught by an oracle that does not
 * exist is an error before any run, not a row that can never be found.
 */
export const SCENARIOS: readonly ScenarioDefinition<ScenarioGuest>[] = Object.freeze([memtableStaleIcache]);

const registry = new Map<string, ScenarioDefinition<ScenarioGuest>>();
for (const definition of SCENARIOS) register(definition, 'built-in');

function register(definition: ScenarioDefinition<ScenarioGuest>, source: string): void {
  validateScenario(definition, FIX_NAMES);
  const known = registry.get(definition.name);
  if (known !== undefined && known !== definition) throw new Error(`${source}: a scenario named "${definition.name}" is already registered`);
  registry.set(definition.name, definition);
}

/** Built-in and loaded scenarios, in registration order. */
export function allScenarios(): readonly ScenarioDefinition<ScenarioGuest>[] {
  return [...registry.values()];
}

export function findScenario(name: string): ScenarioDefinition<ScenarioGuest> {
  const found = registry.get(name);
  if (found === undefined) {
    throw new Error(`unknown scenario "${name}"; known scenarios: ${[...registry.keys()].join(', ')} (a scenario of your own: --load its module)`);
  }
  return found;
}

function looksLikeScenario(value: unknown): value is ScenarioDefinition<ScenarioGuest> {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Partial<ScenarioDefinition<ScenarioGuest>>;
  return typeof v.name === 'string' && typeof v.setup === 'function' && Array.isArray(v.oracles) && Array.isArray(v.bugs);
}

/**
 * Imports each module and registers every scenario definition it exports (named or default, or an
 * exported array of them). Returns the names registered, in order. One error per bad module.
 */
export async function loadScenarioModules(paths: readonly string[]): Promise<string[]> {
  const names: string[] = [];
  for (const path of paths) {
    const file = resolve(path);
    if (!existsSync(file)) throw new Error(`--load ${path}: no such file`);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`--load ${path}: the module failed to load: ${error instanceof Error ? error.message : String(error)}`);
    }
    const found = Object.values(module).flatMap((value) => (Array.isArray(value) ? value : [value])).filter(looksLikeScenario);
    if (found.length === 0) throw new Error(`--load ${path}: the module exports no scenario definition (an object with name, setup, oracles and bugs)`);
    for (const definition of new Set(found)) {
      register(definition, `--load ${path}`);
      names.push(definition.name);
    }
  }
  return names;
}
