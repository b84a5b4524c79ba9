/**
 * Asynchronous and hypervisor-side events (SDM Vol. 3A ch. 6; Vol. 3C ch. 25-27 for the VMX
 * parts): external interrupts and IF, the STI shadow, HLT, the exception bitmap, double and triple
 * faults, and events injected at VM entry.
 */
import test from 'ava';
import { ecx, qword, rax, rdi } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ActivityState, EventInfo, ExitControl, ExitReason } from '../../src/cpu/state-block.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import { CODE, IST1, TestMachine, stackTop } from '../support/test-machine.ts';
import { RFLAGS, UNMAPPED, gate, haltingGate, handlerAt, readFrame, startInRing3 } from './helpers.ts';

const event = (vector: number, type: number, hasError = false): number =>
  EventInfo.valid | (type << EventInfo.typeShift) | vector | (hasError ? EventInfo.hasError : 0);

test('a pending external interrupt is taken at the next boundary when IF=1: frame without RF, IF cleared', (t) => {
  // Method: pendingInterrupt = 0x30 with IF=1 before the first instruction; the handler halts.
  const tm = new TestMachine();
  const handler = haltingGate(tm, 0x30);
  tm.assemble(CODE, (a) => a.nop().hlt());
  const state = tm.state();
  state.rflags = 0x202n;
  state.set32('pendingInterrupt', 0x30);
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  t.deepEqual(readFrame(tm, state.gpr('rsp'), false), {
    rip: CODE, cs: BigInt(Selector.kernelCode), rflags: 0x202n, rsp: stackTop(0), ss: BigInt(Selector.kernelData),
  });
  t.is(state.get32('pendingInterrupt'), -1, 'consumed');
  t.is(state.rflags & RFLAGS.IF, 0n);
});

test('with IF=0 the interrupt stays pending; after STI it waits one more instruction (the STI shadow)', (t) => {
  // Method: three NOPs with IF=0 and an interrupt pending (not taken), then STI; NOP; NOP. The
  // pushed RIP must be the second NOP after STI: SDM STI — interrupts are recognised after the
  // instruction following STI.
  const tm = new TestMachine();
  haltingGate(tm, 0x30);
  const code = tm.assemble(CODE, (a) =>
    a.nop().nop().nop().bind(a.newLabel('sti')).sti().nop().bind(a.newLabel('second')).nop().hlt());
  const state = tm.state();
  state.rflags = 0x2n;
  state.set32('pendingInterrupt', 0x30);
  t.is(tm.run(0, 3), RunStop.budget);
  t.is(state.rip, code.addressOf('sti'), 'ran the three NOPs');
  t.is(state.get32('pendingInterrupt'), 0x30, 'still pending');
  t.is(state.gpr('rsp'), stackTop(0), 'nothing pushed');
  t.is(tm.run(), RunStop.halted);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, code.addressOf('second'));
});

test('the STI shadow survives a stop right after STI (interruptibility state)', (t) => {
  // Method: stop with a budget exactly after STI; the state block must record blocking by STI and
  // the next run must still execute one instruction before taking the interrupt.
  const tm = new TestMachine();
  haltingGate(tm, 0x30);
  const code = tm.assemble(CODE, (a) => a.sti().nop().bind(a.newLabel('second')).nop().hlt());
  const state = tm.state();
  state.rflags = 0x2n;
  state.set32('pendingInterrupt', 0x30);
  t.is(tm.run(0, 1), RunStop.budget);
  t.is(state.get32('interruptibility') & 1, 1, 'blocking by STI');
  t.is(tm.run(), RunStop.halted);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, code.addressOf('second'));
});

test('STI with IF already set has no shadow', (t) => {
  // Method: IF=1; stop right after STI: no blocking by STI is recorded, and an interrupt made
  // pending then is taken before the next instruction.
  const tm = new TestMachine();
  haltingGate(tm, 0x30);
  const code = tm.assemble(CODE, (a) => a.nop().sti().bind(a.newLabel('after')).nop().hlt());
  const state = tm.state();
  state.rflags = 0x202n;
  t.is(tm.run(0, 2), RunStop.budget);
  t.is(state.rip, code.addressOf('after'));
  t.is(state.get32('interruptibility') & 1, 0);
  state.set32('pendingInterrupt', 0x30);
  t.is(tm.run(), RunStop.halted);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, code.addressOf('after'));
});

