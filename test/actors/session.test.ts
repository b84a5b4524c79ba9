/**
 * Goal: the session keeps HVMI's rules — one handler at a time, counted pauses, no register access
 * to a running vCPU, lazy EPT rights, and exit replies with HVMI's meanings. Method: small guests
 * on inline hosts driven step by step through the session API, checking states and memory.
 */
import test from 'ava';
import type { InspectionEvent } from 'xstate';
import { Session, SessionError } from '../../actors/session.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import type { ExitHandler } from '../../actors/hypervisor.ts';
import { eax, qword, rax, rbx, rcx } from '../../src/asm/index.ts';
import { EptBits, ExitReason } from '../../src/machine/layout.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

const DATA = 0x300000n;

/** Every vCPU runs: loop { rax = [rbx]; inc rcx; vmcall every iteration if rcx is odd… } */
function vmcallLoop(vcpus: number): TestMachine {
  const machine = new TestMachine({ vcpus });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.mov(rax, qword(rbx));
    a.inc(rcx);
    a.vmcall();
    a.jmp(top);
  });
  for (let v = 0; v < vcpus; v++) machine.state(v).setGpr('rbx', DATA);
  return machine;
}

const skipVmcall: ExitHandler = () => ({ action: 'allowedVirtual' });

function open(machine: TestMachine, handler: ExitHandler = skipVmcall, extra: Partial<Parameters<typeof Session.open>[0]> = {}): Session {
  return Session.open({ machine: machine.machine, hosts: 'inline', handler, ...extra });
}

test('a pause while another vCPU is stopped at an exit completes, and both are readable', async (t) => {
  const machine = vmcallLoop(3);
  const seen: string[] = [];
  const handler: ExitHandler = (context) => {
    if (context.vcpuId !== 1) return { action: 'allowedVirtual' };
    context.pauseVcpus();
    seen.push(`v0 ${context.vcpu(0).rip().toString(16)}`); // stopped at its own exit: allowed
    seen.push(`v2 rcx ${context.vcpu(2).gpr('rcx')}`); // paused by us: allowed
    context.resumeVcpus();
    t.throws(() => context.vcpu(2).gpr('rcx'), { message: /vCPU 2 is running/ });
    return { action: 'allowedVirtual' };
  };
  const session = open(machine, handler);
  t.teardown(() => session.close());
  t.is(session.runSlice(0, 10), 'exit');
  t.is(session.runSlice(2, 1), 'budget');
  t.is(session.runSlice(1, 10), 'exit');
  t.deepEqual(session.pendingExits(), [0, 1]);
  session.handleExit(1);
  t.deepEqual(seen, [`v0 ${(CODE + 6n).toString(16)}`, 'v2 rcx 0']); // mov rax,[rbx] (3) + inc rcx (3)
  t.is(session.stateOf(0), 'exited', 'the pending exit survived the pause');
  t.is(session.stateOf(2), 'running');
  t.is(session.pauseDepth, 0);
  session.handleExit(0);
  t.is(session.stateOf(0), 'running');
});

test('nested pauses need as many resumes; one resume too many is an error', async (t) => {
  const machine = vmcallLoop(2);
  const session = open(machine);
  t.teardown(() => session.close());
  session.pauseVcpus();
  session.pauseVcpus();
  session.resumeVcpus();
  t.is(session.pauseDepth, 1);
  t.is(session.stateOf(1), 'paused');
  t.throws(() => session.runSlice(1, 10), { message: /vCPU 1 cannot run now: it is paused/ });
  session.resumeVcpus();
  t.is(session.stateOf(1), 'running');
  t.throws(() => session.resumeVcpus(), { instanceOf: SessionError, message: /more times than pauseVcpus/ });
});

test('the timer may not read a running vCPU (TIMER_FRIENDLY), but may after pausing', async (t) => {
  const machine = vmcallLoop(2);
  let read = -1n;
  const friendly = open(machine, skipVmcall, {
    timer: {
      periodSteps: 2,
      callback: (hv) => {
        hv.pauseVcpus();
        read = hv.vcpu(1).gpr('rbx');
        hv.resumeVcpus();
      },
    },
  });
  friendly.runSlice(1, 1);
  t.false(friendly.timerDue());
  friendly.runSlice(1, 1);
  t.true(friendly.timerDue(), 'due after 2 steps of virtual time');
  friendly.fireTimer();
  t.is(read, DATA);
  await friendly.close();

  const rude = open(vmcallLoop(2), skipVmcall, { timer: { periodSteps: 1, callback: (hv) => void hv.vcpu(1).gpr('rax') } });
  t.teardown(() => rude.close());
  rude.runSlice(0, 1);
  const error = t.throws(() => rude.fireTimer(), { instanceOf: SessionError });
  t.regex(error?.message ?? '', /vCPU 1 is running: its registers may only be accessed while it is stopped at an exit or paused/);
  t.is(rude.status, 'failed');
});

