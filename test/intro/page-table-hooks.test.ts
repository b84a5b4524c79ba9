/**
 * Goal: the engine's page-table machinery as HVMI has it (hvmi-notes §8–9): a guest store to a
 * watched page table is carried out by the engine and reaches the callbacks once, whole; two
 * 4-byte halves make one callback (or, naive, two — the first half-new); the VAS monitor's table
 * removal synthesises `old → 0` for every leaf, a table linked again produces no callbacks for what
 * it holds but watches its entries again; a swap hook follows its translation and goes quiet when
 * removed; the duplicate-write rule and its false positive.
 * Method: guest code on a mini kernel writes the identity map's own entries through a window.
 */
import test from 'ava';
import { dword, eax, edx, qword, rax, rbx, type Assembler } from '../../src/asm/index.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { processPtWrite, newWriteState, type PtEmuBuffer } from '../../src/intro/pte-write-state.ts';
import { PTS_MONITORED_BITS } from '../../src/intro/page-table-writes.ts';
import { IntStatus } from '../../src/intro/status.ts';
import type { SwapChange } from '../../src/intro/pts-hooks.ts';
import type { VasChange } from '../../src/intro/vas-monitor.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { KBASE, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

/** An identity-mapped page whose PTE the guest rewrites, and the window its table is seen through. */
const PAGE = 0x300000n;
const WINDOW = KBASE + 0x6000n;
const NX = 1n << 63n;
const FLAGS = Pte.present | Pte.writable;

interface Rig {
  readonly kernel: MiniKernel;
  /** GVA (through the window) of PAGE's PTE, and of the directory entry over it. */
  readonly pte: bigint;
  readonly pteGpa: number;
  readonly pdeGpa: number;
  readonly pde: bigint;
}

/** GPAs of the entries on the way to `linear` (PML4E, PDPTE, PDE, PTE) under the tables at `root`. */
function entriesOf(kernel: MiniKernel, linear: bigint): number[] {
  const memory = kernel.test.machine.memory;
  const out: number[] = [];
  let table = kernel.test.tables.root;
  for (const shift of [39n, 30n, 21n, 12n]) {
    const entry = table + Number((linear >> shift) & 511n) * 8;
    out.push(entry);
    table = Number(memory.read64(entry) & 0x000f_ffff_ffff_f000n);
  }
  return out;
}

/** A mini kernel whose code is `build`, with windows onto PAGE's page table and directory. */
function rig(build: (a: Assembler, at: { pte: bigint; pde: bigint }) => void, fixes = fixesWithout([])): Rig {
  // The layout is deterministic: find the entries on a probe, then build the real kernel.
  const probe = miniKernel((a) => a.vmcall());
  const [, , pdeGpa, pteGpa] = entriesOf(probe, PAGE);
  void probe.session.close();
  const pte = WINDOW + BigInt(pteGpa % 0x1000);
  const pde = WINDOW + 0x1000n + BigInt(pdeGpa % 0x1000);
  const kernel = miniKernel((a) => build(a, { pte, pde }), { fixes });
  kernel.test.tables.map(WINDOW, pteGpa - (pteGpa % 0x1000), Pte.writable);
  kernel.test.tables.map(WINDOW + 0x1000n, pdeGpa - (pdeGpa % 0x1000), Pte.writable);
  return { kernel, pte, pteGpa, pdeGpa, pde };
}

test('an 8-byte PTE store to a watched table: the engine carries it out, the vCPU skips it, one leaf callback with the whole old and new entry', (t) => {
  const newEntry = 0x500000n | FLAGS | NX;
  const r = rig((a, at) => {
    a.mov(rbx, at.pte);
    a.mov(rax, newEntry);
    a.mov(qword(rbx), rax);
    a.vmcall();
  });
  t.teardown(() => r.kernel.session.close());
  const engine = r.kernel.intro.engine;
  const memory = r.kernel.test.machine.memory;
  const before = memory.read64(r.pteGpa);
  const changes: VasChange[] = [];
  engine.vas.start(engine.kernel.systemCr3, 'test', (change) => changes.push(change));
  r.kernel.runToEnd();
  t.is(memory.read64(r.pteGpa), newEntry);
  t.is(changes.length, 1);
  t.like(changes[0], { gla: PAGE, old: before, new: newEntry, pageSize: 0x1000, vcpuId: 0 });
  t.is(r.kernel.notes('pt-write').filter((n) => n.emulated === true).length, 1);
  t.deepEqual(engine.vas.divergence(), []);
});

for (const assemble of [true, false]) {
  test(`two 4-byte halves of a PTE: ${assemble ? 'one callback once both are written' : 'partialWriteAssembly off — a callback per half, the first on a half-new entry'}`, (t) => {
    const newEntry = 0x500000n | FLAGS;
    const r = rig((a, at) => {
      a.mov(rbx, at.pte);
      a.mov(eax, Number(newEntry & 0xffffffffn));
      a.mov(edx, 0);
      a.mov(dword(rbx), eax);
      a.mov(dword(rbx, 4), edx);
      a.vmcall();
    }, assemble ? fixesWithout([]) : fixesWithout(['partialWriteAssembly']));
    t.teardown(() => r.kernel.session.close());
    const engine = r.kernel.intro.engine;
    const memory = r.kernel.test.machine.memory;
    const before = memory.read64(r.pteGpa) | NX;
    memory.write64(r.pteGpa, before); // the old mapping is non-executable: the high half changes too
    const changes: VasChange[] = [];
    engine.vas.start(engine.kernel.systemCr3, 'test', (change) => changes.push(change), PTS_MONITORED_BITS | NX);
    r.kernel.runToEnd();
    t.is(memory.read64(r.pteGpa), newEntry);
    if (assemble) {
      t.is(changes.length, 1);
      t.like(changes[0], { old: before, new: newEntry });
    } else {
      t.is(changes.length, 2);
      t.like(changes[0], { old: before, new: (newEntry & 0xffffffffn) | NX }, 'the low half over the old high half: a mapping nobody wrote');
      t.like(changes[1], { new: newEntry });
    }
  });
}

