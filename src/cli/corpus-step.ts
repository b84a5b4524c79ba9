import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RowSummary } from '../explore/campaign.ts';
import { traceJsonOf } from '../explore/scenario-rig.ts';
import { corpusFileName, traceFileText } from '../report/trace-file.ts';
import { rowName } from './campaign-table.ts';

/** What `campaign --corpus DIR` wrote, and which bug rows it could not. */
export interface CorpusOutcome {
  readonly dir: string;
  readonly written: readonly string[];
  /** Rows with no recording to keep, and why. */
  readonly missing: readonly string[];
}

/**
 * Each bug row's shrunk failure (free-running: the one made replayable), written into `dir` under the row's own name (scenario and
 * fixes off) as a recorded failure to keep fixed (`staysFixed`, `vcpusim check-traces`), naming
 * the bug's own invariant. A known limitation (no fix off) has nothing to switch on and is left out.
 */
export function writeCorpus(rows: readonly RowSummary[], dir: string): CorpusOutcome {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const missing: string[] = [];
  for (const row of rows) {
    if (row.bug === null || row.caughtBy === null || row.fixesOff.length === 0) continue;
    // Free-running, the row's failure made replayable and shrunk stands in for it.
    const report = row.shrunk?.report ?? row.replayable?.shrunk?.report;
    if (report === undefined) {
      const why = row.found === 0 ? 'the bug was not found' : row.replayable !== undefined ? (row.replayable.error ?? 'no deterministic run reproduced it') : (row.shrinkError ?? 'shrinking was off');
      missing.push(`${rowName(row)}: no shrunk failure (${why})`);
      continue;
    }
    if (!report.violations.some((v) => v.oracle === row.caughtBy)) {
      missing.push(`${rowName(row)}: its shrunk failure breaks ${report.violations[0]?.oracle ?? 'nothing'}, not ${row.caughtBy}`);
      continue;
    }
    const path = join(dir, corpusFileName(row.scenario, row.fixesOff));
    writeFileSync(path, traceFileText(traceJsonOf(report, row.caughtBy)));
    written.push(path);
  }
  return { dir, written, missing };
}
