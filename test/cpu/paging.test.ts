/**
 * Goal: the MMU's linear → guest-physical translation behaves as the SDM Vol. 3A ch. 4 says for
 * 4-level paging. Method: small guest programs on the test machine that touch mapped, unmapped
 * and protected linear addresses; faults become VM exits through the exception bitmap (or are
 * delivered through the IDT), and the test inspects the exit record, registers, guest memory
 * and the paging-structure entries themselves.
 */
import test, { type ExecutionContext } from 'ava';
import { Assembler, cr2, cr3, mem, qword, rax, rbp, rbx, rcx, rdx, rsi, rsp } from '../../src/asm/index.ts';
import { RunStop, type RunStopCode } from '../../src/cpu/cpu.ts';
import { ExitReason } from '../../src/cpu/state-block.ts';
import { PfError, Vector } from '../../src/cpu/stop.ts';
import { CR4 } from '../../src/cpu/ops/system.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import type { ExitRecord } from '../../src/machine/vcpu-state.ts';
import { CODE, TestMachine, stackTop } from '../support/test-machine.ts';

/** #PF, #GP and #SS exit instead of being delivered. */
const FAULT_EXITS = (1 << Vector.PF) | (1 << Vector.GP) | (1 << Vector.SS);
/** A high kernel address whose PML4 slot (256) the identity map does not use. */
const KERNEL = 0xffff800000005000n;
/** Guest-physical pages the tests map there (inside RAM, outside the code/stack/table areas). */
const PAGE_A = 0x300000;
const PAGE_B = 0x305000;
const CR0_WP = 0x10000n;
const CR4_SMEP = 0x100000n;
const EFER_NXE = 0x800n;

function machine(options: { user?: boolean } = {}): TestMachine {
  return new TestMachine({ exceptionBitmap: FAULT_EXITS, ...options });
}

/** GPAs of the paging-structure entries that translate `linear` (PML4E first, leaf last). */
function entryChain(tm: TestMachine, linear: bigint): number[] {
  const memory = tm.machine.memory;
  let table = tm.tables.root;
  const chain: number[] = [];
  for (const shift of [39n, 30n, 21n, 12n]) {
    const gpa = table + Number((linear >> shift) & 511n) * 8;
    chain.push(gpa);
    const entry = memory.read64(gpa);
    if (shift === 12n || (entry & Pte.large) !== 0n) break;
    table = Number(entry & 0x000f_ffff_ffff_f000n);
  }
  return chain;
}

function entryAt(tm: TestMachine, gpa: number): bigint {
  return tm.machine.memory.read64(gpa);
}

/** Asserts a VMCALL exit at `rip`. */
function expectVmcall(t: ExecutionContext, tm: TestMachine, why: RunStopCode, rip: bigint): void {
  t.is(why, RunStop.exit, 'the vCPU stopped with a VM exit');
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.vmcall, `expected the VMCALL exit, got reason ${exit.reason} (vector ${exit.info0}) at 0x${exit.rip.toString(16)}`);
  t.is(exit.rip, rip);
}

/** Asserts an exception exit (exception bitmap) for `vector` with `error` at `rip`; returns the exit. */
function expectException(t: ExecutionContext, tm: TestMachine, why: RunStopCode, vector: number, error: number, rip: bigint): ExitRecord {
  t.is(why, RunStop.exit, 'the vCPU stopped with a VM exit');
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.exception, `expected an exception exit, got reason ${exit.reason}`);
  t.is(exit.info0, vector, 'exception vector');
  t.is(exit.value >> 32n, 1n, 'the exception has an error code');
  t.is(Number(exit.value & 0xffffffffn), error, `error code (got 0x${(exit.value & 0xffffffffn).toString(16)})`);
  t.is(exit.rip, rip, 'RIP of the faulting instruction');
  return exit;
}

/** Resumes after a VMCALL exit without a VM entry (no TLB flush, same EPT view). */
function resume(tm: TestMachine, budget = 10_000): RunStopCode {
  const cpu = tm.cpu();
  cpu.skipInstruction();
  return cpu.run(budget);
}

function toRing3(tm: TestMachine): void {
  tm.state().set32('cs', 0x33);
  tm.state().set32('ss', 0x2b);
}

// --- mappings of every size ---------------------------------------------------------------------

