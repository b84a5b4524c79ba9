/**
 * More system instructions (SDM Vol. 2; VM exits per Vol. 3C): LGDT/LIDT/SGDT/SIDT and LTR,
 * INVLPG, VMCALL, XSETBV, and the CLI/STI and POPF privilege rules.
 */
import test from 'ava';
import { type Assembler, absolute, ax, cr4, eax, ecx, edx, mem, qword, r8, r9, rax, rdi } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { DtrKind, ExitControl, ExitReason } from '../../src/cpu/state-block.ts';
import { GDT_BYTES, Selector } from '../../src/machine/long-mode.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { CODE, GDT, IDT, TestMachine } from '../support/test-machine.ts';
import { DATA, RFLAGS, UNMAPPED, fault, runToVmcall, startInRing3 } from './helpers.ts';

// --- descriptor tables ---------------------------------------------------------------------------

test('SGDT/SIDT store limit and base; LGDT/LIDT load them from memory', (t) => {
  // Method: SGDT/SIDT to DATA, then LIDT/LGDT of new tables (a copy of the GDT at 0x6000), then
  // SGDT/SIDT again. Each operand is a 2-byte limit followed by an 8-byte base.
  const tm = new TestMachine();
  tm.machine.memory.write(0x6000, tm.machine.memory.read(Number(GDT), GDT_BYTES));
  tm.machine.memory.write(Number(DATA) + 0x40, new Uint8Array([0xff, 0x07, 0x00, 0x50, 0, 0, 0, 0, 0, 0]));
  tm.machine.memory.write(Number(DATA) + 0x50, new Uint8Array([0x4f, 0x00, 0x00, 0x60, 0, 0, 0, 0, 0, 0]));
  const state = runToVmcall(tm, (a) => {
    a.sgdt(mem(null, DATA)).sidt(mem(null, DATA + 0x10n));
    a.lidt(mem(null, DATA + 0x40n)).lgdt(mem(null, DATA + 0x50n));
    a.sgdt(mem(null, DATA + 0x20n)).sidt(mem(null, DATA + 0x30n));
    a.vmcall();
  });
  const limitBase = (at: bigint): [number, bigint] => [Number(tm.read64(at) & 0xffffn), tm.read64(at + 2n)];
  t.deepEqual(limitBase(DATA), [GDT_BYTES - 1, GDT]);
  t.deepEqual(limitBase(DATA + 0x10n), [0xfff, IDT]);
  t.deepEqual(limitBase(DATA + 0x20n), [0x4f, 0x6000n]);
  t.deepEqual(limitBase(DATA + 0x30n), [0x7ff, 0x5000n]);
  t.is(state.get64('idtrBase'), 0x5000n);
  t.is(state.get32('idtrLimit'), 0x7ff);
  t.is(state.get64('gdtrBase'), 0x6000n);
});

test('LGDT/LIDT at CPL 3 are #GP(0); SGDT/SIDT are allowed at CPL 3 (no UMIP)', (t) => {
  // Method: SDM LGDT/LIDT "#GP(0) if CPL ≠ 0"; SGDT/SIDT have no privilege check without CR4.UMIP.
  for (const build of [(a: Assembler) => a.lgdt(mem(null, DATA)), (a: Assembler) => a.lidt(mem(null, DATA))]) {
    const tm = new TestMachine();
    startInRing3(tm);
    t.deepEqual(fault(tm, build), { vector: 13, error: 0n, rip: CODE });
  }
  const tm = new TestMachine();
  startInRing3(tm);
  runToVmcall(tm, (a) => a.sgdt(mem(null, DATA)).vmcall());
  t.is(tm.read64(DATA + 2n), GDT);
});

test('descriptor-table exiting: LGDT/LIDT/SGDT/SIDT exit before any effect with the kind and the operand address', (t) => {
  // Method: ExitControl.dtr; each instruction on an operand at DATA+8. The table registers and the
  // memory operand must be untouched; RIP stays on the instruction.
  const kinds: Array<[number, (a: Assembler, m: ReturnType<typeof mem>) => Assembler]> = [
    [DtrKind.lgdt, (a, m) => a.lgdt(m)],
    [DtrKind.lidt, (a, m) => a.lidt(m)],
    [DtrKind.sgdt, (a, m) => a.sgdt(m)],
    [DtrKind.sidt, (a, m) => a.sidt(m)],
  ];
  for (const [kind, emit] of kinds) {
    const tm = new TestMachine({ exitControls: ExitControl.dtr });
    tm.write64(DATA + 8n, 0x1122_3344_5566_7788n);
    const code = tm.assemble(CODE, (a) => a.mov(rdi, DATA).bind(a.newLabel('insn')) && emit(a, mem(rdi, 8)));
    t.is(tm.run(), RunStop.exit);
    const state = tm.state();
    const exit = state.exit();
    t.is(exit.reason, ExitReason.dtr);
    t.is(exit.info0, kind);
    t.is(exit.gla, DATA + 8n);
    t.is(exit.rip, code.addressOf('insn'));
    t.is(exit.instructionLength, 4);
    t.is(tm.read64(DATA + 8n), 0x1122_3344_5566_7788n, 'memory untouched');
    t.is(state.get64('gdtrBase'), GDT);
    t.is(state.get64('idtrBase'), IDT);
  }
});

