/**
 * Goal: POS and SURW do what their papers say, over vcpusim's events. POS keeps an actor's
 * priority until something races with its next event — so independent steps do not reshuffle the
 * order — and re-draws the priorities of the events that race (an engine write races with every
 * vCPU; an exit on page P with the vCPUs executing on P). SURW picks actors in proportion to the
 * interesting events they have left, counted from an estimate; the rig's estimate comes from a
 * round-robin profile and is the same on every rig. Both find the stale-icache race and replay.
 */
import test from 'ava';
import type { RuntimeEvent } from '../../actors/events.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { Prng } from '../../src/explore/prng.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { InterestingEvents, PosScheduler, SurwScheduler } from '../../src/explore/schedulers/index.ts';
import type { Choice, Enabled, PreemptionPoint } from '../../src/explore/schedule.ts';
import { parseTraceJson } from '../../src/explore/trace-json.ts';

function enabled(runnable: readonly number[], more: Partial<Enabled> = {}): Enabled {
  return { runnable, pendingExits: [], timerDue: false, daemonDue: false, interrupts: [], events: 0, vcpus: 3, preemption: null, ...more };
}

const note: RuntimeEvent = { kind: 'note', what: 'patch', detail: {} };

function exitStop(vcpu: number, gpa: bigint, rip: bigint): RuntimeEvent {
  return { kind: 'stop', vcpu, stop: 'exit', reason: 'eptViolation', rip, retired: 1, exit: { ticket: 1, gpa, gla: gpa, access: 2 } };
}

function budgetStop(vcpu: number, rip: bigint): RuntimeEvent {
  return { kind: 'stop', vcpu, stop: 'budget', reason: '', rip, retired: 1, exit: null };
}

const actorOf = (choice: Choice): number => (choice.kind === 'run' || choice.kind === 'handle' ? choice.vcpu : -1);

test('POS: the highest priority goes first; which vCPU that is depends on the seed, and the seed alone', (t) => {
  const firsts = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) {
    const picks = (): number[] => {
      const pos = new PosScheduler(new Prng(seed), 3, 64);
      const out: number[] = [];
      for (let i = 0; i < 40; i++) {
        const choice = pos.choose(enabled([0, 1, 2]));
        pos.observe(budgetStop(actorOf(choice), 0x1000n * BigInt(actorOf(choice) + 1)));
        out.push(actorOf(choice));
      }
      return out;
    };
    const run = picks();
    t.deepEqual(picks(), run);
    firsts.add(run[0]);
  }
  t.deepEqual([...firsts].sort(), [0, 1, 2], 'each vCPU goes first for some seed');
});

test('POS: actors that do not race with what ran keep their priorities; an engine write re-draws them', (t) => {
  // vCPU 0 acts alone; then vCPUs 1 and 2 compete. With nothing racing, their order is the one
  // their first priorities give (as on a scheduler where vCPU 0 never ran); after an engine
  // write both are re-drawn.
  let quietSame = 0;
  let loudDiffers = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const untouched = actorOf(new PosScheduler(new Prng(seed), 3, 64).choose(enabled([1, 2])));
    const quiet = new PosScheduler(new Prng(seed), 3, 64);
    quiet.choose(enabled([0]));
    quiet.observe(budgetStop(0, 0x1000n));
    if (actorOf(quiet.choose(enabled([1, 2]))) === untouched) quietSame++;
    const loud = new PosScheduler(new Prng(seed), 3, 64);
    loud.choose(enabled([0]));
    loud.observe(note);
    if (actorOf(loud.choose(enabled([1, 2]))) !== untouched) loudDiffers++;
  }
  t.is(quietSame, 200);
  t.true(loudDiffers > 50, `an engine write changes who goes next in some seeds (${loudDiffers}/200)`);
});

test('POS: an exit on page P re-draws the vCPUs executing on P, not the others', (t) => {
  // vCPU 0 exits on page 0x5000; vCPU 1 executes on 0x5000, vCPU 2 elsewhere. vCPU 2's priority
  // must survive: with vCPU 1 not runnable, the order of vCPU 0 and 2 is what it was.
  let changedWithout = 0;
  let changedWith = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const order = (exitPage: bigint): number => {
      const pos = new PosScheduler(new Prng(seed), 3, 64);
      pos.observe(budgetStop(1, 0x5010n));
      pos.observe(budgetStop(2, 0x9010n));
      pos.choose(enabled([0]));
      pos.observe(exitStop(0, exitPage, 0x7000n));
      // vCPU 0 has a pending exit now; which of {0's exit, 2} goes first, then which of {1, 2}.
      const next = actorOf(pos.choose(enabled([2], { pendingExits: [0] })));
      const after = actorOf(pos.choose(enabled([1, 2])));
      return next * 10 + after;
    };
    const base = order(0x3000n);
    if (order(0x3000n) !== base) changedWithout++;
    if (order(0x5000n) !== base) changedWith++;
  }
  t.is(changedWithout, 0, 'the same events give the same choices');
  t.true(changedWith > 10, `an exit on vCPU 1's page re-draws vCPU 1 (${changedWith}/300 seeds choose differently)`);
});

