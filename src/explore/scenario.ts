import type { OrderingPair } from './orderings.ts';
import { HYPERVISOR_FAULTS, type HypervisorFault } from './schedule.ts';
import type { Session } from '../../actors/session.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import type { Introspection } from '../../actors/introspection.ts';
import type { Introcore } from '../intro/engine.ts';
import type { GuestDescription } from '../guest/description.ts';
import type { ScenarioEngine } from '../intro/extension.ts';
import { FixCatalog, type BuiltinFixName, type FixDeclaration, type Fixes } from '../intro/fixes.ts';
import type { Machine } from '../machine/machine.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import type { RunResult } from './deterministic.ts';

/**
 * A scenario is one reproduced bug as a product: a guest, the engine with a set of fixes, the
 * invariants every run must keep (oracles), and the interleavings that prove the interesting
 * part was explored even when nothing failed (window goals). A scenario module exports one
 * `ScenarioDefinition`; the registry (scenarios/index.ts) lists them; the CLI, the campaign and
 * the tests all run them through the same rig.
 */

/** A guest a scenario runs: its machine, what the engine must know of it, its own hypercalls. */
export interface ScenarioGuest {
  readonly machine: Machine;
  readonly description: GuestDescription;
  /** The guest's own VMCALLs ('stop': this vCPU is done), or null when RAX is not one. */
  guestCall(vcpu: number, regs: { gpr(name: GprName): bigint }): 'stop' | 'continue' | null;
  /** Clears what the guest object observed during a run (before a re-run from the snapshot). */
  resetObservations(): void;
}

/** One runtime event with the virtual clock it happened at. */
export interface TimedEvent {
  readonly clock: number;
  readonly event: RuntimeEvent;
}

/** Everything a finished run offers to oracles and window goals. */
export interface World<G extends ScenarioGuest, F extends string = string> {
  readonly guest: G;
  readonly engine: Introcore;
  readonly introspection: Introspection;
  readonly session: Session;
  /** The run's fixes: the built-in ones and the scenario's own. */
  readonly fixes: Fixes<F>;
  /** How the run ended (null while it is still going: continuous checks). */
  readonly result: RunResult | null;
  /** Every runtime event of the run, in order. */
  readonly events: readonly TimedEvent[];
}

export type OraclePhase = 'continuous' | 'end' | 'after-uninit';

/** An invariant checked on every run, from real state. */
export interface Oracle<G extends ScenarioGuest, F extends string = string> {
  readonly name: string;
  readonly description: string;
  /**
   * `continuous` oracles are checked after every handler and timer tick, and the first one that
   * breaks ends the run there (the trace and the vCPU report show that moment); `end` oracles see
   * the state when the guest finished; `after-uninit` ones see it after the engine unloaded
   * (patches removed, hooks committed).
   */
  readonly phase: OraclePhase;
  /** null when the invariant holds; otherwise what broke, in one or a few lines. */
  check(world: World<G, F>): string | null;
}

/** An interleaving worth reaching: evidence the run explored the race window. */
export interface WindowGoal<G extends ScenarioGuest, F extends string = string> {
  readonly name: string;
  readonly description: string;
  reached(world: World<G, F>): boolean;
}

export interface ScenarioBounds {
  /** Bound on virtual time for one run (all vCPUs' steps). */
  readonly stepsMax: number;
  /**
   * Bound on scheduling choices: virtual time only moves when steps retire, so a handler that keeps
   * answering "retry" to an exit that retires nothing would otherwise never reach `stepsMax`.
   */
  readonly choicesMax: number;
  /** Slice for rr and PCT; the maximum slice for random. */
  readonly slice: number;
  /** PCT's k: about how many events (exits, engine notes, pauses) one run has. */
  readonly pctEvents: number;
  /** The engine's timer period, in steps of virtual time (deterministic) and wall-clock ms (free). */
  readonly timerSteps: number;
  readonly timerMs: number;
  /** A clock interrupt to every vCPU this often (deterministic mode). */
  readonly clockEverySteps: number;
  /** Wall-clock bound of one free-running run. */
  readonly freeWallMs: number;
  /** Unload attempts the daemon makes before giving up (default 300, HVMI's). */
  readonly unloadTries?: number;
  /** Virtual time between two unload attempts (HVMI's 100 ms; default 2000 steps). */
  readonly unloadRetrySteps?: number;
  /**
   * Bounded fairness in deterministic mode: a vCPU able to act but idle this long must act next
   * (see DeterministicOptions.fairnessSteps). For liveness oracles under PCT; default none.
   */
  readonly fairnessSteps?: number;
}

