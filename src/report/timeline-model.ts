/**
 * A run laid out for viewing: lanes (one per vCPU, one for the hypervisor's handler, one per
 * actor), the intervals on them, instant marks, arrows between them, and the details of every
 * exit. The Perfetto trace and the HTML timeline are two renderings of this one model. Times are
 * on the report axis of `timeline-items.ts` (the step clock × STEP_UNITS plus a rank within the step).
 */

/** Values a viewer shows next to an interval or a mark. */
export type Args = Readonly<Record<string, string | number | boolean>>;

export type LaneKind = 'vcpu' | 'handler' | 'actor';

export interface Lane {
  readonly id: string;
  readonly name: string;
  readonly kind: LaneKind;
}

/** What an interval shows, for colours and filters. */
export type SliceCategory = 'guest' | 'exit' | 'wait' | 'handled' | 'paused' | 'halted' | 'handler' | 'engine' | 'actor';

/** An interval on a lane; `depth` is its nesting level there (0: outermost). */
export interface Slice {
  readonly lane: string;
  readonly name: string;
  readonly category: SliceCategory;
  readonly start: number;
  readonly end: number;
  readonly depth: number;
  readonly args: Args;
  /** The exit (its ticket) the interval belongs to, if any. */
  readonly exit: number | null;
}

/** An instant on a lane, or on the whole run (`lane` null). */
export interface Mark {
  readonly lane: string | null;
  readonly name: string;
  readonly category: 'engine' | 'ept' | 'pause' | 'preemption' | 'irq' | 'vcpu' | 'violation' | 'window' | 'failure' | 'story';
  readonly at: number;
  readonly args: Args;
}

/** An arrow from a point on one lane to a point on another; each point lies inside an interval of its lane. */
export interface Flow {
  readonly name: string;
  readonly category: 'exit-to-handler' | 'patch-to-exit';
  readonly from: { readonly lane: string; readonly at: number };
  readonly to: { readonly lane: string; readonly at: number };
}

/** One line of disassembly. */
export interface CodeLine {
  readonly address: string;
  readonly bytes: string;
  readonly text: string;
}

/** A VM exit with what the reports show when it is selected. */
export interface ExitDetail {
  readonly ticket: number;
  readonly vcpu: number;
  readonly reason: string;
  readonly rip: string;
  readonly clock: number;
  /** When the vCPU stopped, its handler took the lock, and the handler answered (null: never). */
  readonly at: number;
  readonly handlerAt: number | null;
  readonly handledAt: number | null;
  /** The engine's decision: the reply's action and the exception injected (null: none). */
  readonly action: string | null;
  readonly inject: number | null;
  /** GPA, GLA and access of an EPT violation. */
  readonly facts: Readonly<Record<string, string>>;
  /** Registers at the exit, as hex, in a fixed order. */
  readonly registers: readonly (readonly [string, string])[];
  /** The code at RIP as the vCPU saw it at the exit; the first line is the instruction that exited. */
  readonly code: readonly CodeLine[];
  /** What happened while its handler held the lock: choices and events as the trace writes them. */
  readonly handler: readonly { readonly clock: number; readonly text: string }[];
}

/** A broken invariant placed where it was found. */
export interface PlacedViolation {
  readonly oracle: string;
  readonly detail: string;
  readonly at: number;
  /** When it is checked: after a handler, at the end of the run, after the unload. */
  readonly phase: string;
}

/** The run as the reports describe it. */
export interface TimelineMeta {
  readonly scenario: string;
  readonly seed: string;
  readonly strategy: string;
  readonly mode: string;
  readonly fixesOff: readonly string[];
  readonly outcome: string;
  readonly hash: string;
  readonly steps: number;
  readonly choices: number;
  readonly vcpus: number;
  readonly windows: readonly string[];
  /** Commands that repeat the run (replay only when a trace file was written). */
  readonly rerun: string;
  readonly replay: string | null;
  /** How the report axis relates to the step clock, in words. */
  readonly clock: string;
  readonly stepUnits: number;
}

/** A line of a shrunk run's story (explore/story.ts) placed on the axis: the events that matter. */
export interface StoryPoint {
  readonly at: number;
  readonly clock: number;
  readonly text: string;
}

export interface Timeline {
  readonly meta: TimelineMeta;
  readonly lanes: readonly Lane[];
  readonly slices: readonly Slice[];
  readonly marks: readonly Mark[];
  readonly flows: readonly Flow[];
  readonly exits: readonly ExitDetail[];
  readonly violations: readonly PlacedViolation[];
  /** For a shrunk run: its story, the events that matter (empty otherwise). */
  readonly story: readonly StoryPoint[];
  /** Where every item of the run lies on the axis, ascending (an event-order axis maps through it). */
  readonly points: readonly number[];
  /** The end of the axis (after the last item). */
  readonly end: number;
}
