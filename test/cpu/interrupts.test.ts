/**
 * Exception and interrupt delivery through the 64-bit IDT (SDM Vol. 3A ch. 6, §6.14): frame
 * contents, fault vs trap return addresses, interrupt vs trap gates, stack switching (RSP0, IST),
 * gate privilege checks and IRETQ. None of this can run on the host at ring 3, so these tests are
 * the check.
 */
import test from 'ava';
import { type Assembler, absolute, eax, ecx, qword, rax, rdi, rsp } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason } from '../../src/cpu/state-block.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import { CODE, IST1, RSP0, TestMachine, TSS, stackTop } from '../support/test-machine.ts';
import { DATA, RFLAGS, UNMAPPED, USER_STACK, gate, haltingGate, handlerAt, readFrame, startInRing3 } from './helpers.ts';

const KERNEL_SS = BigInt(Selector.kernelData);

test('#DE from DIV by zero: interrupt gate, faulting RIP pushed, RSP aligned to 16, IF cleared, RF set in the image', (t) => {
  // Method: DIV ECX with ECX=0 at CPL 0 on an RSP that is 8 mod 16; the handler is a bare HLT.
  const tm = new TestMachine();
  const handler = haltingGate(tm, 0);
  const code = tm.assemble(CODE, (a) => a.bind(a.newLabel('div')).div(ecx).hlt());
  const state = tm.state();
  state.setGpr('rax', 7n);
  state.setGpr('rcx', 0n);
  state.setGpr('rsp', 0x1fff8n);
  state.rflags = 0x2c3n; // CF ZF SF IF
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handler + 1n);
  // The frame starts at RSP & ~15; #DE has no error code: five slots.
  t.is(state.gpr('rsp'), 0x1fff0n - 5n * 8n);
  t.deepEqual(readFrame(tm, state.gpr('rsp'), false), {
    rip: code.addressOf('div'),
    cs: BigInt(Selector.kernelCode),
    rflags: 0x2c3n | RFLAGS.RF,
    rsp: 0x1fff8n,
    ss: KERNEL_SS,
  });
  t.is(state.rflags, 0xc3n, 'interrupt gate clears IF (and RF) in the handler');
  t.is(state.get32('cs'), Selector.kernelCode);
});

test('#GP(0) from WRMSR to an unknown MSR: error code pushed, a trap gate keeps IF set', (t) => {
  // Method: WRMSR with ECX = 0x12345 at CPL 0; #GP goes through a trap gate whose handler halts.
  const tm = new TestMachine();
  haltingGate(tm, 13, { trap: true });
  const code = tm.assemble(CODE, (a) => a.mov(ecx, 0x12345).bind(a.newLabel('wrmsr')).wrmsr().hlt());
  const state = tm.state();
  state.rflags = 0x202n;
  t.is(tm.run(), RunStop.halted);
  t.is(state.gpr('rsp'), stackTop(0) - 6n * 8n);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, 0n);
  t.is(frame.rip, code.addressOf('wrmsr'));
  t.is(frame.rsp, stackTop(0));
  t.is(state.rflags & RFLAGS.IF, RFLAGS.IF, 'trap gate leaves IF alone');
});

test('#UD from UD2 pushes the RIP of UD2 and no error code', (t) => {
  // Method: UD2 after a NOP; the frame must be five slots with RIP = the UD2.
  const tm = new TestMachine();
  haltingGate(tm, 6);
  tm.assemble(CODE, (a) => a.nop().ud2());
  t.is(tm.run(), RunStop.halted);
  const state = tm.state();
  t.is(state.gpr('rsp'), stackTop(0) - 5n * 8n);
  t.is(readFrame(tm, state.gpr('rsp'), false).rip, CODE + 1n);
});

