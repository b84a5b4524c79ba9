import type { ExitFacts, RuntimeEvent } from '../../actors/events.ts';
import type { TimedEvent } from './scenario.ts';

/**
 * Questions oracles and window goals ask of a run's events: which notes of a kind, which exits
 * (by reason, vCPU, RIP, ticket), which exits were pending at some point, what happened before
 * what. Positions are indexes into the run's event list, so "A happened before B" is a comparison
 * of positions, the same in every replay of the run.
 */

type OfKind<K extends RuntimeEvent['kind']> = Extract<RuntimeEvent, { kind: K }>;

export type NoteEvent = OfKind<'note'>;
export type StopEvent = OfKind<'stop'>;
export type HandleEvent = OfKind<'handle'>;
/** A vCPU stopping at a VM exit (the facts are always there). */
export type ExitEvent = StopEvent & { readonly exit: ExitFacts };

/** An event with its position in the run and the virtual clock it happened at. */
export interface Located<E extends RuntimeEvent = RuntimeEvent> {
  readonly index: number;
  readonly clock: number;
  readonly event: E;
}

/** Which exits to select; every field given must match. */
export interface ExitFilter {
  /** Exit reason as the trace names it: "eptViolation", "vmcall", "int3"… */
  readonly reason?: string;
  readonly vcpu?: number;
  readonly rip?: bigint;
  /** ExitAccess bits that must all be set (EPT violations). */
  readonly access?: number;
}

/**
 * Where each kind of event sits in a list, kept per list and extended as the list grows: oracles
 * and window goals ask a run's log the same questions many times (which patches, which decodes,
 * what was pending at each), and a branched run's log is the prefix's plus its own. The list is a
 * log — only appended to — except that a branch's restore cuts it back: the index then drops the
 * positions from where the log no longer holds the events it indexed, and goes on from there.
 */
interface EventIndex {
  /** The events indexed, by position (a log cut back and grown again differs from some position on). */
  readonly seen: TimedEvent[];
  readonly notes: Map<string, number[]>;
  /** Positions of exits (vCPUs stopping at one) and of handle events, in order. */
  readonly exits: number[];
  readonly handles: number[];
  /** The same per RIP: an oracle asking about one instruction reads only its exits. */
  readonly exitsAt: Map<bigint, number[]>;
  readonly handlesAt: Map<bigint, number[]>;
  /** Exits and handles per vCPU: what was pending at a point is each vCPU's last one before it. */
  readonly exitsAndHandlesOf: Map<number, number[]>;
}

const indexes = new WeakMap<readonly TimedEvent[], EventIndex>();

function indexOf(events: readonly TimedEvent[]): EventIndex {
  let index = indexes.get(events);
  if (index === undefined) {
    index = { seen: [], notes: new Map(), exits: [], handles: [], exitsAt: new Map(), handlesAt: new Map(), exitsAndHandlesOf: new Map() };
    indexes.set(events, index);
  }
  const kept = keptPrefix(index.seen, events);
  if (kept < index.seen.length) cutBack(index, kept);
  for (let k = kept; k < events.length; k++) {
    const timed = events[k];
    index.seen.push(timed);
    const event = timed.event;
    if (event.kind === 'note') {
      addAt(index.notes, event.what, k);
    } else if (isExit(event)) {
      index.exits.push(k);
      addAt(index.exitsAt, event.rip, k);
      addAt(index.exitsAndHandlesOf, event.vcpu, k);
    } else if (event.kind === 'handle') {
      index.handles.push(k);
      addAt(index.handlesAt, event.rip, k);
      addAt(index.exitsAndHandlesOf, event.vcpu, k);
    }
  }
  return index;
}

/**
 * How many leading events are still the ones indexed. A log is only appended to or cut back (a
 * branch's restore), so the events agree up to some position and differ from there: a binary
 * search finds it (each suffix of a branch cuts the prefix's log back; it was indexed again whole).
 */
