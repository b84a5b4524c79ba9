/**
 * Goal: PAE paging in 32-bit protected mode behaves as the SDM Vol. 3A §4.4 says: the four PDPTEs
 * are loaded into registers at MOV CR3 (and when PAE paging is turned on) and used from there,
 * reserved PDPTE bits make the MOV #GP, 4 KiB and 2 MiB pages, NX (EFER.NXE), U/S, R/W with
 * CR0.WP, A/D bits, #PF error codes, and EPT checks on the paging structures and the final page.
 * Method: hand-encoded 32-bit guest code on a PAE machine; faults exit through the exception
 * bitmap, and the test reads the exit record, registers, the PDPTE registers and guest memory.
 */
import test, { type ExecutionContext } from 'ava';
import { RunStop, type RunStopCode } from '../../src/cpu/cpu.ts';
import { EptBits, ExitAccess, ExitEptFlags, ExitReason } from '../../src/cpu/state-block.ts';
import { PfError, Vector } from '../../src/cpu/stop.ts';
import { walkPaePageTables } from '../../src/cpu/page-walk.ts';
import { translateGva } from '../../src/machine/guest-virtual.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import type { ExitRecord } from '../../src/machine/vcpu-state.ts';
import { CODE32, I32, PaeMachine, code32, imm32, type PaeMachineOptions } from '../support/pae-machine.ts';

const FAULT_EXITS = (1 << Vector.PF) | (1 << Vector.GP);
/** Linear addresses in PDPT slots 1 and 2 (outside the identity-mapped slot 0). */
const SLOT1 = 0x40000000;
const SLOT2 = 0x80000000;
/** Guest-physical pages the tests map there. */
const PAGE_X = 0x500000;
const PAGE_Y = 0x501000;

function machine(options: PaeMachineOptions = {}): PaeMachine {
  return new PaeMachine({ exceptionBitmap: FAULT_EXITS, ...options });
}

function expectVmcall(t: ExecutionContext, tm: PaeMachine, why: RunStopCode): void {
  t.is(why, RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.vmcall, `expected VMCALL, got reason ${exit.reason} vector ${exit.info0} at 0x${exit.rip.toString(16)}`);
}

function expectException(t: ExecutionContext, tm: PaeMachine, why: RunStopCode, vector: number, error: number, rip: number): ExitRecord {
  t.is(why, RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.exception, `expected an exception exit, got reason ${exit.reason}`);
  t.is(exit.info0, vector, 'vector');
  t.is(Number(exit.value & 0xffffffffn), error, `error code 0x${(exit.value & 0xffffffffn).toString(16)}`);
  t.is(exit.rip, BigInt(rip), 'RIP of the faulting instruction');
  return exit;
}

const eax = (tm: PaeMachine): number => Number(tm.state().gpr('rax'));

test('the PDPTEs are loaded at MOV CR3: later PDPT writes change nothing until the next MOV CR3, not even after INVLPG or a VM entry', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
  tm.tables.map(BigInt(SLOT2), PAGE_Y, Pte.writable);
  tm.machine.memory.write32(PAGE_X, 0x1111);
  tm.machine.memory.write32(PAGE_Y, 0x2222);
  // The builder added PDPTEs after the helper loaded them: load again, as a hypervisor would.
  tm.cpu();
  const reload = code32(I32.reloadCr3, I32.movEbxImm(SLOT1), I32.loadEaxEbx, I32.vmcall);
  const after = code32(I32.invlpgEbx, I32.loadEaxEbx, [0x89, 0xc2] /* mov edx, eax */, I32.reloadCr3, I32.loadEaxEbx, I32.vmcall);
  tm.write(CODE32, reload);
  tm.write(CODE32 + reload.length, after);
  expectVmcall(t, tm, tm.run());
  t.is(eax(tm), 0x1111);
  // The guest's PDPT now sends slot 1 where slot 2 goes.
  const pdpt = tm.tables.root;
  const slot2 = tm.read64(pdpt + 16);
  tm.write64(pdpt + 8, slot2);
  t.not(tm.state().pdpte(1), slot2);
  const cpu = tm.cpu();
  cpu.skipInstruction();
  cpu.enter();
  expectVmcall(t, tm, cpu.run(100));
  t.is(Number(tm.state().gpr('rdx')), 0x1111, 'after INVLPG the walk still starts from the cached PDPTE');
  t.is(eax(tm), 0x2222, 'MOV CR3 loaded the new PDPTE');
  t.is(tm.state().pdpte(1), slot2);
});

