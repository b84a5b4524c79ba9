/**
 * Goal: EPT violations are precise VM exits with the exit record the SDM describes (Vol. 3C
 * ch. 28 "VM exits", §28.2.1 exit qualification for EPT violations; ch. 29 EPT), and the
 * hypervisor-side controls around them (stepIgnoringEpt, skipInstruction, rights that apply
 * only at VM entry) do what HVMI expects. Method: guest programs on the test machine touching
 * pages whose committed EPT rights the test restricts; each exit is checked field by field, and
 * the vCPU state and guest memory are compared with a snapshot taken before the run.
 */
import test, { type ExecutionContext } from 'ava';
import { ebx, mem, qword, rax, rbx, rcx, type AssembledCode } from '../../src/asm/index.ts';
import { RunStop, type RunStopCode } from '../../src/cpu/cpu.ts';
import { StringEmulation } from '../../src/cpu/ops/string.ts';
import { EptBits, EventInfo, ExitAccess, ExitEptFlags, ExitReason } from '../../src/cpu/state-block.ts';
import { Vector } from '../../src/cpu/stop.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { GPR_NAMES, type ExitRecord, type GprName } from '../../src/machine/vcpu-state.ts';
import { CODE, IDT, TestMachine, stackTop } from '../support/test-machine.ts';

/** A kernel linear address mapped to guest-physical pages that differ from it (GLA ≠ GPA). */
const KERNEL = 0xffff800000005000n;
const PAGE_A = 0x300000; // KERNEL
const PAGE_B = 0x305000; // KERNEL + 0x1000
const R = EptBits.read;
const W = EptBits.write;
const X = EptBits.execute;
/** RFLAGS with CF PF AF ZF SF OF set: any flag-writing instruction that ran would change it. */
const FLAGS = 0x8d7n;

function machine(): TestMachine {
  const tm = new TestMachine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable);
  tm.tables.map(KERNEL + 0x1000n, PAGE_B, Pte.writable);
  tm.state().rflags = FLAGS;
  return tm;
}

interface Snapshot {
  gprs: Record<GprName, bigint>;
  rip: bigint;
  rflags: bigint;
  retired: bigint;
  memory: Array<[number, Uint8Array]>;
}

/** Registers, RIP, RFLAGS, the retired count and the given guest-physical pages. */
function snapshot(tm: TestMachine, pages: number[]): Snapshot {
  const state = tm.state();
  return {
    gprs: state.gprs(),
    rip: state.rip,
    rflags: state.rflags,
    retired: state.get64('retired'),
    memory: pages.map((gpa) => [gpa, tm.machine.memory.read(gpa, 0x1000)]),
  };
}

/** Asserts the vCPU is exactly as in `before`: registers, RIP, RFLAGS, retired count, memory. */
function assertUnchanged(t: ExecutionContext, tm: TestMachine, before: Snapshot, what: string): void {
  const after = snapshot(tm, before.memory.map(([gpa]) => gpa));
  for (const name of GPR_NAMES) t.is(after.gprs[name], before.gprs[name], `${what}: ${name} unchanged`);
  t.is(after.rip, before.rip, `${what}: RIP unchanged`);
  t.is(after.rflags, before.rflags, `${what}: RFLAGS unchanged`);
  t.is(after.retired, before.retired, `${what}: nothing retired`);
  for (const [k, [gpa, bytes]] of before.memory.entries()) {
    t.deepEqual(after.memory[k][1], bytes, `${what}: memory at GPA 0x${gpa.toString(16)} unchanged`);
  }
}

interface Expected {
  access: number;
  gpa: number;
  gla: bigint;
  rip: bigint;
  length: number;
  /** Set: the access was to the translated page; clear: to a paging-structure entry. */
  final?: boolean;
  /** EPT rights of the page at the time (qualification bits 5:3). */
  rights?: number;
  /** Access bits that may or may not be set (implementation-specific, SDM §28.2.1). */
  optional?: number;
}

