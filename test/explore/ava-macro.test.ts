/**
 * Goal: the AVA macros fail a suite exactly when they should, and their failure message is what a
 * person needs — the seed (or the schedule), the broken invariant, the commands that rerun and
 * replay the run, and the trace file it wrote. `exploreBounded` passes 'no-failure' only on a
 * complete search: a budget cut short is no guarantee. `staysFixed` passes only when a recorded
 * failure still breaks its invariant without its fixes and nothing with them.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pushTwoAddresses } from '../../scenarios/push-two-addresses.ts';
import { explore, exploreBounded, failureMessage, runBoundedExploration, runExploration, runStaysFixed, staysFixed } from '../../src/ava.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { traceFilesIn } from '../../src/report/trace-file.ts';
import { writeFirstMemtableFailure } from '../support/memtable-failures.ts';
import { writeFileSync } from 'node:fs';
import { staleViolation } from '../../scenarios/stale-violation.ts';
import { failed, ScenarioRig } from '../../src/explore/scenario-rig.ts';

test('finds-bug passes when the bug\'s own oracle breaks', explore, pushTwoAddresses, { seeds: 2, strategy: 'random', fixesOff: 'bug', expect: 'finds-bug' });

test('no-failure fails when a seed breaks an invariant, with the failing run\'s report', async (t) => {
  const result = await runExploration(pushTwoAddresses, { seeds: 2, strategy: 'random', fixesOff: 'bug', expect: 'no-failure', traceDir: join(tmpdir(), 'vcpusim-ava-failing') });
  t.regex(result.failure ?? '', /^push-two-addresses: seed 1 broke an invariant \(1 of 2 seeds run\)\nFAILED {2}push-two-addresses {2}seed 1/);
  t.is(result.found?.seed, '1');
  // The run shrunk and told: how few choices make it, the trace that replays that, and its story.
  t.regex(result.failure ?? '', /\n {2}shrunk from \d+ choices \/ \d+ preemptions? to \d+ decisive choices? \/ \d+ preemptions?/);
  const shrunkTrace = /shrunk trace written to (\S+)/.exec(result.failure ?? '')?.[1];
  t.true(shrunkTrace !== undefined && existsSync(shrunkTrace));
  t.regex(result.failure ?? '', /how it happens/);
  // Seed 2 fails too: the shrinker is offered both and the story says which it shrank.
  t.regex(result.failure ?? '', /\n {2}shrunk seed [12], the simplest of 2 runs offered \(preemptions as found → shrunk: seed 1 \d+/);
  const unshrunk = await runExploration(pushTwoAddresses, { seeds: 1, strategy: 'random', fixesOff: 'bug', expect: 'no-failure', shrinkRuns: 0, traceDir: join(tmpdir(), 'vcpusim-ava-failing') });
  t.notRegex(unshrunk.failure ?? '', /shrunk from/);
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

test('push-two-addresses: every schedule with at most one preemption, fixes on', exploreBounded, pushTwoAddresses, { bound: 1, expect: 'no-failure' });
test(exploreBounded, pushTwoAddresses, { bound: 1, fixesOff: 'bug', expect: 'finds-bug' });
test(exploreBounded, staleViolation, { bound: 1, fixesOff: 'bug', expect: 'finds-bug', branchAt: { pair: 'renewal-vs-pending-write', side: 'a' } });

test('exploreBounded: a failing schedule fails no-failure with its report and a trace that replays; a budget cut short is no guarantee; a bug not found says why', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-ava-bounded-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broken = await runBoundedExploration(pushTwoAddresses, { bound: 1, fixesOff: 'bug', expect: 'no-failure', traceDir: dir });
  t.regex(broken.failure ?? '', /^push-two-addresses: schedule 1 of the search \(0 preemption\(s\), 0 deviation\(s\)\) broke an invariant\n/);
  t.regex(broken.failure ?? '', /invariant broken: protected-table-unchanged/);
  t.regex(broken.failure ?? '', /replay: {2}npx tsx scenarios\/run\.ts push-two-addresses --replay \S+exhaustive\S+\.json/);
  t.deepEqual(broken.result.levels.map((level) => level.schedules), [2, 102]);
  t.regex(broken.failure ?? '', /shrunk from \d+ choices/);
  const cut = await runBoundedExploration(pushTwoAddresses, { bound: 1, expect: 'no-failure', maxRuns: 10 });
  t.false(cut.result.complete);
  t.regex(cut.failure ?? '', /not a guarantee — the budget of 10 runs ran out before every schedule was run/);
  const clean = await runBoundedExploration(pushTwoAddresses, { bound: 0, fixesOff: [], expect: 'finds-bug' });
  t.regex(clean.failure ?? '', /"second address unchecked" \(no fix off\) not found: no schedule up to the bound breaks it/);
  t.regex(clean.summary, /k = 0: 2 schedules, all explored, 0 failures/);
  const found = await runBoundedExploration(pushTwoAddresses, { bound: 1, fixesOff: 'bug', expect: 'finds-bug' });
  t.is(found.failure, null);
  t.is(found.result.runs, 1, 'finding the bug stops at its first failing schedule');
});

const corpus = mkdtempSync(join(tmpdir(), 'vcpusim-ava-corpus-'));
const DOUBLE_RELOCATION = memtableStaleIcache.bugs[0].fixesOff;
await writeFirstMemtableFailure(corpus, DOUBLE_RELOCATION);
for (const file of traceFilesIn(corpus)) test(staysFixed, [memtableStaleIcache, pushTwoAddresses], { trace: file, traceDir: corpus });

test('staysFixed: a regression fails with the fixed run\'s report and trace; a gone trace, a refused drift and a foreign trace say so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-ava-stays-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const three = await writeFirstMemtableFailure(dir, [...DOUBLE_RELOCATION, 'pauseWhilePatching']);
  const regression = await runStaysFixed(memtableStaleIcache, { trace: three, withFix: ['pauseWhilePatching'], traceDir: dir });
  t.regex(regression.failure ?? '', /with pauseWhilePatching on: REGRESSION — relocated-at-most-once breaks/);
  t.regex(regression.failure ?? '', /FAILED {2}memtable-stale-icache {2}seed \d+ {2}followed/);
  const fixedTrace = /trace written to (\S+)/.exec(regression.failure ?? '')?.[1];
  t.true(fixedTrace !== undefined && existsSync(fixedTrace), 'the fixed run that broke can be replayed');
  t.is((await runStaysFixed(memtableStaleIcache, { trace: three })).failure, null, 'every fix on holds');

  // A file naming an invariant its schedule no longer breaks.
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  const fixes = rig.fixes.without(DOUBLE_RELOCATION);
  let passing = null;
  for (let seed = 1; passing === null; seed++) {
    const report = rig.run({ seed, strategy: 'pct', depth: 2, fixes });
    if (!failed(report)) passing = report;
  }
  await rig.close();
  const gone = join(dir, 'gone.json');
  const { check: _check, ...header } = traceJsonOf(passing);
  const named = traceJsonOf({ ...passing, violations: [{ oracle: 'relocated-at-most-once', detail: '' }] });
  writeFileSync(gone, JSON.stringify(named));
  t.is(header.broke, undefined);
  const goneVerdict = await runStaysFixed(memtableStaleIcache, { trace: gone });
  t.regex(goneVerdict.failure ?? '', /GONE — relocated-at-most-once no longer breaks/);

  const changed = { ...memtableStaleIcache, bounds: { ...memtableStaleIcache.bounds, clockEverySteps: 1550 } };
  const file = traceFilesIn(corpus)[0];
  t.is((await runStaysFixed(changed, { trace: file })).failure, null, 'drift allowed by default');
  t.regex((await runStaysFixed(changed, { trace: file, drift: 'refused' })).failure ?? '', /without the fixes: drifted — (.|\n)*drift: 'refused': write it again as it runs now with `npx vcpusim check-traces \S+ --update`/);
  await t.throwsAsync(runStaysFixed(pushTwoAddresses, { trace: file }), { message: /is a trace of scenario "memtable-stale-icache", which is not among those given \(push-two-addresses\)/ });
  await t.throwsAsync(runStaysFixed(memtableStaleIcache, { trace: join(dir, 'none.json') }), { message: /no trace file at / });
});

test.after.always(() => rmSync(corpus, { recursive: true, force: true }));
