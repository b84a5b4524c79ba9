import type { OrderingPair, OrderingSide, RuntimeEvent } from '../src/index.ts';

/**
 * Ordering pairs of page-table entries written in two 4-byte halves (a 32-bit PAE kernel always
 * does; the 64-bit memory manager of pte-half-written does too): the entry half written, exits and
 * stores on it, and the VAS monitor calling back while it is. Keyed by the 8-byte entry; built
 * from the engine's pt-write notes and the vCPUs' exits, so no address is fixed in advance.
 */

/** The 8-byte entry a GPA falls in: what these pairs are keyed by. */
export const entryOf = (gpa: number | bigint): string => String(BigInt(gpa) & ~7n);

/** A 4-byte page-table store the engine carried out (its pt-write note): the entry, which half, whose. */
function halfStore(event: RuntimeEvent): { readonly entry: string; readonly high: boolean; readonly vcpu: number } | null {
  if (event.kind !== 'note' || event.what !== 'pt-write' || event.detail.size !== 4) return null;
  const gpa = BigInt(event.detail.gpa as number);
  return { entry: entryOf(gpa), high: (gpa & 7n) === 4n, vcpu: Number(event.detail.vcpu) };
}

/**
 * An entry half written: from the store of its low half until the store of its high half, by the
 * same vCPU — or, `engineWide`, by any: the half-written entry every vCPU walks and the monitor
 * assembles, no one vCPU's state.
 */
export function halfWrittenEntry(engineWide = false): OrderingSide {
  return {
    begins: (event) => {
      const store = halfStore(event);
      return store !== null && !store.high ? { key: store.entry, vcpu: engineWide ? -1 : store.vcpu } : null;
    },
    ends: (event, half) => {
      const store = halfStore(event);
      return store !== null && store.high && store.entry === half.key && (half.vcpu === -1 || store.vcpu === half.vcpu);
    },
  };
}

/** A vCPU's EPT write exit on an entry — a store, or its walk setting A/D — from the exit until its handler returned. */
export const exitOnEntry: OrderingSide = {
  begins: (event) => (event.kind === 'stop' && event.exit !== null && event.reason === 'eptViolation' && (event.exit.access & 2) !== 0 ? { key: entryOf(event.exit.gpa), vcpu: event.vcpu } : null),
  ends: (event, exit) => event.kind === 'handle' && event.vcpu === exit.vcpu,
};

/** A store into an entry the engine carried out (either half, or a whole entry), an instant. */
export const storeIntoEntry: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'pt-write' ? { key: entryOf(event.detail.gpa as number), vcpu: Number(event.detail.vcpu) } : null),
};

/**
 * The monitor calling back on an entry half written: A, the entry half written (engine-wide: the
 * memory every vCPU walks); B, a leaf callback (vas-leaf), keyed by the entry of the store the
 * engine carried out just before it. A during B: the callback saw one half as a whole entry — what
 * partialWriteAssembly holds back until the other half is written.
 */
export const callbackInHalfEntry: OrderingPair = {
  name: 'callback-in-half-entry',
  description: 'A: an entry half written, from the store of its low half to that of its high half; B: a VAS monitor callback for that entry. A during B is the bug: a callback on half an entry',
  learn: (event, memory) => {
    if (event.kind === 'note' && event.what === 'pt-write') memory.set('stored', entryOf(event.detail.gpa as number));
  },
  a: halfWrittenEntry(true),
  b: {
    begins: (event, memory) => {
      const entry = memory.get('stored');
      return event.kind === 'note' && event.what === 'vas-leaf' && typeof entry === 'string' ? { key: entry, vcpu: Number(event.detail.vcpu) } : null;
    },
  },
};