/** Asserts an EPT-violation exit with these fields; returns the record. */
function expectViolation(t: ExecutionContext, tm: TestMachine, why: RunStopCode, e: Expected): ExitRecord {
  t.is(why, RunStop.exit, 'the vCPU stopped with a VM exit');
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.eptViolation, `expected an EPT violation, got reason ${exit.reason} (info0 ${exit.info0})`);
  const q = exit.qualification;
  const optional = e.optional ?? 0;
  t.is(q & 7 & ~optional, e.access, `access bits (qualification 0x${q.toString(16)})`);
  t.is(q & ExitEptFlags.glaValid, ExitEptFlags.glaValid, 'GLA valid');
  t.is(q & ExitEptFlags.finalTranslation, e.final === false ? 0 : ExitEptFlags.finalTranslation, 'final-translation bit');
  if (e.rights !== undefined) t.is((q >> ExitEptFlags.rightsShift) & 7, e.rights, 'rights bits 5:3');
  t.is(exit.gpa, BigInt(e.gpa), `GPA (got 0x${exit.gpa.toString(16)})`);
  t.is(exit.gla, e.gla, `GLA (got 0x${exit.gla.toString(16)})`);
  t.is(exit.rip, e.rip, 'RIP of the faulting instruction');
  t.is(exit.instructionLength, e.length, 'instruction length');
  return exit;
}

function expectVmcall(t: ExecutionContext, tm: TestMachine, why: RunStopCode, rip: bigint): void {
  t.is(why, RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.vmcall, `expected the VMCALL exit, got reason ${exit.reason} at 0x${exit.rip.toString(16)}`);
  t.is(exit.rip, rip);
}

/** Length of the instruction between two labels. */
function lengthOf(code: AssembledCode, from: string, to: string): number {
  return Number(code.addressOf(to) - code.addressOf(from));
}

// --- one violation per access kind ------------------------------------------------------------

test('a read of a page without read rights (--x, ---) is a read violation with no effect', (t) => {
  // Goal: data-read violation, exact exit record, nothing executed. Method: MOV RBX, [RAX+0x238] as the first instruction, the page's rights --x then ---; then rwx plus VM entry lets it complete.
  for (const rights of [X, 0]) {
    const tm = machine();
    tm.machine.memory.write64(PAGE_A + 0x238, 0x1122334455667788n);
    tm.machine.ept.setRights(PAGE_A, rights);
    tm.state().setGpr('rax', KERNEL);
    tm.state().setGpr('rbx', 0x1111n);
    const code = tm.assemble(CODE, (a) => {
      a.label('load');
      a.mov(rbx, qword(rax, 0x238)).label('end');
      a.vmcall();
    });
    const before = snapshot(tm, [PAGE_A]);
    expectViolation(t, tm, tm.run(), {
      access: ExitAccess.read, gpa: PAGE_A + 0x238, gla: KERNEL + 0x238n, rip: CODE, length: lengthOf(code, 'load', 'end'), rights,
    });
    assertUnchanged(t, tm, before, `rights ${rights}`);
    tm.machine.ept.setRights(PAGE_A, R | W | X);
    expectVmcall(t, tm, tm.run(), code.addressOf('end'));
    t.is(tm.state().gpr('rbx'), 0x1122334455667788n, 'after the rights are granted the load completes');
  }
});

test('a write to an r-- or r-x page is a write violation; memory is unchanged', (t) => {
  // Goal: data-write violation. Method: MOV [RAX+0x40], RBX on a read-only and on a read-execute page.
  for (const rights of [R, R | X]) {
    const tm = machine();
    tm.machine.memory.write64(PAGE_A + 0x40, 0x1234n);
    tm.machine.ept.setRights(PAGE_A, rights);
    tm.state().setGpr('rax', KERNEL);
    tm.state().setGpr('rbx', 0xdeadn);
    const code = tm.assemble(CODE, (a) => {
      a.label('store');
      a.mov(qword(rax, 0x40), rbx).label('end');
      a.vmcall();
    });
    const before = snapshot(tm, [PAGE_A]);
    expectViolation(t, tm, tm.run(), {
      access: ExitAccess.write, gpa: PAGE_A + 0x40, gla: KERNEL + 0x40n, rip: CODE, length: lengthOf(code, 'store', 'end'), rights,
    });
    assertUnchanged(t, tm, before, `rights ${rights}`);
    t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0x1234n);
  }
});

