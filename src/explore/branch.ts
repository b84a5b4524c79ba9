import type { RuntimeEvent } from '../../actors/events.ts';
import type { OrderingPair, RunMemory } from './orderings.ts';
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
  const memory: RunMemory = new Map();
  const begins = pair[side].begins;
  for (let index = 0; index < events.length; index++) {
    pair.learn?.(events[index], memory);
    if (begins(events[index], memory) !== null) return (choicesBefore[index] ?? 0) - 1;
  }
  return null;
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
