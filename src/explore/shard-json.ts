import type { RowSummary } from './campaign.ts';
import { ShardMergeError, type ShardResult, type ShardShrunk } from './campaign-merge.ts';

/**
 * Reads a shard's `campaign --shard i/n --json` output back, checking every field the merge
 * uses, so a truncated or foreign file is one clear error naming the file and the field.
 */

type Json = unknown;

function fail(source: string, path: string, want: string, got: Json): never {
  throw new ShardMergeError(`${source}: ${path} should be ${want}, got ${JSON.stringify(got)?.slice(0, 60) ?? 'nothing'} — is it the --json output of campaign --shard?`);
}

const isObject = (value: Json): value is Record<string, Json> => typeof value === 'object' && value !== null && !Array.isArray(value);

function number(source: string, path: string, value: Json): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(source, path, 'a number', value);
  return value as number;
}

function object(source: string, path: string, value: Json): Record<string, Json> {
  if (!isObject(value)) fail(source, path, 'an object', value);
  return value as Record<string, Json>;
}

function array(source: string, path: string, value: Json): Json[] {
  if (!Array.isArray(value)) fail(source, path, 'an array', value);
  return value as Json[];
}

function seedRecord(source: string, path: string, value: Json): void {
  if (value === null) return;
  number(source, `${path}.seed`, object(source, path, value).seed);
}

function checkRow(source: string, path: string, value: Json): void {
  const row = object(source, path, value);
  if (typeof row.scenario !== 'string') fail(source, `${path}.scenario`, 'a string', row.scenario);
  if (row.bug !== null && typeof row.bug !== 'string') fail(source, `${path}.bug`, 'a string or null', row.bug);
  array(source, `${path}.fixesOff`, row.fixesOff);
  for (const field of ['runs', 'failures', 'found', 'errors', 'runsPerSecond'] as const) number(source, `${path}.${field}`, row[field]);
  for (const field of ['firstFailure', 'firstFound', 'firstError'] as const) seedRecord(source, `${path}.${field}`, row[field]);
  for (const [name, n] of Object.entries(object(source, `${path}.windows`, row.windows))) number(source, `${path}.windows.${name}`, n);
  for (const [name, s] of Object.entries(object(source, `${path}.byStrategy`, row.byStrategy))) {
    const entry = object(source, `${path}.byStrategy.${name}`, s);
    for (const field of ['runs', 'failures', 'found'] as const) number(source, `${path}.byStrategy.${name}.${field}`, entry[field]);
  }
  if (typeof row.complete !== 'boolean') fail(source, `${path}.complete`, 'true or false', row.complete);
  const determinism = object(source, `${path}.determinism`, row.determinism);
  array(source, `${path}.determinism.checked`, determinism.checked);
  array(source, `${path}.determinism.nondeterministic`, determinism.nondeterministic);
}

/** A row's shrunk failure as the merge keeps it (the rest of the JSON is left out). */
function shrunkOf(source: string, path: string, value: Json): ShardShrunk {
  const shrunk = object(source, path, value);
  if (typeof shrunk.oracle !== 'string') fail(source, `${path}.oracle`, 'a string', shrunk.oracle);
  if (typeof shrunk.minimal !== 'boolean') fail(source, `${path}.minimal`, 'true or false', shrunk.minimal);
  if (typeof shrunk.seed !== 'string' && typeof shrunk.seed !== 'number') fail(source, `${path}.seed`, 'a seed', shrunk.seed);
  if (shrunk.trace !== null && typeof shrunk.trace !== 'string') fail(source, `${path}.trace`, 'a file name or null', shrunk.trace);
  return {
    oracle: shrunk.oracle as string, minimal: shrunk.minimal as boolean, seed: String(shrunk.seed), trace: shrunk.trace as string | null,
    preemptions: number(source, `${path}.preemptions`, shrunk.preemptions), decisive: number(source, `${path}.decisive`, shrunk.decisive),
  };
}

/** Parses and checks one shard file's text. */
export function parseShardJson(text: string, source: string): ShardResult {
  let value: Json;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ShardMergeError(`${source}: not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const top = object(source, 'the file', value);
  const campaign = object(source, 'campaign', top.campaign);
  const shard = object(source, 'campaign.shard', campaign.shard);
  const index = number(source, 'campaign.shard.index', shard.index);
  const count = number(source, 'campaign.shard.count', shard.count);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 1 || index > count) fail(source, 'campaign.shard', 'an index 1..count', shard);
  number(source, 'campaign.runs', campaign.runs);
  number(source, 'campaign.firstSeed', campaign.firstSeed);
  if (typeof campaign.mode !== 'string') fail(source, 'campaign.mode', 'a string', campaign.mode);
  if (!array(source, 'campaign.strategies', campaign.strategies).every((s) => typeof s === 'string')) fail(source, 'campaign.strategies', 'strings', campaign.strategies);
  number(source, 'seconds', top.seconds);
  array(source, 'rows', top.rows).forEach((row, r) => checkRow(source, `rows[${r}]`, row));
  return {
    source,
    campaign: campaign as unknown as ShardResult['campaign'],
    seconds: top.seconds as number,
    stopped: typeof top.stopped === 'string' ? top.stopped : null,
    // The rows' shrunk failures are kept apart: their JSON is not the summary's ShrunkFailure.
    rows: (top.rows as (RowSummary & { trace: string | null; shrunk?: Json })[]).map(({ shrunk, ...row }, r) => ({
      ...row, ...(shrunk !== undefined ? { shrunkJson: shrunkOf(source, `rows[${r}].shrunk`, shrunk) } : {}),
    })),
  };
}