test('a fetch from an rw- page is an execute violation at the jump target', (t) => {
  // Goal: instruction-fetch violation. Method: JMP RAX to code on a page with rights rw-; the jump itself completes, the target is not executed.
  const tm = machine();
  tm.machine.ept.setRights(PAGE_A, R | W);
  tm.assemble(KERNEL + 0x10n, (a) => a.mov(rbx, 1).vmcall(), PAGE_A + 0x10);
  const target = KERNEL + 0x10n;
  tm.state().setGpr('rax', target);
  tm.assemble(CODE, (a) => a.jmp(rax));
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.execute, gpa: PAGE_A + 0x10, gla: target, rip: target, rights: R | W,
    // The instruction at the target was never fetched, so the exit has no instruction length.
    length: 0,
  });
  t.is(tm.state().rip, target, 'RIP is the target: the JMP retired, the fetch at the target did not happen');
  t.is(tm.state().gpr('rbx'), 0n);
  t.is(tm.state().rflags, FLAGS);
  t.throws(() => tm.cpu().skipInstruction(), { message: /no instruction length/ }, 'a fetch violation cannot be skipped');
});

test('an instruction straddling into a non-executable page exits with execute access on the second page', (t) => {
  // Goal: a fetch that crosses pages needs X on both; the exit names the second page and RIP is the instruction start. Method: a 10-byte MOV at offset 0xffc of an executable page whose next page is rw-, reached mid-block and by a jump.
  for (const entry of ['fall-through', 'jump'] as const) {
    const tm = machine();
    tm.machine.ept.setRights(PAGE_B, R | W);
    const start = KERNEL + 0xff0n;
    const code = tm.assemble(start, (a) => {
      a.mov(ebx, 1); // 5 bytes
      for (let i = 0; i < 7; i++) a.nop();
      a.label('straddle');
      a.mov(rax, 0x1122334455667788n).label('end'); // 10 bytes: 0xffc .. 0x1005
      a.vmcall();
    }, PAGE_A + 0xff0);
    const straddle = code.addressOf('straddle');
    t.is(straddle, KERNEL + 0xffcn);
    tm.state().setGpr('rcx', entry === 'jump' ? straddle : start);
    tm.state().setGpr('rax', 0x77n);
    tm.assemble(CODE, (a) => a.jmp(rcx));
    expectViolation(t, tm, tm.run(), {
      access: ExitAccess.execute, gpa: PAGE_B, gla: KERNEL + 0x1000n, rip: straddle, length: 0, rights: R | W,
    });
    t.is(tm.state().rip, straddle, `${entry}: RIP at the straddling instruction`);
    t.is(tm.state().gpr('rax'), 0x77n, `${entry}: the straddling MOV did not execute`);
    t.is(tm.state().gpr('rbx'), entry === 'jump' ? 0n : 1n, `${entry}: instructions before it on the first page ran`);
  }
});

// --- precise multi-access instructions -------------------------------------------------------------

test('PUSH [mem] with a non-writable stack page: write violation, RSP and memory unchanged', (t) => {
  // Goal: the stack write faults after the source read was allowed, and nothing is committed. Method: PUSH QWORD [RAX] with the stack page r--.
  const tm = machine();
  const top = stackTop(0);
  const stackPage = Number(top) - 0x1000;
  tm.machine.memory.write64(PAGE_A + 0x80, 0xabcdn);
  tm.machine.memory.write64(Number(top) - 8, 0x5a5a5a5an);
  tm.machine.ept.setRights(stackPage, R);
  tm.state().setGpr('rax', KERNEL + 0x80n);
  const code = tm.assemble(CODE, (a) => {
    a.label('push');
    a.push(qword(rax, 0)).label('end');
    a.vmcall();
  });
  const before = snapshot(tm, [stackPage, PAGE_A]);
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: Number(top) - 8, gla: top - 8n, rip: CODE, length: lengthOf(code, 'push', 'end'), rights: R,
  });
  assertUnchanged(t, tm, before, 'push');
});

test('PUSH [mem] with a non-readable source: read violation on the source, stack untouched', (t) => {
  // Goal: the source is read before the stack is written, so its violation is the one reported (also when the stack is denied too). Method: PUSH QWORD [RAX] with the source page --x; then with the stack page r-- as well.
  for (const stackDenied of [false, true]) {
    const tm = machine();
    const top = stackTop(0);
    const stackPage = Number(top) - 0x1000;
    tm.machine.ept.setRights(PAGE_A, X);
    if (stackDenied) tm.machine.ept.setRights(stackPage, R);
    tm.state().setGpr('rax', KERNEL + 0x80n);
    const code = tm.assemble(CODE, (a) => {
      a.label('push');
      a.push(qword(rax, 0)).label('end');
      a.vmcall();
    });
    const before = snapshot(tm, [stackPage]);
    expectViolation(t, tm, tm.run(), {
      access: ExitAccess.read, gpa: PAGE_A + 0x80, gla: KERNEL + 0x80n, rip: CODE, length: lengthOf(code, 'push', 'end'), rights: X,
    });
    assertUnchanged(t, tm, before, stackDenied ? 'push, both denied' : 'push');
  }
});