test('#PF on a not-present page: error code (W/R bit), CR2 = the linear address, faulting RIP', (t) => {
  // Method: a read and (separately) a write to an unmapped address at CPL 0.
  for (const write of [false, true]) {
    const tm = new TestMachine();
    haltingGate(tm, 14);
    const target = UNMAPPED + 0x123n;
    const code = tm.assemble(CODE, (a) => {
      a.mov(rdi, target).nop().bind(a.newLabel('access'));
      if (write) a.mov(qword(rdi), rax);
      else a.mov(rax, qword(rdi));
      a.hlt();
    });
    t.is(tm.run(), RunStop.halted);
    const state = tm.state();
    const frame = readFrame(tm, state.gpr('rsp'), true);
    t.is(frame.error, write ? 2n : 0n, 'P=0, W/R as accessed, U/S=0 at CPL 0');
    t.is(frame.rip, code.addressOf('access'), 'the MOV that faulted');
    t.is(state.get64('cr2'), target);
  }
});

test('INT3 and INT n are traps: the next RIP is pushed; IRETQ resumes there with RSP and RFLAGS restored', (t) => {
  // Method: STC; INT3; INT 0x40; HLT. Both handlers log the pushed RIP, the pushed RFLAGS and
  // their own RFLAGS, then IRETQ. #3 uses an interrupt gate, 0x40 a trap gate.
  const tm = new TestMachine();
  const logAndReturn = (a: Assembler): void => {
    a.mov(rax, qword(rsp)).mov(qword(rdi), rax);
    a.mov(rax, qword(rsp, 16)).mov(qword(rdi, 8), rax);
    a.pushfq().pop(rax).mov(qword(rdi, 16), rax);
    a.add(rdi, 24).iretq();
  };
  gate(tm, 3, logAndReturn);
  gate(tm, 0x40, logAndReturn, { trap: true });
  const code = tm.assemble(CODE, (a) => a.stc().int3().bind(a.newLabel('afterInt3')).int(0x40).bind(a.newLabel('afterInt')).hlt());
  const state = tm.state();
  state.setGpr('rdi', DATA);
  state.setGpr('rsp', 0x1fff8n);
  state.rflags = 0x202n;
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, code.addressOf('afterInt') + 1n, 'stopped at the final HLT');
  const log = Array.from({ length: 6 }, (_, k) => tm.read64(DATA + 8n * BigInt(k)));
  t.is(log[0], code.addressOf('afterInt3'));
  t.is(log[1], 0x203n, 'INT3 pushes RFLAGS without RF');
  t.is(log[2] & RFLAGS.IF, 0n, 'interrupt gate: IF clear in the handler');
  t.is(log[3], code.addressOf('afterInt'));
  t.is(log[4], 0x203n);
  t.is(log[5] & RFLAGS.IF, RFLAGS.IF, 'trap gate: IF still set in the handler');
  t.is(state.gpr('rsp'), 0x1fff8n, 'IRETQ restored the unaligned RSP');
  t.is(state.rflags, 0x203n, 'IRETQ restored RFLAGS (IF and CF)');
});

test('from ring 3: the interrupt switches to RSP0, pushes the user SS:RSP and enters CPL 0 with a null SS', (t) => {
  // Method: INT 0x80 through a DPL-3 gate at CPL 3; the handler halts at once.
  const tm = new TestMachine();
  haltingGate(tm, 0x80, { dpl: 3 });
  tm.assemble(CODE, (a) => a.int(0x80));
  startInRing3(tm, 0x202n, USER_STACK - 8n);
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  t.is(state.gpr('rsp'), RSP0 - 5n * 8n);
  t.deepEqual(readFrame(tm, state.gpr('rsp'), false), {
    rip: CODE + 2n,
    cs: BigInt(Selector.userCode),
    rflags: 0x202n,
    rsp: USER_STACK - 8n,
    ss: BigInt(Selector.userData),
  });
  t.is(state.cpl, 0);
  t.is(state.get32('cs'), Selector.kernelCode);
  t.is(state.get32('ss'), 0, 'SDM §6.14.4: SS is loaded with a null selector (RPL = new CPL)');
  t.is(tm.cpu().cpl, 0);
});

