/**
 * Goal: a branch spec crosses to pool threads whole — a seeded prefix with a bigint seed, a
 * recorded trace as the prefix — through shared memory, so every task of a search carries it
 * without a copy; each search's spec has its own key (a thread opens each point once).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { readBranchSpec, shareBranchSpec, type BranchSpec } from '../../src/explore/exhaustive-pool.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

test('a branch spec read back from shared memory equals the spec, bigint seeds and recorded traces included', (t) => {
  const seeded: BranchSpec = { prefix: { seed: 2n ** 63n + 5n, strategy: 'pct', depth: 3, fixes: fixesWithout(['icacheFlushOnPatch']) }, at: { pair: 'patch-vs-running-peer', side: 'a' }, horizon: 60 };
  const shared = shareBranchSpec(seeded);
  t.true(shared.json instanceof SharedArrayBuffer);
  t.deepEqual(readBranchSpec(shared), seeded);
  t.is(typeof (readBranchSpec(shared).prefix as { seed: unknown }).seed, 'bigint');

  const path = 'test/traces/stale-violation--staleExitRetry.json';
  const trace = parseTraceJson(readFileSync(path, 'utf8'), path);
  const recorded: BranchSpec = { prefix: { trace, fixes: fixesWithout(['icacheFlushOnPatch']) }, at: { choice: 10 }, horizon: null };
  const again = shareBranchSpec(recorded);
  t.deepEqual(readBranchSpec(again), recorded);
  t.not(again.key, shared.key, 'each search\'s spec is a new point for the threads');
  // A task message passes the bytes, not a copy: a write through the clone is seen in the original.
  const passed = structuredClone(again);
  new Uint8Array(passed.json)[0] = 0x20;
  t.is(new Uint8Array(again.json)[0], 0x20);
});