test('ADD [mem], reg on an r-- page: write violation, memory and flags unchanged', (t) => {
  // Goal: a read-modify-write is reported as a write (SDM §28.2.1: bit 1 set; bit 0 implementation-specific) and has no effect. Method: ADD [RAX], RBX with 1 + 1, which would clear every arithmetic flag that is set in RFLAGS.
  const tm = machine();
  tm.machine.memory.write64(PAGE_A + 0x100, 1n);
  tm.machine.ept.setRights(PAGE_A, R);
  tm.state().setGpr('rax', KERNEL + 0x100n);
  tm.state().setGpr('rbx', 1n);
  const code = tm.assemble(CODE, (a) => {
    a.label('add');
    a.add(qword(rax, 0), rbx).label('end');
    a.vmcall();
  });
  const before = snapshot(tm, [PAGE_A]);
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, optional: ExitAccess.read, gpa: PAGE_A + 0x100, gla: KERNEL + 0x100n, rip: CODE, length: lengthOf(code, 'add', 'end'), rights: R,
  });
  assertUnchanged(t, tm, before, 'add');
  t.is(tm.machine.memory.read64(PAGE_A + 0x100), 1n);
  t.is(tm.state().rflags, FLAGS);
});

test('MOVSQ with the destination denied copies nothing and leaves RSI/RDI unchanged', (t) => {
  // Goal: MOVS translates both addresses before moving data. Method: source readable, destination page r--.
  const tm = machine();
  tm.machine.memory.write64(PAGE_A + 0x100, 0x0102030405060708n);
  tm.machine.ept.setRights(PAGE_B, R);
  tm.state().setGpr('rsi', KERNEL + 0x100n);
  tm.state().setGpr('rdi', KERNEL + 0x1200n);
  const code = tm.assemble(CODE, (a) => {
    a.label('movs');
    a.movsq().label('end');
    a.vmcall();
  });
  const before = snapshot(tm, [PAGE_A, PAGE_B]);
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: PAGE_B + 0x200, gla: KERNEL + 0x1200n, rip: CODE, length: lengthOf(code, 'movs', 'end'), rights: R,
  });
  assertUnchanged(t, tm, before, 'movsq');
});

test('REP MOVSQ stops at the denied page with the completed iterations committed', (t) => {
  // Goal: a REP string instruction is interruptible between iterations (SDM Vol. 1 §7.3.9.1 / MOVS): at the exit RCX/RSI/RDI reflect the iterations done and RIP is on the instruction. Method: copy 4 qwords whose last 2 fall on an r-- page.
  const tm = machine();
  tm.tables.map(KERNEL + 0x2000n, 0x306000, Pte.writable);
  tm.tables.map(KERNEL + 0x3000n, 0x30a000, Pte.writable);
  tm.machine.ept.setRights(0x30a000, R);
  for (let k = 0; k < 4; k++) tm.machine.memory.write64(PAGE_A + 8 * k, 0x1111n * BigInt(k + 1));
  const destination = KERNEL + 0x3000n - 16n;
  tm.state().setGpr('rsi', KERNEL);
  tm.state().setGpr('rdi', destination);
  tm.state().setGpr('rcx', 4n);
  const code = tm.assemble(CODE, (a) => {
    a.label('movs');
    a.rep().movsq().label('end');
    a.vmcall();
  });
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: 0x30a000, gla: KERNEL + 0x3000n, rip: CODE, length: lengthOf(code, 'movs', 'end'), rights: R,
  });
  const state = tm.state();
  t.is(state.gpr('rcx'), 2n, 'two iterations left');
  t.is(state.gpr('rsi'), KERNEL + 16n);
  t.is(state.gpr('rdi'), KERNEL + 0x3000n);
  t.is(tm.machine.memory.read64(0x306ff0), 0x1111n);
  t.is(tm.machine.memory.read64(0x306ff8), 0x2222n);
  t.is(tm.machine.memory.read64(0x30a000), 0n, 'nothing written on the denied page');
  t.is(state.rip, CODE, 'RIP stays on the REP MOVSQ');
});

