/**
 * Goal: recording a run for the reports changes nothing about it — the same seed gives the same
 * trace hash recorded or not, in inline and worker modes, before and after a recorded run on the
 * same rig, and when a recorded trace is replayed — and records what the reports need: every
 * actor's states from the run's start, and the registers and code at every exit. A run not asked
 * to record has no recording. Method: runs of three scenarios with their first bug's fixes off.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { unloadInDetour } from '../../scenarios/unload-in-detour.ts';
import { unwindCacheTorn } from '../../scenarios/unwind-cache-torn.ts';
import { ScenarioRig, traceJsonOf, type RunMode, type ScenarioDefinition, type ScenarioGuest } from '../../src/index.ts';

const CASES: readonly (readonly [ScenarioDefinition<ScenarioGuest>, RunMode, readonly number[]])[] = [
  [memtableStaleIcache, 'inline', [1, 7]],
  [unloadInDetour, 'inline', [1, 2]],
  [unwindCacheTorn, 'inline', [6]],
  [memtableStaleIcache, 'workers', [7]],
];

for (const [definition, mode, seeds] of CASES) {
  test(`${definition.name} (${mode}): the same seed gives the same trace hash with and without a recording`, async (t) => {
    const rig = ScenarioRig.open(definition, mode);
    const other = ScenarioRig.open(definition, mode);
    t.teardown(() => Promise.all([rig.close(), other.close()]));
    const fixes = rig.fixes.without(definition.bugs[0].fixesOff);
    for (const seed of seeds) {
      const request = { seed, strategy: 'random' as const, depth: 2, fixes };
      const plain = rig.run(request);
      t.is(rig.lastRecording, null, 'a run not asked to record has no recording');
      const recorded = rig.run(request, { record: true });
      const recording = rig.lastRecording;
      const after = rig.run(request);
      const elsewhere = other.run(request, { record: true });
      t.is(recorded.hash, plain.hash, `seed ${seed}: recorded`);
      t.is(after.hash, plain.hash, `seed ${seed}: the run after a recorded one`);
      t.is(elsewhere.hash, plain.hash, `seed ${seed}: recorded on a separately built guest`);
      t.is(rig.lastRecording, null, 'the recording belongs to its run only');
      if (recording === null) return t.fail('no recording');
      t.is(recording.entries, recorded.trace.entries);
      t.deepEqual(recorded.violations, plain.violations);
    }
  });
}

test('a recording has every actor from the run\'s start, and registers and code at every exit', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
  rig.run({ seed: 3, strategy: 'random', depth: 2, fixes }, { record: true });
  const recording = rig.lastRecording!;
  const first = new Map<string, string>();
  for (const change of recording.actors) if (!first.has(change.actor)) first.set(change.actor, change.state);
  t.deepEqual([...first.keys()].sort(), ['dispatch', 'hookCommit', 'pause', 'session', 'threadSafeness', 'uninit', 'vcpu0', 'vcpu1', 'vcpu2']);
  t.is(first.get('dispatch'), 'free');
  t.is(first.get('session'), 'running');
  t.true(recording.actors.every((change) => change.at.clock >= 0 && change.at.clock <= rig.lastEvents[rig.lastEvents.length - 1].clock));
  t.true(recording.actors.some((change) => change.actor === 'dispatch' && change.state === 'held' && /^exit v\d$/.test(change.detail ?? '')));

  const exits = rig.lastEvents.flatMap((timed, index) => (timed.event.kind === 'stop' && timed.event.exit !== null ? [{ index, event: timed.event }] : []));
  t.is(recording.exits.length, exits.length);
  recording.exits.forEach((capture, k) => {
    t.is(capture.event, exits[k].index);
    t.is(capture.vcpu, exits[k].event.vcpu);
    t.is(capture.registers.rip, exits[k].event.rip);
    t.true(capture.code.length > 0, 'the code at RIP is mapped');
  });
  t.deepEqual(recording.oraclePhases['relocated-at-most-once'], 'continuous');
});

test('a replay can be recorded, and gives the recorded hash', async (t) => {
  const rig = ScenarioRig.open(unloadInDetour, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(unloadInDetour.bugs[0].fixesOff);
  const report = rig.run({ seed: 1, strategy: 'random', depth: 2, fixes });
  const replayed = rig.replay(traceJsonOf(report), fixes, { record: true });
  t.is(replayed.hash, report.hash);
  t.not(rig.lastRecording, null);
  t.is(rig.lastRecording!.entries.length, report.trace.entries.length);
});
