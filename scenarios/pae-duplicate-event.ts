import {
  byte, defineScenario, dword, eax, ebx, ecx, edi, edx, emitCountdown, esi, notesOf, Pae32Guest, PAE32_THREAD_DONE, Pte,
  type Pae32Builder, type ScenarioEngine, type TimedEvent,
} from '../src/index.ts';

/**
 * A duplicated page-table write event on a 32-bit PAE guest (hvmi-notes §13.9). The guest's
 * memory manager on vCPU 0 keeps remapping four pages of its own range — each 8-byte entry written
 * as two 4-byte halves, the way a PAE kernel does — between an executable frame and a
 * non-executable one, so both halves change; a thread on vCPU 1 keeps touching those pages. The
 * engine watches the range with the VAS monitor (NX included). The hypervisor sometimes delivers
 * an EPT violation twice, as Xen did (an explored fault: `handle vN duplicate-exit`). The mapper
 * loads each half's register right before its store, so every half is an exit of its own (HVMI's
 * PAE lookahead only joins stores that are back to back — and then a duplicated delivery carries
 * both halves out again, which does no harm).
 *
 * HVMI drops a second 4-byte write from the same RIP as the entry's last one on 32-bit guests
 * (duplicateWriteDrop). Without that, a duplicated second half starts a new partial write: every
 * later entry is assembled from one update's low half and the previous one's high half, and the
 * last is left half-written — the engine's picture of the address space is wrong from then on.
 */

const PAGES = 4;
const ROUNDS = 10;
const TOUCHES = 40;
const NX = 1n << 63n;

const entryOf = (framesGpa: number, frame: number, executable: boolean): bigint =>
  BigInt(framesGpa + frame * 0x1000) | Pte.present | Pte.writable | Pte.user | (executable ? 0n : NX);

function buildGuest(guest: Pae32Builder): void {
  const { a, range } = guest;
  const ready = guest.data('PaeReady', 4);
  // vCPU 0: ROUNDS × remap each page, low dword then high dword.
  const mapper = a.newLabel('PaeMapper');
  const round = a.newLabel('PaeMapper.round');
  a.bind(mapper);
  a.xor(esi, esi);
  a.bind(round);
  a.mov(edi, Number(range.tablesGva));
  for (const executable of [true, false]) {
    for (let page = 0; page < PAGES; page++) {
      const entry = entryOf(range.framesGpa, executable ? page : PAGES + page, executable);
      // Each half's register loaded just before its store: the stores are not back to back, so
      // HVMI's PAE lookahead does not take the second into the first one's exit — two exits.
      a.mov(ecx, Number(entry & 0xffffffffn));
      a.mov(dword(edi, page * 8), ecx);
      a.mov(edx, Number(entry >> 32n));
      a.mov(dword(edi, page * 8 + 4), edx);
    }
    // Every page is mapped now (and stays mapped: each half leaves a present entry): the toucher may go.
    a.mov(ebx, Number(ready));
    a.mov(dword(ebx), 1);
    emitCountdown(a, `PaeMapper.wait${executable ? 'x' : 'nx'}`, 8);
  }
  a.add(esi, 1);
  a.cmp(esi, ROUNDS);
  a.jb(round);
  a.mov(eax, PAE32_THREAD_DONE);
  a.vmcall();
  guest.thread(0, 'PaeMapper');
  // vCPU 1: touch the pages (a fresh walk each time) while they move.
  const toucher = a.newLabel('PaeToucher');
  const touch = a.newLabel('PaeToucher.touch');
  const wait = a.newLabel('PaeToucher.wait');
  a.bind(toucher);
  a.mov(edi, Number(ready));
  a.bind(wait);
  a.pause();
  a.cmp(dword(edi), 0);
  a.je(wait);
  a.xor(esi, esi);
  a.bind(touch);
  a.mov(ebx, esi);
  a.and(ebx, PAGES - 1);
  a.shl(ebx, 12);
  a.add(ebx, Number(range.gva));
  a.invlpg(byte(ebx));
  a.mov(eax, dword(ebx));
  emitCountdown(a, 'PaeToucher.work', 6);
  a.add(esi, 1);
  a.cmp(esi, TOUCHES);
  a.jb(touch);
  a.mov(eax, PAE32_THREAD_DONE);
  a.vmcall();
  guest.thread(1, 'PaeToucher');
}

/** The engine watches the user half, NX included. */
function watchRange(engine: ScenarioEngine, guest: Pae32Guest): void {
  engine.monitorAddressSpace({
    owner: 'pae range',
    monitoredBits: 0x000f_ffff_ffff_f000n | Pte.present | Pte.writable | Pte.user | Pte.large | NX,
    callback: (change) => engine.note('leaf-change', { gla: change.gla, old: change.old, new: change.new, vcpu: change.vcpuId }),
  });
  void guest;
}

/** A duplicated delivery whose both deliveries emulated a page-table store. */
function duplicatedStore(events: readonly TimedEvent[]): boolean {
  return notesOf(events, 'hypervisor-fault').some(({ index, event }) => {
    if (event.detail.fault !== 'duplicate-exit') return false;
    let writes = 0;
    for (let k = index + 1; k < events.length; k++) {
      const next = events[k].event;
      if (next.kind === 'handle') break;
      if (next.kind === 'note' && next.what === 'pt-write') writes++;
    }
    return writes >= 2;
  });
}

export const paeDuplicateEvent = defineScenario({
  name: 'pae-duplicate-event',
  title: 'A page-table write event delivered twice on a 32-bit PAE guest',
  description:
    'A 32-bit PAE kernel remaps pages by writing each 8-byte entry as two dwords while the hypervisor sometimes delivers ' +
    'an EPT violation twice. HVMI drops a second 4-byte write from the same RIP; processing it again leaves the ' +
    'monitor assembling entries from mismatched halves.',
  vcpus: 2,
  bugs: [{ name: 'duplicated half processed again', fixesOff: ['duplicateWriteDrop'], caughtBy: 'pae-view-whole' }],
  // The toucher waits for the first mapping: fairness keeps PCT from starving the mapper. Only
  // random injects the fault (PCT and rr schedule without faults).
  bounds: { stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 300, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 600 },
  hypervisor: { faults: ['duplicate-exit'] },
  setup: () => new Pae32Guest({ vcpus: 2, frames: PAGES * 2, build: buildGuest }),
  engine: { start: watchRange },
  oracles: [
    {
      name: 'pae-view-whole',
      phase: 'end',
      description: 'when the guest is done, every watched entry is whole and, in the watched bits, what memory holds',
      check(world) {
        const partial = world.engine.vas.partialEntries();
        const stale = world.engine.vas.divergence();
        if (partial.length === 0 && stale.length === 0) return null;
        const first = partial[0];
        return partial.length > 0
          ? `${partial.length} entr${partial.length === 1 ? 'y is' : 'ies are'} left half-written in the monitor's state: table 0x${first.table.toString(16)}[${first.index}] has bytes ${first.writtenMask.toString(2).padStart(8, '0')} written and waits for the rest, which memory already holds`
          : `${stale.length} watched entr${stale.length === 1 ? 'y differs' : 'ies differ'} from memory: table 0x${stale[0].table.toString(16)}[${stale[0].index}] is 0x${stale[0].memory.toString(16)}, the monitor knows 0x${stale[0].known.toString(16)}`;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the mapper and the toucher finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
  ],
  windows: [
    {
      name: 'duplicate-emulated',
      description: 'an EPT violation delivered twice had its page-table store emulated both times',
      reached: (world) => duplicatedStore(world.events),
    },
  ],
});
