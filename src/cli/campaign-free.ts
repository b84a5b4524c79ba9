import type { RowSummary } from '../explore/campaign.ts';
import { rowName } from './campaign-table.ts';
import { formatReplayable, writeReplayable, type ReplayableOutcome } from './replayable-step.ts';

/**
 * The free-running campaign's part of the report: each row's first failure as the search turned
 * it into a replayable run (its trace, the shrunk run and its story) or did not, and the verdict —
 * which rows the OS's interleavings hit at all, and how many of those failures now replay.
 */

/** Writes and prints the row's replayable failure, if it had a failure. */
export function reportReplayable(row: RowSummary, dir: string, quiet: boolean): ReplayableOutcome | null {
  if (row.replayable === undefined) return null;
  const outcome = writeReplayable(row.replayable, dir, '-free-campaign', rowName(row));
  if (!quiet) process.stdout.write(`${formatReplayable(outcome, rowName(row))}\n\n`);
  return outcome;
}

/** "14 of 20 bug rows hit free-running; 13 of the 14 rows' first failures turned replayable". */
export function freeSummary(rows: readonly RowSummary[]): string {
  const bugRows = rows.filter((row) => row.bug !== null);
  const hit = bugRows.filter((row) => row.found > 0).length;
  const failing = rows.filter((row) => row.replayable !== undefined);
  const replayable = failing.filter((row) => row.replayable?.search?.found != null).length;
  return `${hit} of ${bugRows.length} bug row(s) hit free-running; ${replayable} of ${failing.length} row(s) with a failure turned it replayable`;
}

/** The rows whose first free-running failure could not be made replayable (free-running only), one line each. */
export function notReplayable(rows: readonly RowSummary[]): string[] {
  return rows.flatMap((row) => {
    const failure = row.replayable;
    if (failure === undefined || failure.search?.found != null) return [];
    const why = failure.search === null ? failure.error ?? 'the search did not run' : `no deterministic run broke ${failure.observation.oracle} first within ${failure.search.runs} runs`;
    return [`${rowName(row)}: seed ${failure.observation.seed} broke ${failure.observation.oracle}; ${why}`];
  });
}