test('HLT halts until an interrupt; the interrupt pushes the RIP after the HLT and wakes the vCPU', (t) => {
  // Method: HLT with IF=1 and nothing pending → RunStop.halted (also on a second run); with IF=0 a
  // pending interrupt does not wake it; with IF=1 it does, and the handler (VMCALL) runs.
  const tm = new TestMachine();
  const handler = gate(tm, 0x31, (a) => a.vmcall());
  tm.assemble(CODE, (a) => a.hlt().nop());
  const state = tm.state();
  state.rflags = 0x2n;
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, CODE + 1n);
  t.is(state.get32('activity'), ActivityState.halted);
  state.set32('pendingInterrupt', 0x31);
  t.is(tm.run(), RunStop.halted, 'IF=0: the interrupt does not wake HLT');
  state.rflags = 0x202n;
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().reason, ExitReason.vmcall);
  t.is(state.exit().rip, handler);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, CODE + 1n);
  t.is(state.get32('activity'), ActivityState.active);
});

test('HLT exiting: HLT exits before it executes (RIP at the HLT, length 1); at CPL 3 it is #GP first', (t) => {
  // Method: ExitControl.hlt at CPL 0 → exit; at CPL 3 → #GP(0) (privilege faults beat exits, SDM 3C §25.1.1).
  const tm = new TestMachine({ exitControls: ExitControl.hlt });
  tm.assemble(CODE, (a) => a.nop().hlt());
  const state = tm.state();
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().reason, ExitReason.hlt);
  t.is(state.exit().rip, CODE + 1n);
  t.is(state.exit().instructionLength, 1);
  t.is(state.rip, CODE + 1n);
  t.is(state.get32('activity'), ActivityState.active);

  const user = new TestMachine({ exitControls: ExitControl.hlt });
  const handler = gate(user, 13, (a) => a.vmcall());
  user.assemble(CODE, (a) => a.hlt());
  startInRing3(user);
  t.is(user.run(), RunStop.exit);
  t.is(user.state().exit().reason, ExitReason.vmcall);
  t.is(user.state().exit().rip, handler, 'the #GP handler ran');
  t.is(readFrame(user, user.state().gpr('rsp'), true).rip, CODE);
});

test('exception bitmap: #GP exits (vector, error code) instead of being delivered; #UD exits without an error code', (t) => {
  // Method: bit 13 / bit 6 set; a #GP and a #UD must stop the vCPU with reason exception before
  // anything is pushed. The exit value carries the error code in bits 31:0 and "has error code" in bit 32.
  const tm = new TestMachine({ exceptionBitmap: 1 << 13 });
  haltingGate(tm, 13);
  tm.assemble(CODE, (a) => a.mov(ecx, 0x12345).wrmsr());
  const state = tm.state();
  t.is(tm.run(), RunStop.exit);
  const exit = state.exit();
  t.is(exit.reason, ExitReason.exception);
  t.is(exit.info0, 13);
  t.is(exit.value, 1n << 32n, 'error code 0, present');
  t.is(exit.rip, CODE + 5n);
  t.is(state.rip, CODE + 5n);
  t.is(state.gpr('rsp'), stackTop(0), 'nothing was pushed');

  const ud = new TestMachine({ exceptionBitmap: 1 << 6 });
  ud.assemble(CODE, (a) => a.ud2());
  t.is(ud.run(), RunStop.exit);
  t.is(ud.state().exit().info0, 6);
  t.is(ud.state().exit().value, 0n, 'no error code');
});

test('INT3 exiting, and #BP in the exception bitmap: INT3 exits before delivery with RIP on it and length 1; INT 3 (CD 03) does not', (t) => {
  // Method: ExitControl.int3 → reason int3; bit 3 → reason exception, vector 3, no error code
  // (SDM 3C §25.2: the bitmap applies to INT3, not to INT n with n = 3). Nothing is pushed.
  const viaControl = new TestMachine({ exitControls: ExitControl.int3 });
  viaControl.assemble(CODE, (a) => a.nop().int3());
  t.is(viaControl.run(), RunStop.exit);
  t.like(viaControl.state().exit(), { reason: ExitReason.int3, rip: CODE + 1n, instructionLength: 1 });
  t.is(viaControl.state().gpr('rsp'), stackTop(0));

  const viaBitmap = new TestMachine({ exceptionBitmap: 1 << 3 });
  viaBitmap.assemble(CODE, (a) => a.nop().int3());
  t.is(viaBitmap.run(), RunStop.exit);
  t.like(viaBitmap.state().exit(), { reason: ExitReason.exception, info0: 3, value: 0n, rip: CODE + 1n, instructionLength: 1 });
  t.is(viaBitmap.state().gpr('rsp'), stackTop(0));

  const intN = new TestMachine({ exceptionBitmap: 1 << 3 });
  const handler = haltingGate(intN, 3);
  intN.assemble(CODE, (a) => a.int(3));
  t.is(intN.run(), RunStop.halted);
  t.is(intN.state().rip, handler + 1n);
  t.is(readFrame(intN, intN.state().gpr('rsp'), false).rip, CODE + 2n);
});