test('a page-crossing access with only the second page denied exits with the GPA of that page’s first byte', (t) => {
  // Goal: the GPA is that of the access that faulted (SDM §28.2.1 "guest-physical address"): the part of a split access on the second page, which starts at its first byte. Method: 8-byte read and write at offset 0xffc, the second page (a different, non-adjacent GPA) denied; and with the first page denied instead.
  const cases = [
    { name: 'read, second page denied', write: false, denied: PAGE_B, rights: X, gpa: PAGE_B, gla: KERNEL + 0x1000n },
    { name: 'write, second page denied', write: true, denied: PAGE_B, rights: R, gpa: PAGE_B, gla: KERNEL + 0x1000n },
    { name: 'write, first page denied', write: true, denied: PAGE_A, rights: R, gpa: PAGE_A + 0xffc, gla: KERNEL + 0xffcn },
  ];
  for (const c of cases) {
    const tm = machine();
    tm.machine.memory.write32(PAGE_A + 0xffc, 0xaabbccdd);
    tm.machine.memory.write32(PAGE_B, 0x11223344);
    tm.machine.ept.setRights(c.denied, c.rights);
    tm.state().setGpr('rax', KERNEL + 0xffcn);
    tm.state().setGpr('rbx', 0x5555555555555555n);
    const code = tm.assemble(CODE, (a) => {
      a.label('access');
      if (c.write) a.mov(qword(rax, 0), rbx);
      else a.mov(rbx, qword(rax, 0));
      a.label('end');
      a.vmcall();
    });
    const before = snapshot(tm, [PAGE_A, PAGE_B]);
    expectViolation(t, tm, tm.run(), {
      access: c.write ? ExitAccess.write : ExitAccess.read, gpa: c.gpa, gla: c.gla, rip: CODE, length: lengthOf(code, 'access', 'end'), rights: c.rights,
    });
    assertUnchanged(t, tm, before, `${c.name} (no partial access)`);
  }
});

test('a 4 KiB EPT page inside a 2 MiB guest page faults with the exact GPA', (t) => {
  // Goal: EPT rights are per 4 KiB guest-physical page even when the guest maps 2 MiB. Method: 2 MiB guest page at 0x600000, one 4 KiB page in it r--, a write to it and a write to its neighbour.
  const tm = machine();
  const base = 0xfffff80000400000n;
  tm.tables.map(base, 0x600000, Pte.writable, 0x200000);
  tm.machine.ept.setRights(0x6a3000, R);
  tm.state().setGpr('rax', base);
  tm.state().setGpr('rbx', 0x77n);
  const code = tm.assemble(CODE, (a) => {
    a.mov(qword(rax, 0xa2ff8), rbx).label('store');
    a.mov(qword(rax, 0xa3010), rbx).label('end');
    a.vmcall();
  });
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: 0x6a3010, gla: base + 0xa3010n, rip: code.addressOf('store'), length: lengthOf(code, 'store', 'end'), rights: R,
  });
  t.is(tm.machine.memory.read64(0x6a2ff8), 0x77n, 'the neighbouring 4 KiB page was writable');
  t.is(tm.machine.memory.read64(0x6a3010), 0n);
});

// --- paging-structure accesses ------------------------------------------------------------------

test('a walk through a non-readable page table is a read violation on the entry, not on the final page', (t) => {
  // Goal: guest paging-structure reads are data reads checked by EPT (SDM §29.3.3.2); the exit has final-translation clear and the GPA of the entry. Method: the page holding KERNEL's PTE gets rights ---; a load and a fetch through it.
  for (const kind of ['load', 'fetch'] as const) {
    const tm = machine();
    const target = KERNEL + 0x238n;
    const pte = tm.tables.leafEntry(target);
    const table = pte & ~0xfff;
    t.not(table, PAGE_A);
    tm.machine.ept.setRights(table, 0);
    tm.state().setGpr('rax', target);
    const code = tm.assemble(CODE, (a) => {
      a.label('access');
      if (kind === 'load') a.mov(rbx, qword(rax, 0));
      else a.jmp(rax);
      a.label('end');
      a.vmcall();
    });
    const before = snapshot(tm, [table, PAGE_A]);
    expectViolation(t, tm, tm.run(), {
      access: ExitAccess.read, gpa: pte, gla: target, final: false, rights: 0,
      rip: kind === 'load' ? CODE : target,
      length: kind === 'load' ? lengthOf(code, 'access', 'end') : 0,
    });
    if (kind === 'load') assertUnchanged(t, tm, before, 'load through a denied table');
    else t.is(tm.state().rip, target);
  }
});

