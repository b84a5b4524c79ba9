import type { RowSummary } from '../explore/campaign.ts';

/** The campaign's table and per-row lines, for a run and for merged shards alike. */

export function rowName(row: RowSummary): string {
  return `${row.scenario} (${row.bug ?? 'all fixes on'})`;
}

/** Prints the table of rows, then each row's strategies, windows, determinism and errors. */
export function printTable(summary: readonly RowSummary[]): void {
  const header = ['scenario', 'fixes off (bug)', 'runs', 'failures', 'found (oracle)', 'first failing seed', 'windows reached', 'runs/s'];
  const table = summary.map((row) => [
    row.scenario,
    row.bug === null ? 'none' : row.fixesOff.length === 0 ? `none, a known limitation (${row.bug})` : `${row.fixesOff.join(', ')} (${row.bug})`,
    `${row.runs}${row.complete ? '' : ' (stopped)'}`,
    String(row.failures + row.errors),
    row.caughtBy === null ? '—' : `${row.found} (${row.caughtBy})`,
    row.firstFailure === null ? '—' : `${row.firstFailure.seed} (${row.firstFailure.oracle})`,
    `${Object.values(row.windows).filter((n) => n > 0).length}/${Object.keys(row.windows).length}`,
    row.runsPerSecond.toFixed(1),
  ]);
  const widths = header.map((h, c) => Math.max(h.length, ...table.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  process.stdout.write(`${line(header)}\n${widths.map((w) => '─'.repeat(w)).join('  ')}\n${table.map(line).join('\n')}\n\n`);
  for (const row of summary) {
    const strategies = Object.entries(row.byStrategy).map(([name, s]) => `${name} ${s.failures}/${s.runs}${s.firstFailingSeed !== null ? ` (first ${s.firstFailingSeed})` : ''}`);
    process.stdout.write(`${rowName(row)}: failures by strategy: ${strategies.join(', ')}\n`);
    process.stdout.write(`  windows reached (runs): ${Object.entries(row.windows).map(([name, n]) => `${name} ${n}`).join(', ')}\n`);
    const { checked, nondeterministic } = row.determinism;
    if (checked.length === 0) process.stdout.write('  determinism: not checked (no seed could be run again here)\n');
    else process.stdout.write(`  determinism: seeds ${checked.join(', ')} run again here, ${nondeterministic.length === 0 ? 'same trace hashes' : 'NOT the same trace'}\n`);
    for (const n of nondeterministic) {
      process.stdout.write(`  NONDETERMINISTIC seed ${n.seed}: hash ${n.poolHash} in the pool, ${n.hereHash} here; ${n.divergence.replaceAll('\n', '\n    ')}\n`);
    }
    if (row.firstError !== null) process.stdout.write(`  ${row.errors} task(s) failed to run; first, seed ${row.firstError.seed}: ${row.firstError.message}\n`);
  }
}
