/**
 * Goal: the engine runs beside a 32-bit PAE guest as HVMI does with gGuest.PaeEnabled and
 * !Guest64: it reads the kernel image through PAE tables, decodes the guest's code as 32-bit, and
 * a page-table entry written in two 4-byte halves (how a PAE kernel writes one) reaches the VAS
 * monitor once, whole — or, with the halves delivered twice, the duplicate is dropped
 * (duplicateWriteDrop), while without the rule the second delivery starts a bogus partial write.
 * Method: a 32-bit kernel on a PAE machine (code from the assembler's 32-bit mode), an inline
 * session and the engine; the test steps the vCPU and hands its exits to the engine.
 */
import test from 'ava';
import { Introspection } from '../../actors/introspection.ts';
import { Session } from '../../actors/session.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import { Assembler, dword, ecx, edi, edx } from '../../src/asm/index.ts';
import { Scn } from '../../src/guest/pe-format.ts';
import { writeImage } from '../../src/guest/pe-image.ts';
import { DEFAULT_FIXES, fixesWithout, type Fixes } from '../../src/intro/fixes.ts';
import { PTS_MONITORED_BITS } from '../../src/intro/page-table-writes.ts';
import type { VasChange } from '../../src/intro/vas-monitor.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { loadPdptes } from '../../src/machine/protected-mode.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { PaeMachine } from '../support/pae-machine.ts';

const KBASE32 = 0x80400000n;
const KGPA32 = 0x400000;
/** Where the kernel sees the identity map's first page table (covering 0..2 MiB). */
const PT_WINDOW = KBASE32 + 0x8000n;
/** The page whose PTE the kernel rewrites, and its new frame. */
const PAGE = 0x5000;
const FRAME = 0x250000;

interface PaeKernel {
  readonly session: Session;
  readonly intro: Introspection;
  readonly events: RuntimeEvent[];
  readonly pteGpa: number;
  readonly tm: PaeMachine;
  /** Runs the vCPU, handing each exit to the engine, until VMCALL; `twice` delivers EPT exits twice. */
  runToEnd(twice?: boolean): void;
}

function paeKernel(fixes: Fixes = DEFAULT_FIXES): PaeKernel {
  const tm = new PaeMachine();
  const memory = tm.machine.memory;
  const pteGpa = tm.entries(PAGE)[1];
  const ptGpa = pteGpa - (pteGpa % 0x1000);
  const entry = BigInt(FRAME) | Pte.present | Pte.writable;
  const a = new Assembler(KBASE32 + 0x1000n, { bitness: 32 });
  a.mov(edi, Number(PT_WINDOW) + (PAGE >> 12) * 8);
  a.mov(ecx, Number(entry & 0xffffffffn));
  a.mov(edx, Number(entry >> 32n));
  a.mov(dword(edi), ecx); //          the low half
  a.mov(dword(edi, 4), edx); //       the high half
  a.vmcall();
  const code = a.assemble();
  writeImage(memory, KGPA32, {
    base: KBASE32,
    sizeOfImage: 0x4000,
    entryRva: 0x1000,
    sections: [{ name: '.text', virtualAddress: 0x1000, virtualSize: code.bytes.length, characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged, bytes: code.bytes }],
  });
  tm.tables.mapRange(KBASE32, KGPA32, 0x4000, Pte.writable);
  tm.tables.map(PT_WINDOW, ptGpa, Pte.writable);
  // The kernel's half needed a new PDPTE: the CPU takes it at a CR3 load, as hardware does.
  loadPdptes(tm.state(), memory, tm.tables.root);
  tm.state().rip = KBASE32 + 0x1000n;
  const events: RuntimeEvent[] = [];
  let intro: Introspection | null = null;
  const session = Session.open({
    machine: tm.machine,
    hosts: 'inline',
    handler: (context) => (context.exit.reason === ExitReason.vmcall ? { action: 'shutdown' } : intro!.handler(context)),
    afterHandler: (hv) => intro!.afterHandler(hv),
    events: (e) => events.push(e),
  });
  intro = new Introspection(session, {
    guest: { kernelBase: KBASE32, systemCr3: tm.tables.root, paging: 'pae', bits: 32, ssdt: 0n, ssdtEntries: 0, hookedApis: [], threads: null },
    fixes,
  });
  intro.start();
  return {
    session, intro, events, pteGpa, tm,
    runToEnd(twice = false) {
      // An instruction's first exit only caches it (the TOCTOU rule retries); the second is emulated — that one is delivered twice.
      const seen = new Set<bigint>();
      for (let k = 0; k < 1000; k++) {
        if (session.stateOf(0) === 'stopped') return;
        if (session.pendingExits().includes(0)) {
          const rip = tm.state().rip;
          const duplicate = twice && session.pendingExitReason(0) === ExitReason.eptViolation && seen.has(rip);
          seen.add(rip);
          session.handleExit(0, duplicate ? 'duplicate-exit' : undefined);
        } else {
          session.runSlice(0, 1000);
        }
      }
      throw new Error(`the vCPU did not finish: ${session.describeVcpus()}`);
    },
  };
}