test('descriptor-table exiting has priority over a page fault on the operand', (t) => {
  // Method: LIDT of an unmapped operand with ExitControl.dtr: the exit does not depend on the
  // operand's contents, so it wins over the #PF of the operand fetch (SDM 3C §25.1.1).
  const tm = new TestMachine({ exitControls: ExitControl.dtr, exceptionBitmap: 1 << 14 });
  tm.assemble(CODE, (a) => a.lidt(mem(null, UNMAPPED)));
  t.is(tm.run(), RunStop.exit);
  t.is(tm.state().exit().reason, ExitReason.dtr);
  t.is(tm.state().exit().gla, UNMAPPED);
});

test('LTR loads TR selector, base (64-bit) and limit from a TSS descriptor and marks it busy; a busy TSS is #GP', (t) => {
  // Method: an available 64-bit TSS descriptor (type 9) at selector 0x40 with base
  // 0xffff8000_12345678 and limit 0x2067; LTR AX, then LTR again must #GP(0x40) (type is now 0xB).
  const tm = new TestMachine();
  const base = 0xffff_8000_1234_5678n;
  const limit = 0x2067n;
  const low = (limit & 0xffffn) | ((base & 0xffffffn) << 16n) | (0x89n << 40n) | (((limit >> 16n) & 0xfn) << 48n) | (((base >> 24n) & 0xffn) << 56n);
  tm.write64(GDT + 0x40n, low);
  tm.write64(GDT + 0x48n, base >> 32n);
  const state = runToVmcall(tm, (a) => a.mov(eax, Selector.tss).ltr(ax).vmcall());
  t.is(state.get32('tr'), Selector.tss);
  t.is(state.get64('trBase'), base);
  t.is(state.get32('trLimit'), 0x2067);
  t.is((tm.read64(GDT + 0x40n) >> 40n) & 0xfn, 0xbn, 'busy 64-bit TSS');

  const again = new TestMachine();
  again.write64(GDT + 0x40n, low | (0x2n << 40n));
  t.deepEqual(fault(again, (a) => a.mov(eax, Selector.tss).ltr(ax)), { vector: 13, error: 0x40n, rip: CODE + 5n });
  const user = new TestMachine();
  startInRing3(user);
  t.deepEqual(fault(user, (a) => a.mov(eax, Selector.tss).ltr(ax)), { vector: 13, error: 0n, rip: CODE + 5n });
  t.deepEqual(fault(new TestMachine(), (a) => a.xor(eax, eax).ltr(ax)), { vector: 13, error: 0n, rip: CODE + 2n }, 'null selector');
});

test('LTR with descriptor-table exiting exits with the selector and leaves TR alone', (t) => {
  // Method: ExitControl.dtr; LTR AX with AX = 0x40.
  const tm = new TestMachine({ exitControls: ExitControl.dtr });
  tm.state().set32('tr', 0);
  tm.assemble(CODE, (a) => a.mov(eax, Selector.tss).ltr(ax));
  t.is(tm.run(), RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.dtr);
  t.is(exit.info0, DtrKind.ltr);
  t.is(exit.value, BigInt(Selector.tss));
  t.is(tm.state().get32('tr'), 0);
});

// --- INVLPG, VMCALL, XSETBV ------------------------------------------------------------------------

test('INVLPG: #GP(0) at CPL 3; at CPL 0 the next access uses the changed PTE', (t) => {
  // Method: read a page (caching its translation), repoint its PTE to another frame, INVLPG, read again.
  const user = new TestMachine();
  startInRing3(user);
  t.deepEqual(fault(user, (a) => a.invlpg(mem(null, DATA))), { vector: 13, error: 0n, rip: CODE });

  const tm = new TestMachine();
  tm.write64(DATA, 0xaaaan);
  tm.write64(DATA + 0x1000n, 0xbbbbn);
  const leaf = tm.tables.leafEntry(DATA);
  tm.assemble(CODE, (a) => a.mov(r8, qword(absolute(DATA))).vmcall().invlpg(mem(null, DATA)).mov(r9, qword(absolute(DATA))).vmcall());
  t.is(tm.run(), RunStop.exit);
  t.is(tm.state().gpr('r8'), 0xaaaan);
  tm.machine.memory.write64(leaf, (DATA + 0x1000n) | Pte.present | Pte.writable | Pte.user);
  tm.cpu().skipInstruction();
  t.is(tm.cpu().run(100), RunStop.exit, 'no VM entry: the TLB is not flushed by enter()');
  t.is(tm.state().gpr('r9'), 0xbbbbn);
});

