import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { validateScenario, type ScenarioDefinition, type ScenarioGuest } from './scenario.ts';

/**
 * The scenarios a process knows, by CLI name: those registered from modules — the built-in list
 * (scenarios/index.ts) and a user's own (`--load file.ts` on both CLIs). Each definition is
 * checked when it is registered, so a bug caught by an oracle that does not exist is an error
 * before any run, not a row that can never be found.
 */

const registry = new Map<string, ScenarioDefinition<ScenarioGuest>>();
const loadedModules = new Set<string>();

/** Registers one definition (checked; a second definition under a taken name is an error). */
export function registerScenario(definition: ScenarioDefinition<ScenarioGuest>, source: string): void {
  validateScenario(definition);
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
    throw new Error(`unknown scenario "${name}"; known scenarios: ${[...registry.keys()].join(', ') || '(none)'} (a scenario of your own: --load its module)`);
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
    if (loadedModules.has(file)) continue;
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
      registerScenario(definition, `--load ${path}`);
      names.push(definition.name);
    }
    loadedModules.add(file);
  }
  return names;
}