test('exception bitmap: a #PF that exits does not write CR2; the address is in the exit GLA', (t) => {
  // Method: CR2 preset to a marker; a read of an unmapped page with bit 14 set (SDM 3C §27.1: a #PF
  // that causes a VM exit does not load CR2).
  const tm = new TestMachine({ exceptionBitmap: 1 << 14 });
  tm.assemble(CODE, (a) => a.mov(rdi, UNMAPPED).mov(rax, qword(rdi, 8)));
  const state = tm.state();
  state.set64('cr2', 0xc0ffeen);
  t.is(tm.run(), RunStop.exit);
  const exit = state.exit();
  t.is(exit.reason, ExitReason.exception);
  t.is(exit.info0, 14);
  t.is(exit.value, 1n << 32n, 'error code 0 (read, not present, supervisor)');
  t.is(exit.gla, UNMAPPED + 8n);
  t.is(state.get64('cr2'), 0xc0ffeen);
});

test('an exception that exits while another is being delivered records IDT-vectoring information', (t) => {
  // Method: #GP with RSP on an unmapped page and bit 14 in the bitmap: the #PF raised while
  // pushing the #GP frame exits, and the exit names the #GP (hardware exception, error 0) as the
  // event being delivered (SDM 3C §27.2.4), so the hypervisor can re-inject it.
  const tm = new TestMachine({ exceptionBitmap: 1 << 14 });
  haltingGate(tm, 13);
  tm.assemble(CODE, (a) => a.mov(ecx, 0x12345).wrmsr());
  const state = tm.state();
  state.setGpr('rsp', UNMAPPED + 0x1000n);
  t.is(tm.run(), RunStop.exit);
  const exit = state.exit();
  t.is(exit.info0, 14);
  t.is(exit.value, (1n << 32n) | 2n, 'write, not present, supervisor');
  t.is(exit.gla, UNMAPPED + 0xff8n);
  t.deepEqual(exit.vectoring, { vector: 13, type: EventInfo.hardwareException, errorCode: 0 });
});

test('double fault: #GP whose gate is not present raises #NP, contributory + contributory = #DF (error 0)', (t) => {
  // Method: gate 13 not present; WRMSR to an unknown MSR. SDM Table 6-5 → #DF through gate 8.
  const tm = new TestMachine();
  tm.setGate(13, handlerAt(13), { present: false });
  haltingGate(tm, 11);
  const handler = haltingGate(tm, 8);
  tm.assemble(CODE, (a) => a.mov(ecx, 0x12345).wrmsr());
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n, 'in the #DF handler, not the #NP one');
  t.is(readFrame(tm, state.gpr('rsp'), true).error, 0n);
});

test('a benign exception whose delivery faults is handled serially: #UD with gate 6 not present gives #NP(6*8+3)', (t) => {
  // Method: SDM Table 6-5, benign first: the second exception is delivered normally. The #NP
  // error code names the IDT entry (IDT bit) with EXT=1 (raised during delivery of a hardware event).
  const tm = new TestMachine();
  tm.setGate(6, handlerAt(6), { present: false });
  haltingGate(tm, 11);
  tm.assemble(CODE, (a) => a.ud2());
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handlerAt(11) + 1n);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, 6n * 8n + 2n + 1n);
  t.is(frame.rip, CODE);
});

