/**
 * Goal: nothing hangs and nothing leaks. Method: make a worker throw, make one stop answering,
 * triple-fault a guest, and spin one forever; each must end with one clear report, and every
 * worker thread must be gone once the session is closed.
 */
import test from 'ava';
import { Session, SessionError } from '../../actors/session.ts';
import { runDeterministic } from '../../src/explore/deterministic.ts';
import { runFree } from '../../src/explore/free-running.ts';
import { RoundRobinScheduler } from '../../src/explore/schedulers/index.ts';
import { Trace } from '../../src/explore/trace.ts';
import { liveWorkers } from '../../src/host/spawn.ts';
import { MachineSnapshot } from '../../src/machine/snapshot.ts';
import { counterGuest } from '../support/counter-guest.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

test.serial('a worker that throws fails the session with its vCPU, RIP and last blocks; close ends every worker', async (t) => {
  const guest = counterGuest(3, 1000, 100);
  const session = Session.open({ machine: guest.test.machine, hosts: 'workers', handler: guest.handler });
  t.teardown(() => session.close());
  session.runSlice(1, 500);
  const error = t.throws(() => session.injectHostFault(1, 'crash'), { instanceOf: SessionError });
  t.is(error?.vcpu, 1);
  t.regex(error?.message ?? '', /vCPU 1 failed/);
  t.regex(error?.message ?? '', /crash requested \(fault injection\)/);
  t.regex(error?.message ?? '', /vCPU 1 at RIP 0x10[0-9a-f]+ \(CPL 0\)/);
  t.regex(error?.message ?? '', /recent blocks: (0x100[0-9a-f]+ → )+0x100[0-9a-f]+/);
  t.regex(error?.message ?? '', /\n {2}100[0-9a-f]+: [a-z]+/, 'the instructions at RIP are disassembled');
  t.is(session.status, 'failed');
  t.is(session.stateOf(1), 'failed');
  t.throws(() => session.runSlice(0, 10), { instanceOf: SessionError }, 'a failed session refuses to run');
  await session.close();
  await session.close(); // idempotent
  t.is(session.status, 'closed');
  t.is(liveWorkers(), 0);
});

test.serial('a worker that stops answering ends the wait with a bounded, named error', async (t) => {
  const guest = counterGuest(2, 1000, 100);
  const session = Session.open({ machine: guest.test.machine, hosts: 'workers', handler: guest.handler, timeouts: { commandMs: 300 } });
  t.teardown(() => session.close());
  const started = performance.now();
  const error = t.throws(() => session.injectHostFault(0, 'hang'), { instanceOf: SessionError });
  t.true(performance.now() - started < 5000);
  t.regex(error?.message ?? '', /vCPU 0: no answer within 300 ms/);
  await session.close();
  t.is(liveWorkers(), 0, 'the hung worker was terminated');
});

test.serial('a session whose handler threw hands its idle workers to the next session over the machine: the same threads run the guest again to the exact result', async (t) => {
  const guest = counterGuest(3, 1000, 100);
  const machine = guest.test.machine;
  const snapshot = new MachineSnapshot(machine);
  const failing = Session.open({ machine, hosts: 'workers', handler: () => {
    throw new Error('an engine bug');
  } });
  t.teardown(() => failing.close());
  t.throws(() => runDeterministic({ session: failing, scheduler: new RoundRobinScheduler(100), trace: new Trace(), stepsMax: 1_000_000 }), { message: /an engine bug/ });
  t.not(failing.failed, null);
  const hosts = failing.handOver();
  t.is(hosts?.length, 3);
  t.is(failing.handOver(), null, 'once only');
  await failing.close();
  t.is(liveWorkers(), 3, 'closing the failed session ended none of the workers it handed over');
  snapshot.restore(machine);
  const next = Session.open({ machine, hosts: hosts ?? [], handler: guest.handler });
  t.teardown(() => next.close());
  next.restart();
  const result = runDeterministic({ session: next, scheduler: new RoundRobinScheduler(100), trace: new Trace(), stepsMax: 1_000_000 });
  t.is(result.outcome, 'done');
  t.deepEqual(guest.check(), []);
  t.is(liveWorkers(), 3, 'no worker was started');
  t.throws(() => Session.open({ machine: counterGuest(3, 10, 5).test.machine, hosts: hosts ?? [], handler: guest.handler }), { message: /one host per vCPU of the same machine.*of another machine/ });
  await next.close();
  t.is(liveWorkers(), 0);
});