test('a present PDPTE with reserved bits makes MOV CR3 raise #GP(0) and load nothing; a not-present one does not', (t) => {
  const cases: Array<[string, number, bigint, boolean]> = [
    ['R/W (bit 1)', 0, 0x2n, true],
    ['bit 5', 1, 0x20n, true],
    ['XD (bit 63: no XD in a PDPTE)', 0, 1n << 63n, true],
    ['an address bit above MAXPHYADDR (bit 45)', 2, 1n << 45n, true],
    ['not present, reserved bits set', 3, 0x1e6n | (1n << 63n), false],
  ];
  for (const [what, slot, bits, faults] of cases) {
    const tm = machine();
    const pdpt = 0x600000;
    const root = tm.tables.root;
    for (let k = 0; k < 4; k++) tm.write64(pdpt + 8 * k, tm.read64(root + 8 * k));
    const present = slot === 3 ? 0n : 1n;
    tm.write64(pdpt + 8 * slot, (tm.read64(pdpt + 8 * slot) & ~1n) | present | bits | (slot === 0 ? 0n : BigInt(0x700000)));
    tm.write(CODE32, code32(I32.movEaxImm(pdpt), I32.movCr3Eax, I32.vmcall));
    const before = [0, 1, 2, 3].map((k) => tm.state().pdpte(k));
    const why = tm.run();
    if (faults) {
      expectException(t, tm, why, Vector.GP, 0, CODE32 + 5);
      t.is(tm.state().get64('cr3'), BigInt(root), `${what}: CR3 unchanged`);
      t.deepEqual([0, 1, 2, 3].map((k) => tm.state().pdpte(k)), before, `${what}: PDPTE registers unchanged`);
    } else {
      expectVmcall(t, tm, why);
      t.is(tm.state().get64('cr3'), BigInt(pdpt), `${what}: CR3 loaded`);
      t.is(tm.state().pdpte(3), tm.read64(pdpt + 24), `${what}: the entry is loaded as it is`);
    }
  }
});

test('turning PAE paging on with MOV CR0 loads the PDPTEs', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
  tm.machine.memory.write32(PAGE_X, 0x5a5a);
  const state = tm.state();
  state.set64('cr0', state.get64('cr0') & ~0x80000000n);
  for (let k = 0; k < 4; k++) state.setPdpte(k, 0n);
  // mov eax, cr0 ; or eax, 0x80000000 ; mov cr0, eax ; mov ebx, SLOT1 ; mov eax, [ebx] ; vmcall
  tm.write(CODE32, code32([0x0f, 0x20, 0xc0], [0x0d, ...imm32(0x80000000)], [0x0f, 0x22, 0xc0], I32.movEbxImm(SLOT1), I32.loadEaxEbx, I32.vmcall));
  expectVmcall(t, tm, tm.run());
  t.is(eax(tm), 0x5a5a);
  t.is(state.pdpte(1), tm.read64(tm.tables.root + 8));
});

test('2 MiB pages translate with bits 20:0 of the address, and reserved bits 20:13 of the PDE are #PF RSVD', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1 + 0x200000), 0x600000, Pte.writable, 0x200000);
  tm.tables.map(BigInt(SLOT1 + 0x400000), 0x600000, Pte.writable, 0x200000);
  const bad = tm.entries(SLOT1 + 0x400000)[0];
  tm.write64(bad, tm.read64(bad) | 0x2000n);
  tm.machine.memory.write32(0x612344, 0xcafe);
  tm.cpu();
  tm.write(CODE32, code32(I32.reloadCr3, I32.movEbxImm(SLOT1 + 0x212344), I32.loadEaxEbx, I32.movEbxImm(SLOT1 + 0x412344), I32.loadEaxEbx, I32.vmcall));
  const exit = expectException(t, tm, tm.run(), Vector.PF, PfError.present | PfError.reserved, CODE32 + 6 + 5 + 2 + 5);
  t.is(eax(tm), 0xcafe);
  t.is(exit.gla, BigInt(SLOT1 + 0x412344), 'the faulting linear address (CR2 on delivery)');
  const pde = tm.entries(SLOT1 + 0x200000)[0];
  t.is(tm.read64(pde) & (Pte.accessed | Pte.dirty), Pte.accessed, 'A set on the 2 MiB leaf by the read, D not');
});

