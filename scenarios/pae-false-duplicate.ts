import {
  defineScenario, dword, eax, ecx, edi, edx, emitCountdown, esi, Pae32Guest, PAE32_THREAD_DONE,
  type Pae32Builder, type TimedEvent,
} from '../src/index.ts';
import { halfWrittenEntry, storeIntoEntry } from './half-entry-pairs.ts';
import { describeDivergence, PAE_BOUNDS, paeEntry, threadsFinished, watchPaeRange } from './pae-common.ts';

/**
 * HVMI's known limitation of its duplicate-write rule (hvmi-notes §8, §13.9 "Limitation to
 * reproduce"). On 32-bit guests HVMI takes a 4-byte page-table write from the same RIP as the
 * entry's previous write for a duplicated event (as Xen delivered some) and drops it. Two vCPUs
 * running the same store — a shared routine — back to back on one entry with different values
 * trip that rule: the second write is real, the hypervisor has carried it out, and the engine
 * drops it. Its view of the entry then differs from memory until the entry is written again.
 *
 * The guest: vCPUs 0 and 1 both map the first page of the range, each to a frame of its own,
 * again and again, through one routine that stores the low half, computes the high half and
 * stores it (the stores are not back to back, so HVMI's PAE lookahead does not join them: each is
 * an exit of its own). The engine watches the range with the VAS monitor. With every fix on, a
 * schedule that handles one vCPU's low-half store right after the other's leaves the monitor
 * knowing a frame memory no longer maps. This is HVMI's documented behaviour, not a vcpusim bug:
 * the scenario's bug is a known limitation, expected with every fix on.
 */

const ROUNDS = 12;
function buildGuest(guest: Pae32Builder): void {
  const { a, range } = guest;
  // The routine both vCPUs call (EDI: the entry, ECX: its low half, ESI: its high half).
  const setEntry = a.newLabel('PaeSetEntry');
  a.bind(setEntry);
  a.mov(dword(edi), ecx); //          the store both vCPUs run: one RIP
  a.mov(edx, esi); //                 the high half, computed between the stores
  a.mov(dword(edi, 4), edx);
  a.ret();
  for (const vcpu of [0, 1]) {
    // Both map the page NX, each to its own data frame: the entries differ in the low half only,
    // so whatever order the halves land in, memory always holds an entry one of them wrote.
    const entry = paeEntry(range.framesGpa, vcpu, false);
    const thread = `PaeSetter${vcpu}`;
    const again = a.newLabel(`${thread}.again`);
    a.bind(a.newLabel(thread));
    a.mov(eax, ROUNDS);
    a.bind(again);
    a.mov(edi, Number(range.tablesGva));
    a.mov(ecx, Number(entry & 0xffffffffn));
    a.mov(esi, Number(entry >> 32n));
    a.push(eax);
    a.call(setEntry);
    a.pop(eax);
    emitCountdown(a, `${thread}.work`, 10 + 7 * vcpu);
    a.dec(eax);
    a.jne(again);
    a.mov(eax, PAE32_THREAD_DONE);
    a.vmcall();
    guest.thread(vcpu, thread);
  }
}

/** Two exits in a row, of different vCPUs, whose stores at one RIP the engine carried out. */
function sameStoreBackToBack(events: readonly TimedEvent[]): boolean {
  let last: { vcpu: number; rip: bigint } | null = null;
  for (const { event } of events) {
    if (event.kind !== 'handle' || event.reason !== 'eptViolation' || event.action !== 'allowedVirtual') continue;
    if (last !== null && last.vcpu !== event.vcpu && last.rip === event.rip) return true;
    last = { vcpu: event.vcpu, rip: event.rip };
  }
  return false;
}

export const paeFalseDuplicate = defineScenario({
  name: 'pae-false-duplicate',
  title: 'HVMI\'s known limitation: a real PAE write dropped as a duplicate',
  description:
    'Two vCPUs of a 32-bit PAE kernel map the same page through one shared routine, each to its own frame. HVMI drops a ' +
    '4-byte page-table write from the same RIP as the entry\'s last one as a duplicated event; when the two vCPUs run ' +
    'the store back to back, the second — a real write — is dropped and the engine\'s view of the entry diverges from ' +
    'memory. This is HVMI\'s documented behaviour (its known false positive), not a vcpusim bug: expected with every fix on.',
  vcpus: 2,
  bugs: [{ name: 'HVMI\'s false duplicate: a real write dropped', fixesOff: [], knownLimitation: true, caughtBy: 'pae-view-matches-memory' }],
  bounds: PAE_BOUNDS,
  setup: () => new Pae32Guest({ vcpus: 2, frames: 2, build: buildGuest }),
  engine: { start: watchPaeRange },
  oracles: [
    {
      name: 'pae-view-matches-memory',
      phase: 'continuous',
      description: 'after every handler, every whole watched entry is, in the watched bits, what memory holds',
      check(world) {
        const stale = world.engine.vas.divergence();
        return stale.length === 0 ? null : `${describeDivergence(stale)} — a real write from the same RIP was dropped as a duplicate event`;
      },
    },
    threadsFinished([0, 1], 'both setters'),
  ],
  orderings: [
    {
      name: 'update-vs-peer-store',
      description: "A: one vCPU's update of the entry, from its low-half store to its high-half store; B: the other vCPU's store into that entry. A during B is the window: the two vCPUs' stores from the shared routine land back to back, and the second is dropped as a duplicate",
      a: halfWrittenEntry(),
      b: storeIntoEntry,
    },
  ],
  windows: [
    {
      name: 'same-store-back-to-back',
      description: 'the engine carried out the same store of the two vCPUs one right after the other',
      reached: (world) => sameStoreBackToBack(world.events),
    },
  ],
});
