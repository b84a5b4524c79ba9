import type { ExitFacts, RuntimeEvent } from '../../actors/events.ts';
import type { ActorChange, ExitCapture, RunRecording } from '../explore/recorder.ts';
import { codeLines, exitFacts, registerList } from './exit-details.ts';
import type { SliceDraft } from './nesting.ts';
import { patchMatches, type ExitPoint } from './patch-flows.ts';
import type { TimelineItem } from './timeline-items.ts';
import type { Args, ExitDetail, Lane, Mark } from './timeline-model.ts';

/**
 * One pass over a recorded run's items that lays out its lanes: on each vCPU's, when it ran guest
 * code (from its run choice to its stop), each exit (waiting for the handler lock, then handled),
 * and when it was paused or halted (its actor's states); on the handler's, who held the lock and
 * for what, what the engine noted meanwhile and where the scheduler could preempt it; one lane
 * per actor with its states. Arrows go from an exit to its handler and from a patch to the first
 * exit that met it.
 */

export const HANDLER_LANE = 'handler';
export const vcpuLane = (vcpu: number): string => `vcpu${vcpu}`;
const actorLane = (actor: string): string => `actor:${actor}`;

/** Lines of a handler's log kept per exit (a handler that preempts for long would otherwise fill the page). */
const HANDLER_LOG_MAX = 300;

/** A flow before its slices are placed: each end is a point inside a draft (null: `inside` it, once its end is known). */
export interface FlowDraft {
  readonly name: string;
  readonly category: 'exit-to-handler' | 'patch-to-exit';
  readonly from: { readonly draft: SliceDraft; readonly at: number | null };
  readonly to: { readonly draft: SliceDraft; readonly at: number | null };
}

export interface Walked {
  readonly lanes: readonly Lane[];
  readonly drafts: readonly SliceDraft[];
  readonly marks: readonly Mark[];
  readonly flows: readonly FlowDraft[];
  readonly exits: readonly ExitDetail[];
  /** The last item of the run's trace, the last item of all, and the end of the axis. */
  readonly traceEnd: number;
  readonly lastItem: number;
  readonly end: number;
  /** Where the first `fail` event is, if any. */
  readonly failedAt: number | null;
}

interface OpenExit {
  readonly ticket: number;
  readonly vcpu: number;
  readonly reason: string;
  readonly rip: bigint;
  readonly clock: number;
  readonly at: number;
  readonly facts: ExitFacts;
  readonly capture: ExitCapture | undefined;
  handlerAt: number | null;
  handledAt: number | null;
  action: string | null;
  inject: number | null;
  handler: { readonly clock: number; readonly text: string }[];
  draft: SliceDraft | null;
  /** Its "handled" interval on the vCPU lane: where the engine looked at it. */
  handledDraft: SliceDraft | null;
}

interface Lock {
  readonly draft: SliceDraft;
  readonly exit: OpenExit | null;
}

type EventOf<K extends RuntimeEvent['kind']> = Extract<RuntimeEvent, { kind: K }>;
type EventItem = TimelineItem & { readonly kind: 'event' };
type EventSteps = { readonly [K in RuntimeEvent['kind']]: (walk: Walk, event: EventOf<K>, item: EventItem) => void };

/** A point inside an interval, off its edges where it has room (a viewer binds an arrow to the interval around its end). */
export const inside = (draft: SliceDraft): number => (draft.end - draft.start >= 2 ? draft.start + 1 : draft.start);

const detailArgs = (detail: Readonly<Record<string, string | number | bigint | boolean>>): Args =>
  Object.fromEntries(Object.entries(detail).map(([key, value]) => [key, typeof value === 'bigint' ? `0x${value.toString(16)}` : value]));

/** Runs the step of an event's kind (the table is typed per kind; `kind as K` tells the compiler the two agree). */
function stepEvent<K extends RuntimeEvent['kind']>(walk: Walk, event: EventOf<K>, item: EventItem): void {
  const step: EventSteps[K] = EVENT_STEPS[event.kind as K];
  step(walk, event, item);
}

/** What each runtime event adds to the lanes. */
const EVENT_STEPS: EventSteps = {
  stop: (walk, event, item) => walk.stop(event, item),
  handle: (walk, event, item) => walk.handled(event, item),
  pause: (walk, _event, item) => walk.mark(HANDLER_LANE, item.text, 'pause', item.ts),
  resume: (walk, _event, item) => walk.mark(HANDLER_LANE, item.text, 'pause', item.ts),
  ept: (walk, event, item) => walk.mark(HANDLER_LANE, 'ept', 'ept', item.ts, { gpa: `0x${event.gpa.toString(16)}`, rights: event.rights, pages: event.pages }),
  'ept-commit': (walk, event, item) => walk.mark(HANDLER_LANE, 'ept-commit', 'ept', item.ts, { pages: event.pages }),
  timer: () => undefined,
  daemon: (walk, event) => walk.daemonTask(event.label),
  irq: (walk, event, item) => walk.mark(vcpuLane(event.vcpu), `irq ${event.vector}`, 'irq', item.ts),
  note: (walk, event, item) => walk.mark(HANDLER_LANE, event.what, 'engine', item.ts, detailArgs(event.detail)),
  fail: (walk, event, item) => walk.failed(event.reason, item.ts),
};

