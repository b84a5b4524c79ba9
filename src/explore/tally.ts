import { OrderingCoverage, type OrderingPair } from './orderings.ts';
import { failed, type RunReport } from './scenario-rig.ts';

/**
 * What a series of runs adds up to, kept in constant memory however many runs there are: counts,
 * runs per window goal and per broken oracle, the first failing run (with its trace, for the
 * report), and — only when asked — each run's trace hash.
 */
export class RunTally {
  runs = 0;
  failures = 0;
  /** The first failing run in the order runs were added. */
  firstFailure: RunReport | null = null;
  /** Runs that reached each window goal. */
  readonly windows: Record<string, number> = {};
  /** Failing runs per first broken oracle. */
  readonly byOracle: Record<string, number> = {};
  /** Which orders of the scenario's ordering pairs the runs produced. */
  readonly orderings: OrderingCoverage;
  /** Each run's hash, in order (null unless asked for). */
  readonly hashes: string[] | null;
  /** The last run (one run's trace held: its hash is written out only if asked for). */
  private last: RunReport | null = null;
  /** Strategy label and fixes of the first run (for the summary line). */
  strategy: string | null = null;
  fixesOff: readonly string[] = [];

  constructor(windowGoals: readonly string[], keepHashes: boolean, orderingPairs: readonly OrderingPair[] = []) {
    for (const goal of windowGoals) this.windows[goal] = 0;
    this.orderings = OrderingCoverage.of(orderingPairs);
    this.hashes = keepHashes ? [] : null;
  }

  /** The last run's trace hash. */
  get lastHash(): string {
    return this.last?.hash ?? '';
  }

  add(report: RunReport): void {
    if (this.runs === 0) {
      this.strategy = report.strategy;
      this.fixesOff = report.fixesOff;
    }
    this.runs++;
    for (const goal of report.windows) this.windows[goal] = (this.windows[goal] ?? 0) + 1;
    this.orderings.add(report.orderings);
    this.hashes?.push(report.hash);
    this.last = report;
    if (!failed(report)) return;
    this.failures++;
    const oracle = report.violations[0].oracle;
    this.byOracle[oracle] = (this.byOracle[oracle] ?? 0) + 1;
    this.firstFailure ??= report;
  }
}