function keptPrefix(seen: readonly TimedEvent[], events: readonly TimedEvent[]): number {
  const common = Math.min(seen.length, events.length);
  if (common === 0 || seen[common - 1] === events[common - 1]) return common;
  let low = 0;
  let high = common - 1;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (seen[middle] === events[middle]) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Forgets every position from `kept` on. */
function cutBack(index: EventIndex, kept: number): void {
  index.seen.length = kept;
  const drop = (positions: number[]): void => {
    while (positions.length > 0 && positions[positions.length - 1] >= kept) positions.pop();
  };
  drop(index.exits);
  drop(index.handles);
  for (const map of [index.notes, index.exitsAt, index.handlesAt, index.exitsAndHandlesOf] as Map<unknown, number[]>[]) map.forEach(drop);
}

function addAt<K>(positions: Map<K, number[]>, key: K, at: number): void {
  const list = positions.get(key);
  if (list === undefined) positions.set(key, [at]);
  else list.push(at);
}

function locatedAt<E extends RuntimeEvent>(events: readonly TimedEvent[], positions: readonly number[], keep: (event: RuntimeEvent) => event is E): Located<E>[] {
  const out: Located<E>[] = [];
  for (const index of positions) {
    const { event, clock } = events[index];
    if (keep(event)) out.push({ index, clock, event });
  }
  return out;
}

const isExit = (event: RuntimeEvent): event is ExitEvent => event.kind === 'stop' && event.stop === 'exit' && event.exit !== null;

/** The filter's reason, vCPU and RIP (the access bits are the caller's: a handle event has none). */
function matches(event: { vcpu: number; reason: string; rip: bigint }, filter: ExitFilter): boolean {
  return (filter.reason === undefined || event.reason === filter.reason)
    && (filter.vcpu === undefined || event.vcpu === filter.vcpu)
    && (filter.rip === undefined || event.rip === filter.rip);
}

const NONE: readonly number[] = [];

/** Engine notes of kind `what` (e.g. "mtbl-patch", "decode"), in order. */
export function notesOf(events: readonly TimedEvent[], what: string): Located<NoteEvent>[] {
  return locatedAt(events, indexOf(events).notes.get(what) ?? [], (event): event is NoteEvent => event.kind === 'note');
}

/** VM exits (vCPUs stopping at one), in order. */
export function exitsOf(events: readonly TimedEvent[], filter: ExitFilter = {}): Located<ExitEvent>[] {
  const index = indexOf(events);
  const positions = filter.rip === undefined ? index.exits : (index.exitsAt.get(filter.rip) ?? NONE);
  const access = filter.access;
  return locatedAt(events, positions, (event): event is ExitEvent => isExit(event) && matches(event, filter) && (access === undefined || (event.exit.access & access) === access));
}

/** Exits handed to the handler, in order (the handle event carries the exit's ticket and the action). */
export function handledOf(events: readonly TimedEvent[], filter: ExitFilter = {}): Located<HandleEvent>[] {
  const index = indexOf(events);
  const positions = filter.rip === undefined ? index.handles : (index.handlesAt.get(filter.rip) ?? NONE);
  return locatedAt(events, positions, (event): event is HandleEvent => event.kind === 'handle' && matches(event, filter));
}

/** The exit with ticket `ticket`, or null. */
export function exitByTicket(events: readonly TimedEvent[], ticket: number): Located<ExitEvent> | null {
  for (const index of indexOf(events).exits) {
    const event = events[index].event as ExitEvent;
    if (event.exit.ticket === ticket) return { index, clock: events[index].clock, event };
  }
  return null;
}

/**
 * vCPUs stopped at an exit whose handler had not run just before position `index`, with that exit,
 * in the order of those exits. Each vCPU's last exit or handle before the point decides.
 */
export function pendingExitsAt(events: readonly TimedEvent[], index: number): Map<number, Located<ExitEvent>> {
  const found: Located<ExitEvent>[] = [];
  for (const positions of indexOf(events).exitsAndHandlesOf.values()) {
    const last = lastBefore(positions, index);
    if (last < 0) continue;
    const event = events[last].event;
    if (isExit(event)) found.push({ index: last, clock: events[last].clock, event });
  }
  found.sort((a, b) => a.index - b.index);
  return new Map(found.map((exit) => [exit.event.vcpu, exit]));
}

/** The last of the ascending `positions` below `index`, or -1. */
function lastBefore(positions: readonly number[], index: number): number {
  let low = 0;
  let high = positions.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (positions[middle] < index) low = middle + 1;
    else high = middle;
  }
  return low > 0 ? positions[low - 1] : -1;
}

/** Whether `a` happened before `b` in the run (positions or located events). */
export function happenedBefore(a: number | Located, b: number | Located): boolean {
  const at = (x: number | Located): number => (typeof x === 'number' ? x : x.index);
  return at(a) < at(b);
}

/** Events strictly between positions `from` and `to` that satisfy `keep`. */
export function eventsBetween(events: readonly TimedEvent[], from: number, to: number, keep: (event: RuntimeEvent) => boolean = () => true): Located[] {
  const out: Located[] = [];
  for (let k = Math.max(0, from + 1); k < Math.min(to, events.length); k++) if (keep(events[k].event)) out.push({ index: k, clock: events[k].clock, event: events[k].event });
  return out;
}
