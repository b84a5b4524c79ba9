import type { Machine } from '../machine/machine.ts';
import { OrderingScan, type OrderingWitness } from './orderings.ts';
import type { Violation } from './run-report.ts';
import type { OraclePhase, ScenarioDefinition, ScenarioGuest, TimedEvent, World } from './scenario.ts';
import { describeLastUd, hitUnsupportedInstruction } from './vcpu-report.ts';

/**
 * What a run's end is judged by, given the scenario's definition: its oracles, window goals and
 * ordering pairs, and the instructions vcpusim lacks. A check that throws is a violation of its
 * own (the check is wrong, or the state is), never the end of the campaign.
 */

/** The ordering pairs' scan of a branch's prefix: the first `events` events of every suffix. */
export interface PrefixOrderings {
  readonly scan: OrderingScan;
  readonly events: number;
}

/** When each of the scenario's oracles is checked. */
export function oraclePhases<G extends ScenarioGuest>(definition: ScenarioDefinition<G>): Record<string, OraclePhase> {
  return Object.fromEntries(definition.oracles.map((oracle) => [oracle.name, oracle.phase]));
}

/** Checks the oracles of one phase into `into`. */
export function checkOracles<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, world: World<G>, phase: OraclePhase, into: Violation[]): void {
  for (const oracle of definition.oracles) {
    if (oracle.phase !== phase) continue;
    let detail: string | null;
    try {
      detail = oracle.check(world);
    } catch (error) {
      detail = `the check threw: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (detail !== null) into.push({ oracle: oracle.name, detail });
  }
}

/** A violation per vCPU that took #UD on an instruction vcpusim does not emulate. */
export function unsupportedInstructions(machine: Machine): Violation[] {
  const found: Violation[] = [];
  for (let vcpu = 0; vcpu < machine.vcpuCount; vcpu++) {
    if (hitUnsupportedInstruction(machine, vcpu)) found.push({ oracle: 'instructions-supported', detail: `vCPU ${vcpu}: ${describeLastUd(machine, vcpu)}` });
  }
  return found;
}

/** The window goals reached; a goal that throws is a violation, the others still count. */
export function windowsReached<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, world: World<G>, violations: Violation[]): string[] {
  const reached: string[] = [];
  for (const goal of definition.windows) {
    try {
      if (goal.reached(world)) reached.push(goal.name);
    } catch (error) {
      violations.push({ oracle: 'window-goals', detail: `window goal "${goal.name}" threw: ${error instanceof Error ? error.message : String(error)}` });
    }
  }
  return reached;
}

/**
 * The orders of the scenario's ordering pairs in the run's events, going on from `prefix` (the
 * scan of the events before a branch point) when given; a pair whose check throws is a violation.
 */
export function orderingsProduced<G extends ScenarioGuest>(
  definition: ScenarioDefinition<G>, events: readonly TimedEvent[], choicesBefore: readonly number[], violations: Violation[], prefix: PrefixOrderings | null,
): OrderingWitness[] {
  const pairs = definition.orderings ?? [];
  if (pairs.length === 0) return [];
  const choiceAt = choiceAtOf(choicesBefore);
  try {
    const scan = prefix?.scan.copy() ?? new OrderingScan(pairs);
    for (let index = prefix?.events ?? 0; index < events.length; index++) scan.feed(events[index].event, index, choiceAt);
    return scan.witnesses(events.length, choiceAt);
  } catch (error) {
    violations.push({ oracle: 'window-goals', detail: `an ordering pair threw: ${error instanceof Error ? error.message : String(error)}` });
    return [];
  }
}

/** The ordering pairs' scan of `events` (a branch's prefix), or null when there are no pairs or one throws (each run then scans all and reports it). */
export function orderingScanOf<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, events: readonly TimedEvent[], choicesBefore: readonly number[]): PrefixOrderings | null {
  const pairs = definition.orderings ?? [];
  if (pairs.length === 0) return null;
  const choiceAt = choiceAtOf(choicesBefore);
  try {
    const scan = new OrderingScan(pairs);
    events.forEach((timed, index) => scan.feed(timed.event, index, choiceAt));
    return { scan, events: events.length };
  } catch {
    return null;
  }
}

/** Choices made when a run's event at an index happened (the last known for an index past the end). */
function choiceAtOf(choicesBefore: readonly number[]): (index: number) => number {
  return (index) => choicesBefore[Math.min(index, choicesBefore.length - 1)] ?? 0;
}
