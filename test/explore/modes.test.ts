/**
 * Goal: the acceptance guest — 4 vCPUs incrementing shared counters with LOCK XADD and taking
 * periodic VMCALL exits — gives exact final counts in all three modes. Method: run it inline
 * (deterministic), in workers (deterministic, one vCPU at a time by token) and free-running
 * (workers in parallel), then check every counter, slot and tick count.
 */
import test from 'ava';
import { Session } from '../../actors/session.ts';
import { runDeterministic } from '../../src/explore/deterministic.ts';
import { runFree } from '../../src/explore/free-running.ts';
import { Prng } from '../../src/explore/prng.ts';
import { RandomScheduler } from '../../src/explore/schedulers/index.ts';
import { Trace } from '../../src/explore/trace.ts';
import { liveWorkers } from '../../src/host/spawn.ts';
import { counterGuest } from '../support/counter-guest.ts';

const ITERATIONS = 5000;
const PERIOD = 50;

for (const hosts of ['inline', 'workers'] as const) {
  test.serial(`deterministic, ${hosts}: exact counts`, async (t) => {
    const guest = counterGuest(4, ITERATIONS, PERIOD);
    const trace = new Trace();
    const session = Session.open({ machine: guest.test.machine, hosts, handler: guest.handler, events: (e, c) => trace.recordEvent(e, c) });
    t.teardown(() => session.close());
    const result = runDeterministic({ session, scheduler: new RandomScheduler(new Prng(2026), 2000), trace, stepsMax: 10_000_000 });
    t.is(result.outcome, 'done');
    t.deepEqual(guest.check(), []);
    t.is(trace.entries.filter((e) => e.text.startsWith('handle')).length, 4 * (ITERATIONS / PERIOD + 1));
    await session.close();
    t.is(liveWorkers(), 0);
  });
}

test.serial('free-running, workers in parallel: exact counts', async (t) => {
  const guest = counterGuest(4, ITERATIONS, PERIOD);
  const trace = new Trace();
  const session = Session.open({ machine: guest.test.machine, hosts: 'workers', freeRunning: true, spin: 0, handler: guest.handler, events: (e, c) => trace.recordEvent(e, c) });
  t.teardown(() => session.close());
  const result = runFree({ session, trace, wallMs: 60_000 });
  t.is(result.outcome, 'done', result.detail);
  t.deepEqual(guest.check(), []);
  t.is(trace.entries.filter((e) => e.text.startsWith('handle')).length, 4 * (ITERATIONS / PERIOD + 1));
  await session.close();
  t.is(liveWorkers(), 0);
});

test.serial('free-running: a handler that pauses stops the other running workers and resumes them', async (t) => {
  const guest = counterGuest(3, 3000, 100);
  let pauses = 0;
  const handler: typeof guest.handler = (context) => {
    context.pauseVcpus();
    // Everyone is stopped now: every vCPU's registers can be read.
    for (let v = 0; v < context.vcpuCount; v++) void context.vcpu(v).gpr('rcx');
    pauses++;
    context.resumeVcpus();
    return guest.handler(context);
  };
  const session = Session.open({ machine: guest.test.machine, hosts: 'workers', freeRunning: true, spin: 0, handler });
  t.teardown(() => session.close());
  const result = runFree({ session, trace: new Trace(), wallMs: 60_000 });
  t.is(result.outcome, 'done', result.detail);
  t.deepEqual(guest.check(), []);
  t.is(pauses, 3 * (3000 / 100 + 1));
});
