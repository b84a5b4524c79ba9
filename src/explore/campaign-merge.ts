import type { CampaignShard, RowRun, RowSummary } from './campaign.ts';
import { OrderingCoverage, type Ordering } from './orderings.ts';

/**
 * Merging the shards of a campaign (`campaign --shard i/n`, one per CI machine) into the result of
 * one run over every seed: counts add up, each first failure is the lowest seed's, window counts
 * and strategies add up, and the run is complete only when every shard was. The shards must be
 * the slices of one campaign — same rows, seeds, strategies, and the shard indexes 1..n once each.
 */

/** What a shard's `--json` output holds about the campaign it is a slice of. */
export interface ShardCampaign {
  readonly runs: number;
  readonly firstSeed: number;
  readonly strategies: readonly string[];
  readonly mode: string;
  readonly shard: CampaignShard;
}

/** A row's shrunk failure as a shard's JSON gives it: enough to point at it and rank it. */
export interface ShardShrunk {
  readonly oracle: string;
  readonly preemptions: number;
  readonly decisive: number;
  readonly minimal: boolean;
  readonly seed: string;
  /** Its trace file (null: it could not be written). */
  readonly trace: string | null;
}

/** A row of a shard's JSON: the summary, the first failure's trace file, the shrunk failure's. */
export type ShardRow = RowSummary & { readonly trace: string | null; readonly shrunkJson?: ShardShrunk };

/** A shard's result, as read back from its JSON. */
export interface ShardResult {
  /** Where it was read from, for messages. */
  readonly source: string;
  readonly campaign: ShardCampaign;
  readonly seconds: number;
  readonly stopped: string | null;
  readonly rows: readonly ShardRow[];
}

/** The simplest of a row's shrunk failures over the shards, and the shard that found it. */
export interface MergedShrunk extends ShardShrunk {
  readonly shard: number;
}

export class ShardMergeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardMergeError';
  }
}

const rowKey = (row: RowSummary): string => `${row.scenario} / ${row.bug ?? 'all fixes on'} / ${row.fixesOff.join(',')}`;

const lowerSeed = <T extends { readonly seed: number }>(a: T | null, b: T | null): T | null => (a === null ? b : b === null || a.seed <= b.seed ? a : b);

/** Checks the shards are the slices of one campaign; throws ShardMergeError naming the first that is not. */
function checkShards(shards: readonly ShardResult[]): void {
  if (shards.length === 0) throw new ShardMergeError('no shard to merge');
  const [first, ...others] = shards;
  // Its runs replay from no seed, and what made its failures replayable is no count to add up.
  if (first.campaign.mode === 'free') throw new ShardMergeError(`${first.source} is a free-running campaign: it is not sharded, so there is nothing to merge`);
  const { count } = first.campaign.shard;
  if (shards.length !== count) throw new ShardMergeError(`${first.source} is shard ${first.campaign.shard.index}/${count}, but ${shards.length} shard file(s) were given: merge needs all ${count}`);
  const seen = new Set<number>();
  for (const shard of shards) {
    const { campaign } = shard;
    if (campaign.shard.count !== count) throw new ShardMergeError(`${shard.source} is one of ${campaign.shard.count} shards, ${first.source} one of ${count}`);
    if (seen.has(campaign.shard.index)) throw new ShardMergeError(`shard ${campaign.shard.index}/${count} is given twice (again in ${shard.source})`);
    seen.add(campaign.shard.index);
    for (const field of ['runs', 'firstSeed', 'mode'] as const) {
      if (campaign[field] !== first.campaign[field]) throw new ShardMergeError(`${shard.source} ran --${field === 'firstSeed' ? 'seed' : field} ${campaign[field]}, ${first.source} ${first.campaign[field]}: not the same campaign`);
    }
    if (campaign.strategies.join(',') !== first.campaign.strategies.join(',')) throw new ShardMergeError(`${shard.source} ran strategies ${campaign.strategies.join(',')}, ${first.source} ${first.campaign.strategies.join(',')}`);
  }
  for (const shard of others) {
    const keys = shard.rows.map(rowKey).join('\n');
    if (keys !== first.rows.map(rowKey).join('\n')) throw new ShardMergeError(`${shard.source} has other rows than ${first.source} (scenarios, bugs or their order differ)`);
  }
}

/** The shards' ordering counts added up. */
function mergedOrderings(possible: Readonly<Record<string, readonly Ordering[]>>, parts: readonly RowSummary[]): Record<string, Record<Ordering, number>> {
  const coverage = new OrderingCoverage(possible);
  for (const part of parts) coverage.addCounts(part.orderings ?? {});
  return coverage.toJSON();
}

