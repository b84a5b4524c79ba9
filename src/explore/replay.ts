import type { EventSink } from '../../actors/events.ts';
import type { Session } from '../../actors/session.ts';
import { runDeterministic, type InterruptSource, type RunResult } from './deterministic.ts';
import type { HypervisorFault } from './schedule.ts';
import { ReplayDivergence, ReplayScheduler } from './schedulers/replay.ts';
import type { TraceJson } from './trace-json.ts';
import { Trace } from './trace.ts';

/**
 * Re-executes a recorded run by following its schedule, checking every trace entry against the
 * recording as it happens. The first difference stops the replay with both versions of the
 * entry and the entries before it — which is where the code (or the scenario) changed.
 */
export interface ReplayOptions {
  readonly session: Session;
  readonly recorded: TraceJson;
  readonly stepsMax: number;
  /** The recorded run's bounds that decide when it ends and when a preemption ends: the same as it had. */
  readonly choicesMax?: number;
  readonly fairnessSteps?: number;
  readonly done?: (session: Session) => boolean;
  readonly interrupts?: readonly InterruptSource[];
  /** Hypervisor faults the scenario allows (recorded choices may carry them). */
  readonly faults?: readonly HypervisorFault[];
  /** Runs once the replay's trace records events, before the first choice (engine start-up). */
  readonly before?: () => void;
  /** Also receives every event (the replay's trace gets them first). */
  readonly observe?: EventSink;
  /** The trace to record into (a fresh one by default), so a caller still has it if the run throws. */
  readonly trace?: Trace;
}

export interface ReplayResult extends RunResult {
  readonly trace: Trace;
}

export function replayTrace(options: ReplayOptions): ReplayResult {
  const { session, recorded } = options;
  const trace = options.trace ?? new Trace();
  // The first difference is the one that matters; it may be raised inside a handler (an engine
  // note) and come back wrapped in a session failure, so it is kept and rethrown as it was.
  let divergence: ReplayDivergence | null = null;
  const diverge = (message: string): never => {
    divergence ??= new ReplayDivergence(message);
    throw divergence;
  };
  trace.onEntry = (index, entry) => {
    if (divergence !== null) return;
    const expected = recorded.entries[index];
    const now = `${entry.clock} ${entry.text}`;
    if (expected === undefined) {
      diverge(`the replay went on past the ${recorded.entries.length} recorded entries with: ${now}`);
    }
    const then = `${expected.clock} ${expected.text}`;
    if (then !== now) {
      const before = recorded.entries
        .slice(Math.max(0, index - 4), index)
        .map((e, k) => `  #${index - Math.min(4, index) + k}  ${e.clock} ${e.text}`)
        .join('\n');
      diverge(`the replay diverged at entry #${index}\n  recorded: ${then}\n  now:      ${now}\nafter:\n${before || '  (start of run)'}`);
    }
  };
  const observe = options.observe;
  session.eventSink = (event, clock) => {
    trace.recordEvent(event, clock);
    observe?.(event, clock);
  };
  const replayer = new ReplayScheduler(recorded.choices, () => session.describeVcpus());
  // A choice that cannot be followed inside a handler (a preemption point) would reach us wrapped
  // in a session failure: keep the detailed divergence.
  const scheduler = {
    name: replayer.name,
    choose: (enabled: Parameters<ReplayScheduler['choose']>[0]) => {
      try {
        return replayer.choose(enabled);
      } catch (error) {
        if (error instanceof ReplayDivergence) divergence ??= error;
        throw error;
      }
    },
  };
  let result: RunResult;
  try {
    options.before?.();
    result = runDeterministic({
      session,
      scheduler,
      trace,
      stepsMax: options.stepsMax,
      ...(options.choicesMax !== undefined ? { choicesMax: options.choicesMax } : {}),
      ...(options.fairnessSteps !== undefined ? { fairnessSteps: options.fairnessSteps } : {}),
      ...(options.done ? { done: options.done } : {}),
      ...(options.interrupts ? { interrupts: options.interrupts } : {}),
      ...(options.faults ? { faults: options.faults } : {}),
    });
  } catch (error) {
    throw divergence ?? error;
  }
  if (trace.entries.length !== recorded.entries.length) {
    throw new ReplayDivergence(
      `the replay ended after ${trace.entries.length} entries, the recording has ${recorded.entries.length}; next recorded: ` +
        `${recorded.entries[trace.entries.length]?.text ?? '(none)'}`,
    );
  }
  if (trace.hash !== recorded.hash) throw new ReplayDivergence(`same entries but hash ${trace.hash} ≠ recorded ${recorded.hash}`);
  return { ...result, trace };
}
