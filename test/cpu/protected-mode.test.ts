/**
 * Goal: 32-bit protected mode runs the way the SDM describes for 32-bit code: one-byte INC/DEC
 * (0x40–0x4F are not REX), PUSHAD/POPAD, 32-bit CALL/RET and stack, disp32 addressing that is
 * absolute (no RIP-relative), 16-bit addressing with 0x67, addresses wrapping at 4 GiB, events
 * delivered through 32-bit IDT gates with IRETD back, and anything the 32-bit subset lacks is a
 * clean #UD. Method: hand-encoded 32-bit code on a PAE machine (see test/support/pae-machine.ts);
 * registers, the stack frame and guest memory are read after VMCALL or exception exits.
 */
import test, { type ExecutionContext } from 'ava';
import { RunStop, type RunStopCode } from '../../src/cpu/cpu.ts';
import { ExitReason, UdReason } from '../../src/cpu/state-block.ts';
import { PfError, Vector } from '../../src/cpu/stop.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { Selector32 } from '../../src/machine/protected-mode.ts';
import type { GprName } from '../../src/machine/vcpu-state.ts';
import { CODE32, DATA32, I32, PaeMachine, STACK32_TOP, code32, imm32 } from '../support/pae-machine.ts';

const HANDLER = 0x180000;
const UD_EXITS = (1 << Vector.UD) | (1 << Vector.GP) | (1 << Vector.PF);

function expectVmcall(t: ExecutionContext, tm: PaeMachine, why: RunStopCode, rip?: number): void {
  t.is(why, RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.vmcall, `expected VMCALL, got reason ${exit.reason} vector ${exit.info0} at 0x${exit.rip.toString(16)}`);
  if (rip !== undefined) t.is(exit.rip, BigInt(rip), 'VMCALL address');
}

const reg = (tm: PaeMachine, name: GprName): bigint => tm.state().gpr(name);

test('0x40–0x4F are one-byte INC/DEC of 32-bit registers (with 0x66, 16-bit), not REX prefixes; CF is kept', (t) => {
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  const state = tm.state();
  state.setGpr('rax', 0xffffffffn);
  state.setGpr('rcx', 0x10n);
  state.setGpr('rdx', 0xaaaa0000n);
  state.setGpr('rdi', 0n);
  state.rflags = 0x3n; // CF set
  // inc eax ; inc ecx ; inc ecx ; 66 dec dx ; dec edi ; 48 90 = dec eax, nop (REX.W NOP in 64-bit code)
  tm.write(CODE32, code32([0x40], [0x41], [0x41], [0x66, 0x4a], [0x4f], [0x48, 0x90], I32.vmcall));
  expectVmcall(t, tm, tm.run(), CODE32 + 8);
  t.is(reg(tm, 'rax'), 0xffffffffn, 'EAX: 0xffffffff + 1 − 1');
  t.is(reg(tm, 'rcx'), 0x12n);
  t.is(reg(tm, 'rdx'), 0xaaaaffffn, 'DX only');
  t.is(reg(tm, 'rdi'), 0xffffffffn, 'EDI wrapped, zero-extended');
  t.is(state.rflags & 0x1n, 0x1n, 'CF untouched by INC/DEC');
  t.is(state.rflags & 0x80n, 0x80n, 'SF from the last DEC (0xffffffff)');
});

test('PUSHAD pushes EAX..EDI with the old ESP; POPAD restores all but ESP, whose slot it skips', (t) => {
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  const state = tm.state();
  const names: GprName[] = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi'];
  names.forEach((name, n) => {
    if (name !== 'rsp') state.setGpr(name, 0x11111111n * BigInt(n + 1));
  });
  // pushad ; vmcall ; (test scribbles the registers and the ESP slot) ; popad ; vmcall
  tm.write(CODE32, code32([0x60], I32.vmcall, [0x61], I32.vmcall));
  expectVmcall(t, tm, tm.run(), CODE32 + 1);
  const esp = Number(reg(tm, 'rsp'));
  t.is(esp, STACK32_TOP - 32);
  names.forEach((name, n) => {
    const expected = name === 'rsp' ? STACK32_TOP : 0x11111111 * (n + 1);
    t.is(tm.read32(STACK32_TOP - 4 * (n + 1)) >>> 0, expected >>> 0, `${name} slot`);
  });
  for (const name of names) if (name !== 'rsp') state.setGpr(name, 0xdeadn);
  tm.machine.memory.write32(STACK32_TOP - 20, 0x1234); // the ESP slot
  const cpu = tm.cpu();
  cpu.skipInstruction();
  cpu.enter();
  expectVmcall(t, tm, cpu.run(100), CODE32 + 5);
  names.forEach((name, n) => {
    t.is(reg(tm, name), name === 'rsp' ? BigInt(STACK32_TOP) : BigInt((0x11111111 * (n + 1)) >>> 0), name);
  });
});