test('a table taken out of its directory: every present leaf below gets old → 0; linked again: no callbacks for what it holds, its entries watched again', (t) => {
  const r = rig((a, at) => {
    a.mov(rbx, at.pde);
    a.mov(rax, qword(rbx));
    a.mov(qword(rbx), 0); //                      unlink
    a.mov(qword(rbx), rax); //                    link again
    a.mov(rbx, at.pte);
    a.mov(qword(rbx), 0); //                      unmap PAGE
    a.vmcall();
  });
  t.teardown(() => r.kernel.session.close());
  const engine = r.kernel.intro.engine;
  const changes: VasChange[] = [];
  engine.vas.start(engine.kernel.systemCr3, 'test', (change) => changes.push(change));
  r.kernel.runToEnd();
  const synthesised = changes.filter((c) => c.vcpuId === -1);
  t.is(synthesised.length, 512, 'the table maps 512 identity pages');
  t.true(synthesised.every((c) => c.new === 0n && (c.old & 1n) === 1n));
  t.true(synthesised.some((c) => c.gla === PAGE));
  const written = changes.filter((c) => c.vcpuId === 0);
  t.is(written.length, 1, 'relinking makes no callbacks; the unmap through the relinked table makes one');
  t.like(written[0], { gla: PAGE, new: 0n });
  t.deepEqual(engine.vas.divergence(), []);
});

test('a swap hook calls back when its translation changes, through the leaf or a level above, and never after removal', (t) => {
  const r = rig((a, at) => {
    a.mov(rbx, at.pte);
    a.mov(rax, 0x500000n | FLAGS);
    a.mov(qword(rbx), rax); //                    remap
    a.or(qword(rbx), 0x60); //                    A/D only: no callback
    a.mov(rbx, at.pde);
    a.mov(qword(rbx), 0); //                      the directory entry goes: not mapped
    a.vmcall();
  });
  t.teardown(() => r.kernel.session.close());
  const engine = r.kernel.intro.engine;
  const memory = r.kernel.test.machine.memory;
  const before = memory.read64(r.pteGpa);
  const changes: SwapChange[] = [];
  engine.pts.set(PAGE, engine.kernel.systemCr3, 'test', (change) => changes.push(change));
  r.kernel.session.ept.flush(); // placed outside a handler: commit it as a handler's end would
  r.kernel.runToEnd();
  t.is(changes.length, 2);
  t.like(changes[0], { gva: PAGE, old: before, new: 0x500000n | FLAGS });
  t.like(changes[1], { gva: PAGE, new: 0n });
  t.is(memory.read64(r.pdeGpa), 0n);
});

test('a removed swap hook is quiet', (t) => {
  const r = rig((a, at) => {
    a.mov(rbx, at.pte);
    a.mov(rax, 0x500000n | FLAGS);
    a.mov(qword(rbx), rax);
    a.vmcall();
  });
  t.teardown(() => r.kernel.session.close());
  const engine = r.kernel.intro.engine;
  const changes: SwapChange[] = [];
  const hook = engine.pts.set(PAGE, engine.kernel.systemCr3, 'test', (change) => changes.push(change));
  r.kernel.session.ept.flush();
  engine.pts.remove(hook);
  r.kernel.runToEnd();
  t.is(changes.length, 0);
  t.is(r.kernel.test.machine.memory.read64(r.pteGpa), 0x500000n | FLAGS, 'the store happened (the hypervisor carried it out)');
});

test('the duplicate-write rule on a 32-bit guest: a second 4-byte write from the same RIP is dropped — also when it is another vCPU\'s real write (HVMI\'s false positive)', (t) => {
  const state = newWriteState(0x1000n | 1n);
  const cache = { valid: false, pteAddress: 0, value: 0n };
  const rules = { assemble: true, dropDuplicates: true, guest32: true };
  const rip = 0x80401234n;
  const write = (gpa: number, value: bigint, old: bigint, from = rip): PtEmuBuffer => ({ valid: true, emulated: true, partial: true, old, new: value, size: 4, gpa, rip: from });
  t.is(processPtWrite(state, write(0x8000, 0x2001n, 0x1001n), cache, 8, rules).status, IntStatus.partialWrite, 'the low half');
  t.is(processPtWrite(state, write(0x8000, 0x2001n, 0x2001n), cache, 8, rules).status, IntStatus.notNeededHint, 'the same event again: dropped');
  const done = processPtWrite(state, write(0x8004, 0n, 0x2001n, rip + 3n), cache, 8, rules);
  t.is(done.status, IntStatus.success);
  t.is(done.new, 0x2001n);
  // vCPU 1 runs the same store (same RIP) right after with another value: taken for a duplicate.
  t.is(processPtWrite(state, write(0x8004, 0x5n, 0n, rip + 3n), cache, 8, rules).status, IntStatus.notNeededHint, 'a real write dropped: the engine\'s view now differs from memory');
  // With the rule off, the duplicate is merged again.
  const naive = newWriteState(0x1001n);
  const off = { ...rules, dropDuplicates: false };
  processPtWrite(naive, write(0x8000, 0x2001n, 0x1001n), cache, 8, off);
  t.is(processPtWrite(naive, write(0x8000, 0x2001n, 0x2001n), cache, 8, off).status, IntStatus.partialWrite);
});
