import type { Prng } from '../prng.ts';
import type { Scheduler } from '../schedule.ts';
import { PctScheduler } from './pct.ts';
import { PosScheduler } from './pos.ts';
import { RandomScheduler } from './random.ts';
import { RoundRobinScheduler } from './round-robin.ts';
import { SurwScheduler } from './surw.ts';

export { PctScheduler, PosScheduler, RandomScheduler, RoundRobinScheduler, SurwScheduler };
export { CountingScheduler, InterestingEvents } from './interesting-events.ts';
export { ReplayDivergence, ReplayScheduler } from './replay.ts';

/** Strategies that explore (replay is separate: it follows a recorded schedule). */
export type StrategyName = 'rr' | 'random' | 'pct' | 'pos' | 'surw';
export const STRATEGIES: readonly StrategyName[] = ['rr', 'random', 'pct', 'pos', 'surw'];

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
  const plain = STRATEGIES.find((name) => name !== 'pct' && name === label);
  return plain === undefined ? null : { strategy: plain, depth: 2 };
}

export interface StrategyOptions {
  readonly vcpus: number;
  /** Slice for round-robin and PCT; the maximum slice for random, POS and SURW. */
  readonly slice: number;
  /** PCT bug depth d (default 2). */
  readonly depth?: number;
  /** PCT's k: events expected in a run (default 200). */
  readonly events?: number;
  /**
   * SURW's estimate: interesting events expected per vCPU, then for the timer (vcpus + 1 numbers;
   * `ScenarioRig` profiles a round-robin run for it). Without it every actor weighs the same.
   */
  readonly eventEstimate?: readonly number[];
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
    case 'pos':
      return new PosScheduler(prng, options.vcpus, options.slice);
    case 'surw':
      return new SurwScheduler(prng, options.vcpus, options.slice, options.eventEstimate ?? new Array<number>(options.vcpus + 1).fill(0));
    default:
      throw new Error(`unknown strategy "${String(strategy)}"; use one of ${STRATEGIES.join(', ')}`);
  }
}
