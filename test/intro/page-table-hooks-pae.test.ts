/**
 * Goal: the VAS monitor and swap hooks walk PAE page tables as HVMI does for a 32-bit PAE guest:
 * the PDPT is hooked as 0x20 bytes with only its first two entries (the user half) followed, three
 * levels, 32-bit linear addresses, 2 MiB and 4 KiB leaves.
 * Method: PAE tables built in guest memory beside a mini kernel's own; its 64-bit code writes
 * their entries through windows (the engine's walk does not care which CPU mode wrote them).
 */
import test from 'ava';
import { qword, rax, rbx, type Assembler } from '../../src/asm/index.ts';
import { HookType } from '../../src/intro/gpa-hooks.ts';
import { PTS_MONITORED_BITS } from '../../src/intro/page-table-writes.ts';
import type { SwapChange } from '../../src/intro/pts-hooks.ts';
import type { VasChange } from '../../src/intro/vas-monitor.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { KBASE, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

/** A PDPT at 32-byte offset 0x40 of its page (CR3 under PAE is 32-byte aligned), a PD, a PT. */
const PDPT = 0xa00040;
const PD = 0xa01000;
const PT = 0xa02000;
const PT_WINDOW = KBASE + 0x6000n;
const PD_WINDOW = KBASE + 0x7000n;
const LEAF = Pte.present | Pte.writable;

function paeKernel(build: (a: Assembler) => void): MiniKernel {
  const kernel = miniKernel((a) => {
    build(a);
    a.vmcall();
  });
  const memory = kernel.test.machine.memory;
  for (const page of [PDPT - 0x40, PD, PT]) memory.fill(page, 0x1000, 0);
  memory.write64(PDPT, BigInt(PD) | Pte.present); //              PDPTE 0 (no R/W, U/S under PAE)
  memory.write64(PD, BigInt(PT) | Pte.present | Pte.writable); //  PDE 0 → the page table
  memory.write64(PD + 8, 0x600000n | Pte.present | Pte.writable | Pte.large); // PDE 1: a 2 MiB page
  memory.write64(PT + 5 * 8, 0x500000n | LEAF); //                 PTE 5: 0x5000 → 0x500000
  kernel.test.tables.map(PT_WINDOW, PT, Pte.writable);
  kernel.test.tables.map(PD_WINDOW, PD, Pte.writable);
  return kernel;
}

const store = (a: Assembler, at: bigint, value: bigint): void => {
  a.mov(rbx, at);
  a.mov(rax, value);
  a.mov(qword(rbx), rax);
};

test('the VAS monitor on PAE tables: the PDPT hooked as 0x20 bytes, then the PD and PT; a PTE store and a table removal call back with 32-bit addresses', (t) => {
  const kernel = paeKernel((a) => {
    store(a, PT_WINDOW + 6n * 8n, 0x510000n | LEAF); //  map 0x6000
    store(a, PD_WINDOW + 8n, 0x800000n | Pte.present | Pte.writable | Pte.large); // move the 2 MiB page at 0x200000
    store(a, PD_WINDOW, 0n); //                              take the page table away
  });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const changes: VasChange[] = [];
  engine.vas.start(PDPT, 'pae', (change) => changes.push(change), PTS_MONITORED_BITS, 'pae');
  const vas = engine.hooks.liveHooks().filter((hook) => hook.owner === 'vas:pae' && hook.type === HookType.write);
  t.deepEqual(vas.map((hook) => [hook.gpaPage + hook.offset, hook.length]).sort((x, y) => x[0] - y[0]), [[PDPT, 0x20], [PD, 0x1000], [PT, 0x1000]]);
  kernel.runToEnd();
  t.like(changes[0], { gla: 0x6000n, old: 0n, new: 0x510000n | LEAF, pageSize: 0x1000, vcpuId: 0 });
  t.like(changes[1], { gla: 0x200000n, old: 0x600000n | LEAF | Pte.large, new: 0x800000n | LEAF | Pte.large, pageSize: 0x200000 });
  const removed = changes.slice(2);
  t.deepEqual(removed.map((c) => [c.gla, c.new, c.vcpuId]), [[0x5000n, 0n, -1], [0x6000n, 0n, -1]], 'the page table went: its two leaves go with it');
  t.deepEqual(engine.vas.divergence(), []);
});

test('a swap hook on a PAE translation follows a PTE rewrite and a PDE that takes the table away', (t) => {
  const kernel = paeKernel((a) => {
    store(a, PT_WINDOW + 5n * 8n, 0x520000n | LEAF);
    store(a, PD_WINDOW, 0n);
  });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const changes: SwapChange[] = [];
  engine.pts.set(0x5000n, PDPT, 'pae', (change) => changes.push(change), 'pae');
  kernel.session.ept.flush();
  const placed = engine.hooks.liveHooks().filter((hook) => hook.owner === 'pts:pae').map((hook) => hook.gpaPage + hook.offset);
  t.deepEqual(placed.sort((x, y) => x - y), [PDPT, PD, PT + 5 * 8], 'PDPTE 0, PDE 0, PTE 5');
  kernel.runToEnd();
  t.is(changes.length, 2);
  t.like(changes[0], { gva: 0x5000n, old: 0x500000n | LEAF, new: 0x520000n | LEAF, pageSize: 0x1000 });
  t.like(changes[1], { gva: 0x5000n, new: 0n });
});