/** The shards' shrunk failures of one row: the fewest preemptions, then decisive choices, then the lowest shard. */
function simplestShrunk(parts: readonly ShardRow[], shards: readonly number[]): MergedShrunk | null {
  let best: MergedShrunk | null = null;
  for (const [k, part] of parts.entries()) {
    const shrunk = part.shrunkJson;
    if (shrunk === undefined) continue;
    if (best === null || shrunk.preemptions < best.preemptions || (shrunk.preemptions === best.preemptions && shrunk.decisive < best.decisive)) best = { ...shrunk, shard: shards[k] };
  }
  return best;
}

/** Merges one row over its shards. */
function mergeRow(parts: readonly ShardRow[]): RowSummary & { readonly trace: string | null } {
  const [head] = parts;
  const runs = parts.reduce((sum, p) => sum + p.runs, 0);
  const seconds = parts.reduce((sum, p) => sum + (p.runsPerSecond > 0 ? p.runs / p.runsPerSecond : 0), 0);
  const windows: Record<string, number> = {};
  const byStrategy: Record<string, { runs: number; failures: number; found: number; firstFailingSeed: number | null }> = {};
  for (const part of parts) {
    for (const [name, n] of Object.entries(part.windows)) windows[name] = (windows[name] ?? 0) + n;
    for (const [name, s] of Object.entries(part.byStrategy)) {
      const into = (byStrategy[name] ??= { runs: 0, failures: 0, found: 0, firstFailingSeed: null });
      into.runs += s.runs;
      into.failures += s.failures;
      into.found += s.found;
      if (s.firstFailingSeed !== null && (into.firstFailingSeed === null || s.firstFailingSeed < into.firstFailingSeed)) into.firstFailingSeed = s.firstFailingSeed;
    }
  }
  const firstFailure = parts.map((p) => p.firstFailure).reduce<RowRun | null>(lowerSeed, null);
  const firstFound = parts.map((p) => p.firstFound).reduce<RowRun | null>(lowerSeed, null);
  const shown = firstFound ?? firstFailure;
  // The trace kept is the one its shard wrote for the row's first failure (the lowest seed).
  const trace = parts.find((p) => shown !== null && (p.firstFound ?? p.firstFailure)?.seed === shown.seed)?.trace ?? null;
  return {
    scenario: head.scenario,
    bug: head.bug,
    caughtBy: head.caughtBy,
    fixesOff: head.fixesOff,
    windowGoals: head.windowGoals,
    ...(head.orderingPairs !== undefined ? { orderingPairs: head.orderingPairs, orderings: mergedOrderings(head.orderingPairs, parts) } : {}),
    runs,
    failures: parts.reduce((sum, p) => sum + p.failures, 0),
    found: parts.reduce((sum, p) => sum + p.found, 0),
    firstFailure,
    firstFound,
    errors: parts.reduce((sum, p) => sum + p.errors, 0),
    firstError: parts.map((p) => p.firstError).reduce(lowerSeed, null),
    windows,
    byStrategy,
    runsPerSecond: seconds > 0 ? runs / seconds : 0,
    complete: parts.every((p) => p.complete),
    determinism: {
      checked: parts.flatMap((p) => p.determinism.checked).sort((a, b) => a - b),
      nondeterministic: parts.flatMap((p) => p.determinism.nondeterministic),
    },
    trace,
  };
}

/**
 * The merged campaign: its rows as one run would report them, each row's simplest shrunk failure
 * over the shards (each shard shrank its own), the longest shard's time, and why any shard stopped.
 */
export function mergeShards(shards: readonly ShardResult[]): { rows: (RowSummary & { readonly trace: string | null })[]; shrunk: (MergedShrunk | null)[]; seconds: number; stopped: string | null } {
  checkShards(shards);
  const ordered = [...shards].sort((a, b) => a.campaign.shard.index - b.campaign.shard.index);
  const indexes = ordered.map((shard) => shard.campaign.shard.index);
  const partsOf = (r: number): ShardRow[] => ordered.map((shard) => shard.rows[r]);
  const rows = ordered[0].rows.map((_, r) => mergeRow(partsOf(r)));
  const shrunk = ordered[0].rows.map((_, r) => simplestShrunk(partsOf(r), indexes));
  const stopped = ordered.find((shard) => shard.stopped !== null);
  return { rows, shrunk, seconds: Math.max(...ordered.map((shard) => shard.seconds)), stopped: stopped === undefined ? null : `shard ${stopped.campaign.shard.index}: ${stopped.stopped}` };
}
