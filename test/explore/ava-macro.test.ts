/**
 * Goal: the AVA macro fails a suite exactly when it should, and its failure message is what a
 * person needs — the seed, the broken invariant, the commands that rerun and replay the run, and
 * the trace file it wrote.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pushTwoAddresses } from '../../scenarios/push-two-addresses.ts';
import { explore, failureMessage, runExploration } from '../../src/ava.ts';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';

test('finds-bug passes when the bug\'s own oracle breaks', explore, pushTwoAddresses, { seeds: 2, strategy: 'random', fixesOff: 'bug', expect: 'finds-bug' });

test('no-failure fails when a seed breaks an invariant, with the failing run\'s report', async (t) => {
  const result = await runExploration(pushTwoAddresses, { seeds: 2, strategy: 'random', fixesOff: 'bug', expect: 'no-failure', traceDir: join(tmpdir(), 'vcpusim-ava-failing') });
  t.regex(result.failure ?? '', /^push-two-addresses: seed 1 broke an invariant \(1 of 2 seeds run\)\nFAILED {2}push-two-addresses {2}seed 1/);
  t.is(result.found?.seed, '1');
});

test('finds-bug fails when no seed finds it', async (t) => {
  const result = await runExploration(pushTwoAddresses, { seeds: 2, strategy: 'random', expect: 'finds-bug' });
  t.is(result.failure, 'push-two-addresses: "second address unchecked" (no fix off) not found in 2 seed(s) (1…2)');
  t.is(result.found, null);
});

test('a window goal reached too rarely fails a clean sweep; an unknown one is named', async (t) => {
  const rare = await runExploration(pushTwoAddresses, { seeds: 2, strategy: 'random', expect: 'no-failure', window: { name: 'write-blocked', atLeast: 3 } });
  t.is(rare.failure, 'window "write-blocked" reached in 2 of 2 runs; at least 3 expected');
  const unknown = await runExploration(pushTwoAddresses, { seeds: 1, strategy: 'random', expect: 'no-failure', window: { name: 'nope', atLeast: 1 } });
  t.regex(unknown.failure ?? '', /has no window goal "nope" \(write-blocked\)/);
  const enough = await runExploration(pushTwoAddresses, { seeds: 2, strategy: 'random', expect: 'no-failure', window: { name: 'write-blocked', atLeast: 2 } });
  t.is(enough.failure, null);
});

test('the failure message carries the seed, the invariant, the rerun and replay commands and the trace path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-ava-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rig = ScenarioRig.open(pushTwoAddresses, 'inline');
  t.teardown(() => rig.close());
  const report = rig.run({ seed: 3, strategy: 'pct', depth: 2, fixes: rig.fixes.without(['analyseEveryAddress']) });
  t.true(failed(report));
  const message = failureMessage(report, dir);
  t.regex(message, /FAILED {2}push-two-addresses {2}seed 3 {2}pct\(d=2\)/);
  t.regex(message, /invariant broken: protected-table-unchanged/);
  t.regex(message, /rerun: {3}npx tsx scenarios\/run\.ts push-two-addresses --seed 3 --strategy pct --depth 2 --mode inline --fix analyseEveryAddress=off/);
  const trace = /trace written to (\S+)/.exec(message)?.[1];
  t.truthy(trace);
  t.true(existsSync(trace!));
  t.regex(message, new RegExp(`replay: {2}npx tsx scenarios/run\\.ts push-two-addresses --replay ${trace!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
});