/** vCPU actor states shown on the vCPU's own lane (the others are its exits and guest slices). */
const VCPU_STATE_SLICES: Readonly<Record<string, { readonly name: string; readonly category: 'paused' | 'halted' }>> = {
  paused: { name: 'paused', category: 'paused' },
  halted: { name: 'halted (waiting for an interrupt)', category: 'halted' },
};

class Walk {
  readonly drafts: SliceDraft[] = [];
  readonly marks: Mark[] = [];
  readonly flows: FlowDraft[] = [];
  readonly exits: OpenExit[] = [];
  private readonly pending = new Map<number, OpenExit>();
  private readonly runStart = new Map<number, number>();
  private readonly actorOpen = new Map<string, { readonly change: ActorChange; readonly start: number }>();
  readonly actorsSeen: string[] = [];
  private readonly captures: ReadonlyMap<number, ExitCapture>;
  private lock: Lock | null = null;
  /** The last exit handler's lock interval: its reply (the handle event) comes just after the release. */
  private lastExitLock: Lock | null = null;
  private daemonLabel = 'task';
  readonly handlerDrafts: SliceDraft[] = [];
  failedAt: number | null = null;

  constructor(private readonly items: readonly TimelineItem[], recording: RunRecording) {
    this.captures = new Map(recording.exits.map((capture) => [capture.event, capture]));
  }

  run(): void {
    const first = this.items.findIndex((item) => item.kind === 'choice');
    if (this.items.length > 0 && first !== 0) {
      const end = first < 0 ? this.lastTs : this.items[first].ts;
      this.handlerSlice('engine start-up', 'engine', this.items[0].ts, end);
    }
    this.items.forEach((item) => {
      if (item.kind === 'actor') {
        this.actor(item.change, item.ts);
        return;
      }
      if (this.lock?.exit != null) this.logHandler(this.lock.exit, item);
      if (item.kind === 'choice') this.choice(item);
      else stepEvent(this, item.event, item);
    });
    this.finish();
  }

  get lastTs(): number {
    return this.items.length === 0 ? 0 : this.items[this.items.length - 1].ts;
  }

  get end(): number {
    return this.lastTs + 1;
  }

  mark(lane: string | null, name: string, category: Mark['category'], at: number, args: Args = {}): void {
    this.marks.push({ lane, name, category, at, args });
  }

  private slice(lane: string, name: string, category: SliceDraft['category'], start: number, end: number, args: Args = {}, exit: number | null = null): SliceDraft {
    const draft: SliceDraft = { lane, name, category, start, end: Math.max(start, end), args, exit };
    this.drafts.push(draft);
    return draft;
  }

  private handlerSlice(name: string, category: 'handler' | 'engine', start: number, end: number, args: Args = {}, exit: number | null = null): SliceDraft {
    const draft = this.slice(HANDLER_LANE, name, category, start, end, args, exit);
    this.handlerDrafts.push(draft);
    return draft;
  }

  private choice(item: TimelineItem & { readonly kind: 'choice' }): void {
    const { choice } = item;
    // A choice made while a handler holds the lock is made at one of its preemption points.
    if (this.lock !== null) this.mark(HANDLER_LANE, `preemption point → ${item.text}`, 'preemption', item.ts);
    if (choice.kind === 'run') this.runStart.set(choice.vcpu, item.ts);
  }

  stop(event: EventOf<'stop'>, item: EventItem): void {
    const lane = vcpuLane(event.vcpu);
    const start = this.runStart.get(event.vcpu) ?? item.ts;
    this.runStart.delete(event.vcpu);
    const name = event.stop === 'budget' ? 'guest' : `guest → ${event.reason || event.stop}`;
    this.slice(lane, name, 'guest', start, item.ts, { steps: event.retired, rip: `0x${event.rip.toString(16)}`, stop: event.stop, clock: item.clock });
    if (event.stop === 'shutdown') this.mark(lane, `shutdown${event.reason ? ` (${event.reason})` : ''}`, 'vcpu', item.ts);
    if (event.exit === null) return;
    const open: OpenExit = {
      ticket: event.exit.ticket, vcpu: event.vcpu, reason: event.reason, rip: event.rip, clock: item.clock, at: item.ts, facts: event.exit,
      capture: this.captures.get(item.index), handlerAt: null, handledAt: null, action: null, inject: null, handler: [], draft: null, handledDraft: null,
    };
    this.pending.set(event.vcpu, open);
    this.exits.push(open);
  }