test('4 KiB pages: reads, writes and a page-crossing read land in the mapped physical pages', (t) => {
  // Goal: 4 KiB leaf translation. Method: map two adjacent kernel pages to non-adjacent GPAs and check where the bytes go.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable);
  tm.tables.map(KERNEL + 0x1000n, PAGE_B, Pte.writable);
  const memory = tm.machine.memory;
  memory.write64(PAGE_A + 0x238, 0x1122334455667788n);
  memory.write32(PAGE_A + 0xffc, 0xaabbccdd);
  memory.write32(PAGE_B, 0x01020304);
  tm.state().setGpr('rcx', 0x0badc0de0badc0den);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 0x238)).mov(qword(rax, 0x1010), rcx).mov(rdx, qword(rax, 0xffc)).vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.base + BigInt(code.bytes.length) - 3n);
  t.is(tm.state().gpr('rbx'), 0x1122334455667788n);
  t.is(memory.read64(PAGE_B + 0x10), 0x0badc0de0badc0den, 'the write went to the second page’s GPA');
  t.is(memory.read64(PAGE_A + 0x1010), 0n, 'nothing was written where a physically contiguous mapping would put it');
  t.is(tm.state().gpr('rdx'), 0x01020304aabbccddn, 'a read crossing into the next linear page combines both GPAs');
});

test('2 MiB page: data accesses and instruction fetch go through the PS=1 PDE', (t) => {
  // Goal: 2 MiB leaf translation keeps linear bits 20:0 as the offset. Method: map 0xfffff80000400000 → 0x600000 (2 MiB), touch offsets with bits 12..20 set, and jump into the page.
  const tm = machine();
  const base = 0xfffff80000400000n;
  tm.tables.map(base, 0x600000, Pte.writable, 0x200000);
  const memory = tm.machine.memory;
  memory.write64(0x600000 + 0x12348, 0x5555aaaa5555aaaan);
  tm.state().setGpr('rcx', 0x77n);
  const far = tm.assemble(base + 0x1b000n, (a) => {
    a.mov(rsi, 0xfeedn).label('end');
    a.vmcall();
  }, 0x61b000);
  tm.assemble(CODE, (a) => {
    a.mov(rax, base).mov(rbx, qword(rax, 0x12348)).mov(qword(rax, 0x1f0008), rcx).mov(rdx, base + 0x1b000n).jmp(rdx);
  });
  expectVmcall(t, tm, tm.run(), far.addressOf('end'));
  t.is(tm.state().gpr('rbx'), 0x5555aaaa5555aaaan);
  t.is(memory.read64(0x600000 + 0x1f0008), 0x77n);
  t.is(tm.state().gpr('rsi'), 0xfeedn, 'the code fetched from the large page ran');
  const chain = entryChain(tm, base);
  t.is(chain.length, 3, 'the walk ends at the PDE');
  t.true((entryAt(tm, chain[2]) & (Pte.accessed | Pte.dirty)) === (Pte.accessed | Pte.dirty), 'A and D set on the 2 MiB PDE');
});

test('1 GiB page: data accesses and instruction fetch go through the PS=1 PDPTE', (t) => {
  // Goal: 1 GiB leaf translation keeps linear bits 29:0 as the offset. Method: map 0xffff800040000000 → GPA 0 (1 GiB) and use offsets with bits 21..23 set.
  const tm = machine();
  const base = 0xffff800040000000n;
  tm.tables.map(base, 0, Pte.writable, 0x40000000);
  const memory = tm.machine.memory;
  memory.write64(0xa45678, 0x0102030405060708n);
  tm.state().setGpr('rcx', 0x99n);
  const far = tm.assemble(base + 0x350000n, (a) => {
    a.mov(rsi, 0xbeefn).label('end');
    a.vmcall();
  }, 0x350000);
  tm.assemble(CODE, (a) => {
    a.mov(rax, base).mov(rbx, qword(rax, 0xa45678)).mov(qword(rax, 0xa456f0), rcx).mov(rdx, far.base).jmp(rdx);
  });
  expectVmcall(t, tm, tm.run(), far.addressOf('end'));
  t.is(tm.state().gpr('rbx'), 0x0102030405060708n);
  t.is(memory.read64(0xa456f0), 0x99n);
  t.is(tm.state().gpr('rsi'), 0xbeefn);
  const chain = entryChain(tm, base);
  t.is(chain.length, 2, 'the walk ends at the PDPTE');
  t.true((entryAt(tm, chain[1]) & (Pte.accessed | Pte.dirty)) === (Pte.accessed | Pte.dirty), 'A and D set on the 1 GiB PDPTE');
});

