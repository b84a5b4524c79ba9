import type { RuntimeEvent } from '../../actors/events.ts';

/**
 * Ordering coverage: a scenario names pairs of events whose cross-CPU order matters (a mem-table
 * patch and a peer's exit at the patched RIP; the thread-safeness scan and a thread entering a
 * handler) and every run records which orders of each pair it produced — A before B, B before A,
 * or A during B (the two overlapped). Added up over a campaign, that says which interleavings of
 * the race were ever tried, not just how many runs there were.
 */

/** One occurrence of a side: what ties it to the other side's occurrences, and who produced it. */
export interface Occurrence {
  /** Occurrences of the two sides are compared only when their keys are equal (e.g. the same RIP). */
  readonly key: string;
  /** The vCPU it happened on, or −1 (engine-wide): two occurrences on one vCPU are not compared. */
  readonly vcpu: number;
}

/**
 * What a pair has learned so far in the run it is looking at (e.g. where the engine placed a
 * handler, from its cloak note): written by `OrderingPair.learn`, read by the sides. One per run.
 * Replace values (`set`), never change one in place: a branch's suffixes each go on from a
 * shallow copy of the memory at the branch point.
 */
export type RunMemory = Map<string, unknown>;

/** One side of a pair: an instant, or an interval from the event that begins it to the one that ends it. */
export interface OrderingSide {
  /** Whether `event` begins an occurrence: its key and vCPU, or null. */
  readonly begins: (event: RuntimeEvent, memory: RunMemory) => Occurrence | null;
  /** Whether `event` ends the open occurrence `occurrence` (an interval); absent: an instant. */
  readonly ends?: (event: RuntimeEvent, occurrence: Occurrence, memory: RunMemory) => boolean;
}

/** Two kinds of event whose relative order the scenario wants covered. */
export interface OrderingPair {
  readonly name: string;
  /** What A and B are, and why their order matters. */
  readonly description: string;
  readonly a: OrderingSide;
  readonly b: OrderingSide;
  /** Sees every event before the sides do, to remember what they need (addresses known only at run time). */
  readonly learn?: (event: RuntimeEvent, memory: RunMemory) => void;
}

/** How an occurrence of A and one of B were ordered: A ended before B began, the other way, or they overlapped. */
export type Ordering = 'a-before-b' | 'b-before-a' | 'a-during-b';
export const ORDERINGS: readonly Ordering[] = ['a-before-b', 'b-before-a', 'a-during-b'];
export const ORDERING_TEXT: Readonly<Record<Ordering, string>> = { 'a-before-b': 'A before B', 'b-before-a': 'B before A', 'a-during-b': 'A during B' };

/** Where an occurrence was: positions in the run's event list, `to` ≥ `from` (equal for an instant). */
export interface Span {
  readonly vcpu: number;
  readonly key: string;
  readonly from: number;
  readonly to: number;
  /** Choices made before the events at `from` and `to` (−1 when not known): where a schedule can be changed to move it. */
  readonly choiceFrom: number;
  readonly choiceTo: number;
}

/** The first pair of occurrences of a run that produced an ordering of a pair. */
export interface OrderingWitness {
  readonly pair: string;
  readonly ordering: Ordering;
  readonly a: Span;
  readonly b: Span;
}

/** Every occurrence of a side in `events`; an interval never ended runs to the end of the run. */
export function spansOf(side: OrderingSide, events: readonly RuntimeEvent[], choiceAt: (index: number) => number = () => -1, learn?: OrderingPair['learn']): Span[] {
  const scan = new SideScan(side, learn);
  for (let index = 0; index < events.length; index++) scan.feed(events[index], index, choiceAt);
  return scan.spansTo(events.length, choiceAt);
}

/**
 * The occurrences of one side found so far in a run's events, fed one event at a time. A branch
 * copies it at its point, so each suffix scans only its own events: the prefix's closed spans,
 * open intervals and learned memory carry over (memory values are replaced, never changed in
 * place, so a shallow copy is the memory as it was).
 */
export class SideScan {
  private memory: RunMemory = new Map();
  private closed: Span[] = [];
  private open: { readonly occurrence: Occurrence; readonly from: number }[] = [];

  constructor(
    private readonly side: OrderingSide,
    private readonly learn?: OrderingPair['learn'],
  ) {}