  handled(event: EventOf<'handle'>, item: EventItem): void {
    const open = this.pending.get(event.vcpu);
    const lock = this.lastExitLock;
    if (lock !== null && lock.exit === open) {
      lock.draft.end = item.ts;
      lock.draft.name = `v${event.vcpu} #${event.ticket} ${event.reason} → ${event.action}${event.inject >= 0 ? ` inject ${event.inject}` : ''}`;
      lock.draft.args = { ...lock.draft.args, action: event.action, ...(event.inject >= 0 ? { inject: event.inject } : {}) };
    }
    this.lastExitLock = null;
    if (open === undefined || open.ticket !== event.ticket) return;
    open.handledAt = item.ts;
    open.action = event.action;
    open.inject = event.inject >= 0 ? event.inject : null;
    if (open.handlerAt !== null) open.handler.push({ clock: item.clock, text: item.text });
    this.pending.delete(event.vcpu);
    this.closeExit(open, item.ts);
  }

  daemonTask(label: string): void {
    this.daemonLabel = label;
  }

  failed(reason: string, at: number): void {
    this.failedAt ??= at;
    this.mark(null, 'the session failed', 'failure', at, { reason: reason.split('\n')[0] });
  }

  private logHandler(exit: OpenExit, item: TimelineItem & { readonly kind: 'choice' | 'event' }): void {
    if (exit.handler.length < HANDLER_LOG_MAX) exit.handler.push({ clock: item.clock, text: item.kind === 'choice' ? `> ${item.text}` : item.text });
  }

  private actor(change: ActorChange, at: number): void {
    const open = this.actorOpen.get(change.actor);
    if (open === undefined) this.actorsSeen.push(change.actor);
    else this.closeActor(open, at);
    this.actorOpen.set(change.actor, { change, start: at });
    if (change.actor === 'dispatch') this.lockChange(change, at);
    const vcpu = /^vcpu(\d+)$/.exec(change.actor);
    if (vcpu !== null && (change.state === 'stopped' || change.state === 'failed')) {
      this.mark(vcpuLane(Number(vcpu[1])), `${change.state}${change.detail !== null ? `: ${change.detail}` : ''}`, 'vcpu', at);
    }
  }

  private closeActor(open: { readonly change: ActorChange; readonly start: number }, at: number): void {
    const { change, start } = open;
    this.slice(actorLane(change.actor), change.state, 'actor', start, at, change.detail !== null ? { detail: change.detail } : {});
    const vcpu = /^vcpu(\d+)$/.exec(change.actor);
    const shown = VCPU_STATE_SLICES[change.state];
    if (vcpu !== null && shown !== undefined) this.slice(vcpuLane(Number(vcpu[1])), shown.name, shown.category, start, at);
  }

  /** The handler lock taken or released: an interval on the handler's lane, named for its holder. */
  private lockChange(change: ActorChange, at: number): void {
    if (change.state === 'held' && this.lock === null) {
      const holder = change.detail ?? 'handler';
      const vcpu = /^exit v(\d+)$/.exec(holder);
      const exit = vcpu === null ? null : (this.pending.get(Number(vcpu[1])) ?? null);
      const name = exit !== null ? `v${exit.vcpu} #${exit.ticket} ${exit.reason}` : holder === 'daemon' ? `daemon: ${this.daemonLabel}` : holder;
      const draft = this.handlerSlice(name, 'handler', at, at, { holder }, exit?.ticket ?? null);
      this.lock = { draft, exit };
      if (exit !== null) {
        exit.handlerAt = at;
        this.flows.push({ name: `exit #${exit.ticket}`, category: 'exit-to-handler', from: { draft: this.exitDraftFor(exit), at: null }, to: { draft, at: null } });
      }
    } else if (change.state !== 'held' && this.lock !== null) {
      this.lock.draft.end = at;
      if (this.lock.exit !== null) this.lastExitLock = this.lock;
      this.lock = null;
    }
  }

  /**
   * The exit's interval on its vCPU lane, made when the exit is first pointed at and stretched as
   * it is handled (a flow needs the draft before the exit is over).
   */
  private exitDraftFor(exit: OpenExit): SliceDraft {
    exit.draft ??= this.slice(vcpuLane(exit.vcpu), `exit #${exit.ticket} ${exit.reason}`, 'exit', exit.at, this.end, this.exitArgs(exit), exit.ticket);
    return exit.draft;
  }