test('setting an A bit in a read-only page table is a write violation on the entry', (t) => {
  // Goal: A/D updates are guest-physical writes to paging structures (SDM §29.3.3.2). Method: fresh entries (A clear), the PT page r--; a load must set the PTE's A bit.
  const tm = machine();
  const pte = tm.tables.leafEntry(KERNEL);
  const table = pte & ~0xfff;
  tm.machine.ept.setRights(table, R);
  tm.state().setGpr('rax', KERNEL + 0x20n);
  tm.state().setGpr('rbx', 0x99n);
  const code = tm.assemble(CODE, (a) => {
    a.label('load');
    a.mov(rbx, qword(rax, 0)).label('end');
    a.vmcall();
  });
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, optional: ExitAccess.read, gpa: pte, gla: KERNEL + 0x20n, final: false, rights: R, rip: CODE, length: lengthOf(code, 'load', 'end'),
  });
  t.is(tm.machine.memory.read64(pte) & Pte.accessed, 0n, 'the PTE’s A bit was not set');
  t.is(tm.state().gpr('rbx'), 0x99n);
});

test('with A already set a read-only page table allows loads, but a store that must set D is a write violation', (t) => {
  // Goal: only A/D updates write paging structures: no update, no write access needed. Method: A set in all four entries, PT page r--; a load (fine), a store (D update → violation), then D preset too (store fine).
  const tm = machine();
  const pte = tm.tables.leafEntry(KERNEL);
  const table = pte & ~0xfff;
  // The four entries that translate KERNEL: PML4E, PDPTE, PDE, PTE.
  let entries: number[] = [];
  let level = tm.tables.root;
  for (const shift of [39n, 30n, 21n]) {
    const gpa = level + Number((KERNEL >> shift) & 511n) * 8;
    entries.push(gpa);
    level = Number(tm.machine.memory.read64(gpa) & 0x000f_ffff_ffff_f000n);
  }
  entries = [...entries, pte];
  for (const gpa of entries) tm.machine.memory.write64(gpa, tm.machine.memory.read64(gpa) | Pte.accessed);
  tm.machine.memory.write64(PAGE_A + 0x20, 0x4444n);
  tm.machine.ept.setRights(table, R);
  tm.state().setGpr('rax', KERNEL + 0x20n);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rbx, qword(rax, 0)).label('store');
    a.mov(qword(rax, 8), rax).label('end');
    a.vmcall();
  });
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, optional: ExitAccess.read, gpa: pte, gla: KERNEL + 0x28n, final: false, rights: R, rip: code.addressOf('store'), length: lengthOf(code, 'store', 'end'),
  });
  t.is(tm.state().gpr('rbx'), 0x4444n, 'the load went through without touching the table');
  t.is(tm.machine.memory.read64(pte) & Pte.dirty, 0n);
  t.is(tm.machine.memory.read64(PAGE_A + 0x28), 0n);
  tm.machine.memory.write64(pte, tm.machine.memory.read64(pte) | Pte.dirty);
  expectVmcall(t, tm, tm.run(), code.addressOf('end'));
  t.is(tm.machine.memory.read64(PAGE_A + 0x28), KERNEL + 0x20n, 'with D preset the store needs no paging-structure write');
});

// --- hypervisor controls ----------------------------------------------------------------------------

