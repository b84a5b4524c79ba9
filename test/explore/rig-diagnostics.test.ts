/**
 * Goal: when a run goes wrong in a way that is not the race — the guest triple-faults, a vCPU
 * spins with interrupts off until the bound, the guest runs an instruction vcpusim lacks, a
 * window goal or setup() throws, a definition names an oracle that does not exist — the report
 * says which vCPU, where, what instruction and why, and nothing else is lost. Method: scenarios
 * that misbehave on purpose (test/support/faulty-scenarios.ts) through the real rig.
 */
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { disableFromCallback } from '../../scenarios/disable-from-callback.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { ScenarioRig, ScenarioSetupError, type RunReport } from '../../src/explore/scenario-rig.ts';
import { ScenarioDefinitionError, validateScenario, type ScenarioDefinition } from '../../src/explore/scenario.ts';
import type { NtGuest } from '../../src/guest/nt-guest.ts';
import { liveWorkers } from '../../src/host/spawn.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';
import { badCaughtBy } from '../support/bad-scenario.ts';
import { spinInterruptsOff, throwingSetup, throwingWindow, tripleFault, unsupportedInstruction } from '../support/faulty-scenarios.ts';

async function runOnce(definition: ScenarioDefinition<NtGuest>, seed = 1): Promise<RunReport> {
  const rig = ScenarioRig.open(definition, 'inline');
  try {
    return rig.run({ seed, strategy: 'random', depth: 2, fixes: DEFAULT_FIXES });
  } finally {
    await rig.close();
  }
}

test('a triple fault names the vCPU, its RIP and instruction, and the descriptor state', async (t) => {
  const report = await runOnce(tripleFault);
  t.is(report.outcome, 'verdict');
  const [first] = report.violations;
  t.is(first.oracle, 'run-completes');
  t.regex(first.detail.split('\n')[0], /^vCPU 0 triple-faulted at RIP 0xfffff800006a0000 \(ud2\): an exception while delivering a double fault; RSP 0x[0-9a-f]+, CR2 0x[0-9a-f]+, IDTR 0x[0-9a-f]+ limit 0x0$/);
  t.regex(first.detail, /\nvCPU 0: stopped, [\d,]+ steps, at 0xfffff800006a0000 \(ud2\), interrupts off/);
});

test('a vCPU spinning with interrupts off until the bound is named with its RIP and share of the steps', async (t) => {
  const report = await runOnce(spinInterruptsOff);
  t.is(report.outcome, 'bound');
  const [first] = report.violations;
  t.is(first.oracle, 'run-completes');
  t.regex(first.detail.split('\n')[0], /^the run reached its bound \([\d,]+ steps, [\d,]+ choices\): vCPU 0 never finished — it ran [\d,]+ steps \(\d+% of all\) and is at RIP 0xfffff800006a0001 \(jmp short 0xfffff800006a0001\) with interrupts off$/);
});

