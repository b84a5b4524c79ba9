import type { RowSummary } from '../explore/campaign.ts';
import { OrderingCoverage } from '../explore/orderings.ts';

/** The campaign's table and per-row lines, for a run and for merged shards alike. */

export function rowName(row: RowSummary): string {
  return `${row.scenario} (${row.bug ?? 'all fixes on'})`;
}

/** Free-running: whether the row's first failure was turned into a replayable run, and how. */
function replayableCell(row: RowSummary): string {
  const failure = row.replayable;
  if (failure === undefined) return '—';
  const found = failure.search?.found ?? null;
  return found === null ? `no (${failure.search?.runs ?? 0} runs)` : `yes: run ${found.run} (${found.report.strategy})`;
}

/** "86 (relocated-at-most-once)", with the hit rate for a free-running row. */
function foundCell(row: RowSummary): string {
  if (row.caughtBy === null) return '—';
  const rate = row.freeRunning === true && row.runs > 0 ? `, ${Math.round((100 * row.found) / row.runs)}%` : '';
  return `${row.found} (${row.caughtBy}${rate})`;
}

/** The row's ordering coverage (null: the scenario declares no pairs). */
function coverageOf(row: RowSummary): OrderingCoverage | null {
  if (row.orderingPairs === undefined || Object.keys(row.orderingPairs).length === 0) return null;
  const coverage = new OrderingCoverage(row.orderingPairs);
  coverage.addCounts(row.orderings ?? {});
  return coverage;
}

/** "7/8", or "—" for a scenario without ordering pairs. */
function orderingsCell(row: RowSummary): string {
  const coverage = coverageOf(row);
  if (coverage === null) return '—';
  const { seen, of } = coverage.covered;
  return `${seen}/${of}`;
}

/** Prints the table of rows, then each row's strategies, windows, determinism and errors. */
export function printTable(summary: readonly RowSummary[]): void {
  const free = summary.some((row) => row.freeRunning === true);
  const header = ['scenario', 'fixes off (bug)', 'runs', 'failures', 'found (oracle)', 'first failing seed', 'windows reached', 'orderings', 'runs/s', ...(free ? ['replayable'] : [])];
  const table = summary.map((row) => [
    row.scenario,
    row.bug === null ? 'none' : row.fixesOff.length === 0 ? `none, a known limitation (${row.bug})` : `${row.fixesOff.join(', ')} (${row.bug})`,
    `${row.runs}${row.complete ? '' : ' (stopped)'}`,
    String(row.failures + row.errors),
    foundCell(row),
    row.firstFailure === null ? '—' : `${row.firstFailure.seed} (${row.firstFailure.oracle})`,
    `${Object.values(row.windows).filter((n) => n > 0).length}/${Object.keys(row.windows).length}`,
    orderingsCell(row),
    row.runsPerSecond.toFixed(1),
    ...(free ? [replayableCell(row)] : []),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...table.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  process.stdout.write(`${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('  ')}\n${table.map(line).join('\n')}\n\n`);
  for (const row of summary) {
    const strategies = Object.entries(row.byStrategy).map(([name, s]) => `${name} ${s.failures}/${s.runs}${s.firstFailingSeed !== null ? ` (first ${s.firstFailingSeed})` : ''}`);
    process.stdout.write(`${rowName(row)}: failures by strategy: ${strategies.join(', ')}\n`);
    process.stdout.write(`  windows reached (runs): ${Object.entries(row.windows).map(([name, n]) => `${name} ${n}`).join(', ')}\n`);
    for (const line of coverageOf(row)?.describe() ?? []) process.stdout.write(`  ordering ${line}\n`);
    const { checked, nondeterministic } = row.determinism;
    if (row.freeRunning === true) process.stdout.write(`  determinism: free-running, no seed reproduces a run${row.replayable !== undefined ? ' (its first failure was searched for a replayable run: above)' : ''}\n`);
    else if (checked.length === 0) process.stdout.write('  determinism: not checked (no seed could be run again here)\n');
    else process.stdout.write(`  determinism: seeds ${checked.join(', ')} run again here, ${nondeterministic.length === 0 ? 'same trace hashes' : 'NOT the same trace'}\n`);
    for (const n of nondeterministic) {
      process.stdout.write(`  NONDETERMINISTIC seed ${n.seed}: hash ${n.poolHash} in the pool, ${n.hereHash} here; ${n.divergence.replaceAll('\n', '\n    ')}\n`);
    }
    if (row.firstError !== null) process.stdout.write(`  ${row.errors} task(s) failed to run; first, seed ${row.firstError.seed}: ${row.firstError.message}\n`);
  }
}
