/**
 * Goal: the engine runs beside a 32-bit PAE guest as HVMI does with gGuest.PaeEnabled and
 * !Guest64: it reads the kernel image through PAE tables, decodes the guest's code as 32-bit, and
 * a page-table entry written in two 4-byte halves (how a PAE kernel writes one) reaches the VAS
 * monitor once, whole — or, with the halves delivered twice in two exits (the lookahead off), the
 * duplicate is dropped (duplicateWriteDrop), while without the rule the second delivery starts a
 * bogus partial write.
 * Method: a 32-bit kernel on a PAE machine (code from the assembler's 32-bit mode), an inline
 * session and the engine; the test steps the vCPU and hands its exits to the engine
 * (test/support/pae-kernel.ts). The lookahead itself: pae-lookahead.test.ts.
 */
import test from 'ava';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { PTS_MONITORED_BITS } from '../../src/intro/page-table-writes.ts';
import type { VasChange } from '../../src/intro/vas-monitor.ts';
import { notesOf, PAE_ENTRY, PAE_PAGE, paeKernel, type PaeKernel } from '../support/pae-kernel.ts';

/** The VAS monitor on the kernel's address space; the changes it calls back with. */
function watch(kernel: PaeKernel): VasChange[] {
  const engine = kernel.intro.engine;
  const changes: VasChange[] = [];
  engine.vas.start(engine.kernel.systemCr3, 'pae', (change) => changes.push(change), PTS_MONITORED_BITS, 'pae');
  return changes;
}

test('a PAE kernel writes a PTE in two halves: the engine decodes 32-bit code, emulates each half, and the VAS monitor gets one whole change', (t) => {
  const kernel = paeKernel();
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  t.is(engine.decoder.bitness, 32);
  const before = kernel.tm.machine.memory.read64(kernel.pteGpa);
  const changes = watch(kernel);
  kernel.runToEnd();
  const writes = notesOf(kernel.events, 'pt-write');
  t.deepEqual(writes.map((w) => [w.ins, w.size, w.emulated]), [['mov', 4, true], ['mov', 4, true]]);
  t.is(changes.length, 1);
  t.like(changes[0], { gla: BigInt(PAE_PAGE), old: before, new: PAE_ENTRY, pageSize: 0x1000 });
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
  t.deepEqual(engine.vas.divergence(), []);
});

for (const rule of [true, false]) {
  test(`each half in its own exit, delivered twice (a hypervisor fault): ${rule ? 'the duplicates are dropped and one whole change arrives' : 'duplicateWriteDrop off — the second delivery of the high half starts a partial write that never completes'}`, (t) => {
    const kernel = paeKernel({ fixes: fixesWithout(rule ? ['paeStoreLookahead'] : ['paeStoreLookahead', 'duplicateWriteDrop']) });
    t.teardown(() => kernel.session.close());
    const engine = kernel.intro.engine;
    const changes = watch(kernel);
    kernel.runToEnd(true);
    t.is(notesOf(kernel.events, 'pt-write').length, 4, 'four emulations: each half twice');
    t.is(changes.length, 1, 'one whole change either way');
    // What differs is the entry's write state afterwards: stuck half-written without the rule.
    const stale = engine.vas.divergence();
    t.deepEqual(stale, [], 'partial entries are not compared');
    const pending = engine.vas.partialEntries();
    if (rule) t.deepEqual(pending, [], 'nothing pending');
    else t.deepEqual(pending, [{ table: kernel.pteGpa - (kernel.pteGpa % 0x1000), index: PAE_PAGE >> 12, writtenMask: 0xf0 }], 'the duplicated high half waits for a low half that already came');
  });
}

test('both halves in one exit (the lookahead), delivered twice: the second delivery assembles the same entry again, with or without duplicateWriteDrop', (t) => {
  for (const fixes of [undefined, fixesWithout(['duplicateWriteDrop'])]) {
    const kernel = paeKernel(fixes === undefined ? {} : { fixes });
    t.teardown(() => kernel.session.close());
    const engine = kernel.intro.engine;
    const changes = watch(kernel);
    kernel.runToEnd(true);
    t.is(notesOf(kernel.events, 'pae-lookahead').length, 2, 'each delivery took the high half');
    t.is(changes.length, 1, 'the second delivery changes nothing the monitor watches');
    t.deepEqual(engine.vas.partialEntries(), []);
    t.deepEqual(engine.vas.divergence(), []);
    t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
  }
});