test('CALL/RET/PUSH/LEAVE move ESP by 4 and push 32-bit return addresses', (t) => {
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  const sub = CODE32 + 0x40;
  // call sub ; vmcall        sub: push ebp ; mov ebp, esp ; push 0x12345678 ; vmcall ; leave ; ret
  const call = [0xe8, ...imm32(sub - (CODE32 + 5))];
  tm.write(CODE32, code32(call, I32.vmcall));
  tm.write(sub, code32([0x55], [0x89, 0xe5], [0x68, ...imm32(0x12345678)], I32.vmcall, [0xc9], I32.ret));
  tm.state().setGpr('rbp', 0xabcdn);
  expectVmcall(t, tm, tm.run(), sub + 8);
  t.is(Number(reg(tm, 'rsp')), STACK32_TOP - 12);
  t.is(tm.read32(STACK32_TOP - 4), CODE32 + 5, 'return address');
  t.is(tm.read32(STACK32_TOP - 8), 0xabcd, 'saved EBP');
  t.is(tm.read32(STACK32_TOP - 12), 0x12345678);
  expectVmcall(t, tm, tm.resume(), CODE32 + 5);
  t.is(Number(reg(tm, 'rsp')), STACK32_TOP);
  t.is(reg(tm, 'rbp'), 0xabcdn);
});

test('ModRM disp32 is an absolute address (no RIP-relative), 0x67 gives 16-bit addressing, and addresses wrap at 4 GiB', (t) => {
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  tm.tables.map(0xfffff000n, 0x502000, Pte.writable);
  tm.cpu();
  const memory = tm.machine.memory;
  memory.write32(DATA32, 0x600d);
  memory.write32(0x10, 0xfeed);
  memory.write32(0x502ffc, 0x44332211);
  memory.write32(0, 0x88776655);
  const state = tm.state();
  state.setGpr('rbx', 0xfffff000n);
  state.setGpr('rsi', 0xffffffffn);
  // reload CR3 (uses ECX) ; mov ecx, 0x1010 ; mov eax, [DATA32] ; mov edx, [ebx+ecx] ; mov edi, [0xfffffffe] ;
  // lea bp, [si+0x20] (66 67 8d 6c 20) ; vmcall
  tm.write(CODE32, code32(I32.reloadCr3, I32.movEcxImm(0x1010), [0x8b, 0x05, ...imm32(DATA32)], [0x8b, 0x14, 0x0b], [0x8b, 0x3d, ...imm32(0xfffffffe)], [0x66, 0x67, 0x8d, 0x6c, 0x20], I32.vmcall));
  expectVmcall(t, tm, tm.run());
  t.is(reg(tm, 'rax'), 0x600dn, 'disp32 read DATA32 wherever EIP is');
  t.is(reg(tm, 'rdx'), 0xfeedn, '0xfffff000 + 0x1010 wraps to 0x10');
  t.is(reg(tm, 'rdi'), 0x66554433n, 'a dword at 0xfffffffe reads 0xfffffffe..0xffffffff then 0..1');
  t.is(reg(tm, 'rbp') & 0xffffn, 0x1fn, '16-bit address SI + 0x20 wraps at 64 KiB');
});

