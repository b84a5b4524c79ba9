import { defineScenario, notesOf, Pae32Guest, type OrderingSide, type TimedEvent } from '../src/index.ts';
import { entryOf, halfWrittenEntry } from './half-entry-pairs.ts';
import { describeDivergence, PAE_BOUNDS, paeMapperAndToucher, threadsFinished, watchPaeRange } from './pae-common.ts';

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

// Each half's register loaded right before its store: the stores are not back to back, so HVMI's
// PAE lookahead does not take the second into the first one's exit — two exits.
const buildGuest = paeMapperAndToucher({ pages: PAGES, rounds: ROUNDS, backToBack: false }, TOUCHES);

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

/** An exit delivered twice (the hypervisor-fault note at its delivery), keyed by the entry it writes (learned from its stop). */
const duplicatedDelivery: OrderingSide = {
  begins: (event, memory) => {
    if (event.kind !== 'note' || event.what !== 'hypervisor-fault' || event.detail.fault !== 'duplicate-exit') return null;
    const entry = memory.get(`exit ${Number(event.detail.ticket)}`);
    return typeof entry === 'string' ? { key: entry, vcpu: Number(event.detail.vcpu) } : null;
  },
};

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
  bounds: PAE_BOUNDS,
  hypervisor: { faults: ['duplicate-exit'] },
  setup: () => new Pae32Guest({ vcpus: 2, frames: PAGES * 2, build: buildGuest }),
  engine: { start: watchPaeRange },
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
          : describeDivergence(stale);
      },
    },
    threadsFinished([0, 1], 'the mapper and the toucher'),
  ],
  orderings: [
    {
      name: 'duplicate-in-half-entry',
      description: "A: an entry half written (engine-wide), from the store of its low half to that of its high half; B: an exit writing that entry delivered twice. A during B: the high half's exit is duplicated — processed again after the entry is whole, it starts a new partial write (what duplicateWriteDrop drops)",
      learn: (event, memory) => {
        if (event.kind === 'stop' && event.exit !== null) memory.set(`exit ${event.exit.ticket}`, entryOf(event.exit.gpa));
      },
      a: halfWrittenEntry(true),
      b: duplicatedDelivery,
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