  /** Takes the run's event at `index` (events are fed in order, each once). */
  feed(event: RuntimeEvent, index: number, choiceAt: (index: number) => number): void {
    const memory = this.memory;
    this.learn?.(event, memory);
    const ends = this.side.ends;
    const open = this.open;
    if (ends !== undefined) {
      for (let k = open.length - 1; k >= 0; k--) {
        const { occurrence, from } = open[k];
        if (!ends(event, occurrence, memory)) continue;
        this.closed.push(spanOf(occurrence, from, index, choiceAt));
        open.splice(k, 1);
      }
    }
    const occurrence = this.side.begins(event, memory);
    if (occurrence === null) return;
    if (ends === undefined) this.closed.push(spanOf(occurrence, index, index, choiceAt));
    else open.push({ occurrence, from: index });
  }

  /** The spans so far, by start; an interval still open runs to `end` (the run's end). */
  spansTo(end: number, choiceAt: (index: number) => number): Span[] {
    const spans = [...this.closed];
    for (const { occurrence, from } of this.open) spans.push(spanOf(occurrence, from, end, choiceAt));
    return spans.sort((x, y) => x.from - y.from);
  }

  /** This scan as it is now, going on independently (a suffix's own). */
  copy(): SideScan {
    const copy = new SideScan(this.side, this.learn);
    copy.memory = new Map(this.memory);
    copy.closed = [...this.closed];
    copy.open = [...this.open];
    return copy;
  }
}

function spanOf(occurrence: Occurrence, from: number, to: number, choiceAt: (index: number) => number): Span {
  return { key: occurrence.key, vcpu: occurrence.vcpu, from, to, choiceFrom: choiceAt(from), choiceTo: choiceAt(to) };
}

/** The order of two occurrences. An interval's end event belongs to it: A before B means B began after A ended. */
export function orderOf(a: Span, b: Span): Ordering {
  if (a.to < b.from) return 'a-before-b';
  if (b.to < a.from) return 'b-before-a';
  return 'a-during-b';
}

/**
 * The orderings a run produced for each pair, each with its first witness: every occurrence of A
 * against every occurrence of B with the same key on another vCPU (or engine-wide).
 */
export function orderingsOf(pairs: readonly OrderingPair[], events: readonly RuntimeEvent[], choiceAt: (index: number) => number = () => -1): OrderingWitness[] {
  const scan = new OrderingScan(pairs);
  for (let index = 0; index < events.length; index++) scan.feed(events[index], index, choiceAt);
  return scan.witnesses(events.length, choiceAt);
}

/** Both sides of every pair scanned as a run's events come (see `SideScan`): what `orderingsOf` computes, resumable. */
export class OrderingScan {
  private sides: (readonly [SideScan, SideScan])[];

  constructor(private readonly pairs: readonly OrderingPair[]) {
    this.sides = pairs.map((pair) => [new SideScan(pair.a, pair.learn), new SideScan(pair.b, pair.learn)] as const);
  }

  /** Takes the run's event at `index` (events are fed in order, each once). */
  feed(event: RuntimeEvent, index: number, choiceAt: (index: number) => number): void {
    for (const [a, b] of this.sides) {
      a.feed(event, index, choiceAt);
      b.feed(event, index, choiceAt);
    }
  }

  /** The orderings of the events fed so far, `end` being the run's end (where open intervals end). */
  witnesses(end: number, choiceAt: (index: number) => number): OrderingWitness[] {
    const found: OrderingWitness[] = [];
    this.pairs.forEach((pair, k) => {
      const [aScan, bScan] = this.sides[k];
      const as = aScan.spansTo(end, choiceAt);
      const bs = bScan.spansTo(end, choiceAt);
      const seen = new Set<Ordering>();
      for (const a of as) {
        for (const b of bs) {
          if (a.key !== b.key || (a.vcpu >= 0 && a.vcpu === b.vcpu)) continue;
          const ordering = orderOf(a, b);
          if (seen.has(ordering)) continue;
          seen.add(ordering);
          found.push({ pair: pair.name, ordering, a, b });
        }
        if (seen.size === ORDERINGS.length) break;
      }
    });
    return found;
  }

  /** This scan as it is now, going on independently (a suffix's own). */
  copy(): OrderingScan {
    const copy = new OrderingScan(this.pairs);
    copy.sides = this.sides.map(([a, b]) => [a.copy(), b.copy()] as const);
    return copy;
  }
}

/**
 * Orderings seen over many runs: per pair, how many runs produced each. Memory is one counter per
 * pair and ordering, however many runs are added.
 */
export class OrderingCoverage {
  private readonly counts = new Map<string, Record<Ordering, number>>();
  private readonly possible = new Map<string, readonly Ordering[]>();