test('LOOP counts ECX, and CX with 0x67', (t) => {
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  const state = tm.state();
  state.setGpr('rcx', 0x10003n);
  // top: inc eax ; 67 loop top (CX: 3 rounds) ; inc edx ; loop top2... keep it to one of each:
  // 0: inc eax ; 1: 67 e2 fc (loop 0, CX) ; 4: vmcall
  tm.write(CODE32, code32([0x40], [0x67, 0xe2, 0xfc], I32.vmcall));
  expectVmcall(t, tm, tm.run(), CODE32 + 4);
  t.is(reg(tm, 'rax'), 3n, 'three rounds: CX ran out, the high half of ECX did not count');
  t.is(reg(tm, 'rcx'), 0x10000n);
  state.setGpr('rcx', 0x10003n);
  state.setGpr('rax', 0n);
  state.rip = BigInt(CODE32);
  tm.write(CODE32, code32([0x40], [0xe2, 0xfd], I32.vmcall));
  expectVmcall(t, tm, tm.run(1_000_000), CODE32 + 3);
  t.is(reg(tm, 'rax'), 0x10003n, 'ECX rounds');
});

test('INT n goes through a 32-bit interrupt gate (EFLAGS, CS, EIP pushed; IF cleared) and IRETD returns', (t) => {
  for (const trap of [false, true]) {
    const tm = new PaeMachine();
    tm.setGate(0x30, HANDLER, { trap });
    // handler: inc eax ; vmcall ; iretd
    tm.write(HANDLER, code32([0x40], I32.vmcall, I32.iretd));
    // mov eax, 5 ; int 0x30 ; vmcall
    tm.write(CODE32, code32(I32.movEaxImm(5), [0xcd, 0x30], I32.vmcall));
    tm.state().rflags = 0x202n;
    expectVmcall(t, tm, tm.run(), HANDLER + 1);
    const esp = Number(reg(tm, 'rsp'));
    t.is(esp, STACK32_TOP - 12, 'three dwords on the same stack');
    t.is(tm.read32(esp), CODE32 + 7, 'EIP after INT');
    t.is(tm.read32(esp + 4), Selector32.kernelCode, 'CS');
    t.is(tm.read32(esp + 8), 0x202, 'EFLAGS with IF');
    t.is(tm.state().rflags & 0x200n, trap ? 0x200n : 0n, trap ? 'a trap gate keeps IF' : 'an interrupt gate clears IF');
    t.is(reg(tm, 'rax'), 6n);
    expectVmcall(t, tm, tm.resume(), CODE32 + 7);
    t.is(Number(reg(tm, 'rsp')), STACK32_TOP, 'IRETD popped the frame');
    t.is(tm.state().rflags & 0x200n, 0x200n, 'IF back');
  }
});

test('a #PF is delivered through its 32-bit gate with the error code pushed and CR2 loaded', (t) => {
  const tm = new PaeMachine();
  tm.setGate(Vector.PF, HANDLER);
  // handler: mov eax, cr2 ; pop ecx (the error code) ; vmcall
  tm.write(HANDLER, code32([0x0f, 0x20, 0xd0], [0x59], I32.vmcall));
  // mov ebx, 0x900000 (not mapped) ; mov [ebx], eax
  tm.write(CODE32, code32(I32.movEbxImm(0x900000), I32.storeEbxEax, I32.vmcall));
  expectVmcall(t, tm, tm.run(), HANDLER + 4);
  t.is(reg(tm, 'rax'), 0x900000n, 'CR2');
  t.is(tm.state().get64('cr2'), 0x900000n);
  t.is(reg(tm, 'rcx'), BigInt(PfError.write), 'error code: write to a not-present page');
  const esp = Number(reg(tm, 'rsp'));
  t.is(tm.read32(esp), CODE32 + 5, 'EIP of the faulting instruction');
  t.is(tm.read32(esp + 8) & 0x10000, 0x10000, 'RF set in the pushed EFLAGS of a fault');
});