test('EPT rights are lazy: a running vCPU keeps its rights until its next VM entry', async (t) => {
  const machine = vmcallLoop(2);
  let revoked = false;
  const handler: ExitHandler = (context) => {
    if (context.exit.reason === ExitReason.eptViolation) return { action: 'shutdown' };
    if (context.vcpuId === 1 && !revoked) {
      // vCPU 1's handler revokes read access to DATA; the commit happens at the end of the handler.
      context.ept.setRights(Number(DATA), EptBits.execute);
      revoked = true;
    }
    return { action: 'allowedVirtual' };
  };
  const session = open(machine, handler);
  t.teardown(() => session.close());
  t.is(session.runSlice(0, 1), 'budget'); // vCPU 0 entered with read access, is mid-guest
  t.is(session.runSlice(1, 3), 'exit');
  session.handleExit(1);
  t.is(machine.machine.ept.rightsAt(Number(DATA)), EptBits.execute, 'committed');
  // vCPU 0 has not re-entered: it still reads DATA through its old view, then takes its VMCALL.
  t.is(session.runSlice(0, 2), 'exit');
  t.is(machine.machine.vcpu(0).exit().reason, ExitReason.vmcall);
  session.handleExit(0);
  // After that VM entry the new rights apply: the next read of DATA is an EPT violation.
  t.is(session.runSlice(0, 10), 'exit');
  t.is(machine.machine.vcpu(0).exit().reason, ExitReason.eptViolation);
  t.is(machine.machine.vcpu(0).exit().gpa, DATA);
});

/** Two vCPUs; vCPU 0 only reads DATA in a loop (it never exits on its own), vCPU 1 makes VMCALLs. */
function readerMachine(): ReturnType<typeof vmcallLoop> {
  const machine = vmcallLoop(2);
  const reader = CODE + 0x400n;
  machine.assemble(reader, (a) => {
    const top = a.label();
    a.mov(rax, qword(rbx));
    a.jmp(top);
  });
  machine.state(0).rip = reader;
  return machine;
}

test('rights a handler changes reach every vCPU when it answers (the integrator flushes); set outside a handler they wait for a flush', async (t) => {
  for (const flush of [false, true]) {
    const machine = readerMachine();
    const handler: ExitHandler = (context) => {
      if (context.exit.reason === ExitReason.eptViolation) return { action: 'shutdown' };
      context.ept.setRights(Number(DATA), EptBits.execute);
      if (flush) context.ept.flush();
      return { action: 'allowedVirtual' };
    };
    const session = open(machine, handler);
    t.teardown(() => session.close());
    t.is(session.runSlice(0, 5), 'budget');
    t.is(session.runSlice(1, 3), 'exit');
    session.handleExit(1);
    t.is(session.runSlice(0, 10), 'exit', `${flush ? 'with' : 'without'} an explicit flush, the next read of DATA faults`);
    t.is(machine.machine.vcpu(0).exit().reason, ExitReason.eptViolation);
    await session.close();
  }
  // Outside a handler, a request stays pending: a vCPU keeps the rights it entered with.
  const machine = readerMachine();
  const session = open(machine, () => ({ action: 'allowedVirtual' }));
  t.teardown(() => session.close());
  t.is(session.runSlice(0, 5), 'budget');
  session.ept.setRights(Number(DATA), EptBits.execute);
  t.is(session.runSlice(0, 10), 'budget', 'not committed: vCPU 0 keeps reading');
  session.ept.flush();
  t.is(session.runSlice(0, 10), 'exit', 'flushed: the next read faults');
  await session.close();
});

