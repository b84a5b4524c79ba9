import type { Session, Verdict } from '../../actors/session.ts';
import { ExitReason } from '../machine/layout.ts';
import { formatChoice, type Choice, type Enabled, type HypervisorFault, type PreemptionPoint, type Scheduler } from './schedule.ts';
import type { Trace } from './trace.ts';

/**
 * The deterministic run loop: at every step the scheduler picks one of the enabled choices —
 * run a vCPU for a slice, hand a pending exit to its handler, fire the timer, inject an
 * interrupt — and the session carries it out; inside a handler, at each preemption point, it may
 * run other vCPUs before the handler goes on. Nothing else decides anything, so the same seed
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
  /** Hypervisor faults the scheduler may inject (HypervisorModel.faults); none by default. */
  readonly faults?: readonly HypervisorFault[];
  /**
   * Bounded fairness: a vCPU that could act (run, or have its pending exit handled) but has not
   * for this much virtual time must act next — as a hypervisor eventually runs every vCPU. Without
   * it a priority scheduler (PCT) may starve a vCPU for a whole run, which a liveness property
   * (an unload that waits for a thread) would report as a failure no real system shows.
   */
  readonly fairnessSteps?: number;
}

export interface RunResult {
  /**
   * done: the end condition held; verdict: a guest outcome (triple fault) ended it; bound: a limit
   * was hit; idle: nothing could happen; horizon: a suffix branched from a snapshot made the
   * choices it was given and stopped there (only continuous oracles judge it).
   */
  readonly outcome: 'done' | 'verdict' | 'bound' | 'idle' | 'horizon';
  readonly verdict: Verdict | null;
  readonly steps: number;
  readonly choices: number;
  readonly hash: string;
  /** For bound and idle: where every vCPU is. */
  readonly detail: string;
}

export function runDeterministic(options: DeterministicOptions): RunResult {
  const run = new DeterministicRun(options);
  try {
    return run.continue() as RunResult;
  } finally {
    run.release();
  }
}

/**
 * A deterministic run that can stop at a top-level choice point and go on later, possibly with
 * another scheduler: what branching from a snapshot needs. Everything the loop carries between
 * choices is a field (the snapshot of a run restores fields, not a suspended call stack).
 */
export class DeterministicRun {
  /** Who makes the choices from here on (a branch gives each suffix its own). */
  scheduler: Scheduler;
  /** Choices made, and preemption points reached (PCT counts those among its events too). */
  readonly counter = { choices: 0, points: 0 };
  /** Virtual time each vCPU last acted (ran a slice, or had its exit handled). */
  private readonly lastActed: number[];
  /** When each interrupt source is next due. */
  private readonly nextDue: number[];
  private readonly sink: Session['eventSink'];

  constructor(private readonly options: DeterministicOptions) {
    const { session } = options;
    this.scheduler = options.scheduler;
    this.lastActed = new Array<number>(session.vcpuCount).fill(0);
    this.nextDue = (options.interrupts ?? []).map((source) => source.everySteps);
    this.sink = session.eventSink;
    session.preemptor = (label, handlerVcpu) => this.preempt({ label, handlerVcpu });
    session.eventSink = (event, clock) => {
      this.sink?.(event, clock);
      this.scheduler.observe?.(event);
    };
  }

  /**
   * Makes choices until the run ends (its result), or until `pauseBefore` says to stop at a
   * top-level choice point with this many choices made (null: paused, nothing chosen there yet).
   */
  continue(pauseBefore?: (choices: number) => boolean): RunResult | null {
    const options = this.options;
    const { session, trace } = options;
    const done = options.done ?? ((s: Session) => s.finished);
    const interrupts = options.interrupts ?? [];
    const counter = this.counter;
    for (;;) {
      if (session.verdict !== null) return this.finish('verdict');
      if (done(session)) return this.finish('done');
      if (this.bounded()) return this.finish('bound', `after ${session.clock} steps and ${counter.choices} choices:\n${session.describeVcpus()}`);
      if (pauseBefore?.(counter.choices) === true) return null;
      const enabled = starved(enabledNow(session, trace, interrupts, this.nextDue, options.faults, counter.points), session.clock, this.lastActed, options.fairnessSteps);
      if (enabled.runnable.length === 0 && enabled.pendingExits.length === 0 && !enabled.timerDue && !enabled.daemonDue && enabled.interrupts.length === 0) {
        return this.finish('idle', `no vCPU can run and nothing is pending:\n${session.describeVcpus()}`);
      }
      const choice = this.scheduler.choose(enabled);
      trace.recordChoice(choice, session.clock);
      counter.choices++;
      if (choice.kind === 'run' || choice.kind === 'handle') this.lastActed[choice.vcpu] = session.clock;
      perform(session, choice, interrupts, this.nextDue);
    }
  }