test('#PF while delivering #PF is a #DF; on IST1 it is delivered; CR2 holds the second fault address', (t) => {
  // Method: RSP on an unmapped page, then a read of another unmapped page: the #PF frame push
  // faults again → #DF through an IST1 gate. CR2 is loaded when each #PF is detected, so it ends
  // with the stack address.
  const tm = new TestMachine();
  haltingGate(tm, 14);
  const handler = haltingGate(tm, 8, { ist: 1 });
  tm.assemble(CODE, (a) => a.mov(rdi, UNMAPPED + 0x10000n).mov(rax, qword(rdi)));
  const state = tm.state();
  state.setGpr('rsp', UNMAPPED + 0x1000n);
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  t.is(state.gpr('rsp'), IST1 - 6n * 8n);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, 0n);
  t.is(frame.rsp, UNMAPPED + 0x1000n);
  t.is(state.get64('cr2'), UNMAPPED + 0xff8n);
});

test('a fault while delivering #DF is a triple fault: exit, then the vCPU stays in shutdown', (t) => {
  // Method: gates 13 and 8 not present: #GP → #NP → #DF → #NP → triple fault (SDM §6.15 #DF).
  const tm = new TestMachine();
  tm.setGate(13, handlerAt(13), { present: false });
  tm.setGate(8, handlerAt(8), { present: false });
  tm.assemble(CODE, (a) => a.mov(ecx, 0x12345).wrmsr());
  const state = tm.state();
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().reason, ExitReason.tripleFault);
  t.is(state.exit().instructionLength, 0);
  t.is(state.get32('activity'), ActivityState.shutdown);
  t.is(tm.cpu().run(100), RunStop.shutdown);
  t.is(tm.run(), RunStop.shutdown, 'VM entry with activity = shutdown stays there');
});

test('an injected hardware exception is delivered at VM entry with its error code and the guest RFLAGS as loaded', (t) => {
  // Method: pendingEvent = #GP with error 0x1234. SDM 3C §26.5.1.1: the current guest RIP is
  // pushed, and the pushed RF is not modified by the event type.
  const tm = new TestMachine();
  const handler = haltingGate(tm, 13);
  tm.assemble(CODE, (a) => a.nop());
  const state = tm.state();
  state.rflags = 0x202n;
  state.set32('pendingEvent', event(13, EventInfo.hardwareException, true));
  state.set32('pendingEventError', 0x1234);
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  t.deepEqual(readFrame(tm, state.gpr('rsp'), true), {
    error: 0x1234n, rip: CODE, cs: BigInt(Selector.kernelCode), rflags: 0x202n, rsp: stackTop(0), ss: BigInt(Selector.kernelData),
  });
  t.is(state.get32('pendingEvent'), 0, 'consumed');
});

test('an injected #PF neither exits through the exception bitmap nor changes CR2', (t) => {
  // Method: bit 14 set and CR2 preset by the "hypervisor": SDM 3C §26.5.1.2 — an injected event
  // never causes a VM exit directly; CR2 is guest state the injector sets, not written by injection.
  const tm = new TestMachine({ exceptionBitmap: 1 << 14 });
  const handler = haltingGate(tm, 14);
  tm.assemble(CODE, (a) => a.nop());
  const state = tm.state();
  state.set64('cr2', 0x7000_1234n);
  state.set32('pendingEvent', event(14, EventInfo.hardwareException, true));
  state.set32('pendingEventError', 2);
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  t.is(readFrame(tm, state.gpr('rsp'), true).error, 2n);
  t.is(state.get64('cr2'), 0x7000_1234n);
});

test('an injected external interrupt wakes a halted vCPU; an injected software interrupt checks the gate DPL', (t) => {
  // Method: (1) activity halted + injected vector 0x50 → handler runs, RIP after HLT pushed.
  // (2) at CPL 3, injected INT 0x80 through a DPL-0 gate → #GP(0x80*8+2) at the current RIP.
  const tm = new TestMachine();
  const handler = haltingGate(tm, 0x50);
  tm.assemble(CODE, (a) => a.hlt().nop());
  const state = tm.state();
  state.rflags = 0x202n;
  t.is(tm.run(), RunStop.halted);
  state.set32('pendingEvent', event(0x50, EventInfo.external));
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, CODE + 1n);

  const user = new TestMachine();
  haltingGate(user, 13);
  haltingGate(user, 0x80, { dpl: 0 });
  user.assemble(CODE, (a) => a.nop());
  startInRing3(user);
  user.state().set32('pendingEvent', event(0x80, EventInfo.softwareInterrupt));
  t.is(user.run(), RunStop.halted);
  t.is(user.state().rip, handlerAt(13) + 1n);
  const frame = readFrame(user, user.state().gpr('rsp'), true);
  t.is(frame.error, 0x80n * 8n + 2n);
  t.is(frame.rip, CODE);
});
