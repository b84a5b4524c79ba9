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
