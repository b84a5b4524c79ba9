import type { Session, Verdict } from '../../actors/session.ts';
import { formatChoice, type Choice, type Enabled, type Scheduler } from './schedule.ts';
import type { Trace } from './trace.ts';

/**
 * The deterministic run loop: at every step the scheduler picks one of the enabled choices —
 * run a vCPU for a slice, hand a pending exit to its handler, fire the timer, inject an
 * interrupt — and the session carries it out. Nothing else decides anything, so the same seed
 * (hence the same choices) reproduces the run, with inline or worker hosts alike.
 */

/** An external interrupt source: `vector` to `vcpu` every `everySteps` of virtual time. */
export interface InterruptSource {
  readonly vcpu: number;
  readonly vector: number;
  readonly everySteps: number;
}

export interface DeterministicOptions {
  readonly session: Session;
  readonly scheduler: Scheduler;
  readonly trace: Trace;
  /** The run is complete (default: every vCPU stopped for good). */
  readonly done?: (session: Session) => boolean;
  /** Bound on virtual time (steps of all vCPUs). */
  readonly stepsMax: number;
  /** Bound on scheduling choices. */
  readonly choicesMax?: number;
  readonly interrupts?: readonly InterruptSource[];
}

export interface RunResult {
  /** done: the end condition held; verdict: a guest outcome (triple fault) ended it; bound: a limit was hit; idle: nothing could happen. */
  readonly outcome: 'done' | 'verdict' | 'bound' | 'idle';
  readonly verdict: Verdict | null;
  readonly steps: number;
  readonly choices: number;
  readonly hash: string;
  /** For bound and idle: where every vCPU is. */
  readonly detail: string;
}

export function runDeterministic(options: DeterministicOptions): RunResult {
  const { session, scheduler, trace } = options;
  const done = options.done ?? ((s: Session) => s.finished);
  const choicesMax = options.choicesMax ?? 10_000_000;
  const interrupts = options.interrupts ?? [];
  const nextDue = interrupts.map((source) => source.everySteps);
  let choices = 0;
  const finish = (outcome: RunResult['outcome'], detail = ''): RunResult => runResult(session, trace, outcome, choices, detail);
  for (;;) {
    if (session.verdict !== null) return finish('verdict');
    if (done(session)) return finish('done');
    if (session.clock >= options.stepsMax || choices >= choicesMax) {
      return finish('bound', `after ${session.clock} steps and ${choices} choices:\n${session.describeVcpus()}`);
    }
    const enabled = enabledNow(session, trace, interrupts, nextDue);
    if (enabled.runnable.length === 0 && enabled.pendingExits.length === 0 && !enabled.timerDue && enabled.interrupts.length === 0) {
      return finish('idle', `no vCPU can run and nothing is pending:\n${session.describeVcpus()}`);
    }
    const choice = scheduler.choose(enabled);
    trace.recordChoice(choice, session.clock);
    choices++;
    perform(session, choice, interrupts, nextDue);
  }
}

/** The result of a run that ended with `outcome`. */
export function runResult(session: Session, trace: Trace, outcome: RunResult['outcome'], choices: number, detail = ''): RunResult {
  return { outcome, verdict: session.verdict, steps: session.clock, choices, hash: trace.hash, detail };
}

/** What could happen next. */
export function enabledNow(session: Session, trace: Trace, interrupts: readonly InterruptSource[], nextDue: readonly number[]): Enabled {
  const runnable: number[] = [];
  for (let vcpu = 0; vcpu < session.vcpuCount; vcpu++) if (session.isRunnable(vcpu)) runnable.push(vcpu);
  const due = interrupts
    .map((source, index) => ({ source, index }))
    .filter(({ source, index }) => session.clock >= nextDue[index] && !session.isInFlight(source.vcpu) && session.stateOf(source.vcpu) !== 'stopped')
    .map(({ source }) => ({ vcpu: source.vcpu, vector: source.vector }));
  return {
    runnable,
    pendingExits: [...session.pendingExits()],
    timerDue: session.timerDue(),
    interrupts: due,
    events: trace.events,
    vcpus: session.vcpuCount,
  };
}

function perform(session: Session, choice: Choice, interrupts: readonly InterruptSource[], nextDue: number[]): void {
  switch (choice.kind) {
    case 'run':
      session.runSlice(choice.vcpu, choice.steps);
      return;
    case 'handle':
      session.handleExit(choice.vcpu);
      return;
    case 'timer':
      session.fireTimer();
      return;
    case 'irq': {
      const index = interrupts.findIndex((s, i) => s.vcpu === choice.vcpu && s.vector === choice.vector && session.clock >= nextDue[i]);
      if (index < 0) throw new Error(`choice "${formatChoice(choice)}" names no due interrupt source`);
      nextDue[index] = session.clock + interrupts[index].everySteps;
      session.injectInterrupt(choice.vcpu, choice.vector);
    }
  }
}