// --- accessed and dirty flags ---------------------------------------------------------------------

test('a read sets A in all four levels and no D; a later write sets D on the leaf only', (t) => {
  // Goal: SDM §4.8 — A on every entry used, D only on the entry that maps the page. Method: fresh tables (A/D clear), a read, then a write, inspecting the entries in guest memory.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable);
  const chain = entryChain(tm, KERNEL);
  t.is(chain.length, 4);
  for (const gpa of chain) t.is(entryAt(tm, gpa) & (Pte.accessed | Pte.dirty), 0n, 'fresh entries have A and D clear');
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 8)).label('first');
    a.vmcall().mov(qword(rax, 16), rbx).label('second');
    a.vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('first'));
  for (const [level, gpa] of chain.entries()) {
    t.is(entryAt(tm, gpa) & Pte.accessed, Pte.accessed, `A set at level ${4 - level}`);
    t.is(entryAt(tm, gpa) & Pte.dirty, 0n, `D clear at level ${4 - level} after a read`);
  }
  expectVmcall(t, tm, resume(tm), code.addressOf('second'));
  t.is(entryAt(tm, chain[3]) & Pte.dirty, Pte.dirty, 'D set on the PTE after a write');
  for (const gpa of chain.slice(0, 3)) t.is(entryAt(tm, gpa) & Pte.dirty, 0n, 'D never set on a non-leaf entry');
});

test('an access that page-faults sets neither A nor D', (t) => {
  // Goal: A/D are written only for a translation that succeeds (permission faults and not-present faults leave entries alone). Method: a write to a read-only page and a read of a not-present PTE under fresh tables.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, 0n); // read-only
  const leafGpa = tm.tables.leafEntry(KERNEL);
  // A second, not-present, PTE in the same table.
  const absent = KERNEL + 0x1000n;
  const chain = entryChain(tm, KERNEL);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).label('write');
    a.mov(qword(rax, 0), rax);
  });
  expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.write, code.addressOf('write'));
  t.is(entryAt(tm, leafGpa) & (Pte.accessed | Pte.dirty), 0n, 'the read-only PTE is untouched by the faulting write');
  for (const gpa of chain) t.is(entryAt(tm, gpa) & Pte.accessed, 0n, 'no A bit set on any level by the faulting walk');

  const tm2 = machine();
  tm2.tables.map(KERNEL, PAGE_A, Pte.writable);
  const chain2 = entryChain(tm2, absent);
  const code2 = tm2.assemble(CODE, (a) => {
    a.mov(rax, absent).label('read');
    a.mov(rbx, qword(rax, 0));
  });
  expectException(t, tm2, tm2.run(), Vector.PF, 0, code2.addressOf('read'));
  t.is(entryAt(tm2, chain2[3]), 0n, 'the not-present PTE is unchanged');
  for (const gpa of chain2.slice(0, 3)) t.is(entryAt(tm2, gpa) & Pte.accessed, 0n, 'upper levels of a faulting walk keep A clear');
});

// --- page-fault error codes -----------------------------------------------------------------------

test('#PF for not-present pages: P=0, W/R from the access, exact faulting address, no CR2 write on an exit', (t) => {
  // Goal: not-present faults at the PTE and at the PML4E. Method: read and write unmapped addresses (exception-bitmap exits) and check error code, GLA, RIP, and that nothing changed.
  for (const [address, write] of [
    [KERNEL + 0x7ff9n, false],
    [KERNEL + 0x7ff9n, true],
    [0xffffc00000001234n, false], // PML4 slot 384: not present at the top level
  ] as const) {
    const tm = machine();
    tm.tables.map(KERNEL, PAGE_A, Pte.writable); // makes the upper levels of KERNEL present
    tm.state().setGpr('rbx', 0x1234n);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, address).label('access');
      if (write) a.mov(qword(rax, 0), rbx);
      else a.mov(rbx, qword(rax, 0));
    });
    const exit = expectException(t, tm, tm.run(), Vector.PF, write ? PfError.write : 0, code.addressOf('access'));
    t.is(exit.gla, address, 'the exit carries the faulting linear address');
    t.is(tm.state().gpr('rbx'), 0x1234n, 'the faulting load did not write its destination');
    t.is(tm.state().rip, code.addressOf('access'), 'RIP stays on the faulting instruction');
    t.is(tm.state().get64('cr2'), 0n, 'a #PF that exits through the exception bitmap does not write CR2');
  }
});

