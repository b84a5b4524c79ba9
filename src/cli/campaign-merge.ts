import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { mergeShards, ShardMergeError, type ShardResult } from '../explore/campaign-merge.ts';
import { rowPassed, rowProblem, type RowSummary } from '../explore/campaign.ts';
import { parseShardJson } from '../explore/shard-json.ts';
import { shrunkSize } from '../explore/shrink-run.ts';
import { campaignJunit } from '../report/junit.ts';
import { printTable } from './campaign-table.ts';
import { ensureWritableDir, parseCommandLine, UsageError } from './common.ts';

/**
 * `scenarios/campaign.ts merge SHARD.json…`: the shards a CI matrix ran (`--shard I/N --json`),
 * as one campaign — the same table, counts, first failing seeds and exit status as one run; of
 * each row's shrunk failures (each shard shrank its own) the one with the fewest preemptions.
 */
export async function mergeCommand(argv: readonly string[]): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(argv, { json: { type: 'boolean' }, junit: { type: 'string' } });
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n(npx tsx scenarios/campaign.ts --help lists the options)\n`);
    return 2;
  }
  const files = parsed.positionals;
  if (files.length === 0) {
    process.stderr.write('error: campaign merge needs the shard files: npx tsx scenarios/campaign.ts merge shard-1.json shard-2.json …\n');
    return 2;
  }
  const junit = parsed.values.junit as string | undefined;
  let shards: ShardResult[];
  let merged: ReturnType<typeof mergeShards>;
  try {
    if (junit !== undefined) ensureWritableDir(dirname(resolve(junit)));
    shards = files.map((file) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (error) {
        throw new ShardMergeError(`${file}: cannot be read (${error instanceof Error ? error.message : String(error)})`);
      }
      return parseShardJson(text, file);
    });
    merged = mergeShards(shards);
  } catch (error) {
    if (!(error instanceof ShardMergeError) && !(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n`);
    return 2;
  }
  const rows: RowSummary[] = merged.rows;
  const problems = rows.map(rowProblem).filter((p): p is string => p !== null);
  const ok = merged.stopped === null && rows.every(rowPassed);
  const traces = new Map<RowSummary, string | null>(merged.rows.map((row) => [row, row.trace]));
  if (junit !== undefined) writeFileSync(junit, campaignJunit({ rows, seconds: merged.seconds, traces, stopped: merged.stopped }));
  if (parsed.values.json === true) {
    const campaign = { ...shards[0].campaign, shard: { index: 1, count: 1 }, mergedFrom: shards.length };
    const rowsJson = merged.rows.map((row, r) => ({ ...row, passed: rowPassed(row), ...(merged.shrunk[r] !== null ? { shrunk: merged.shrunk[r] } : {}) }));
    process.stdout.write(`${JSON.stringify({ campaign, seconds: merged.seconds, ok, problems, ...(merged.stopped !== null ? { stopped: merged.stopped } : {}), rows: rowsJson })}\n`);
    return ok ? 0 : 1;
  }
  printTable(rows);
  for (const [r, row] of merged.rows.entries()) {
    const name = `${row.scenario} (${row.bug ?? 'all fixes on'})`;
    if (row.trace !== null) process.stdout.write(`${name}: first failing trace ${row.trace}\n`);
    const shrunk = merged.shrunk[r];
    if (shrunk !== null && shrunk.trace !== null) {
      process.stdout.write(`${name}: shrunk to ${shrunkSize(shrunk)} (shard ${shrunk.shard}, seed ${shrunk.seed}, the simplest over the shards) ${shrunk.trace}\n`);
    }
  }
  const total = rows.reduce((sum, row) => sum + row.runs, 0);
  process.stdout.write(`\n${total} runs merged from ${shards.length} shard(s); the longest took ${merged.seconds.toFixed(1)} s\n`);
  if (merged.stopped !== null) process.stdout.write(`campaign: STOPPED (${merged.stopped}) — the figures above are partial\n`);
  else if (ok) process.stdout.write('campaign: OK — every bug row broke its oracle, no all-fixes-on row failed, every re-run seed reproduced\n');
  else process.stdout.write(`campaign: UNEXPECTED\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  return ok ? 0 : 1;
}
