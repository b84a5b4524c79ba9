import type { Session } from '../../actors/session.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import type { Introspection } from '../../actors/introspection.ts';
import type { GuestDescription, Introcore } from '../intro/engine.ts';
import type { FixName, Fixes } from '../intro/fixes.ts';
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
export interface World<G extends ScenarioGuest> {
  readonly guest: G;
  readonly engine: Introcore;
  readonly introspection: Introspection;
  readonly session: Session;
  readonly fixes: Fixes;
  /** How the run ended (null while it is still going: continuous checks). */
  readonly result: RunResult | null;
  /** Every runtime event of the run, in order. */
  readonly events: readonly TimedEvent[];
}

export type OraclePhase = 'continuous' | 'end' | 'after-uninit';

/** An invariant checked on every run, from real state. */
export interface Oracle<G extends ScenarioGuest> {
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
  check(world: World<G>): string | null;
}

/** An interleaving worth reaching: evidence the run explored the race window. */
export interface WindowGoal<G extends ScenarioGuest> {
  readonly name: string;
  readonly description: string;
  reached(world: World<G>): boolean;
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
}

/** A race the scenario brings back when `fixesOff` are switched off. */
export interface ScenarioBug {
  /** Short name, e.g. "double relocation". */
  readonly name: string;
  readonly fixesOff: readonly FixName[];
  /** The oracle that catches it first. */
  readonly caughtBy: string;
}

export interface ScenarioDefinition<G extends ScenarioGuest = ScenarioGuest> {
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
  readonly bugs: readonly [ScenarioBug, ...ScenarioBug[]];
  readonly bounds: ScenarioBounds;
  /** Builds the guest once per rig; every run restores its initial snapshot. */
  setup(): G;
  /** The clock interrupt vector of the guest, if it takes one. */
  readonly clockVector?: number;
  readonly oracles: readonly Oracle<G>[];
  readonly windows: readonly WindowGoal<G>[];
}