test('write to a read-only page at CPL0 faults with CR0.WP=1 and is allowed with CR0.WP=0', (t) => {
  // Goal: SDM §4.6 supervisor writes and CR0.WP. Method: the same write twice, with WP set and with WP cleared before entry.
  for (const wp of [true, false]) {
    const tm = machine();
    tm.tables.map(KERNEL, PAGE_A, 0n);
    if (!wp) tm.state().set64('cr0', tm.state().get64('cr0') & ~CR0_WP);
    tm.state().setGpr('rbx', 0x4242n);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, KERNEL).label('write');
      a.mov(qword(rax, 0x40), rbx).label('end');
      a.vmcall();
    });
    const why = tm.run();
    if (wp) {
      const exit = expectException(t, tm, why, Vector.PF, PfError.present | PfError.write, code.addressOf('write'));
      t.is(exit.gla, KERNEL + 0x40n);
      t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0n, 'nothing written');
    } else {
      expectVmcall(t, tm, why, code.addressOf('end'));
      t.is(tm.machine.memory.read64(PAGE_A + 0x40), 0x4242n, 'with WP=0 the supervisor write goes through');
      t.is(entryAt(tm, tm.tables.leafEntry(KERNEL)) & Pte.dirty, Pte.dirty, 'and sets D');
    }
  }
});

test('CR0.WP=0 does not let ring 3 write a read-only user page', (t) => {
  // Goal: WP only relaxes supervisor writes. Method: ring 3, WP=0, a write to a user read-only page.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.user);
  tm.state().set64('cr0', tm.state().get64('cr0') & ~CR0_WP);
  toRing3(tm);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 0)).label('write');
    a.mov(qword(rax, 0), rbx);
  });
  expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.write | PfError.user, code.addressOf('write'));
});

test('ring 3 reads and writes of a supervisor page raise #PF with U/S set', (t) => {
  // Goal: U/S in the error code and the combined U/S of all levels. Method: ring 3 (CS=0x33, SS=0x2b) accesses to a supervisor leaf and to a user leaf under a supervisor PDE.
  const cases: Array<{ name: string; write: boolean; supervisorPde: boolean }> = [
    { name: 'read, supervisor PTE', write: false, supervisorPde: false },
    { name: 'write, supervisor PTE', write: true, supervisorPde: false },
    { name: 'read, user PTE under a supervisor PDE', write: false, supervisorPde: true },
  ];
  for (const c of cases) {
    const tm = machine();
    tm.tables.map(KERNEL, PAGE_A, Pte.writable | (c.supervisorPde ? Pte.user : 0n));
    tm.tables.map(KERNEL + 0x1000n, PAGE_B, Pte.writable | Pte.user); // same tables, user all the way
    if (c.supervisorPde) {
      const pde = entryChain(tm, KERNEL)[2];
      tm.machine.memory.write64(pde, entryAt(tm, pde) & ~Pte.user);
    }
    toRing3(tm);
    tm.state().setGpr('rbx', 0x5an);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, KERNEL).label('access');
      if (c.write) a.mov(qword(rax, 0x10), rbx);
      else a.mov(rbx, qword(rax, 0x10));
    });
    const error = PfError.present | PfError.user | (c.write ? PfError.write : 0);
    const exit = expectException(t, tm, tm.run(), Vector.PF, error, code.addressOf('access'));
    t.is(exit.gla, KERNEL + 0x10n, c.name);
    t.is(tm.state().cpl, 3, 'still at ring 3');
    t.is(tm.state().gpr('rbx'), 0x5an, c.name);
  }
  // Sanity: ring 3 may read a page that is user at every level.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable | Pte.user);
  tm.machine.memory.write64(PAGE_A + 8, 0x33n);
  toRing3(tm);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 8)).label('end');
    a.vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('end'));
  t.is(tm.state().gpr('rbx'), 0x33n);
});

