import { defineScenario, notesOf, Pae32Guest, type Pae32Range, type TimedEvent } from '../src/index.ts';
import { callbackInHalfEntry, exitOnEntry, halfWrittenEntry } from './half-entry-pairs.ts';
import { PAE_BOUNDS, PAE_MONITORED_BITS, paeEntry, paeMapperAndToucher, threadsFinished, watchPaeRange } from './pae-common.ts';

/**
 * A PAE page-table entry written in two halves (hvmi-notes §13.8), on the 32-bit PAE guest. The
 * memory manager on vCPU 0 keeps moving four pages of its range between a code frame (executable)
 * and a data frame (NX), writing each 8-byte entry as `mov [edi], ecx` then `mov [edi+4], edx` —
 * the low dword holds the frame, the high one NX — while vCPU 1 keeps walking those pages. The
 * engine watches the range with the VAS monitor, NX included.
 *
 * HVMI carries the low half out, finds the high half's store right after it and carries that out
 * in the same exit (the PAE lookahead), and its write state holds the entry back until every byte
 * is written (partialWriteAssembly): one callback, code frame → data frame. Taking each half as a
 * whole entry, the first callback sees the data frame without NX — an executable mapping of the
 * data frame that the guest never wrote — and the second sees NX set on it in place.
 */

const PAGES = 4;
const ROUNDS = 6;
const TOUCHES = 40;

// The two stores back to back, as HVMI's lookahead expects them.
const buildGuest = paeMapperAndToucher({ pages: PAGES, rounds: ROUNDS, backToBack: true }, TOUCHES);

/** The watched bits of every entry the mapper writes to page `page` (and 0: not mapped yet). */
function writtenEntries(range: Pae32Range, page: number): bigint[] {
  return [0n, paeEntry(range.framesGpa, page, true), paeEntry(range.framesGpa, PAGES + page, false)].map((entry) => entry & PAE_MONITORED_BITS);
}

/** The first change the monitor called back with whose old or new entry the guest never wrote whole. */
function firstMixedChange(events: readonly TimedEvent[], range: Pae32Range): string | null {
  for (const { event } of notesOf(events, 'leaf-change')) {
    const { gla, old, new: now } = event.detail;
    if (typeof gla !== 'bigint' || typeof old !== 'bigint' || typeof now !== 'bigint') continue;
    const page = Number((gla - range.gva) >> 12n);
    const written = writtenEntries(range, page);
    const mixed = [old, now].find((entry) => !written.includes(entry & PAE_MONITORED_BITS));
    if (mixed === undefined) continue;
    const executable = (mixed & (1n << 63n)) === 0n;
    return `the monitor called back for 0x${gla.toString(16)} with entry 0x${mixed.toString(16)} (frame 0x${(mixed & 0x000f_ffff_ffff_f000n).toString(16)}, ${executable ? 'executable' : 'NX'}), ` +
      `which the guest never wrote: one update's low half over another's high half — the guest only writes 0x${written[1].toString(16)} and 0x${written[2].toString(16)} there`;
  }
  return null;
}

/** A handled exit that carried out both halves of an entry (two page-table stores, the lookahead between). */
function bothHalvesInOneExit(events: readonly TimedEvent[]): boolean {
  return notesOf(events, 'pae-lookahead').some(({ index }) => {
    for (let k = index - 1; k >= 0; k--) {
      const before = events[k].event;
      if (before.kind === 'handle') return false;
      if (before.kind === 'note' && before.what === 'pt-write') return true;
    }
    return false;
  });
}

export const paeHalfWritten = defineScenario({
  name: 'pae-half-written',
  title: 'A PAE page-table entry written in two halves, each taken as a whole',
  description:
    'A 32-bit PAE kernel moves pages between code frames and NX data frames, writing each 8-byte entry as two dwords ' +
    'while another vCPU walks them. HVMI joins the two stores in one exit and calls back once with the whole entry; ' +
    'taking each half as an entry shows the monitor a data frame mapped executable, a mapping the guest never wrote.',
  vcpus: 2,
  bugs: [{ name: 'half-written PAE entry taken as whole', fixesOff: ['partialWriteAssembly'], caughtBy: 'pae-changes-whole' }],
  bounds: PAE_BOUNDS,
  setup: () => new Pae32Guest({ vcpus: 2, frames: PAGES * 2, build: buildGuest }),
  engine: { start: watchPaeRange },
  oracles: [
    {
      name: 'pae-changes-whole',
      phase: 'end',
      description: 'every change the VAS monitor called back with is between entries the guest wrote whole (in the watched bits)',
      check: (world) => firstMixedChange(world.events, world.guest.range),
    },
    threadsFinished([0, 1], 'the mapper and the toucher'),
  ],
  // The bug needs no second vCPU (each half alone is a wrong callback): the first pair is its window;
  // the second records whether the toucher's walk ever met an entry half written.
  orderings: [
    callbackInHalfEntry,
    {
      name: 'half-entry-vs-toucher-walk',
      description: "A: an entry half written, from the mapper's low-half store to its high-half store; B: another vCPU's write exit on that entry (the toucher's walk setting A/D), until handled. A during B: the walk met the entry half written",
      a: halfWrittenEntry(),
      b: exitOnEntry,
    },
  ],
  windows: [
    {
      name: 'both-halves-one-exit',
      description: 'an exit carried out both halves of an entry (the PAE lookahead took the second store)',
      reached: (world) => bothHalvesInOneExit(world.events),
    },
  ],
});
