import type { Prng } from '../prng.ts';
import type { Scheduler } from '../schedule.ts';
import { PctScheduler } from './pct.ts';
import { RandomScheduler } from './random.ts';
import { RoundRobinScheduler } from './round-robin.ts';

export { PctScheduler, RandomScheduler, RoundRobinScheduler };
export { ReplayDivergence, ReplayScheduler } from './replay.ts';

/** Strategies that explore (replay is separate: it follows a recorded schedule). */
export type StrategyName = 'rr' | 'random' | 'pct';
export const STRATEGIES: readonly StrategyName[] = ['rr', 'random', 'pct'];

/** A strategy and, for PCT, its depth. */
export interface StrategyPlan {
  readonly strategy: StrategyName;
  readonly depth: number;
}

/** The label a run's report and trace carry: "rr", "random", "pct(d=2)". */
export function strategyLabel(plan: StrategyPlan): string {
  return plan.strategy === 'pct' ? `pct(d=${plan.depth})` : plan.strategy;
}

/** "pct(d=2)" → pct, depth 2; "random" → random. Null for labels that are no strategy ("free"). */
export function parseStrategyLabel(label: string): StrategyPlan | null {
  const pct = /^pct\(d=([1-9]\d{0,5})\)$/.exec(label);
  if (pct !== null) return { strategy: 'pct', depth: Number(pct[1]) };
  return label === 'rr' || label === 'random' ? { strategy: label, depth: 2 } : null;
}

export interface StrategyOptions {
  readonly vcpus: number;
  /** Slice for round-robin and PCT; the maximum slice for random. */
  readonly slice: number;
  /** PCT bug depth d (default 2). */
  readonly depth?: number;
  /** PCT's k: events expected in a run (default 200). */
  readonly events?: number;
}

/** Builds a strategy; all its randomness comes from `prng`. */
export function createScheduler(strategy: StrategyName, prng: Prng, options: StrategyOptions): Scheduler {
  switch (strategy) {
    case 'rr':
      return new RoundRobinScheduler(options.slice);
    case 'random':
      return new RandomScheduler(prng, options.slice);
    case 'pct':
      return new PctScheduler(prng, options.vcpus, options.depth ?? 2, options.events ?? 200, options.slice);
    default:
      throw new Error(`unknown strategy "${String(strategy)}"; use one of ${STRATEGIES.join(', ')}`);
  }
}