test('NX: with EFER.NXE=1 a fetch from an XD page faults with I/D set; data reads are allowed', (t) => {
  // Goal: execute-disable (SDM §4.6) and the I/D error-code bit. Method: read from, then jump into, a page whose PTE has bit 63 set.
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable | Pte.noExecute);
  tm.assemble(KERNEL, (a) => a.nop().vmcall(), PAGE_A);
  tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 0)).jmp(rax);
  });
  const exit = expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.fetch, KERNEL);
  t.is(exit.gla, KERNEL, 'the faulting address is the fetch target');
  t.is(tm.state().gpr('rbx') & 0xffn, 0x90n, 'the data read of the XD page succeeded (first byte: NOP)');
});

test('with EFER.NXE=0 bit 63 of a PTE is reserved: RSVD fault, and I/D stays clear for fetches', (t) => {
  // Goal: SDM §4.5 reserved bits when NXE=0, and I/D only with NXE or SMEP. Method: the XD page of the previous test, read and fetched with NXE clear.
  for (const fetch of [false, true]) {
    const tm = machine();
    tm.state().set64('efer', tm.state().get64('efer') & ~EFER_NXE);
    tm.tables.map(KERNEL, PAGE_A, Pte.writable | Pte.noExecute);
    tm.assemble(KERNEL, (a) => a.nop().vmcall(), PAGE_A);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, KERNEL).label('access');
      if (fetch) a.jmp(rax);
      else a.mov(rbx, qword(rax, 0));
    });
    const exit = expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.reserved, fetch ? KERNEL : code.addressOf('access'));
    t.is(exit.gla, KERNEL);
  }
});

test('a reserved bit in a paging entry raises #PF with RSVD and P set (only if the entry is present)', (t) => {
  // Goal: RSVD faults. Method: set a physical-address bit above MAXPHYADDR (40) in a PTE, PS in a PML4E, bit 13 in a 2 MiB PDE; and the same bit in a not-present PTE (ignored).
  const cases: Array<{ name: string; edit: (tm: TestMachine) => void; write: boolean; error: number }> = [
    {
      name: 'bit 45 in the PTE, read',
      edit: (tm) => tm.machine.memory.write64(tm.tables.leafEntry(KERNEL), entryAt(tm, tm.tables.leafEntry(KERNEL)) | (1n << 45n)),
      write: false,
      error: PfError.present | PfError.reserved,
    },
    {
      name: 'bit 51 in the PTE, write',
      edit: (tm) => tm.machine.memory.write64(tm.tables.leafEntry(KERNEL), entryAt(tm, tm.tables.leafEntry(KERNEL)) | (1n << 51n)),
      write: true,
      error: PfError.present | PfError.reserved | PfError.write,
    },
    {
      name: 'PS set in the PML4E',
      edit: (tm) => tm.machine.memory.write64(entryChain(tm, KERNEL)[0], entryAt(tm, entryChain(tm, KERNEL)[0]) | Pte.large),
      write: false,
      error: PfError.present | PfError.reserved,
    },
    {
      name: 'bit 45 in a not-present PTE is ignored',
      edit: (tm) => tm.machine.memory.write64(tm.tables.leafEntry(KERNEL), (1n << 45n) | BigInt(PAGE_A)),
      write: false,
      error: 0,
    },
  ];
  for (const c of cases) {
    const tm = machine();
    tm.tables.map(KERNEL, PAGE_A, Pte.writable);
    c.edit(tm);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, KERNEL).label('access');
      if (c.write) a.mov(qword(rax, 0), rax);
      else a.mov(rbx, qword(rax, 0));
    });
    const exit = expectException(t, tm, tm.run(), Vector.PF, c.error, code.addressOf('access'));
    t.is(exit.gla, KERNEL, c.name);
  }
  // A 2 MiB PDE must have bits 20:13 clear.
  const tm = machine();
  const base = 0xfffff80000400000n;
  tm.tables.map(base, 0x600000, Pte.writable, 0x200000);
  const pde = entryChain(tm, base)[2];
  tm.machine.memory.write64(pde, entryAt(tm, pde) | (1n << 13n));
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, base).label('access');
    a.mov(rbx, qword(rax, 0x10));
  });
  const exit = expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.reserved, code.addressOf('access'));
  t.is(exit.gla, base + 0x10n);
});

