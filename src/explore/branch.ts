import type { RuntimeEvent } from '../../actors/events.ts';
import type { Fixes } from '../intro/fixes.ts';
import type { RunReport, RunRequest } from './scenario-rig.ts';
import type { TraceJson } from './trace-json.ts';
import { spansOf, type OrderingPair } from './orderings.ts';
import type { Seed } from './prng.ts';
import type { StrategyName } from './schedulers/index.ts';

/**
 * Branching: run a prefix schedule once to a chosen point, snapshot the whole simulation there,
 * and explore many suffixes from it — each suffix a schedule of its own strategy and seed — without
 * running the prefix again. The point is a top-level choice point (between two choices of the
 * main loop, never inside a handler): the last one at or before a given choice, or the last one
 * before a scenario's race window opens (the first occurrence of a side of an ordering pair).
 */

/** Where to branch. */
export type BranchPoint =
  /** The last top-level choice point at or before this many choices of the prefix. */
  | { readonly choice: number }
  /** The last top-level choice point before the first occurrence of `side` of ordering pair `pair` begins. */
  | { readonly pair: string; readonly side: 'a' | 'b' };

/** One suffix: who makes the choices after the branch point. */
export interface BranchSuffix {
  readonly seed: Seed;
  readonly strategy: StrategyName;
  /** PCT depth d (default 2). */
  readonly depth?: number;
}

/** Parses "choice:N", "pair:NAME" or "pair:NAME:b" (side A by default). */
export function parseBranchPoint(text: string): BranchPoint | null {
  const choice = /^choice:(\d+)$/.exec(text);
  if (choice !== null) return { choice: Number(choice[1]) };
  const pair = /^pair:([^:]+)(?::([ab]))?$/.exec(text);
  if (pair !== null) return { pair: pair[1], side: pair[2] === 'b' ? 'b' : 'a' };
  return null;
}

export function describeBranchPoint(point: BranchPoint): string {
  return 'choice' in point ? `choice ${point.choice}` : `pair "${point.pair}" side ${point.side.toUpperCase()} begins`;
}

/**
 * The choice during which `side` of `pair` first began in a run's events (choicesBefore[i]: the
 * choices recorded when event i happened, the one being carried out included), or null.
 */
export function windowOpensAt(pair: OrderingPair, side: 'a' | 'b', events: readonly RuntimeEvent[], choicesBefore: readonly number[]): number | null {
  const first = spansOf(pair[side], events, (index) => choicesBefore[index] ?? 0, pair.learn)[0];
  return first === undefined ? null : first.choiceFrom - 1;
}

/** The last top-level choice point at or before `choice` (points: choices made at each, ascending), or null. */
export function lastPointAtOrBefore(points: readonly number[], choice: number): number | null {
  let found: number | null = null;
  for (const point of points) {
    if (point > choice) break;
    found = point;
  }
  return found;
}

/**
 * What leads to the branch point: a seed and a strategy, or a recorded trace (a failing run's,
 * say), followed strictly — its seed feeds the engine's generator as it did when it was recorded.
 */
export type BranchPrefix = RunRequest | { readonly trace: TraceJson; readonly fixes: Fixes<string> };

/** The prefix's seed and a short description ("random seed 4", "trace of pct(d=2) seed 9"). */
export function describePrefix(prefix: BranchPrefix): string {
  if ('trace' in prefix) return `the trace of ${prefix.trace.strategy} seed ${prefix.trace.seed}`;
  return `${prefix.strategy === 'pct' ? `pct(d=${prefix.depth})` : prefix.strategy} seed ${String(prefix.seed)}`;
}

/** A prefix, a point, and the suffixes to explore from it (`ScenarioRig.branch`). */
export interface BranchRequest {
  /** The prefix schedule: its seed also seeds the engine's generator for every suffix. */
  readonly prefix: BranchPrefix;
  readonly at: BranchPoint;
  readonly suffixes: readonly BranchSuffix[];
  /** Called after each suffix run (progress, early stop: return false to stop). */
  readonly onRun?: (report: RunReport, index: number) => boolean | void;
  /** Run the first suffix once more after a restore and compare (default true): proof the snapshot holds the whole run. */
  readonly check?: boolean;
  /**
   * Cut every suffix after this many choices past the branch point (default: run to the end). A
   * cut suffix explores the window only: its continuous oracles judge it, the end and
   * after-uninit ones do not run (outcome "horizon"); a failure still replays from the start,
   * where every oracle runs.
   */
  readonly horizon?: number;
}

/** A suffix run again from the snapshot came out different: the run keeps state no snapshot holds. */
export class BranchStateLeak extends Error {
  constructor(scenario: string, where: string) {
    super(`scenario "${scenario}": the same suffix from the same snapshot gave a different run, so some of the run's state is outside the snapshot `
      + `(a variable a callback closes over, module-level state, a WeakMap). Keep engine-logic state in engine.state({...}) and oracle state in the world.\n${where}`);
    this.name = 'BranchStateLeak';
  }
}

/** What branching did: the point, the snapshot's size and costs, and one report per suffix run. */
export interface BranchResult {
  /** Choices of the prefix: every suffix goes on after them. */
  readonly at: number;
  /** The point as asked for ("pair \"x\" side A begins"). */
  readonly asked: string;
  /** Objects the snapshot holds, and the machine's RAM pages. */
  readonly objects: number;
  readonly ramPages: number;
  /** RAM pages copied back, per restore: before every suffix but the first, and before the check (the first suffix again). */
  readonly dirtyPages: readonly number[];
  /** The prefix up to the point, taking the snapshot, and all restores. */
  readonly prefixMs: number;
  readonly snapshotMs: number;
  readonly restoreMs: number;
  /** One report per suffix run, in order; each is labelled "branched" and replays from its trace. */
  readonly runs: readonly RunReport[];
}