/**
 * Invariants the rig itself checks on every run of every scenario, by name (a bug's `caughtBy` may
 * name one). They come before the scenario's own in a report when they break.
 */
export const RIG_ORACLES: Readonly<Record<string, string>> = {
  'instructions-supported': 'the guest executed only instructions vcpusim emulates (else the run is not what hardware does)',
  'run-completes': 'the run ended with every vCPU finished: no triple fault, no step or choice bound, no machine stuck',
  'engine-runs': 'no exit handler threw and no vCPU host died or hung',
  'simulation-runs': 'the rig, the runtime and the scheduler raised no error',
  'window-goals': 'every window goal and ordering pair could be evaluated',
  'engine-unloads': 'the engine unloaded without an error',
};

/**
 * A scenario's own engine logic: code that runs when the engine has started (place hooks,
 * detour callbacks, hypercalls, EPT stages) and before it unloads. Whatever it placed through
 * the ScenarioEngine is removed by the unload itself.
 */
export interface EngineExtension<G extends ScenarioGuest, F extends string = string> {
  start?(engine: ScenarioEngine<F>, guest: G): void;
  beforeUninit?(engine: ScenarioEngine<F>, guest: G): void;
}

/** A race the scenario brings back when `fixesOff` are switched off. */
export interface ScenarioBug<F extends string = string> {
  /** Short name, e.g. "double relocation". */
  readonly name: string;
  /** Built-in fixes and fixes the scenario declares (none for a known limitation). */
  readonly fixesOff: readonly (BuiltinFixName | F)[];
  /** The oracle that catches it: the campaign counts this bug found only when it breaks. */
  readonly caughtBy: string;
  /**
   * HVMI's own documented behaviour, not a mitigation switched off: the bug happens with every fix
   * on (`fixesOff` is empty). The campaign then runs this bug's row as the scenario's all-fixes-on
   * row, expecting `caughtBy` to break.
   */
  readonly knownLimitation?: boolean;
}

export interface ScenarioDefinition<G extends ScenarioGuest = ScenarioGuest, F extends string = string> {
  /** CLI name, e.g. "memtable-stale-icache". */
  readonly name: string;
  readonly title: string;
  /** What the race is, where HVMI fixed it, what each oracle guards. */
  readonly description: string;
  readonly vcpus: number;
  /**
   * The races this scenario reproduces, each with the fixes whose absence brings it back; the
   * first is the scenario's own race (the CLI's --bug). The campaign runs one row per bug.
   */
  readonly bugs: readonly [ScenarioBug<F>, ...ScenarioBug<F>[]];
  /** Mitigations of the scenario's own engine logic, as switches next to HVMI's (`--fix`, `bugs`). */
  readonly fixes?: readonly FixDeclaration<F>[];
  readonly bounds: ScenarioBounds;
  /** Builds the guest once per rig; every run restores its initial snapshot. */
  setup(): G;
  /** The clock interrupt vector of the guest, if it takes one. */
  readonly clockVector?: number;
  readonly oracles: readonly Oracle<G, F>[];
  readonly windows: readonly WindowGoal<G, F>[];
  /**
   * Pairs of events whose cross-CPU order matters for the race: every run records which orders it
   * produced (A before B, B before A, A during B), and campaigns and `run.ts` report the coverage.
   */
  readonly orderings?: readonly OrderingPair[];
  /** The scenario's own engine logic, if any. */
  readonly engine?: EngineExtension<G, F>;
  /** How the hypervisor the engine runs in behaves where integrators differ (default: asynchronous). */
  readonly hypervisor?: HypervisorModel;
}

/**
 * When the hypervisor carries out an instruction the engine allowed (HVMI's introGuestAllowed).
 * 'at-next-entry': whenever the scheduler next runs that vCPU — other vCPUs may run and other
 * exits be handled in between, as with an integrator that answers events asynchronously (Xen's
 * vm_event: the response only unpauses the vCPU). 'at-reply': at once, before anything else
 * happens, as an integrator inside the hypervisor does on the exiting CPU (Napoca).
 * Deterministic mode only; free-running vCPUs run as their threads get the CPU.
 */
export interface HypervisorModel {
  readonly emulation?: 'at-next-entry' | 'at-reply';
  /**
   * Faults of real hypervisors the scheduler may inject, each an explored choice on a handled exit
   * (the random strategy picks them like any other choice; traces record and replay them):
   * 'duplicate-exit' (an EPT violation delivered to the engine twice, as seen on Xen),
   * 'late-flush' (the handler's EPT changes reach running vCPUs only at their next exit).
   */
  readonly faults?: readonly HypervisorFault[];
}

