/**
 * Goal: when a vCPU first sees code written by someone else is an explored choice, within the
 * SDM's bounds (8.1.3: a CPU may execute stale cross-modified code until it serialises, and may
 * see the new bytes any time before). A vCPU looping on `mov eax, 1` keeps executing it after its
 * immediate was rewritten to 2 — until `see-code` (the scheduler's choice) or a VM entry (a
 * serialising event: the choice is never needed, nor offered, after one). Inline and worker hosts
 * behave the same; the choice is recorded in the trace and replays; random explores it.
 */
import test from 'ava';
import { Session, SessionError } from '../../actors/session.ts';
import { runDeterministic } from '../../src/explore/deterministic.ts';
import { Prng } from '../../src/explore/prng.ts';
import { RandomScheduler } from '../../src/explore/schedulers/index.ts';
import { ReplayScheduler } from '../../src/explore/schedulers/replay.ts';
import { isEnabled, type Choice, type Enabled, type Scheduler } from '../../src/explore/schedule.ts';
import { Trace } from '../../src/explore/trace.ts';
import { eax } from '../../src/asm/index.ts';
import { MachineSnapshot } from '../../src/machine/snapshot.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

/** Both vCPUs loop on `mov eax, 1; jmp back`; the immediate is at CODE + 1. */
function loopMachine(): TestMachine {
  const machine = new TestMachine({ vcpus: 2 });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.mov(eax, 1);
    a.jmp(top);
  });
  return machine;
}

const eaxOf = (machine: TestMachine, vcpu: number): bigint => machine.machine.vcpu(vcpu).gpr('rax') & 0xffffffffn;

for (const hosts of ['inline', 'workers'] as const) {
  test.serial(`${hosts}: a vCPU runs the old bytes until it sees the write (see-code)`, async (t) => {
    const machine = loopMachine();
    const session = Session.open({ machine: machine.machine, hosts, handler: () => ({ action: 'retry' }) });
    t.teardown(() => session.close());
    session.restart({});
    session.runSlice(0, 20);
    session.runSlice(1, 20);
    t.is(eaxOf(machine, 0), 1n);
    t.false(session.codeStale(0), 'nothing was written yet');
    machine.machine.memory.write32(Number(CODE) + 1, 2); // the engine (or another CPU) rewrites the immediate
    t.true(session.codeStale(0) && session.codeStale(1));
    session.runSlice(0, 20);
    t.is(eaxOf(machine, 0), 1n, 'stale: still the old MOV');
    t.true(session.codeStale(0), 'running did not serialise it');
    session.seeCode(0);
    t.false(session.codeStale(0), 'asked for once');
    session.runSlice(0, 20);
    t.is(eaxOf(machine, 0), 2n, 'sees the new immediate');
    t.false(session.codeStale(0));
    t.true(session.codeStale(1), 'the other vCPU still has not looked');
    t.throws(() => session.seeCode(0), { instanceOf: SessionError, message: /no stale code to see/ });
  });
}

/** Random, but it records which choices were possible when a see-code was taken. */
class Watching implements Scheduler {
  readonly name = 'random';
  readonly seen: { choice: Choice; enabled: Enabled }[] = [];
  constructor(private readonly inner: Scheduler) {}
  choose(enabled: Enabled): Choice {
    const choice = this.inner.choose(enabled);
    this.seen.push({ choice, enabled });
    return choice;
  }
}

test.serial('random takes see-code choices only while a vCPU is stale; the trace replays with them', async (t) => {
  const machine = loopMachine();
  const session = Session.open({ machine: machine.machine, hosts: 'inline', handler: () => ({ action: 'retry' }) });
  t.teardown(() => session.close());
  const snapshot = new MachineSnapshot(machine.machine);
  let taken = 0;
  for (let seed = 1; seed <= 10; seed++) {
    snapshot.restore(machine.machine);
    // Every 30 steps of virtual time the immediate flips: code keeps being cross-modified.
    let flips = 0;
    const trace = new Trace();
    session.restart({ events: (event, clock) => trace.recordEvent(event, clock) });
    const watching = new Watching(new RandomScheduler(new Prng(seed), 16));
    const flipping: Scheduler = {
      name: 'random',
      choose: (enabled) => {
        if (session.clock >= 30 * (flips + 1)) machine.machine.memory.write32(Number(CODE) + 1, 1 + (++flips % 2));
        return watching.choose(enabled);
      },
    };
    runDeterministic({ session, scheduler: flipping, trace, stepsMax: 400 });
    for (const { choice, enabled } of watching.seen) {
      if (choice.kind !== 'see-code') continue;
      taken++;
      t.true(isEnabled(choice, enabled) && (enabled.staleCode ?? []).includes(choice.vcpu));
    }
    t.true(trace.entries.some((e) => /^> see-code v\d$/.test(e.text)) === watching.seen.some((s) => s.choice.kind === 'see-code'));
    // The same choices, followed strictly, give the same trace.
    snapshot.restore(machine.machine);
    flips = 0;
    const again = new Trace();
    session.restart({ events: (event, clock) => again.recordEvent(event, clock) });
    const replay = new ReplayScheduler(trace.choices);
    runDeterministic({
      session, trace: again, stepsMax: 400,
      scheduler: { name: 'replay', choose: (enabled) => {
        if (session.clock >= 30 * (flips + 1)) machine.machine.memory.write32(Number(CODE) + 1, 1 + (++flips % 2));
        return replay.choose(enabled);
      } },
    });
    t.is(again.hash, trace.hash, `seed ${seed}`);
  }
  t.true(taken > 5, `random explored the staleness (${taken} see-code choices in 10 runs)`);
});