  private exitArgs(exit: OpenExit): Args {
    return { ticket: exit.ticket, reason: exit.reason, rip: `0x${exit.rip.toString(16)}`, clock: exit.clock, ...exitFacts(exit.facts) };
  }

  /** The exit's intervals once it is handled (or the run ended first): waiting for the lock, then handled. */
  private closeExit(exit: OpenExit, end: number): void {
    const draft = this.exitDraftFor(exit);
    draft.end = end;
    const handled = exit.handledAt !== null;
    if (!handled) draft.name = `${draft.name} (never handled)`;
    draft.args = { ...this.exitArgs(exit), ...(exit.action !== null ? { action: exit.action } : {}), ...(exit.inject !== null ? { inject: exit.inject } : {}) };
    const lane = vcpuLane(exit.vcpu);
    this.slice(lane, 'waiting for the handler lock', 'wait', exit.at, exit.handlerAt ?? end, {}, exit.ticket);
    if (exit.handlerAt !== null) exit.handledDraft = this.slice(lane, handled ? `handled → ${exit.action}` : 'in the handler', 'handled', exit.handlerAt, end, {}, exit.ticket);
  }

  private finish(): void {
    const end = this.end;
    if (this.lock !== null) this.lock.draft.end = end;
    for (const exit of this.pending.values()) this.closeExit(exit, end);
    for (const open of this.actorOpen.values()) this.closeActor(open, end);
    for (const [vcpu, start] of this.runStart) this.slice(vcpuLane(vcpu), 'guest (running at the end)', 'guest', start, end);
    const after = this.items.find((item) => !item.traced && item.kind === 'event');
    if (after !== undefined) this.handlerSlice('after the run: checks and unload', 'engine', after.ts, end);
  }

  /**
   * Flows from each patch note to the first exit a handler looked at after it whose RIP, GLA or GPA
   * is in the patched range (an exit taken before the patch but handled after it met the patch
   * too: that is the double relocation). Only notes inside a handler interval get one.
   */
  patchFlows(): void {
    const points: ExitPoint<SliceDraft>[] = this.exits.flatMap((exit) => exit.handlerAt === null || exit.handledDraft === null ? [] : [{
      at: exit.handlerAt, ticket: exit.ticket, rip: exit.rip, gla: exit.facts.access !== 0 ? exit.facts.gla : null, gpa: exit.facts.access !== 0 ? exit.facts.gpa : null, target: exit.handledDraft,
    }]).sort((a, b) => a.at - b.at);
    for (const { note, exit } of patchMatches(this.items, points)) {
      const around = this.handlerDrafts.find((draft) => draft.start <= note.ts && note.ts <= draft.end);
      const target = exit.target;
      if (around === undefined || note.event.kind !== 'note') continue;
      this.flows.push({ name: `${note.event.what} → exit #${exit.ticket}`, category: 'patch-to-exit', from: { draft: around, at: note.ts }, to: { draft: target, at: null } });
    }
  }

  details(): ExitDetail[] {
    return this.exits.map((exit) => ({
      ticket: exit.ticket, vcpu: exit.vcpu, reason: exit.reason, rip: `0x${exit.rip.toString(16)}`, clock: exit.clock, at: exit.at,
      handlerAt: exit.handlerAt, handledAt: exit.handledAt, action: exit.action, inject: exit.inject, facts: exitFacts(exit.facts),
      registers: registerList(exit.capture), code: codeLines(exit.capture, exit.rip), handler: exit.handler,
    }));
  }
}

/** Lays out the lanes of a recorded run from its ordered items. */
export function walkTimeline(items: readonly TimelineItem[], recording: RunRecording): Walked {
  const walk = new Walk(items, recording);
  walk.run();
  walk.patchFlows();
  const vcpus: Lane[] = Array.from({ length: recording.vcpus }, (_, vcpu) => ({ id: vcpuLane(vcpu), name: `vCPU ${vcpu}`, kind: 'vcpu' }));
  const actors: Lane[] = walk.actorsSeen.map((actor) => ({ id: actorLane(actor), name: `actor ${actor}`, kind: 'actor' }));
  const traced = items.filter((item) => item.traced);
  return {
    lanes: [...vcpus, { id: HANDLER_LANE, name: 'hypervisor handler', kind: 'handler' }, ...actors],
    drafts: walk.drafts, marks: walk.marks, flows: walk.flows, exits: walk.details(),
    traceEnd: traced.length > 0 ? traced[traced.length - 1].ts : 0, lastItem: walk.lastTs, end: walk.end, failedAt: walk.failedAt,
  };
}
