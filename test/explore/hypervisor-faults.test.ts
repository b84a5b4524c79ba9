/**
 * Goal: hypervisor faults are explored choices a scenario opts into — the random strategy injects
 * them, traces record them ("handle vN duplicate-exit"), replays reproduce them, a fault the
 * scenario did not allow is refused at replay, and each does what it says: a duplicated EPT exit
 * reaches the engine twice; a late flush leaves a running vCPU on its old EPT view.
 */
import test from 'ava';
import { instructionSwapped } from '../../scenarios/instruction-swapped.ts';
import { pteHalfWritten } from '../../scenarios/pte-half-written.ts';
import { vasHookLate } from '../../scenarios/vas-hook-late.ts';
import { exploreScenario } from '../../src/ava.ts';
import { ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';
import { validateScenario } from '../../src/explore/scenario.ts';

const withFaults = { ...pteHalfWritten, hypervisor: { faults: ['duplicate-exit', 'late-flush'] as const } };

test('random injects duplicate exits and late flushes; the trace records them and replays to the same hash, inline and in workers', async (t) => {
  const inline = ScenarioRig.open(withFaults, 'inline');
  const workers = ScenarioRig.open(withFaults, 'workers');
  t.teardown(() => Promise.all([inline.close(), workers.close()]));
  const report = inline.run({ seed: 3, strategy: 'random', depth: 2, fixes: inline.fixes.defaults() });
  const recorded = parseTraceJson(JSON.stringify(traceJsonOf(report)));
  const faulted = recorded.choices.filter((c) => c.kind === 'handle' && c.fault !== undefined);
  t.true(faulted.some((c) => c.kind === 'handle' && c.fault === 'duplicate-exit'), 'a duplicated exit was chosen');
  t.true(faulted.some((c) => c.kind === 'handle' && c.fault === 'late-flush'), 'a late flush was chosen');
  t.true(recorded.entries.some((e) => / handle v\d duplicate-exit$/.test(e.text)));
  for (const rig of [inline, workers]) t.is(rig.replay(recorded, inline.fixes.defaults()).hash, report.hash, `${rig.mode}: same hash`);
  // The same schedule against the scenario without faults is refused at the first faulted choice.
  const plain = ScenarioRig.open(pteHalfWritten, 'inline');
  t.teardown(() => plain.close());
  t.throws(() => plain.replay(recorded, plain.fixes.defaults()), { message: /duplicate-exit/ });
});

test('a duplicated EPT exit reaches the engine twice: the page-table store is emulated twice before its one reply', (t) => {
  const rig = ScenarioRig.open(withFaults, 'inline');
  t.teardown(() => rig.close());
  let seen = false;
  for (let seed = 1; seed <= 10 && !seen; seed++) {
    rig.run({ seed, strategy: 'random', depth: 2, fixes: rig.fixes.defaults() });
    const events = rig.lastEvents;
    const faults = events.filter((e) => e.event.kind === 'note' && e.event.what === 'hypervisor-fault' && e.event.detail.fault === 'duplicate-exit');
    for (const fault of faults) {
      const at = events.indexOf(fault);
      const next = events.slice(at + 1).findIndex((e) => e.event.kind === 'handle');
      const between = events.slice(at + 1, at + 1 + next).filter((e) => e.event.kind === 'note' && e.event.what === 'pt-write');
      if (between.length === 2) seen = true;
    }
  }
  t.true(seen, 'a duplicated page-table store exit was emulated twice before its one reply');
});

test('hypervisor.faults is checked: an unknown fault is one clear error', (t) => {
  t.throws(() => validateScenario({ ...vasHookLate, hypervisor: { faults: ['reboot' as 'late-flush'] } }), { message: /hypervisor\.faults must list duplicate-exit or late-flush, got "reboot"/ });
});

/**
 * A finding, kept: HVMI drops duplicated page-table writes only on 32-bit guests. On a 64-bit guest
 * that writes an entry in halves, a duplicated second half starts a new partial write, and every
 * later entry is assembled from one update's low half and the previous one's high half — here, a
 * false "made executable in place" alert with every fix on.
 */
test('a 64-bit guest writing entries in halves, with duplicated exits: every fix on, the engine assembles mismatched halves', async (t) => {
  const { found } = await exploreScenario(t, withFaults, { seeds: 10, strategy: 'random', fixesOff: [], expect: 'finds-bug' });
  t.deepEqual(found?.fixesOff, []);
});

/**
 * A finding, kept: HVMI's TOCTOU rule (analyse only an instruction already cached, so its page is
 * write-protected) holds when the integrator's flush puts that write hook in force on every vCPU
 * as the handler answers. With late flushes, a running vCPU rewrites the cached instruction without
 * an exit and the engine judges the old form — with every fix on.
 */
test('instruction-swapped with late EPT flushes: every fix on, the store judged on its log form runs as the critical one', async (t) => {
  const lateFlushes = { ...instructionSwapped, hypervisor: { emulation: 'at-reply', faults: ['late-flush'] } } as const;
  const { found } = await exploreScenario(t, lateFlushes, { seeds: 10, strategy: 'random', fixesOff: [], expect: 'finds-bug' });
  if (found === null) return;
  const recorded = parseTraceJson(JSON.stringify(traceJsonOf(found)));
  t.true(recorded.choices.some((c) => c.kind === 'handle' && c.fault === 'late-flush'), 'the failing schedule has a late flush');
});