test('SMEP: a CPL0 fetch from a user page faults with I/D set; CPL0 data reads of it are allowed', (t) => {
  // Goal: CR4.SMEP (bit 20) — supervisor-mode execution of user pages faults, and sets I/D even with NXE=0. Method: supervisor-only identity map, one user page at a kernel address, CR4.SMEP=1, EFER.NXE=0.
  const tm = machine({ user: false });
  tm.state().set64('cr4', tm.state().get64('cr4') | CR4_SMEP);
  tm.state().set64('efer', tm.state().get64('efer') & ~EFER_NXE);
  tm.tables.map(KERNEL, PAGE_A, Pte.writable | Pte.user);
  tm.assemble(KERNEL, (a) => a.nop().vmcall(), PAGE_A);
  tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 0)).jmp(rax);
  });
  const exit = expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.fetch, KERNEL);
  t.is(exit.gla, KERNEL);
  t.is(tm.state().gpr('rbx') & 0xffn, 0x90n, 'the data read of the user page returned its first byte (NOP)');
});

test('a #PF delivered through the IDT writes CR2 and pushes the error code and the faulting RIP', (t) => {
  // Goal: #PF delivery (SDM §4.7, ch. 6). Method: no exception-bitmap exit; a handler reads the pushed error code, CR2 and the return RIP, then VMCALLs.
  const tm = new TestMachine();
  tm.tables.map(KERNEL, PAGE_A, 0n); // read-only
  const handler = tm.assemble(CODE + 0x800n, (a) => {
    a.pop(rbx).mov(rcx, cr2).mov(rdx, qword(rsp, 0)).mov(rsi, rsp).label('end');
    a.vmcall();
  });
  tm.setGate(Vector.PF, handler.base);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).label('write');
    a.mov(qword(rax, 0x18), rax);
  });
  expectVmcall(t, tm, tm.run(), handler.addressOf('end'));
  const state = tm.state();
  t.is(state.gpr('rbx'), BigInt(PfError.present | PfError.write), 'error code pushed');
  t.is(state.gpr('rcx'), KERNEL + 0x18n, 'CR2 holds the faulting linear address');
  t.is(state.get64('cr2'), KERNEL + 0x18n);
  t.is(state.gpr('rdx'), code.addressOf('write'), 'the return RIP is the faulting instruction');
  // Frame: SS, RSP, RFLAGS, CS, RIP, error code — six qwords below the (16-aligned) old RSP; one popped.
  t.is(state.gpr('rsi'), stackTop(0) - 40n);
  t.is(tm.machine.memory.read64(PAGE_A + 0x18), 0n, 'the faulting write had no effect');
});

// --- TLB ------------------------------------------------------------------------------------------

/** Maps KERNEL → PAGE_A and puts distinct values in PAGE_A and PAGE_B. */
function tlbMachine(): TestMachine {
  const tm = machine();
  tm.tables.map(KERNEL, PAGE_A, Pte.writable);
  tm.machine.memory.write64(PAGE_A + 8, 0xaaaan);
  tm.machine.memory.write64(PAGE_B + 8, 0xbbbbn);
  return tm;
}

/** Points KERNEL's PTE at PAGE_B, from outside the guest (no invalidation). */
function remapToB(tm: TestMachine): void {
  const pte = tm.tables.leafEntry(KERNEL);
  tm.machine.memory.write64(pte, (entryAt(tm, pte) & ~0x000f_ffff_ffff_f000n) | BigInt(PAGE_B));
}

test('TLB: after a PTE changes in memory the cached translation is used until INVLPG', (t) => {
  // Goal: SDM §4.10.4 — the processor may keep using a cached translation until it is invalidated. Method: read, remap the PTE from the host without a VM entry, read again (old page), INVLPG, read (new page).
  const tm = tlbMachine();
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 8)).label('cached');
    a.vmcall().mov(rcx, qword(rax, 8)).invlpg(mem(rax)).mov(rdx, qword(rax, 8)).label('end');
    a.vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('cached'));
  remapToB(tm);
  expectVmcall(t, tm, resume(tm), code.addressOf('end'));
  const state = tm.state();
  t.is(state.gpr('rbx'), 0xaaaan);
  t.is(state.gpr('rcx'), 0xaaaan, 'the stale translation is still used before INVLPG');
  t.is(state.gpr('rdx'), 0xbbbbn, 'INVLPG makes the new PTE take effect');
});