test('an instruction vcpusim lacks is reported first, with the instruction and why, before the bug check it caused', async (t) => {
  const report = await runOnce(unsupportedInstruction);
  const names = report.violations.map((v) => v.oracle);
  t.is(names[0], 'instructions-supported');
  t.true(names.includes('guest-alive'), 'the guest bug-checked on the #UD');
  t.is(report.violations[0].detail, 'vCPU 0: #UD at RIP 0xfffff800006a0000: movaps xmm0,[rsp] (Movaps_xmm_xmmm128) — vcpusim lacks this instruction (a real CPU would run it)');
  t.regex(report.vcpus, /last #UD at RIP 0xfffff800006a0000: movaps xmm0,\[rsp\]/);
});

test('a window goal that throws is a violation with its name; the other goals still count', async (t) => {
  const rig = ScenarioRig.open(throwingWindow, 'inline');
  t.teardown(() => rig.close());
  let reached = 0;
  for (let seed = 1; seed <= 8; seed++) {
    const report = rig.run({ seed, strategy: 'random', depth: 2, fixes: DEFAULT_FIXES });
    t.deepEqual(report.violations, [{ oracle: 'window-goals', detail: 'window goal "broken-goal" threw: the goal has a bug' }]);
    reached += report.windows.length;
  }
  t.true(reached > 0, 'the other goals were still evaluated');
});

test('setup() that throws: one error naming the scenario and setup()', (t) => {
  const error = t.throws(() => ScenarioRig.open(throwingSetup, 'inline'), { instanceOf: ScenarioSetupError });
  t.is(error?.message, 'scenario "throwing-setup": setup() threw while building the guest: no guest today');
});

test('a bug caught by an oracle that does not exist is a definition error before any run', (t) => {
  t.throws(() => validateScenario(badCaughtBy), { instanceOf: ScenarioDefinitionError, message: /scenario "bad-caught-by" is not well defined: bug "typo" is caughtBy "guest-alvie", which is no oracle of the scenario/ });
  t.throws(() => validateScenario({ ...memtableStaleIcache, bugs: [{ name: 'b', fixesOff: ['noSuchFix' as never], caughtBy: 'guest-alive' }] }), { message: /switches off "noSuchFix", which is no fix/ });
  t.notThrows(() => validateScenario(memtableStaleIcache));
});

test('runs whose engine throws, one after another in a synchronous loop (a bounded search, a shrink), keep memory flat: the next session takes over the machine, and each run is the one a fresh rig makes', async (t) => {
  const rig = ScenarioRig.open(disableFromCallback, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(disableFromCallback.bugs[0].fixesOff);
  const guest = rig.guest;
  // Backing stores already dropped are freed by a task of the event loop: let it run first.
  await sleep(50);
  const before = process.memoryUsage().arrayBuffers;
  const reports = Array.from({ length: 30 }, (_, k) => rig.run({ seed: k + 1, strategy: 'random', depth: 2, fixes }));
  const grown = process.memoryUsage().arrayBuffers - before;
  t.true(reports.every((report) => report.outcome === 'error' && report.violations.some((v) => v.oracle === 'engine-runs')), 'every run\'s engine threw');
  t.is(rig.guest, guest, 'the guest and its machine are the same');
  // A machine per failed run held its RAM and the snapshot's copy of it (16 MiB here) until the loop ended.
  t.true(grown < 64 * 2 ** 20, `array buffers grew by ${(grown / 2 ** 20).toFixed(1)} MiB over 30 failed runs`);
  const fresh = ScenarioRig.open(disableFromCallback, 'inline');
  t.teardown(() => fresh.close());
  t.is(fresh.run({ seed: 30, strategy: 'random', depth: 2, fixes }).hash, reports[29].hash);
});

test.serial('in workers mode too: the next session takes over the failed one\'s machine and its idle workers, and each run is the one inline makes', async (t) => {
  const rig = ScenarioRig.open(disableFromCallback, 'workers');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(disableFromCallback.bugs[0].fixesOff);
  const guest = rig.guest;
  const first = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes });
  const workers = liveWorkers();
  t.true(workers >= disableFromCallback.vcpus, `${workers} workers`);
  await sleep(50);
  const before = process.memoryUsage().arrayBuffers;
  const reports = [first, ...Array.from({ length: 9 }, (_, k) => rig.run({ seed: k + 2, strategy: 'random', depth: 2, fixes }))];
  const grown = process.memoryUsage().arrayBuffers - before;
  t.true(reports.every((report) => report.outcome === 'error' && report.violations.some((v) => v.oracle === 'engine-runs')), 'every run\'s engine threw');
  t.is(rig.guest, guest, 'the guest and its machine are the same');
  t.is(liveWorkers(), workers, 'no worker was started after the first run');
  t.true(grown < 64 * 2 ** 20, `array buffers grew by ${(grown / 2 ** 20).toFixed(1)} MiB over 9 failed runs`);
  const inline = ScenarioRig.open(disableFromCallback, 'inline');
  t.teardown(() => inline.close());
  t.is(inline.run({ seed: 10, strategy: 'random', depth: 2, fixes }).hash, reports[9].hash);
  await rig.close();
  t.is(liveWorkers(), workers - disableFromCallback.vcpus, 'closing the rig ended its workers');
});