  /** @param possible the orderings each pair can have (`possibleByPair`) */
  constructor(possible: Readonly<Record<string, readonly Ordering[]>>) {
    for (const [pair, orderings] of Object.entries(possible)) {
      this.counts.set(pair, { 'a-before-b': 0, 'b-before-a': 0, 'a-during-b': 0 });
      this.possible.set(pair, orderings);
    }
  }

  /** Coverage of a scenario's pairs. */
  static of(pairs: readonly Pick<OrderingPair, 'name' | 'a' | 'b'>[]): OrderingCoverage {
    return new OrderingCoverage(possibleByPair(pairs));
  }

  get pairs(): readonly string[] {
    return [...this.counts.keys()];
  }

  /** Adds one run's orderings (each counted once per run). */
  add(orderings: readonly { readonly pair: string; readonly ordering: Ordering }[]): void {
    for (const { pair, ordering } of orderings) {
      const row = this.counts.get(pair);
      if (row !== undefined) row[ordering]++;
    }
  }

  /** Adds counts kept elsewhere (another thread's, a shard's JSON). */
  addCounts(counts: Readonly<Record<string, Readonly<Record<Ordering, number>>>>): void {
    for (const [pair, theirs] of Object.entries(counts)) {
      const row = this.counts.get(pair);
      if (row !== undefined) for (const ordering of ORDERINGS) row[ordering] += theirs[ordering] ?? 0;
    }
  }

  /** How many runs produced each ordering of `pair`. */
  runsWith(pair: string): Readonly<Record<Ordering, number>> {
    const row = this.counts.get(pair);
    if (row === undefined) throw new Error(`no ordering pair "${pair}" (pairs: ${this.pairs.join(', ') || 'none'})`);
    return row;
  }

  /** Orderings produced at least once, and how many are possible (two for two instants, else three). */
  get covered(): { readonly seen: number; readonly of: number } {
    let seen = 0;
    let of = 0;
    for (const [pair, row] of this.counts) {
      const possible = this.possible.get(pair) ?? ORDERINGS;
      of += possible.length;
      for (const ordering of possible) if (row[ordering] > 0) seen++;
    }
    return { seen, of };
  }

  /** Possible orderings never produced: what a coverage-guided search goes after. */
  unseen(): { readonly pair: string; readonly ordering: Ordering }[] {
    const out: { pair: string; ordering: Ordering }[] = [];
    for (const [pair, row] of this.counts) for (const ordering of this.possible.get(pair) ?? ORDERINGS) if (row[ordering] === 0) out.push({ pair, ordering });
    return out;
  }

  /** The possible orderings (of those `among` accepts) produced by the fewest runs, ties all returned: where a search goes once everything was seen. */
  rarest(among: (t: { readonly pair: string; readonly ordering: Ordering }) => boolean = () => true): { readonly pair: string; readonly ordering: Ordering }[] {
    let least = Number.POSITIVE_INFINITY;
    let out: { pair: string; ordering: Ordering }[] = [];
    for (const [pair, row] of this.counts) {
      for (const ordering of this.possible.get(pair) ?? ORDERINGS) {
        if (!among({ pair, ordering })) continue;
        if (row[ordering] < least) {
          least = row[ordering];
          out = [];
        }
        if (row[ordering] === least) out.push({ pair, ordering });
      }
    }
    return out;
  }

  /** One line per pair: "patch-vs-fetch: A before B 120, B before A 3, A during B 0 (2/3)". */
  describe(): string[] {
    return [...this.counts].map(([pair, row]) => {
      const possible = this.possible.get(pair) ?? ORDERINGS;
      const seen = possible.filter((o) => row[o] > 0).length;
      return `${pair}: ${possible.map((o) => `${ORDERING_TEXT[o]} ${row[o]}`).join(', ')} (${seen}/${possible.length})`;
    });
  }

  toJSON(): Record<string, Record<Ordering, number>> {
    return Object.fromEntries([...this.counts].map(([pair, row]) => [pair, { ...row }]));
  }
}

/** Each pair's possible orderings, by name: what a coverage needs, and all it needs (plain data, for other threads and shards). */
export function possibleByPair(pairs: readonly Pick<OrderingPair, 'name' | 'a' | 'b'>[]): Record<string, readonly Ordering[]> {
  return Object.fromEntries(pairs.map((pair) => [pair.name, possibleOrderings(pair)]));
}

/** The orderings a pair can have: two instants never overlap. */
export function possibleOrderings(pair: Pick<OrderingPair, 'a' | 'b'>): readonly Ordering[] {
  return pair.a.ends === undefined && pair.b.ends === undefined ? ['a-before-b', 'b-before-a'] : ORDERINGS;
}
