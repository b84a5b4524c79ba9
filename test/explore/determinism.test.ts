/**
 * Goal: deterministic mode is deterministic — the same seed gives the same trace hash whether the
 * vCPUs run inline or in workers, replay re-executes a recording to the same hash, and a changed
 * guest is reported at the first entry that differs. Method: a 4-vCPU counter guest with exits,
 * a pausing timer and injected interrupts, run for 200 seeds in both host kinds.
 */
import test from 'ava';
import { Prng, seedValue } from '../../src/explore/prng.ts';
import { replayTrace } from '../../src/explore/replay.ts';
import { STRATEGIES, ReplayDivergence } from '../../src/explore/schedulers/index.ts';
import { parseTraceJson, traceToJson } from '../../src/explore/trace-json.ts';
import { liveWorkers } from '../../src/host/spawn.ts';
import { counterRig, RIG_INTERRUPTS } from '../support/runtime.ts';

test.serial('200 seeds × {inline, workers} give identical trace hashes per seed, with exact results', async (t) => {
  const inline = counterRig('inline');
  const workers = counterRig('workers');
  t.teardown(async () => {
    await inline.close();
    await workers.close();
  });
  const hashes = new Set<string>();
  for (let seed = 0; seed < 200; seed++) {
    const strategy = STRATEGIES[seed % STRATEGIES.length];
    const a = inline.run(seed, strategy);
    const aProblems = inline.guest.check();
    const b = workers.run(seed, strategy);
    const bProblems = workers.guest.check();
    if (a.result.hash !== b.result.hash || a.result.outcome !== 'done' || aProblems.length + bProblems.length > 0) {
      t.fail(`seed ${seed} (${strategy}): inline ${a.result.hash} ${a.result.outcome} ${aProblems.join('; ')} vs workers ${b.result.hash} ${b.result.outcome} ${bProblems.join('; ')}`);
      return;
    }
    hashes.add(a.result.hash);
  }
  t.log(`${hashes.size} distinct hashes over 200 seeds`);
  t.true(hashes.size > 120, 'different seeds explore different schedules');
  await inline.close();
  await workers.close();
  t.is(liveWorkers(), 0, 'no worker outlives the test');
});

test.serial('record → JSON → replay reaches the same hash, for every strategy', async (t) => {
  const rig = counterRig('inline');
  t.teardown(() => rig.close());
  for (const strategy of STRATEGIES) {
    const { result, trace } = rig.run(7, strategy);
    const recorded = parseTraceJson(JSON.stringify(traceToJson(trace, { seed: '7', strategy: strategy === 'pct' ? 'pct(d=2)' : strategy, mode: 'inline' })));
    rig.snapshot.restore(rig.guest.test.machine);
    rig.guest.resetTicks();
    rig.session.restart({ random: new Prng(7).fork('engine') });
    const replayed = replayTrace({ session: rig.session, recorded, stepsMax: 5_000_000, interrupts: RIG_INTERRUPTS });
    t.is(replayed.hash, result.hash, `${strategy} replay`);
    t.deepEqual(rig.guest.check(), []);
  }
});

test.serial('replay of a changed guest says where it diverged', async (t) => {
  const rig = counterRig('inline');
  t.teardown(() => rig.close());
  const { trace } = rig.run(11, 'random');
  const recorded = traceToJson(trace, { seed: '11', strategy: 'random', mode: 'inline' });
  rig.snapshot.restore(rig.guest.test.machine);
  rig.guest.resetTicks();
  // The "new version" of the guest: vCPU 3 starts with a different loop count.
  rig.guest.test.state(3).setGpr('rcx', 150n);
  rig.session.restart({ random: new Prng(11).fork('engine') });
  const error = t.throws(() => replayTrace({ session: rig.session, recorded, stepsMax: 5_000_000, interrupts: RIG_INTERRUPTS }), {
    instanceOf: ReplayDivergence,
  });
  t.regex(error?.message ?? '', /the replay diverged at entry #\d+\n {2}recorded: .+\n {2}now: {6}.+/);
  t.log(error?.message.split('\n').slice(0, 3).join('\n'));
});

test('seed strings: decimal digits and 0x hex are that number (as traces store them); other text is hashed', (t) => {
  t.is(seedValue('10'), 10n, 'a trace seed "10" replays seed 10, not 0x10');
  t.is(seedValue('0x10'), 16n);
  t.is(seedValue('18446744073709551615'), (1n << 64n) - 1n);
  t.not(seedValue('4eb99fd'), 0x4eb99fdn, 'a commit hash is a label');
  t.is(seedValue('4eb99fd'), seedValue('4eb99fd'));
  t.is(new Prng('26').nextU64(), new Prng(26).nextU64());
});
