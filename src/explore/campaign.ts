import { Piscina } from 'piscina';
import type { FixName } from '../intro/fixes.ts';
import type { RunMode } from './scenario-rig.ts';
import { STRATEGIES, type StrategyName } from './schedulers/index.ts';

/**
 * A campaign: many seeds of many scenarios, one deterministic run per piscina task, rows of
 * (scenario, fixes) run one after another so each row's runs/s is its own. The pool's task
 * module (workers/campaign-bootstrap.mjs) runs each task on a per-thread rig; this module only
 * spreads the seeds and adds up what comes back.
 */

/** One task: one run. */
export interface CampaignTask {
  readonly scenario: string;
  readonly seed: number;
  readonly strategy: StrategyName;
  readonly depth: number;
  readonly mode: RunMode;
  readonly fixesOff: readonly FixName[];
}

/** What a run sends back: small and structured-clone friendly. */
export interface CampaignResult {
  readonly seed: number;
  readonly strategy: string;
  readonly failed: boolean;
  readonly invariant: string | null;
  readonly detail: string | null;
  readonly windows: readonly string[];
  readonly hash: string;
  readonly steps: number;
  readonly durationMs: number;
}

/** A strategy and, for PCT, its depth. Seeds take the plans in turn. */
export interface StrategyPlan {
  readonly strategy: StrategyName;
  readonly depth: number;
}

/** "random,pct:2" → plans; one clear error for a bad item. */
export function parseStrategyPlans(text: string): StrategyPlan[] {
  return text.split(',').map((item) => {
    const [name, depth] = item.trim().split(':');
    if (!(STRATEGIES as readonly string[]).includes(name)) throw new Error(`unknown strategy "${item}" (use ${STRATEGIES.join(', ')}, or pct:D)`);
    const d = depth === undefined ? 2 : Number(depth);
    if (!Number.isInteger(d) || d < 1) throw new Error(`bad PCT depth in "${item}": D must be an integer ≥ 1`);
    return { strategy: name as StrategyName, depth: d };
  });
}

export interface CampaignRow {
  readonly scenario: string;
  /** The bug this row brings back, or null for the all-fixes-on row. */
  readonly bug: string | null;
  readonly fixesOff: readonly FixName[];
  readonly windowGoals: readonly string[];
}

export interface RowSummary extends CampaignRow {
  readonly runs: number;
  readonly failures: number;
  readonly firstFailure: { readonly seed: number; readonly plan: StrategyPlan; readonly strategy: string; readonly invariant: string | null; readonly detail: string | null } | null;
  /** Runs that reached each window goal. */
  readonly windows: Readonly<Record<string, number>>;
  readonly byStrategy: Readonly<Record<string, { runs: number; failures: number; firstFailingSeed: number | null }>>;
  readonly runsPerSecond: number;
}

export interface CampaignOptions {
  readonly rows: readonly CampaignRow[];
  readonly runs: number;
  readonly firstSeed: number;
  readonly plans: readonly StrategyPlan[];
  readonly mode: RunMode;
  readonly threads: number;
  /** The piscina task module (file URL). */
  readonly taskModule: URL;
  readonly onProgress?: (done: number, total: number, failing: number) => void;
}

export async function runCampaign(options: CampaignOptions): Promise<RowSummary[]> {
  const { rows, runs, firstSeed, plans, mode, threads } = options;
  const pool = new Piscina<CampaignTask, CampaignResult>({ filename: options.taskModule.href, minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
  const total = rows.length * runs;
  let done = 0;
  let failing = 0;
  const summaries: RowSummary[] = [];
  try {
    // Warm-up, not counted: each thread loads the code and builds its rig before the clock starts.
    const warm = rows[0];
    if (warm !== undefined) {
      await Promise.all(Array.from({ length: threads }, () => pool.run({ scenario: warm.scenario, seed: 0, strategy: plans[0].strategy, depth: plans[0].depth, mode, fixesOff: warm.fixesOff })));
    }
    for (const row of rows) {
      const started = performance.now();
      const results = await Promise.all(
        Array.from({ length: runs }, async (_, k) => {
          const plan = plans[k % plans.length];
          const result = await pool.run({ scenario: row.scenario, seed: firstSeed + k, strategy: plan.strategy, depth: plan.depth, mode, fixesOff: row.fixesOff });
          done++;
          if (result.failed) failing++;
          options.onProgress?.(done, total, failing);
          return result;
        }),
      );
      summaries.push(summarize(row, results, plans, firstSeed, (performance.now() - started) / 1000));
    }
  } finally {
    await pool.destroy();
  }
  return summaries;
}

function summarize(row: CampaignRow, results: readonly CampaignResult[], plans: readonly StrategyPlan[], firstSeed: number, seconds: number): RowSummary {
  const failures = results.filter((r) => r.failed).sort((a, b) => a.seed - b.seed);
  const windows: Record<string, number> = {};
  for (const goal of row.windowGoals) windows[goal] = results.filter((r) => r.windows.includes(goal)).length;
  const byStrategy: Record<string, { runs: number; failures: number; firstFailingSeed: number | null }> = {};
  for (const r of results) {
    const entry = (byStrategy[r.strategy] ??= { runs: 0, failures: 0, firstFailingSeed: null });
    entry.runs++;
    if (r.failed) {
      entry.failures++;
      if (entry.firstFailingSeed === null || r.seed < entry.firstFailingSeed) entry.firstFailingSeed = r.seed;
    }
  }
  const first = failures[0];
  return {
    ...row,
    runs: results.length,
    failures: failures.length,
    firstFailure: first === undefined ? null : { seed: first.seed, plan: plans[(first.seed - firstSeed) % plans.length], strategy: first.strategy, invariant: first.invariant, detail: first.detail },
    windows,
    byStrategy,
    runsPerSecond: results.length / seconds,
  };
}