test('IRETQ from the ring-0 handler returns to ring 3 with the user CS, SS, RSP and RFLAGS', (t) => {
  // Method: ring-3 code does INT 0x80 then VMCALL; the handler records its RSP and IRETQs.
  const tm = new TestMachine();
  gate(tm, 0x80, (a) => a.mov(qword(absolute(DATA)), rsp).iretq(), { dpl: 3 });
  const code = tm.assemble(CODE, (a) => a.int(0x80).bind(a.newLabel('vmcall')).vmcall());
  startInRing3(tm, 0x203n, USER_STACK - 8n);
  const state = tm.state();
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().reason, ExitReason.vmcall);
  t.is(state.exit().rip, code.addressOf('vmcall'));
  t.is(tm.read64(DATA), RSP0 - 5n * 8n, 'the handler ran on the RSP0 stack');
  t.is(state.cpl, 3);
  t.is(tm.cpu().cpl, 3);
  t.is(state.get32('cs'), Selector.userCode);
  t.is(state.get32('ss'), Selector.userData);
  t.is(state.gpr('rsp'), USER_STACK - 8n);
  t.is(state.rflags, 0x203n);
});

test('IRETQ from ring 0 drops to ring 3 (hand-built frame); privileged instructions then #GP', (t) => {
  // Method: push SS, RSP, RFLAGS, CS, RIP for ring 3 and IRETQ; the ring-3 code runs CLI, which
  // must #GP (CPL 3 > IOPL 0) into a halting handler.
  const tm = new TestMachine();
  haltingGate(tm, 13);
  const user = 0x180000n;
  tm.assemble(user, (a) => a.cli());
  tm.assemble(CODE, (a) => {
    a.push(Selector.userData).push(Number(USER_STACK)).push(0x202).push(Selector.userCode);
    a.mov(rax, user).push(rax).iretq();
  });
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(state.gpr('rsp'), RSP0 - 6n * 8n, 'the #GP came from ring 3: RSP0 stack');
  t.deepEqual(frame, { error: 0n, rip: user, cs: BigInt(Selector.userCode), rflags: 0x202n | RFLAGS.RF, rsp: USER_STACK, ss: BigInt(Selector.userData) });
});

test('IST1 switches to the IST stack even at CPL 0, aligned down to 16', (t) => {
  // Method: IST1 in the TSS is set to 0xa008; INT 0x41 at CPL 0 through a gate with ist=1.
  const tm = new TestMachine();
  tm.write64(TSS + 0x24n, IST1 + 8n);
  haltingGate(tm, 0x41, { ist: 1 });
  tm.assemble(CODE, (a) => a.int(0x41));
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  t.is(state.gpr('rsp'), IST1 - 5n * 8n);
  const frame = readFrame(tm, state.gpr('rsp'), false);
  t.is(frame.rsp, stackTop(0), 'the interrupted RSP is pushed');
  t.is(frame.ss, KERNEL_SS);
  t.is(frame.rip, CODE + 2n);
});

test('IST also wins over RSP0 for an interrupt from ring 3', (t) => {
  // Method: INT 0x42 at CPL 3 through a DPL-3 gate with ist=1: the frame lands on IST1, not RSP0.
  const tm = new TestMachine();
  haltingGate(tm, 0x42, { ist: 1, dpl: 3 });
  tm.assemble(CODE, (a) => a.int(0x42));
  startInRing3(tm);
  t.is(tm.run(), RunStop.halted);
  t.is(tm.state().gpr('rsp'), IST1 - 5n * 8n);
  t.is(readFrame(tm, IST1 - 5n * 8n, false).ss, BigInt(Selector.userData));
});