test('NX: a fetch from an XD page is #PF with I/D when EFER.NXE=1; with NXE=0 bit 63 is reserved (#PF RSVD on any access)', (t) => {
  for (const nx of [true, false]) {
    const tm = machine({ noExecute: nx });
    tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable | Pte.noExecute);
    tm.write(PAGE_X, code32(I32.vmcall));
    tm.cpu();
    tm.write(CODE32, code32(I32.reloadCr3, I32.movEbxImm(SLOT1), nx ? I32.jmpEbx : I32.loadEaxEbx));
    const why = tm.run();
    if (nx) {
      const exit = expectException(t, tm, why, Vector.PF, PfError.present | PfError.fetch, SLOT1);
      t.is(exit.gla, BigInt(SLOT1));
    } else {
      const exit = expectException(t, tm, why, Vector.PF, PfError.present | PfError.reserved, CODE32 + 11);
      t.is(exit.gla, BigInt(SLOT1));
    }
  }
});

test('R/W with CR0.WP: a supervisor write to a read-only page faults only with WP=1', (t) => {
  for (const wp of [true, false]) {
    const tm = machine({ writeProtect: wp });
    tm.tables.map(BigInt(SLOT1), PAGE_X, 0n);
    tm.cpu();
    tm.write(CODE32, code32(I32.reloadCr3, I32.movEbxImm(SLOT1 + 8), I32.movEaxImm(0x77), I32.storeEbxEax, I32.vmcall));
    const why = tm.run();
    if (wp) {
      expectException(t, tm, why, Vector.PF, PfError.present | PfError.write, CODE32 + 16);
      t.is(tm.read32(PAGE_X + 8), 0);
    } else {
      expectVmcall(t, tm, why);
      t.is(tm.read32(PAGE_X + 8), 0x77);
    }
  }
});

test('U/S: CPL 3 reading a supervisor page is #PF with P and U; a user page reads', (t) => {
  for (const user of [false, true]) {
    const tm = machine({ user: true });
    tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable | (user ? Pte.user : 0n));
    tm.machine.memory.write32(PAGE_X, 0x3333);
    tm.cpu();
    // Reload CR3 at ring 0 (it is privileged), then drop to ring 3 through the state block.
    tm.write(CODE32, code32(I32.reloadCr3, I32.vmcall, I32.movEbxImm(SLOT1), I32.loadEaxEbx, I32.vmcall));
    expectVmcall(t, tm, tm.run());
    const state = tm.state();
    state.set32('cs', 0x1b);
    state.set32('ss', 0x23);
    state.rip = BigInt(CODE32 + 9);
    const why = tm.run();
    if (user) {
      expectVmcall(t, tm, why);
      t.is(eax(tm), 0x3333);
    } else {
      expectException(t, tm, why, Vector.PF, PfError.present | PfError.user, CODE32 + 14);
    }
  }
});

test('A is set on the PDE and PTE by a walk, D on the PTE by a write; the PDPTE in memory is never written', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
  tm.cpu();
  const [pde, pte] = tm.entries(SLOT1);
  const pdpte = tm.read64(tm.tables.root + 8);
  tm.write(CODE32, code32(I32.reloadCr3, I32.movEbxImm(SLOT1), I32.loadEaxEbx, I32.vmcall, I32.storeEbxEax, I32.vmcall));
  expectVmcall(t, tm, tm.run());
  t.is(tm.read64(pde) & (Pte.accessed | Pte.dirty), Pte.accessed, 'PDE: A');
  t.is(tm.read64(pte) & (Pte.accessed | Pte.dirty), Pte.accessed, 'PTE: A, not D after a read');
  expectVmcall(t, tm, tm.resume());
  t.is(tm.read64(pte) & (Pte.accessed | Pte.dirty), Pte.accessed | Pte.dirty, 'PTE: D after the write');
  t.is(tm.read64(tm.tables.root + 8), pdpte, 'PDPTE bits 5 and 6 are reserved in PAE mode: no A/D there');
});

test('#PF for a not-present PDPTE, PDE and PTE: error codes and the faulting address', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
  tm.cpu();
  const cases: Array<[string, number, boolean]> = [
    ['PDPTE 3 not present, read', 0xc0001000, false],
    ['PDE not present, write', SLOT1 + 0x200000 + 4, true],
    ['PTE not present, write', SLOT1 + 0x1000, true],
  ];
  for (const [what, linear, write] of cases) {
    tm.write(CODE32, code32(I32.reloadCr3, I32.movEbxImm(linear), write ? I32.storeEbxEax : I32.loadEaxEbx, I32.vmcall));
    const exit = expectException(t, tm, tm.run(), Vector.PF, write ? PfError.write : 0, CODE32 + 11);
    t.is(exit.gla, BigInt(linear), `${what}: address`);
    tm.state().rip = BigInt(CODE32);
  }
});