test('stepIgnoringEpt executes the faulting instruction once with the access allowed', (t) => {
  // Goal: HVMI's "allow" action: one step with EPT off, then the rights apply again. Method: two stores to an r-- page; step over the first, run into the second.
  const tm = machine();
  tm.machine.ept.setRights(PAGE_A, R);
  tm.state().setGpr('rax', KERNEL);
  tm.state().setGpr('rbx', 0x1234n);
  const code = tm.assemble(CODE, (a) => {
    a.label('first');
    a.mov(qword(rax, 0x40), rbx).label('second');
    a.mov(qword(rax, 0x48), rbx).label('end');
    a.vmcall();
  });
  expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: PAGE_A + 0x40, gla: KERNEL + 0x40n, rip: CODE, length: lengthOf(code, 'first', 'second'), rights: R,
  });
  const cpu = tm.cpu();
  const retired = tm.state().get64('retired');
  t.is(cpu.stepIgnoringEpt(), RunStop.budget);
  t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0x1234n, 'the store happened');
  t.is(tm.state().rip, code.addressOf('second'), 'RIP advanced by one instruction');
  t.is(tm.state().get64('retired'), retired + 1n, 'one step retired');
  expectViolation(t, tm, cpu.run(10_000), {
    access: ExitAccess.write, gpa: PAGE_A + 0x48, gla: KERNEL + 0x48n, rip: code.addressOf('second'), length: lengthOf(code, 'second', 'end'), rights: R,
  });
  t.is(tm.machine.memory.read64(PAGE_A + 0x48), 0n, 'EPT applies again after the step (the allowed access was not cached)');
});

test('skipInstruction advances RIP by the exit’s instruction length without executing it', (t) => {
  // Goal: HVMI's "deny" action. Method: a store to an r-- page is skipped; the next instructions run.
  const tm = machine();
  tm.machine.ept.setRights(PAGE_A, R);
  tm.state().setGpr('rax', KERNEL);
  tm.state().setGpr('rbx', 0x1234n);
  const code = tm.assemble(CODE, (a) => {
    a.label('store');
    a.mov(qword(rax, 0x40), rbx).label('next');
    a.mov(rcx, 5).label('end');
    a.vmcall();
  });
  const exit = expectViolation(t, tm, tm.run(), {
    access: ExitAccess.write, gpa: PAGE_A + 0x40, gla: KERNEL + 0x40n, rip: CODE, length: lengthOf(code, 'store', 'next'), rights: R,
  });
  const cpu = tm.cpu();
  cpu.skipInstruction();
  t.is(tm.state().rip, exit.rip + BigInt(exit.instructionLength));
  t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0n, 'the skipped store did not happen');
  expectVmcall(t, tm, cpu.run(10_000), code.addressOf('end'));
  t.is(tm.state().gpr('rcx'), 5n, 'execution continued after the skipped instruction');
  t.is(tm.state().gpr('rbx'), 0x1234n);
});