  /** The session no longer calls into this run (its preemptor and event hook are taken back). */
  release(): void {
    this.options.session.preemptor = null;
    this.options.session.eventSink = this.sink;
  }

  private finish(outcome: RunResult['outcome'], detail = ''): RunResult {
    return runResult(this.options.session, this.options.trace, outcome, this.counter.choices, detail);
  }

  private bounded(): boolean {
    return this.options.session.clock >= this.options.stepsMax || this.counter.choices >= (this.options.choicesMax ?? 10_000_000);
  }

  /**
   * A preemption point inside a handler: the scheduler may run other vCPUs (any number of slices)
   * before it lets the handler proceed. Bounds end the preemption; the main loop then reports them.
   * With fairness on, the handler proceeds once the others ran `fairnessSteps` in this preemption.
   */
  private preempt(point: PreemptionPoint): void {
    const { session, trace, fairnessSteps } = this.options;
    const counter = this.counter;
    const since = session.clock;
    // A point inside a handler is an event for PCT: its change points can fall on one, which is
    // where a race inside a handler needs the handler's vCPU to drop below another.
    counter.points++;
    for (;;) {
      if (session.verdict !== null || this.bounded()) return;
      // Bounded fairness holds for the handler too: a priority scheduler must not keep it preempted for good.
      if (fairnessSteps !== undefined && session.clock - since > fairnessSteps) return;
      const runnable: number[] = [];
      for (let vcpu = 0; vcpu < session.vcpuCount; vcpu++) if (session.isRunnable(vcpu)) runnable.push(vcpu);
      if (runnable.length === 0) return;
      const staleCode = runnable.filter((vcpu) => session.codeStale(vcpu));
      const choice = this.scheduler.choose({
        runnable, pendingExits: [], timerDue: false, daemonDue: false, interrupts: [], events: trace.events + counter.points, vcpus: session.vcpuCount, preemption: point,
        ...(staleCode.length > 0 ? { staleCode } : {}),
      });
      trace.recordChoice(choice, session.clock);
      counter.choices++;
      if (choice.kind === 'proceed') return;
      if (choice.kind === 'see-code') {
        session.seeCode(choice.vcpu);
        continue;
      }
      if (choice.kind !== 'run') throw new Error(`scheduler ${this.scheduler.name} chose "${formatChoice(choice)}" at a preemption point (only run, see-code or proceed are possible there)`);
      session.runSlice(choice.vcpu, choice.steps);
    }
  }
}

/** The enabled choices, narrowed to the vCPUs starved longer than the fairness bound (if any). */
function starved(enabled: Enabled, clock: number, lastActed: readonly number[], fairnessSteps: number | undefined): Enabled {
  if (fairnessSteps === undefined) return enabled;
  // No named closure here: run under tsx, each one made costs a defineProperty of its name, and this
  // runs before every choice (it was 3 % of a run).
  let starving = false;
  for (let k = 0; k < enabled.runnable.length && !starving; k++) starving = clock - lastActed[enabled.runnable[k]] > fairnessSteps;
  for (let k = 0; k < enabled.pendingExits.length && !starving; k++) starving = clock - lastActed[enabled.pendingExits[k]] > fairnessSteps;
  if (!starving) return enabled;
  const runnable = enabled.runnable.filter((vcpu) => clock - lastActed[vcpu] > fairnessSteps);
  const pendingExits = enabled.pendingExits.filter((vcpu) => clock - lastActed[vcpu] > fairnessSteps);
  const { staleCode: _notNow, ...rest } = enabled;
  return { ...rest, runnable, pendingExits, timerDue: false, daemonDue: false, interrupts: [] };
}