test('VMCALL exits at CPL 0 and at CPL 3, RIP on the VMCALL, instruction length 3', (t) => {
  // Method: VMCALL after a NOP in each ring.
  for (const ring of [0, 3]) {
    const tm = new TestMachine();
    if (ring === 3) startInRing3(tm);
    tm.assemble(CODE, (a) => a.nop().vmcall());
    t.is(tm.run(), RunStop.exit);
    const exit = tm.state().exit();
    t.is(exit.reason, ExitReason.vmcall);
    t.is(exit.rip, CODE + 1n);
    t.is(exit.instructionLength, 3);
    t.is(tm.state().rip, CODE + 1n);
    t.is(tm.state().cpl, ring);
  }
});

test('XSETBV: #UD without CR4.OSXSAVE; with it XCR0=1 is accepted, other values and indexes are #GP(0)', (t) => {
  // Method: SDM XSETBV; CPUID.(EAX=0DH,ECX=0):EAX = 1 (x87 only), so any other XCR0 bit is
  // unsupported (#GP), bit 0 must be set, and only XCR0 (ECX=0) exists.
  t.deepEqual(fault(new TestMachine(), (a) => a.xor(ecx, ecx).mov(eax, 1).xor(edx, edx).xsetbv()), { vector: 6, rip: CODE + 9n });
  const enable = (a: Assembler): Assembler => a.mov(rax, 0x40020).mov(cr4, rax);
  const ok = new TestMachine();
  const state = runToVmcall(ok, (a) => enable(a).xor(ecx, ecx).mov(eax, 1).xor(edx, edx).xsetbv().vmcall());
  t.is(state.get64('xcr0'), 1n);
  for (const [index, lo, hi] of [[0, 3, 0], [0, 7, 0], [0, 0, 0], [0, 1, 1], [1, 1, 0]]) {
    const tm = new TestMachine();
    const result = fault(tm, (a) => enable(a).mov(ecx, index).mov(eax, lo).mov(edx, hi).xsetbv());
    t.is(result?.vector, 13, `ECX=${index} EDX:EAX=${hi}:${lo}`);
    t.is(result?.error, 0n);
  }
  const user = new TestMachine();
  user.state().set64('cr4', 0x40020n);
  startInRing3(user);
  t.is(fault(user, (a) => a.xor(ecx, ecx).mov(eax, 1).xor(edx, edx).xsetbv())?.vector, 13, 'CPL 3');
});

test('XSETBV exiting: exits with the XCR index and EDX:EAX before the value is checked', (t) => {
  // Method: ExitControl.xcrWrite; XSETBV of an invalid value exits anyway; XCR0 is unchanged.
  const tm = new TestMachine({ exitControls: ExitControl.xcrWrite });
  tm.state().set64('cr4', 0x40020n);
  tm.assemble(CODE, (a) => a.mov(ecx, 0).mov(eax, 6).mov(edx, 2).xsetbv());
  t.is(tm.run(), RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.xcrWrite);
  t.is(exit.info0, 0);
  t.is(exit.value, (2n << 32n) | 6n);
  t.is(exit.instructionLength, 3);
  t.is(tm.state().get64('xcr0'), 0n);
});

// --- flags and privilege ---------------------------------------------------------------------------

test('CLI/STI at CPL 3 with IOPL 0 are #GP(0); with IOPL 3 they work', (t) => {
  // Method: SDM CLI/STI "#GP(0) if CPL > IOPL".
  for (const build of [(a: Assembler) => a.cli(), (a: Assembler) => a.sti()]) {
    const tm = new TestMachine();
    startInRing3(tm, 0x202n);
    t.deepEqual(fault(tm, build), { vector: 13, error: 0n, rip: CODE });
  }
  const tm = new TestMachine();
  startInRing3(tm, 0x3202n);
  const state = runToVmcall(tm, (a) => a.cli().pushfq().pop(r8).sti().vmcall());
  t.is(state.gpr('r8') & RFLAGS.IF, 0n);
  t.is(state.rflags & RFLAGS.IF, RFLAGS.IF);
});

test('POPFQ at CPL 3 cannot change IF or IOPL but changes CF/DF/AC; at CPL 0 it changes both', (t) => {
  // Method: POPFQ of IOPL=3, IF=0, DF, CF, AC with RFLAGS = IF before; PUSHFQ reads the result.
  const value = RFLAGS.IOPL | RFLAGS.DF | RFLAGS.CF | RFLAGS.AC | 2n;
  const build = (a: Assembler): Assembler => a.mov(rax, value).push(rax).popfq().pushfq().pop(r8).vmcall();
  const user = new TestMachine();
  startInRing3(user, 0x202n);
  t.is(runToVmcall(user, build).gpr('r8'), RFLAGS.IF | RFLAGS.DF | RFLAGS.CF | RFLAGS.AC | 2n);
  const kernel = new TestMachine();
  kernel.state().rflags = 0x202n;
  t.is(runToVmcall(kernel, build).gpr('r8'), value);
});