test('INT n from ring 3 through a DPL-0 gate is #GP(vector*8+2) at the INT; a DPL-3 gate works', (t) => {
  // Method: INT 0x40 (gate DPL 0) at CPL 3 must raise #GP with error 0x40*8+2 (IDT bit, EXT=0)
  // pushing the RIP of the INT itself; then the same with DPL 3 reaches the handler.
  const tm = new TestMachine();
  haltingGate(tm, 13);
  const handler = haltingGate(tm, 0x40, { dpl: 0 });
  tm.assemble(CODE, (a) => a.int(0x40));
  startInRing3(tm);
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, 0x40n * 8n + 2n);
  t.is(frame.rip, CODE, 'the INT faults: its own RIP is pushed');
  t.is(frame.cs, BigInt(Selector.userCode));

  const again = new TestMachine();
  haltingGate(again, 0x40, { dpl: 3 });
  again.assemble(CODE, (a) => a.int(0x40));
  startInRing3(again);
  t.is(again.run(), RunStop.halted);
  t.is(again.state().rip, handler + 1n);
  t.is(again.state().cpl, 0);
});

test('INT3 from ring 3 through a DPL-0 gate is #GP(3*8+2) with the RIP of the INT3', (t) => {
  // Method: SDM INT3 — "#GP if the gate DPL < CPL"; the #GP is a fault of the INT3 instruction.
  const tm = new TestMachine();
  haltingGate(tm, 13);
  haltingGate(tm, 3, { dpl: 0 });
  tm.assemble(CODE, (a) => a.nop().int3());
  startInRing3(tm);
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  t.is(state.rip, handlerAt(13) + 1n, 'in the #GP handler');
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, 3n * 8n + 2n);
  t.is(frame.rip, CODE + 1n);
});

test('IRETQ to CPL 3 with a ring-0 stack selector is #GP(selector)', (t) => {
  // Method: a hand-built frame with CS=0x33 but SS=0x18 (DPL 0 data): SDM IRET — SS RPL must equal
  // the return CS RPL, else #GP(SS selector).
  const tm = new TestMachine();
  haltingGate(tm, 13);
  tm.assemble(CODE, (a) => {
    a.push(Selector.kernelData).push(Number(USER_STACK)).push(0x202).push(Selector.userCode);
    a.mov(eax, 0x180000).push(rax).bind(a.newLabel('iret')).iretq();
  });
  const state = tm.state();
  t.is(tm.run(), RunStop.halted);
  const frame = readFrame(tm, state.gpr('rsp'), true);
  t.is(frame.error, BigInt(Selector.kernelData));
  t.is(frame.cs, BigInt(Selector.kernelCode), 'still at CPL 0');
  t.is(state.cpl, 0);
});

test('IRETQ at CPL 3 cannot return to ring 0 (#GP(selector)) nor change IOPL or IF', (t) => {
  // Method: SDM IRET — return CS RPL < CPL is #GP(CS selector); at CPL 3 with IOPL 0 the popped
  // IOPL and IF are ignored while other flags (CF, DF) are taken.
  const tm = new TestMachine();
  haltingGate(tm, 13);
  tm.assemble(CODE, (a) => {
    a.push(Selector.kernelData).push(Number(USER_STACK)).push(0x202).push(Selector.kernelCode);
    a.mov(eax, 0x180000).push(rax).iretq();
  });
  startInRing3(tm);
  t.is(tm.run(), RunStop.halted);
  const frame = readFrame(tm, tm.state().gpr('rsp'), true);
  t.is(frame.error, BigInt(Selector.kernelCode));
  t.is(frame.cs, BigInt(Selector.userCode));

  const flags = new TestMachine();
  const target = 0x180000n;
  flags.assemble(target, (a) => a.vmcall());
  flags.assemble(CODE, (a) => {
    a.push(Selector.userData).push(Number(USER_STACK)).push(0x3403).push(Selector.userCode); // IOPL 3, DF, CF, IF=0
    a.mov(eax, Number(target)).push(rax).iretq();
  });
  startInRing3(flags, 0x202n, USER_STACK - 0x100n);
  t.is(flags.run(), RunStop.exit);
  t.is(flags.state().exit().rip, target);
  t.is(flags.state().rflags, 0x603n, 'IOPL stays 0 and IF stays 1; DF and CF come from the frame');
});