/** The result of a run that ended with `outcome`. */
export function runResult(session: Session, trace: Trace, outcome: RunResult['outcome'], choices: number, detail = ''): RunResult {
  const verdict = session.verdict;
  const steps = session.clock;
  // The hash is taken when asked: it writes out the whole trace, which most campaign runs never need.
  return {
    outcome, verdict, steps, choices, detail,
    get hash() {
      return trace.hash;
    },
  };
}

/** What could happen next. */
export function enabledNow(session: Session, trace: Trace, interrupts: readonly InterruptSource[], nextDue: readonly number[], faults: readonly HypervisorFault[] = [], points = 0): Enabled {
  // Called before every choice: it allocates only what it returns (GC was a tenth of an exit's cost).
  const runnable: number[] = [];
  let staleCode: number[] | null = null;
  for (let vcpu = 0; vcpu < session.vcpuCount; vcpu++) {
    if (!session.isRunnable(vcpu)) continue;
    runnable.push(vcpu);
    if (session.codeStale(vcpu)) (staleCode ??= []).push(vcpu);
  }
  const pendingExits = session.pendingExits().slice();
  const timerDue = session.timerDue();
  let idle = runnable.length === 0 && pendingExits.length === 0 && !timerDue;
  let due: readonly { readonly vcpu: number; readonly vector: number }[] = NO_INTERRUPTS;
  if (interrupts.length > 0) {
    const live: number[] = [];
    for (let index = 0; index < interrupts.length; index++) {
      const source = interrupts[index];
      if (!session.isInFlight(source.vcpu) && session.stateOf(source.vcpu) !== 'stopped') live.push(index);
    }
    let dueNow = live.filter((index) => session.clock >= nextDue[index]);
    idle &&= dueNow.length === 0;
    // With nothing else able to happen (every vCPU halted or stopped), the clock still ticks: time
    // jumps to the next interrupt of a vCPU that can take one, and to the daemon's task.
    if (idle && live.length > 0) {
      const next = Math.min(...live.map((index) => nextDue[index]));
      dueNow = live.filter((index) => nextDue[index] === next);
    }
    due = dueNow.map((index) => ({ vcpu: interrupts[index].vcpu, vector: interrupts[index].vector }));
  }
  const enabled: { -readonly [K in keyof Enabled]: Enabled[K] } = {
    runnable,
    pendingExits,
    timerDue,
    daemonDue: session.daemonDue(idle),
    interrupts: due,
    events: trace.events + points,
    vcpus: session.vcpuCount,
    preemption: null,
  };
  if (faults.length > 0) {
    enabled.faults = faults;
    enabled.eptExits = pendingExits.filter((vcpu) => session.pendingExitReason(vcpu) === ExitReason.eptViolation);
  }
  if (staleCode !== null) enabled.staleCode = staleCode;
  return enabled;
}

const NO_INTERRUPTS: readonly { readonly vcpu: number; readonly vector: number }[] = Object.freeze([]);

function perform(session: Session, choice: Choice, interrupts: readonly InterruptSource[], nextDue: number[]): void {
  switch (choice.kind) {
    case 'run':
      session.runSlice(choice.vcpu, choice.steps);
      return;
    case 'handle':
      session.handleExit(choice.vcpu, choice.fault);
      return;
    case 'timer':
      session.fireTimer();
      return;
    case 'daemon':
      session.runDaemon();
      return;
    case 'proceed':
      throw new Error('"proceed" is only a choice at a preemption point inside a handler');
    case 'see-code':
      session.seeCode(choice.vcpu);
      return;
    case 'irq': {
      const index = interrupts.findIndex((s) => s.vcpu === choice.vcpu && s.vector === choice.vector);
      if (index < 0) throw new Error(`choice "${formatChoice(choice)}" names no interrupt source`);
      nextDue[index] = session.clock + interrupts[index].everySteps;
      session.injectInterrupt(choice.vcpu, choice.vector);
    }
  }
}