test('a gate to a 64-bit or non-flat code segment, and a 16-bit gate, are #GP with the IDT error code', (t) => {
  const cases: Array<[string, (tm: PaeMachine) => void]> = [
    ['16-bit gate', (tm) => tm.write64(0x1000 + 0x30 * 8, tm.read64(0x1000 + 0x30 * 8) & ~(1n << 43n))],
    ['L=1 code segment', (tm) => tm.write64(0x3000 + 8, 0x00af9a000000ffffn)],
    ['code segment base 0x10000', (tm) => tm.write64(0x3000 + 8, 0x00cf9a010000ffffn)],
  ];
  for (const [what, spoil] of cases) {
    const tm = new PaeMachine({ exceptionBitmap: 1 << Vector.GP });
    tm.setGate(0x30, HANDLER);
    tm.write(HANDLER, code32(I32.vmcall));
    tm.write(CODE32, code32([0xcd, 0x30], I32.vmcall));
    spoil(tm);
    t.is(tm.run(), RunStop.exit);
    const exit = tm.state().exit();
    t.is(exit.reason, ExitReason.exception, what);
    t.is(exit.info0, Vector.GP, what);
    const error = Number(exit.value & 0xffffffffn);
    t.is(error, what === '16-bit gate' ? 0x30 * 8 + 2 : Selector32.kernelCode, `${what}: error code`);
  }
});

test('what the 32-bit subset lacks is a clean #UD (reason: unsupported), never 64-bit behaviour', (t) => {
  const cases: Array<[string, number[]]> = [
    ['far JMP ptr16:32', [0xea, ...imm32(CODE32), 0x08, 0x00]],
    ['MOV DS, AX', [0x8e, 0xd8]],
    ['PUSH DS', [0x1e]],
    ['POP ES', [0x07]],
    ['DAA', [0x27]],
    ['PUSHAW (16-bit PUSHA)', [0x66, 0x60]],
    ['16-bit RET', [0x66, 0xc3]],
    ['REP MOVSB with 16-bit addressing', [0x67, 0xf3, 0xa4]],
  ];
  for (const [what, bytes] of cases) {
    const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
    tm.write(CODE32, code32(bytes, I32.vmcall));
    t.is(tm.run(), RunStop.exit);
    const exit = tm.state().exit();
    t.is(exit.reason, ExitReason.exception, what);
    t.is(exit.info0, Vector.UD, `${what}: #UD`);
    t.is(exit.rip, BigInt(CODE32), `${what}: at the instruction`);
    t.is(tm.state().lastUd().reason, UdReason.unsupported, `${what}: reported as unsupported`);
  }
  // SYSCALL exists in 32-bit code but is #UD outside 64-bit mode on Intel CPUs.
  const tm = new PaeMachine({ exceptionBitmap: UD_EXITS });
  tm.state().set64('efer', tm.state().get64('efer') | 1n);
  tm.write(CODE32, code32([0x0f, 0x05], I32.vmcall));
  t.is(tm.run(), RunStop.exit);
  t.is(tm.state().exit().info0, Vector.UD, 'SYSCALL');
});

test('an external interrupt wakes HLT through a 32-bit gate; a #PF whose gate is not present becomes #DF with error code 0', (t) => {
  const tm = new PaeMachine();
  tm.setGate(0x40, HANDLER);
  tm.write(HANDLER, code32([0x40], I32.vmcall));
  // sti ; hlt ; vmcall
  tm.write(CODE32, code32([0xfb], I32.hlt, I32.vmcall));
  t.is(tm.run(), RunStop.halted);
  tm.state().set32('pendingInterrupt', 0x40);
  expectVmcall(t, tm, tm.run(), HANDLER + 1);
  const esp = Number(reg(tm, 'rsp'));
  t.is(tm.read32(esp), CODE32 + 2, 'EIP after HLT');
  t.is(tm.read32(esp + 8) & 0x200, 0x200, 'IF was set');

  const df = new PaeMachine();
  df.setGate(Vector.DF, HANDLER);
  df.setGate(Vector.PF, HANDLER + 0x100, { dpl: 0 });
  df.write64(0x1000 + Vector.PF * 8, df.read64(0x1000 + Vector.PF * 8) & ~(1n << 47n)); // not present
  df.write(HANDLER, code32([0x59], I32.vmcall)); // pop ecx (the #DF error code) ; vmcall
  df.write(CODE32, code32(I32.movEbxImm(0x900000), I32.loadEaxEbx, I32.vmcall));
  expectVmcall(t, df, df.run(), HANDLER + 1);
  t.is(reg(df, 'rcx'), 0n, '#DF pushes 0');
  t.is(df.read32(Number(reg(df, 'rsp'))), CODE32 + 5, 'the EIP of the instruction whose #PF could not be delivered');
  t.is(df.state().get64('cr2'), 0x900000n, 'CR2 loaded by the #PF');
});
