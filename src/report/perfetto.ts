import type { RunRecording } from '../explore/recorder.ts';
import type { RunReport } from '../explore/scenario-rig.ts';
import { buildTimeline } from './timeline.ts';
import type { Args, Lane, LaneKind, Timeline } from './timeline-model.ts';

/**
 * A run as Chrome's Trace Event Format, JSON Object Format — what ui.perfetto.dev and
 * chrome://tracing open: one process for the run, one thread per lane (each vCPU, the hypervisor
 * handler, each actor), complete events ('X') for intervals, instant events ('i') for engine
 * notes, preemption points, violations and window goals, flow events ('s' → 'f') for the arrows,
 * and metadata events ('M') naming the process and threads. The time axis is the step clock
 * (the trace's `metadata.clock` says how).
 */

/** One trace event; only the fields this writer uses. */
export interface TraceEvent {
  readonly name: string;
  readonly ph: 'X' | 'i' | 's' | 'f' | 'M';
  readonly pid: number;
  readonly tid: number;
  readonly ts: number;
  readonly cat?: string;
  readonly dur?: number;
  /** Instant scope: thread or global. */
  readonly s?: 't' | 'g';
  /** Flow id, shared by a flow's start and end. */
  readonly id?: number;
  /** Flow end binding: the enclosing slice. */
  readonly bp?: 'e';
  readonly args?: Args;
}

/** The JSON Object Format. */
export interface ChromeTrace {
  readonly traceEvents: readonly TraceEvent[];
  readonly displayTimeUnit: 'ms' | 'ns';
  readonly metadata: Readonly<Record<string, string | number | boolean | readonly string[]>>;
}

const PID = 1;
/** Threads are numbered in lane order from here; vCPUs come first, so vCPU n is thread n + 1. */
const FIRST_TID = 1;
const LANE_ORDER: Readonly<Record<LaneKind, number>> = { vcpu: 0, handler: 1, actor: 2 };

const metadataEvent = (name: string, tid: number, args: Args): TraceEvent => ({ name, ph: 'M', pid: PID, tid, ts: 0, args });

/** The trace of a laid-out run. */
export function chromeTrace(timeline: Timeline): ChromeTrace {
  const { meta } = timeline;
  const lanes = [...timeline.lanes].sort((a, b) => LANE_ORDER[a.kind] - LANE_ORDER[b.kind]);
  const tids = new Map<string, number>(lanes.map((lane, k) => [lane.id, FIRST_TID + k]));
  const tid = (lane: string): number => {
    const found = tids.get(lane);
    if (found === undefined) throw new Error(`lane "${lane}" has no thread`);
    return found;
  };
  const handlerTid = tid('handler');
  const events: TraceEvent[] = [
    metadataEvent('process_name', FIRST_TID, { name: `vcpusim ${meta.scenario} seed ${meta.seed} ${meta.strategy}` }),
    ...lanes.flatMap((lane: Lane, k) => [metadataEvent('thread_name', tid(lane.id), { name: lane.name }), metadataEvent('thread_sort_index', tid(lane.id), { sort_index: k })]),
  ];
  for (const slice of timeline.slices) {
    events.push({ name: slice.name, cat: slice.category, ph: 'X', pid: PID, tid: tid(slice.lane), ts: slice.start, dur: slice.end - slice.start, args: slice.exit !== null ? { ...slice.args, exit: slice.exit } : slice.args });
  }
  for (const mark of timeline.marks) {
    const global = mark.lane === null;
    events.push({ name: mark.name, cat: mark.category, ph: 'i', s: global ? 'g' : 't', pid: PID, tid: global ? handlerTid : tid(mark.lane ?? 'handler'), ts: mark.at, args: mark.args });
  }
  timeline.flows.forEach((flow, k) => {
    const id = k + 1;
    events.push({ name: flow.name, cat: flow.category, ph: 's', id, pid: PID, tid: tid(flow.from.lane), ts: flow.from.at });
    events.push({ name: flow.name, cat: flow.category, ph: 'f', bp: 'e', id, pid: PID, tid: tid(flow.to.lane), ts: flow.to.at });
  });
  return {
    traceEvents: events,
    displayTimeUnit: 'ms',
    metadata: {
      clock: meta.clock,
      stepUnits: meta.stepUnits,
      scenario: meta.scenario,
      seed: meta.seed,
      strategy: meta.strategy,
      mode: meta.mode,
      fixesOff: meta.fixesOff,
      outcome: meta.outcome,
      traceHash: meta.hash,
      steps: meta.steps,
      violations: timeline.violations.map((v) => `${v.oracle}: ${v.detail.split('\n')[0]}`),
      windowsReached: meta.windows,
      rerun: meta.rerun,
      ...(meta.replay !== null ? { replay: meta.replay } : {}),
    },
  };
}

/** The Perfetto / Chrome trace of a recorded run. */
export function perfettoTrace(report: RunReport, recording: RunRecording, tracePath: string | null = null): ChromeTrace {
  return chromeTrace(buildTimeline(report, recording, tracePath));
}