test('TLB: translations survive a VM entry that changes no paging state (VPID), and one that changes CR4 drops them', (t) => {
  // Goal: with VPID, VM entries and exits do not invalidate linear translations (SDM §28.3.3.1); the model keeps the TLB across an entry unless the hypervisor changed CR0/CR3/CR4/EFER. Method: as the INVLPG test, but the vCPU goes on through a VM entry each time: untouched (old page), then with CR4.PGE set by the hypervisor (new page).
  const tm = tlbMachine();
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 8)).label('cached');
    a.vmcall().mov(rcx, qword(rax, 8)).label('entered');
    a.vmcall().mov(rdx, qword(rax, 8)).label('end');
    a.vmcall();
  });
  const cpu = tm.cpu();
  expectVmcall(t, tm, tm.run(), code.addressOf('cached'));
  remapToB(tm);
  cpu.skipInstruction();
  expectVmcall(t, tm, tm.run(), code.addressOf('entered'));
  t.is(tm.state().gpr('rcx'), 0xaaaan, 'the translation cached before the exit is used after the entry');
  const epoch = cpu.mmu.epoch;
  cpu.enter();
  t.is(cpu.mmu.epoch, epoch, 'an entry that changes nothing leaves decoded blocks nothing to re-check');
  cpu.skipInstruction();
  tm.state().set64('cr4', tm.state().get64('cr4') | BigInt(CR4.PGE));
  expectVmcall(t, tm, tm.run(), code.addressOf('end'));
  t.is(tm.state().gpr('rdx'), 0xbbbbn, 'an entry with other paging state starts with an empty TLB');
});

test('TLB: a MOV to CR3 drops cached translations', (t) => {
  // Goal: writing CR3 invalidates non-global translations (SDM §4.10.4.1). Method: as the INVLPG test, with MOV CR3, CR3 instead.
  const tm = tlbMachine();
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(rbx, qword(rax, 8)).label('cached');
    a.vmcall().mov(rcx, qword(rax, 8)).mov(rsi, cr3).mov(cr3, rsi).mov(rdx, qword(rax, 8)).label('end');
    a.vmcall();
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('cached'));
  remapToB(tm);
  expectVmcall(t, tm, resume(tm), code.addressOf('end'));
  t.is(tm.state().gpr('rcx'), 0xaaaan, 'stale before the CR3 write');
  t.is(tm.state().gpr('rdx'), 0xbbbbn, 'new mapping after the CR3 write');
});

test('TLB: a write permission cached before the PTE became read-only still applies until INVLPG', (t) => {
  // Goal: rights reductions need invalidation (SDM §4.10.4.3). Method: write (caches a dirty, writable translation), clear R/W in memory, write again (allowed), INVLPG, write (#PF).
  const tm = tlbMachine();
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).mov(qword(rax, 0), rax).label('cached');
    a.vmcall().mov(qword(rax, 0x20), rax).invlpg(mem(rax)).label('write');
    a.mov(qword(rax, 0x28), rax);
  });
  expectVmcall(t, tm, tm.run(), code.addressOf('cached'));
  const pte = tm.tables.leafEntry(KERNEL);
  tm.machine.memory.write64(pte, entryAt(tm, pte) & ~Pte.writable);
  const exit = expectException(t, tm, resume(tm), Vector.PF, PfError.present | PfError.write, code.addressOf('write'));
  t.is(exit.gla, KERNEL + 0x28n);
  t.is(tm.machine.memory.read64(PAGE_A + 0x20), KERNEL, 'the write through the stale writable entry went through');
  t.is(tm.machine.memory.read64(PAGE_A + 0x28), 0n, 'after INVLPG the read-only PTE applies');
});

test('TLB: a not-present translation is not cached, so mapping the page needs no invalidation', (t) => {
  // Goal: SDM §4.10.2 — only translations that do not fault are cached. Method: a read faults (#PF exit), the host maps the page, the vCPU re-executes the read without a VM entry.
  const tm = machine();
  tm.tables.map(KERNEL + 0x1000n, PAGE_B, Pte.writable); // upper levels present, KERNEL's PTE not
  tm.machine.memory.write64(PAGE_A + 8, 0xaaaan);
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, KERNEL).label('read');
    a.mov(rbx, qword(rax, 8)).label('end');
    a.vmcall();
  });
  expectException(t, tm, tm.run(), Vector.PF, 0, code.addressOf('read'));
  tm.tables.map(KERNEL, PAGE_A, Pte.writable);
  expectVmcall(t, tm, tm.cpu().run(10_000), code.addressOf('end'));
  t.is(tm.state().gpr('rbx'), 0xaaaan);
});