test('exit replies: retry, allowed, allowedVirtual, notAllowed and an injected exception', async (t) => {
  const machine = new TestMachine();
  const gpHandler = CODE + 0x800n;
  machine.assemble(gpHandler, (a) => {
    a.mov(eax, 0x77);
    a.vmcall();
  });
  machine.setGate(13, gpHandler);
  machine.assemble(CODE, (a) => {
    a.mov(qword(rbx), 0x11); // EPT write violation #1
    a.mov(qword(rbx, 8), 0x22); // #2
    a.mov(qword(rbx, 16), 0x33); // #3
    a.mov(qword(rbx, 24), 0x44); // #4
    a.mov(eax, 0x55);
    a.vmcall();
  });
  machine.state().setGpr('rbx', DATA);
  machine.machine.ept.setRights(Number(DATA), EptBits.read);
  const actions: string[] = [];
  const handler: ExitHandler = (context) => {
    if (context.exit.reason === ExitReason.vmcall) {
      return context.self.gpr('rax') === 0x77n ? { action: 'shutdown' } : { action: 'notAllowed', inject: { vector: 13, errorCode: 0 } };
    }
    const offset = Number(context.exit.gpa - DATA);
    switch (offset) {
      case 0:
        actions.push('allowed');
        return { action: 'allowed' };
      case 8:
        actions.push('notAllowed');
        return { action: 'notAllowed' };
      case 16:
        actions.push('allowedVirtual');
        context.memory.write64(Number(DATA) + 16, 0x1033n); // the handler emulates the store itself
        return { action: 'allowedVirtual' };
      default:
        actions.push('retry');
        context.ept.setRights(Number(DATA), EptBits.read | EptBits.write);
        return { action: 'retry' };
    }
  };
  const session = open(machine, handler);
  t.teardown(() => session.close());
  for (let k = 0; k < 5; k++) {
    t.is(session.runSlice(0, 100), 'exit');
    session.handleExit(0);
  }
  t.deepEqual(actions, ['allowed', 'notAllowed', 'allowedVirtual', 'retry']);
  t.is(machine.read64(DATA), 0x11n);
  t.is(machine.read64(DATA + 8n), 0n, 'notAllowed skipped the store');
  t.is(machine.read64(DATA + 16n), 0x1033n);
  t.is(machine.read64(DATA + 24n), 0x44n, 'retry re-executed it with the new rights');
  // The injected #GP is delivered through the IDT at entry (injection bypasses the exception
  // bitmap, as VM-entry event injection does); its handler VMCALLs with 0x77.
  t.is(session.runSlice(0, 100), 'exit');
  const exit = machine.machine.vcpu(0).exit();
  t.is(exit.reason, ExitReason.vmcall);
  t.is(exit.rip, gpHandler + 5n);
  t.is(machine.read64(machine.state().gpr('rsp')), 0n, 'the #GP error code 0 is on the handler stack');
  session.handleExit(0);
  t.is(session.stateOf(0), 'stopped');
});

test('handlers cannot nest, and a handler that throws fails the session with its reason', async (t) => {
  const machine = vmcallLoop(2);
  let session: Session;
  const nested = open(machine, () => {
    session.handleExit(1);
    return { action: 'retry' };
  });
  session = nested;
  nested.runSlice(0, 10);
  nested.runSlice(1, 10);
  t.throws(() => nested.handleExit(0), { message: /another handler holds the lock/ });
  await nested.close();

  const throwing = open(vmcallLoop(1), () => {
    throw new Error('engine bug');
  });
  t.teardown(() => throwing.close());
  throwing.runSlice(0, 10);
  t.throws(() => throwing.handleExit(0), { instanceOf: SessionError, message: /exit handler for vCPU 0 threw: Error: engine bug/ });
  t.is(throwing.status, 'failed');
  t.throws(() => throwing.runSlice(0, 1), { message: /engine bug/ });
});

test('inspect sees the session, pause and vCPU actors', async (t) => {
  const seen = new Set<string>();
  const session = open(vmcallLoop(1), skipVmcall, {
    inspect: (event: InspectionEvent) => {
      if (event.type === '@xstate.event') seen.add(`${(event.actorRef as { id?: string }).id} ${(event.event as { type: string }).type}`);
    },
  });
  session.runSlice(0, 10);
  session.handleExit(0);
  session.pauseVcpus();
  session.resumeVcpus();
  await session.close();
  for (const expected of ['session BOOTED', 'vcpu0 EXITED', 'vcpu0 REPLIED', 'pause PAUSE', 'pause ALL_STOPPED', 'pause RESUME', 'session CLOSE', 'session CLOSED']) {
    t.true(seen.has(expected), `inspection saw "${expected}"`);
  }
  t.is(session.status, 'closed');
});

test('a note is the fact of its moment: changing the detail object afterwards changes neither the event nor the trace', (t) => {
  const machine = vmcallLoop(1);
  const seen: RuntimeEvent[] = [];
  const session = open(machine, skipVmcall, { events: (event) => seen.push(event) });
  t.teardown(() => session.close());
  const detail: Record<string, bigint> = { rip: 0x1000n };
  session.note('probe', detail);
  detail.rip = 0x2000n;
  const note = seen.find((event) => event.kind === 'note');
  t.deepEqual(note?.kind === 'note' ? note.detail : null, { rip: 0x1000n });
});