test('restricting rights takes effect only at VM entry: a running vCPU keeps its old EPT view', (t) => {
  // Goal: EPT laziness ("on each VCPU resume, all EPT access rights are committed"). Method: commit r-- while the vCPU is stopped at a VMCALL, resume without entry (store allowed, even after INVLPG forces a walk), then enter (store denied).
  const tm = machine();
  tm.state().setGpr('rax', KERNEL);
  const code = tm.assemble(CODE, (a) => {
    a.mov(qword(rax, 0), 1).label('one');
    a.vmcall().invlpg(mem(rax)).mov(qword(rax, 0), 2).label('two');
    a.vmcall().label('three');
    a.mov(qword(rax, 0), 3).label('end');
    a.vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('one'));
  tm.machine.ept.setRights(PAGE_A, R);
  const cpu = tm.cpu();
  cpu.skipInstruction();
  expectVmcall(t, tm, cpu.run(10_000), code.addressOf('two'));
  t.is(tm.machine.memory.read64(PAGE_A), 2n, 'without VM entry the old rights (rwx) still apply');
  cpu.skipInstruction();
  cpu.enter();
  expectViolation(t, tm, cpu.run(10_000), {
    access: ExitAccess.write, gpa: PAGE_A, gla: KERNEL, rip: code.addressOf('three'), length: lengthOf(code, 'three', 'end'), rights: R,
  });
  t.is(tm.machine.memory.read64(PAGE_A), 2n, 'after VM entry the committed r-- applies');
});

test('granting rights also takes effect only at VM entry', (t) => {
  // Goal: a vCPU that re-runs without entry keeps faulting on its old view. Method: store to r-- (violation), commit rwx, run without entry (violation again), enter (store completes).
  const tm = machine();
  tm.machine.ept.setRights(PAGE_A, R);
  tm.state().setGpr('rax', KERNEL);
  const code = tm.assemble(CODE, (a) => {
    a.label('store');
    a.mov(qword(rax, 0), 7).label('end');
    a.vmcall();
  });
  const expected = { access: ExitAccess.write, gpa: PAGE_A, gla: KERNEL, rip: CODE, length: lengthOf(code, 'store', 'end'), rights: R };
  expectViolation(t, tm, tm.run(), expected);
  tm.machine.ept.setRights(PAGE_A, R | W | X);
  const cpu = tm.cpu();
  expectViolation(t, tm, cpu.run(10_000), expected);
  t.is(tm.machine.memory.read64(PAGE_A), 0n);
  cpu.enter();
  expectVmcall(t, tm, cpu.run(10_000), code.addressOf('end'));
  t.is(tm.machine.memory.read64(PAGE_A), 7n);
});

// --- event delivery ---------------------------------------------------------------------------------

test('an EPT violation while delivering a #PF reports the event, changes nothing but CR2', (t) => {
  // Goal: a VM exit during event delivery (SDM §28.2.4 IDT-vectoring information; §28.1: an event that causes a VM exit indirectly still updates architectural state — a page fault updates CR2). Method: a load from an unmapped address with the IDT page non-readable.
  const tm = machine();
  tm.setGate(Vector.PF, CODE + 0x800n);
  tm.machine.ept.setRights(Number(IDT), 0);
  const missing = KERNEL + 0x7008n;
  tm.state().setGpr('rax', missing);
  tm.assemble(CODE, (a) => {
    a.mov(rbx, qword(rax, 0));
    a.vmcall();
  });
  const before = snapshot(tm, [Number(stackTop(0)) - 0x1000]);
  const exit = expectViolation(t, tm, tm.run(), {
    access: ExitAccess.read, gpa: Number(IDT) + 16 * Vector.PF, gla: IDT + 16n * BigInt(Vector.PF), rip: CODE, length: 0, rights: 0,
  });
  t.deepEqual(exit.vectoring, { vector: Vector.PF, type: EventInfo.hardwareException, errorCode: 0 });
  assertUnchanged(t, tm, before, 'interrupted #PF delivery');
  t.is(tm.state().get64('cr2'), missing, 'the page fault updated CR2 although its delivery exited');
});

for (const [mode, name, want] of [[StringEmulation.toPageEnd, 'to the page end (REP optimisation on)', 0x80], [StringEmulation.oneIteration, 'one iteration (REP optimisation off)', 1]] as const) {
  test(`stepIgnoringEpt carries out an allowed REP STOSB ${name}`, (t) => {
    // Goal: how far the hypervisor goes with a REP string instruction it allowed. Method: REP STOSB of 0x100 bytes from 0x80 before the end of an r-- page.
    const tm = machine();
    tm.machine.ept.setRights(PAGE_A, R);
    tm.state().setGpr('rdi', KERNEL + 0xf80n);
    tm.state().setGpr('rcx', 0x100n);
    tm.state().setGpr('rax', 0x5an);
    tm.assemble(CODE, (a) => {
      a.rep().stosb();
      a.vmcall();
    });
    t.is(tm.run(), RunStop.exit);
    const cpu = tm.cpu();
    cpu.stepIgnoringEpt('taken', mode);
    t.is(tm.state().gpr('rcx'), BigInt(0x100 - want), `${want} iteration(s) done`);
    t.is(tm.state().rip, CODE, 'the instruction is not finished: it continues where it stopped');
    t.true(tm.machine.memory.read(PAGE_A + 0xf80, want).every((b) => b === 0x5a));
  });
}

test('stepIgnoringEpt carries the allowed instruction out before an interrupt waiting for the entry, which comes right after', (t) => {
  // Goal: the hypervisor emulates, then enters; the interrupt must not replace the emulated instruction. Method: an r-- page store with an external interrupt pending.
  const tm = machine();
  tm.machine.ept.setRights(PAGE_A, R);
  tm.state().setGpr('rax', KERNEL);
  tm.state().setGpr('rbx', 0x1234n);
  tm.state().rflags = FLAGS | 0x200n;
  const code = tm.assemble(CODE, (a) => {
    a.label('store');
    a.mov(qword(rax, 0x40), rbx).label('after');
    a.vmcall();
  });
  t.is(tm.run(), RunStop.exit);
  tm.state().set32('pendingInterrupt', 0x30);
  const cpu = tm.cpu();
  cpu.enter();
  t.is(cpu.stepIgnoringEpt(), RunStop.budget);
  t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0x1234n, 'the store was carried out');
  t.is(tm.state().rip, code.addressOf('after'));
  t.is(tm.state().get32('pendingInterrupt'), 0x30, 'the interrupt still waits, in the state block too');
});