test('POS: at a preemption point inside a handler, a runnable vCPU runs first in some seeds and the handler proceeds in others', (t) => {
  let ran = 0;
  let proceeded = 0;
  for (let seed = 1; seed <= 200; seed++) {
    const pos = new PosScheduler(new Prng(seed), 3, 64);
    const point: PreemptionPoint = { label: 'patch', handlerVcpu: 0 };
    const choice = pos.choose(enabled([1, 2], { preemption: point }));
    if (choice.kind === 'proceed') proceeded++;
    else ran++;
  }
  t.true(ran > 50 && proceeded > 20, `both happen: ${ran} ran a vCPU, ${proceeded} proceeded`);
});

test('InterestingEvents counts exits, the timer and each preemption point once', (t) => {
  const seen = new InterestingEvents(2);
  seen.observe(exitStop(0, 0x5000n, 0x1000n));
  seen.observe(exitStop(0, 0x5000n, 0x1000n));
  seen.observe(exitStop(1, 0x6000n, 0x1000n));
  seen.observe(budgetStop(1, 0x1000n));
  seen.observe({ kind: 'timer' });
  seen.observe(note);
  const point: PreemptionPoint = { label: 'patch', handlerVcpu: 1 };
  seen.seeChoice(enabled([0], { preemption: point }));
  seen.seeChoice(enabled([0], { preemption: point }));
  seen.seeChoice(enabled([0], { preemption: { label: 'patch', handlerVcpu: 1 } }));
  seen.seeChoice(enabled([0], { preemption: { label: 'tick', handlerVcpu: -1 } }));
  seen.seeChoice(enabled([0]));
  t.deepEqual([...seen.counts], [2, 3, 2]);
});

test('SURW picks actors in proportion to the interesting events they have left', (t) => {
  const share = (consumed: number): number => {
    let first = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const surw = new SurwScheduler(new Prng(seed), 2, 64, [30, 10, 0]);
      for (let i = 0; i < consumed; i++) surw.observe(exitStop(0, 0x5000n, 0x1000n));
      if (actorOf(surw.choose({ ...enabled([0, 1]), vcpus: 2 })) === 0) first++;
    }
    return first / 2000;
  };
  const fresh = share(0);
  const half = share(20);
  const done = share(30);
  t.log(`vCPU 0 first: ${fresh} with 30:10 left, ${half} with 10:10, ${done} with 1:10`);
  t.true(fresh > 0.7 && fresh < 0.8);
  t.true(half > 0.45 && half < 0.55);
  t.true(done > 0.05 && done < 0.13, 'an actor past its estimate still runs (weight 1)');
});

test('SURW refuses an estimate of the wrong shape', (t) => {
  t.throws(() => new SurwScheduler(new Prng(1), 2, 64, [1, 2]), { message: /3 numbers/ });
  t.throws(() => new SurwScheduler(new Prng(1), 2, 64, [1, -2, 0]), { message: /non-negative/ });
});

test('the rig profiles SURW\'s estimate once per set of fixes, the same on every rig', async (t) => {
  const a = ScenarioRig.open(memtableStaleIcache, 'inline');
  const b = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const fixes = a.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
  const estimate = a.eventEstimate(fixes);
  t.log(`estimate (vCPUs, then the timer): ${estimate.join(', ')}`);
  t.is(estimate.length, memtableStaleIcache.vcpus + 1);
  t.true(estimate.slice(0, -1).every((n) => n > 0), 'every vCPU has exits');
  t.deepEqual(b.eventEstimate(fixes), estimate);
  t.is(a.eventEstimate(fixes), estimate, 'cached');
});

for (const strategy of ['pos', 'surw'] as const) {
  test(`${strategy} finds the stale-icache race, reproduces a run by its seed and replays it strictly`, async (t) => {
    const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
    t.teardown(() => rig.close());
    const fixes = rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff);
    let failing = null;
    for (let seed = 1; seed <= 30 && failing === null; seed++) {
      const report = rig.run({ seed, strategy, depth: 2, fixes });
      if (failed(report)) failing = report;
    }
    if (failing === null) return t.fail(`${strategy} found nothing in 30 seeds`);
    t.is(failing.strategy, strategy);
    t.is(failing.violations[0].oracle, memtableStaleIcache.bugs[0].caughtBy);
    const again = rig.run({ seed: Number(failing.seed), strategy, depth: 2, fixes });
    t.is(again.hash, failing.hash, 'the seed decides the run');
    const replayed = rig.replay(parseTraceJson(JSON.stringify(traceJsonOf(failing))), fixes);
    t.is(replayed.hash, failing.hash);
    t.is(replayed.violations[0]?.oracle, failing.violations[0].oracle);
  });
}