test('EPT: a paging-structure read, the final page and the PDPT load at MOV CR3 are each checked', (t) => {
  const setUp = (): PaeMachine => {
    const tm = machine();
    tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
    tm.cpu();
    tm.write(CODE32, code32(I32.reloadCr3, I32.vmcall, I32.movEbxImm(SLOT1 + 0x10), I32.storeEbxEax, I32.vmcall));
    expectVmcall(t, tm, tm.run());
    tm.state().rip = BigInt(CODE32 + 9);
    return tm;
  };
  // The page table of SLOT1 loses read: the walk's PTE read exits (not the final translation).
  let tm = setUp();
  const pte = tm.entries(SLOT1)[1];
  tm.machine.ept.setRights(pte & ~0xfff, 0);
  t.is(tm.run(), RunStop.exit);
  let exit = tm.state().exit();
  t.is(exit.reason, ExitReason.eptViolation);
  t.is(exit.gpa, BigInt(pte));
  t.is(exit.gla, BigInt(SLOT1 + 0x10));
  t.is(exit.qualification & 7, ExitAccess.read);
  t.is(exit.qualification & ExitEptFlags.finalTranslation, 0);
  // The data page is read-only in EPT: the write exits on the final translation.
  tm = setUp();
  tm.machine.ept.setRights(PAGE_X, EptBits.read);
  t.is(tm.run(), RunStop.exit);
  exit = tm.state().exit();
  t.is(exit.reason, ExitReason.eptViolation);
  t.is(exit.gpa, BigInt(PAGE_X + 0x10));
  t.is(exit.qualification & 7, ExitAccess.write);
  t.not(exit.qualification & ExitEptFlags.finalTranslation, 0);
  t.is(tm.read32(PAGE_X + 0x10), 0, 'nothing written');
  // A new PDPT the guest cannot read through EPT: MOV CR3 exits before CR3 changes.
  tm = machine();
  const pdpt = 0x600000;
  for (let k = 0; k < 4; k++) tm.write64(pdpt + 8 * k, tm.read64(tm.tables.root + 8 * k));
  tm.machine.ept.setRights(pdpt, 0);
  tm.write(CODE32, code32(I32.movEaxImm(pdpt), I32.movCr3Eax, I32.vmcall));
  t.is(tm.run(), RunStop.exit);
  exit = tm.state().exit();
  t.is(exit.reason, ExitReason.eptViolation);
  t.is(exit.gpa, BigInt(pdpt));
  t.is(exit.rip, BigInt(CODE32 + 5));
  t.is(tm.state().get64('cr3'), BigInt(tm.tables.root));
});

test('the software PAE walk reads the PDPTE from memory, or from the registers when given them', (t) => {
  const tm = machine();
  tm.tables.map(BigInt(SLOT1), PAGE_X, Pte.writable);
  tm.tables.map(BigInt(SLOT2), PAGE_Y, Pte.writable, 4096);
  tm.tables.map(BigInt(SLOT2 + 0x200000), 0x600000, Pte.writable, 0x200000);
  const cpu = tm.cpu();
  tm.write(CODE32, code32(I32.reloadCr3, I32.vmcall));
  expectVmcall(t, tm, tm.run());
  const memory = tm.machine.memory;
  const root = tm.tables.root;
  t.is(walkPaePageTables(memory, root, SLOT1 + 0x123)?.gpa, PAGE_X + 0x123);
  const large = walkPaePageTables(memory, root, SLOT2 + 0x234567);
  t.is(large?.gpa, 0x634567);
  t.is(large?.pageBytes, 0x200000);
  t.is(walkPaePageTables(memory, root, 0xc0000000), null, 'PDPTE 3 is not present');
  // The guest's PDPT changes without a MOV CR3: memory and registers now disagree.
  tm.write64(root + 8, tm.read64(root + 16));
  t.is(walkPaePageTables(memory, root, SLOT1 + 0x10)?.gpa, PAGE_Y + 0x10, 'from memory');
  t.is(walkPaePageTables(memory, root, SLOT1 + 0x10, cpu.mmu.pdptes)?.gpa, PAGE_X + 0x10, 'from the PDPTE registers');
  t.is(translateGva(memory, root, BigInt(SLOT1 + 0x10), 'pae'), PAGE_Y + 0x10);
});
