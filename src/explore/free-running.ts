import type { Session } from '../../actors/session.ts';
import { runResult, type RunResult } from './deterministic.ts';
import type { Trace } from './trace.ts';

/**
 * Free-running mode: every vCPU runs in its worker at once and the operating system interleaves
 * them; exits are handled one at a time in the order the vCPUs stopped (their tickets). Not
 * replayable, but traced the same way. Pausing (from handlers) stops the workers through their
 * attention words, and a handler's last resume lets them go again at once, while it goes on —
 * HVMI's resume does not wait for the handler to return.
 */

export interface FreeRunOptions {
  readonly session: Session;
  readonly trace: Trace;
  readonly done?: (session: Session) => boolean;
  /** Wall-clock bound of the whole run: a run still going then fails with where every vCPU is. */
  readonly wallMs: number;
  /** The timer fires this often (wall clock), when the session has one. */
  readonly timerEveryMs?: number;
  /** Steps a vCPU runs per command before checking in (it stops earlier at any exit). */
  readonly sliceSteps?: number;
  /**
   * Clock interrupts for vCPUs that halted to wait for one (an idle loop): delivered every
   * `wakeEveryMs` of wall time, as a timer keeps ticking while a CPU sleeps. Running vCPUs are not
   * interrupted in this mode (their preemption is the operating system's).
   */
  readonly interrupts?: readonly { readonly vcpu: number; readonly vector: number }[];
  readonly wakeEveryMs?: number;
}

export function runFree(options: FreeRunOptions): RunResult {
  const { session, trace } = options;
  if (!session.freeRunning) throw new Error('runFree needs a session opened with freeRunning: true');
  const done = options.done ?? ((s: Session) => s.finished);
  const slice = options.sliceSteps ?? 1 << 24;
  const started = performance.now();
  let nextTimer = started + (options.timerEveryMs ?? Number.POSITIVE_INFINITY);
  const wakeEvery = options.wakeEveryMs ?? 1;
  let nextWake = started + wakeEvery;
  const wakeHalted = (): void => {
    for (const source of options.interrupts ?? []) {
      if (session.stateOf(source.vcpu) !== 'halted' || session.isInFlight(source.vcpu)) continue;
      trace.recordChoice({ kind: 'irq', vcpu: source.vcpu, vector: source.vector }, session.clock);
      counter.choices++;
      session.injectInterrupt(source.vcpu, source.vector);
    }
  };
  const counter = { choices: 0 };
  const launchRunnable = (): void => {
    for (let vcpu = 0; vcpu < session.vcpuCount; vcpu++) {
      if (session.pauseDepth === 0 && session.isRunnable(vcpu)) {
        trace.recordChoice({ kind: 'run', vcpu, steps: slice }, session.clock);
        counter.choices++;
        session.launch(vcpu, slice);
      }
    }
  };
  const result = (outcome: RunResult['outcome'], detail = ''): RunResult => runResult(session, trace, outcome, counter.choices, detail);
  session.preemptor = launchRunnable;
  try {
    launchRunnable();
    for (;;) {
      if (session.verdict !== null) return settle(session, result('verdict'));
      if (done(session)) return settle(session, result('done'));
      const now = performance.now();
      if (now - started > options.wallMs) {
        return settle(session, result('bound', `still running after ${options.wallMs} ms:\n${session.describeVcpus()}`));
      }
      session.waitForStops(Math.max(1, Math.min(50, nextTimer - now, options.interrupts === undefined ? 50 : nextWake - now)));
      for (let vcpu = session.pendingExits()[0]; vcpu !== undefined; vcpu = session.pendingExits()[0]) {
        trace.recordChoice({ kind: 'handle', vcpu }, session.clock);
        counter.choices++;
        session.handleExit(vcpu);
      }
      if (performance.now() >= nextTimer) {
        nextTimer += options.timerEveryMs ?? Number.POSITIVE_INFINITY;
        trace.recordChoice({ kind: 'timer' }, session.clock);
        counter.choices++;
        session.fireTimer();
      }
      if (performance.now() >= nextWake) {
        nextWake = performance.now() + wakeEvery;
        if (session.pauseDepth === 0) wakeHalted();
      }
      const stalled = Array.from({ length: session.vcpuCount }, (_, v) => v).every((v) => !session.isInFlight(v) && !session.isRunnable(v));
      if (session.daemonDue(stalled)) {
        trace.recordChoice({ kind: 'daemon' }, session.clock);
        counter.choices++;
        session.runDaemon();
      }
      launchRunnable();
    }
  } finally {
    session.preemptor = null;
  }
}

/** Brings every vCPU to rest (pausing stops the in-flight ones) so the session can be read. */
function settle(session: Session, result: RunResult): RunResult {
  if (session.failed === null && session.status === 'running') {
    // Nothing relaunches them afterwards: the runner has returned.
    session.pauseVcpus();
    session.resumeVcpus();
  }
  return result;
}