/** Every fix a scenario's runs can switch: the built-in ones and those it declares. */
export function fixCatalogOf<F extends string>(definition: Pick<ScenarioDefinition<ScenarioGuest, F>, 'name' | 'fixes'>): FixCatalog<F> {
  return new FixCatalog<F>(definition.fixes ?? [], `scenario "${definition.name}"`);
}

/** A scenario definition that cannot be run as written. */
export class ScenarioDefinitionError extends Error {
  constructor(scenario: string, problem: string) {
    super(`scenario "${scenario}" is not well defined: ${problem}`);
    this.name = 'ScenarioDefinitionError';
  }
}

/**
 * Checks what can be checked without running: names, bounds, that every bug names fixes that exist
 * and an oracle that exists. Throws ScenarioDefinitionError naming the scenario and the field.
 */
export function validateScenario(definition: ScenarioDefinition<ScenarioGuest>): void {
  const name = typeof definition.name === 'string' ? definition.name : String(definition.name);
  const fail = (problem: string): never => {
    throw new ScenarioDefinitionError(name, problem);
  };
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) fail('name must be lower-case letters, digits and dashes');
  if (!Number.isInteger(definition.vcpus) || definition.vcpus < 1) fail(`vcpus must be a positive integer, got ${definition.vcpus}`);
  if (typeof definition.setup !== 'function') fail('setup() is missing');
  for (const [field, value] of Object.entries(definition.bounds ?? {})) {
    if (typeof value !== 'number' || !(value > 0)) fail(`bounds.${field} must be a positive number, got ${String(value)}`);
  }
  const emulation = definition.hypervisor?.emulation;
  if (emulation !== undefined && emulation !== 'at-next-entry' && emulation !== 'at-reply') {
    fail(`hypervisor.emulation must be 'at-next-entry' or 'at-reply', got ${JSON.stringify(emulation)}`);
  }
  const faults = definition.hypervisor?.faults ?? [];
  const unknownFault = Array.isArray(faults) ? faults.find((f) => !HYPERVISOR_FAULTS.includes(f)) : 'not a list';
  if (unknownFault !== undefined) fail(`hypervisor.faults must list ${HYPERVISOR_FAULTS.join(' or ')}, got ${JSON.stringify(unknownFault)}`);
  const oracleNames = definition.oracles.map((o) => o.name);
  const orderings = definition.orderings ?? [];
  if (!Array.isArray(orderings)) fail('orderings must be a list of pairs');
  for (const pair of orderings) {
    const sides = [pair.a, pair.b];
    if (sides.some((side) => typeof side?.begins !== 'function' || (side.ends !== undefined && typeof side.ends !== 'function'))) {
      fail(`ordering pair "${String(pair.name)}" needs a and b, each with a begins(event) function (and ends(event, occurrence) for an interval)`);
    }
  }
  const repeated = [...oracleNames, ...definition.windows.map((w) => w.name), ...orderings.map((p) => p.name)].find((n, i, all) => all.indexOf(n) !== i);
  if (repeated !== undefined) fail(`the oracle, window or ordering pair name "${repeated}" is used twice`);
  const clash = oracleNames.find((n) => n in RIG_ORACLES);
  if (clash !== undefined) fail(`oracle "${clash}" has the name of one the rig checks itself`);
  if (!Array.isArray(definition.bugs) || definition.bugs.length === 0) fail('bugs must list at least one bug');
  let catalog: FixCatalog<string>;
  try {
    catalog = fixCatalogOf(definition);
  } catch (error) {
    return fail(error instanceof Error ? error.message.replace(/^scenario "[^"]*": /, '') : String(error));
  }
  const knownFixes = catalog.names;
  for (const bug of definition.bugs) {
    if (!oracleNames.includes(bug.caughtBy) && !(bug.caughtBy in RIG_ORACLES)) {
      fail(`bug "${bug.name}" is caughtBy "${bug.caughtBy}", which is no oracle of the scenario (${oracleNames.join(', ')}) nor of the rig (${Object.keys(RIG_ORACLES).join(', ')})`);
    }
    const limitation = bug.knownLimitation === true;
    if (bug.fixesOff.length === 0 && !limitation) fail(`bug "${bug.name}" switches no fix off (one HVMI has with every fix on is a knownLimitation)`);
    if (bug.fixesOff.length > 0 && limitation) fail(`bug "${bug.name}" is a known limitation, found with every fix on: it switches no fix off`);
    const unknown = bug.fixesOff.find((fix) => !knownFixes.includes(fix));
    if (unknown !== undefined) fail(`bug "${bug.name}" switches off "${unknown}", which is no fix (${knownFixes.join(', ')})`);
  }
}
