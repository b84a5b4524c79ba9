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

function located<E extends RuntimeEvent>(events: readonly TimedEvent[], keep: (event: RuntimeEvent) => event is E): Located<E>[] {
  const out: Located<E>[] = [];
  events.forEach(({ event, clock }, index) => {
    if (keep(event)) out.push({ index, clock, event });
  });
  return out;
}

const isExit = (event: RuntimeEvent): event is ExitEvent => event.kind === 'stop' && event.stop === 'exit' && event.exit !== null;

function matches(event: { vcpu: number; reason: string; rip: bigint }, access: number, filter: ExitFilter): boolean {
  return (filter.reason === undefined || event.reason === filter.reason)
    && (filter.vcpu === undefined || event.vcpu === filter.vcpu)
    && (filter.rip === undefined || event.rip === filter.rip)
    && (filter.access === undefined || (access & filter.access) === filter.access);
}

/** Engine notes of kind `what` (e.g. "mtbl-patch", "decode"), in order. */
export function notesOf(events: readonly TimedEvent[], what: string): Located<NoteEvent>[] {
  return located(events, (event): event is NoteEvent => event.kind === 'note' && event.what === what);
}

/** VM exits (vCPUs stopping at one), in order. */
export function exitsOf(events: readonly TimedEvent[], filter: ExitFilter = {}): Located<ExitEvent>[] {
  return located(events, (event): event is ExitEvent => isExit(event) && matches(event, event.exit.access, filter));
}

/** Exits handed to the handler, in order (the handle event carries the exit's ticket and the action). */
export function handledOf(events: readonly TimedEvent[], filter: ExitFilter = {}): Located<HandleEvent>[] {
  return located(events, (event): event is HandleEvent => event.kind === 'handle' && matches(event, 0, { ...filter, access: undefined }));
}

/** The exit with ticket `ticket`, or null. */
export function exitByTicket(events: readonly TimedEvent[], ticket: number): Located<ExitEvent> | null {
  const index = events.findIndex(({ event }) => isExit(event) && event.exit.ticket === ticket);
  return index < 0 ? null : { index, clock: events[index].clock, event: events[index].event as ExitEvent };
}

/** vCPUs stopped at an exit whose handler had not run just before position `index`, with that exit. */
export function pendingExitsAt(events: readonly TimedEvent[], index: number): Map<number, Located<ExitEvent>> {
  const pending = new Map<number, Located<ExitEvent>>();
  for (let k = 0; k < Math.min(index, events.length); k++) {
    const event = events[k].event;
    if (isExit(event)) pending.set(event.vcpu, { index: k, clock: events[k].clock, event });
    else if (event.kind === 'handle') pending.delete(event.vcpu);
  }
  return pending;
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