test.serial('a session with a crashed worker retires: the idle workers leave on a stop command, the crashed one by itself, and the machine serves new workers', async (t) => {
  const guest = counterGuest(3, 1000, 100);
  const machine = guest.test.machine;
  const snapshot = new MachineSnapshot(machine);
  const failing = Session.open({ machine, hosts: 'workers', handler: guest.handler });
  t.teardown(() => failing.close());
  failing.runSlice(0, 500);
  t.throws(() => failing.injectHostFault(1, 'crash'), { instanceOf: SessionError });
  t.is(failing.handOver(), null, 'a dead host is not handed over');
  t.true(failing.retire(), 'every worker said it left the machine');
  await failing.close();
  t.is(liveWorkers(), 0);
  snapshot.restore(machine);
  const next = Session.open({ machine, hosts: 'workers', handler: guest.handler });
  t.teardown(() => next.close());
  next.restart();
  t.is(runDeterministic({ session: next, scheduler: new RoundRobinScheduler(100), trace: new Trace(), stepsMax: 1_000_000 }).outcome, 'done');
  t.deepEqual(guest.check(), []);
  await next.close();
});

test.serial('a session with a hung worker cannot free its machine: retire() says so at once', async (t) => {
  const guest = counterGuest(2, 1000, 100);
  const session = Session.open({ machine: guest.test.machine, hosts: 'workers', handler: guest.handler, timeouts: { commandMs: 300 } });
  t.teardown(() => session.close());
  t.throws(() => session.injectHostFault(0, 'hang'), { instanceOf: SessionError });
  t.is(session.handOver(), null);
  // A command still running is known at once: retire() does not sit out its (here one-minute) bound.
  const started = performance.now();
  t.false(session.retire(60_000));
  t.true(performance.now() - started < 30_000);
  await session.close();
  t.is(liveWorkers(), 0, 'the hung worker was terminated');
});

test.serial('a triple fault ends the run with a verdict, not a crash', async (t) => {
  const machine = new TestMachine(); // no IDT gates: #UD → #NP → #NP → #DF → triple fault
  machine.assemble(CODE, (a) => a.ud2());
  const session = Session.open({ machine: machine.machine, hosts: 'inline', handler: () => ({ action: 'retry' }) });
  t.teardown(() => session.close());
  const result = runDeterministic({ session, scheduler: new RoundRobinScheduler(100), trace: new Trace(), stepsMax: 1000 });
  t.is(result.outcome, 'verdict');
  t.deepEqual(result.verdict, { kind: 'triple-fault', vcpu: 0, rip: CODE });
  t.is(session.stateOf(0), 'stopped');
  t.is(session.status, 'running', 'a guest outcome is not a session failure');
});

test.serial('a vCPU that never exits hits the step bound, with every vCPU described', async (t) => {
  const machine = new TestMachine({ vcpus: 2 });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.jmp(top);
  });
  const session = Session.open({ machine: machine.machine, hosts: 'inline', handler: () => ({ action: 'retry' }) });
  t.teardown(() => session.close());
  const result = runDeterministic({ session, scheduler: new RoundRobinScheduler(100), trace: new Trace(), stepsMax: 10_000 });
  t.is(result.outcome, 'bound');
  t.regex(result.detail, /vCPU 0: running, RIP 0x100000, \d+ steps\nvCPU 1: running, RIP 0x100000/);
});

test.serial('free-running: a stuck run ends at the wall-clock bound and all workers are stopped', async (t) => {
  const machine = new TestMachine({ vcpus: 2 });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.jmp(top);
  });
  const session = Session.open({ machine: machine.machine, hosts: 'workers', freeRunning: true, spin: 0, handler: () => ({ action: 'retry' }) });
  t.teardown(() => session.close());
  const result = runFree({ session, trace: new Trace(), wallMs: 500 });
  t.is(result.outcome, 'bound');
  t.regex(result.detail, /still running after 500 ms/);
  await session.close();
  t.is(liveWorkers(), 0);
});
