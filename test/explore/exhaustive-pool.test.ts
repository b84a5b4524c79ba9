/**
 * Goal: a branch spec crosses to pool threads whole — a seeded prefix with a bigint seed, a
 * recorded trace as the prefix — through shared memory, so every task of a search carries it
 * without a copy; each search's spec has its own key (a thread opens each point once).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { readBranchSpec, shareBranchSpec, type BranchSpec } from '../../src/explore/exhaustive-pool.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

test('a branch spec read back from shared memory equals the spec, bigint seeds and recorded traces included', (t) => {
  const seeded: BranchSpec = { prefix: { seed: 2n ** 63n + 5n, strategy: 'pct', depth: 3, fixes: { icacheFlushOnPatch: false } as never }, at: { pair: 'patch-vs-running-peer', side: 'a' }, horizon: 60 };
  const shared = shareBranchSpec(seeded);
  t.true(shared.json instanceof SharedArrayBuffer);
  t.deepEqual(readBranchSpec(shared), seeded);
  t.is(typeof (readBranchSpec(shared).prefix as { seed: unknown }).seed, 'bigint');

  const path = 'test/traces/stale-violation--staleExitRetry.json';
  const trace = parseTraceJson(readFileSync(path, 'utf8'), path);
  const recorded: BranchSpec = { prefix: { trace, fixes: { staleExitRetry: false } as never }, at: { choice: 10 }, horizon: null };
  const again = shareBranchSpec(recorded);
  t.deepEqual(readBranchSpec(again), JSON.parse(JSON.stringify(recorded)) as BranchSpec);
  t.not(again.key, shared.key, 'each search\'s spec is a new point for the threads');
  // What a task message costs: the shared bytes are passed, not copied.
  t.is(structuredClone(again).json.byteLength, again.json.byteLength);
});