const notes = (events: readonly RuntimeEvent[], what: string): Readonly<Record<string, unknown>>[] =>
  events.flatMap((e) => (e.kind === 'note' && e.what === what ? [e.detail] : []));

test('a PAE kernel writes a PTE in two halves: the engine decodes 32-bit code, emulates each half, and the VAS monitor gets one whole change', (t) => {
  const kernel = paeKernel();
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  t.is(engine.decoder.bitness, 32);
  const before = kernel.tm.machine.memory.read64(kernel.pteGpa);
  const changes: VasChange[] = [];
  engine.vas.start(engine.kernel.systemCr3, 'pae', (change) => changes.push(change), PTS_MONITORED_BITS, 'pae');
  kernel.runToEnd();
  const writes = notes(kernel.events, 'pt-write');
  t.deepEqual(writes.map((w) => [w.ins, w.size, w.emulated]), [['mov', 4, true], ['mov', 4, true]]);
  t.is(changes.length, 1);
  t.like(changes[0], { gla: BigInt(PAGE), old: before, new: BigInt(FRAME) | Pte.present | Pte.writable, pageSize: 0x1000 });
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), BigInt(FRAME) | Pte.present | Pte.writable);
  t.deepEqual(engine.vas.divergence(), []);
});

for (const rule of [true, false]) {
  test(`each half delivered twice (a hypervisor fault): ${rule ? 'the duplicates are dropped and one whole change arrives' : 'duplicateWriteDrop off — the second delivery of the high half starts a partial write that never completes'}`, (t) => {
    const kernel = paeKernel(rule ? DEFAULT_FIXES : fixesWithout(['duplicateWriteDrop']));
    t.teardown(() => kernel.session.close());
    const engine = kernel.intro.engine;
    const changes: VasChange[] = [];
    engine.vas.start(engine.kernel.systemCr3, 'pae', (change) => changes.push(change), PTS_MONITORED_BITS, 'pae');
    kernel.runToEnd(true);
    t.is(notes(kernel.events, 'pt-write').length, 4, 'four emulations: each half twice');
    t.is(changes.length, 1, 'one whole change either way');
    // What differs is the entry's write state afterwards: stuck half-written without the rule.
    const stale = engine.vas.divergence();
    t.deepEqual(stale, [], 'partial entries are not compared');
    const pending = engine.vas.partialEntries();
    if (rule) t.deepEqual(pending, [], 'nothing pending');
    else t.deepEqual(pending, [{ table: kernel.pteGpa - (kernel.pteGpa % 0x1000), index: PAGE >> 12, writtenMask: 0xf0 }], 'the duplicated high half waits for a low half that already came');
  });
}