// --- canonical addresses ----------------------------------------------------------------------------

test('a non-canonical data address raises #GP(0), also when only the last bytes are non-canonical', (t) => {
  // Goal: SDM Vol. 3A §3.3.7.1 — non-canonical memory references fault with #GP(0) before any paging. Method: loads from 0x0000800000000000 and from 0x00007ffffffffffc (8 bytes, crossing the boundary).
  for (const address of [0x0000800000000000n, 0x00007ffffffffffcn, 0xfffe000000000000n]) {
    const tm = machine();
    tm.state().setGpr('rbx', 7n);
    const code = tm.assemble(CODE, (a) => {
      a.mov(rax, address).label('load');
      a.mov(rbx, qword(rax, 0));
    });
    expectException(t, tm, tm.run(), Vector.GP, 0, code.addressOf('load'));
    t.is(tm.state().gpr('rbx'), 7n, `0x${address.toString(16)}: destination unchanged`);
  }
});

test('a non-canonical stack address raises #SS(0): PUSH, [RSP] and [RBP] operands', (t) => {
  // Goal: SS-relative references use #SS instead of #GP. Method: RSP/RBP non-canonical, then PUSH, a load through RSP and one through RBP.
  const bad = 0x0000900000000000n;
  const forms: Array<[string, (a: Assembler) => void]> = [
    ['push rax', (a) => a.push(rax)],
    ['mov rbx, [rsp+8]', (a) => a.mov(rbx, qword(rsp, 8))],
    ['mov rbx, [rbp]', (a) => a.mov(rbx, qword(rbp, 0))],
  ];
  for (const [name, emit] of forms) {
    const tm = machine();
    tm.state().setGpr('rsp', bad);
    tm.state().setGpr('rbp', bad);
    tm.state().setGpr('rbx', 7n);
    const code = tm.assemble(CODE, (a) => {
      a.label('access');
      emit(a);
    });
    expectException(t, tm, tm.run(), Vector.SS, 0, code.addressOf('access'));
    t.is(tm.state().gpr('rsp'), bad, `${name}: RSP unchanged`);
    t.is(tm.state().gpr('rbx'), 7n, `${name}: destination unchanged`);
  }
});

test('a jump to a non-canonical address raises #GP(0) on the jump itself', (t) => {
  // Goal: RIP never becomes non-canonical; the branch faults (SDM JMP: #GP(0) if the target is non-canonical). Method: JMP RAX with RAX = 2^47.
  const tm = machine();
  const code = tm.assemble(CODE, (a) => {
    a.mov(rax, 0x0000800000000000n).label('jump');
    a.jmp(rax);
  });
  expectException(t, tm, tm.run(), Vector.GP, 0, code.addressOf('jump'));
});

test('an instruction straddling the end of the lower canonical half raises #GP(0), it does not wrap to the upper half', (t) => {
  // Goal: bytes fetched from 0x0000800000000000 are non-canonical (#GP(0)), even though 0xffff800000000000 is mapped. Method: a 10-byte MOV at 0x7ffffffffffc, its tail also written at the upper-half page, and a jump to it.
  const tm = machine();
  const start = 0x7ffffffffffcn;
  tm.tables.map(0x7ffffffff000n, PAGE_A, Pte.writable);
  tm.tables.map(0xffff800000000000n, PAGE_B, Pte.writable);
  const a = new Assembler(start);
  a.mov(rbx, 0x1111222233334444n);
  const bytes = a.assemble().bytes;
  t.is(bytes.length, 10);
  tm.machine.memory.write(PAGE_A + 0xffc, bytes.subarray(0, 4));
  tm.machine.memory.write(PAGE_B, bytes.subarray(4));
  tm.machine.memory.write(PAGE_B + 6, new Uint8Array([0x0f, 0x01, 0xc1])); // VMCALL, where a wrapped fetch would continue
  tm.assemble(CODE, (b) => {
    b.mov(rax, start).jmp(rax);
  });
  expectException(t, tm, tm.run(), Vector.GP, 0, start);
  t.is(tm.state().gpr('rbx'), 0n, 'the straddling MOV did not execute');
});
