import os from 'node:os';
import type { InspectionEvent, Subscription } from 'xstate';
import { startProtocolActor, type ProtocolActor, type ProtocolInterpreter } from './table-actor.ts';
import { RunStop } from '../src/cpu/cpu.ts';
import { CommandFlag, CommandKind, ExitAccess, ExitReason, Header, Outcome, Vcpu } from '../src/machine/layout.ts';
import type { Machine } from '../src/machine/machine.ts';
import { createHostBuffer } from '../src/host/host-buffer.ts';
import { HostError, InlineHost, WorkerHost, type HostOutcome, type VcpuHost } from '../src/host/hosts.ts';
import { Daemon } from './daemon.ts';
import { dispatchMachine, type DispatchEvent } from './dispatch.machine.ts';
import { EffectErrors } from './effects.ts';
import type { EventSink, ExitFacts, RuntimeEvent, StopName } from './events.ts';
import { applyReply, replyProblem } from './exit-replies.ts';
import type { ExitHandler, ExitReply, Hypervisor, HypervisorFault, RandomSource, TimerHandler, VcpuAccess } from './hypervisor.ts';
import { pauseMachine } from './pause.machine.ts';
import { PendingEpt } from './pending-ept.ts';
import { sessionMachine } from './session.machine.ts';
import type { GuardedVcpu } from './vcpu-access.ts';
import { VcpuFleet, type MutableExitContext } from './vcpu-fleet.ts';
import type { VcpuStateName } from './vcpu.machine.ts';

/**
 * A session: the hypervisor side of one machine. It owns the vCPU hosts (inline or workers), one
 * vcpu actor per vCPU, the pause coordinator, the session actor, the exit queue, the timer and the
 * handler "lock" (one handler at a time, HVMI's gLock). Runners drive it; exit handlers and the
 * timer see it through the `Hypervisor` interface.
 *
 * Everything is synchronous: waiting for a worker is a bounded Atomics.wait, so a handler can
 * pause the other vCPUs and continue, exactly like HVMI's blocking IntPauseVcpus.
 */

export interface SessionTimeouts {
  /** Worker start-up. */
  readonly bootMs: number;
  /** One command (a slice, or the wait for a vCPU to stop when pausing). */
  readonly commandMs: number;
}

export interface SessionOptions {
  readonly machine: Machine;
  /**
   * Where the vCPUs run: all in this thread, or one worker each — or the hosts another session
   * over this machine handed over (`handOver`), one per vCPU in order.
   */
  readonly hosts: 'inline' | 'workers' | readonly VcpuHost[];
  /** Free-running: vCPUs run in parallel and pause through their attention word. */
  readonly freeRunning?: boolean;
  readonly handler: ExitHandler;
  /** A periodic timer that competes with exits for the handler lock (HVMI's IntHandleTimer). */
  readonly timer?: { readonly periodSteps: number; readonly callback: TimerHandler };
  /** Runs after every handler and timer tick, before EPT changes are committed (hook commit). */
  readonly afterHandler?: (hypervisor: Hypervisor) => void;
  /**
   * Observes every actor (xstate's inspection protocol). Given to `restart`, it observes that run
   * only: the actors the run starts, and the session-long ones (session, handler lock) for as long
   * as the run lasts, beginning with the state they are in.
   */
  readonly inspect?: (event: InspectionEvent) => void;
  readonly events?: EventSink;
  readonly random?: RandomSource;
  readonly timeouts?: Partial<SessionTimeouts>;
  /** Spin iterations before a worker waiting for its next command sleeps (0 when threads outnumber cores). */
  readonly spin?: number;
  /**
   * Spin iterations before the hypervisor thread waiting for a worker's answer sleeps. Default:
   * 100,000 in a deterministic session with a second core (one worker runs at a time, so the spin
   * takes no core from a vCPU), else 0 (free-running vCPUs need the cores; one core: the spin would
   * only hold up the worker it waits for).
   */
  readonly waitSpin?: number;
  /** Nested pauses are counted (default); false: the naive boolean pause (the countedPause fix off). */
  readonly countedPause?: boolean;
  /** Who runs the protocol machines (default: tables; 'xstate': xstate's interpreter, as before tables). */
  readonly interpreter?: ProtocolInterpreter;
  /**
   * Deterministic mode: an instruction a handler allowed runs as part of handling the exit, before
   * the scheduler's next choice (an in-hypervisor integrator), instead of at the vCPU's next slice.
   */
  readonly emulateAtReply?: boolean;
}

/** The session failed: a vCPU host died or hung, or a handler threw. */
export class SessionError extends Error {
  constructor(
    message: string,
    readonly vcpu: number | null = null,
  ) {
    super(message);
    this.name = 'SessionError';
  }
}

/** A guest outcome that ends the run without being a vcpusim failure. */
export interface Verdict {
  readonly kind: 'triple-fault';
  readonly vcpu: number;
  readonly rip: bigint;
}

const DEFAULT_TIMEOUTS: SessionTimeouts = { bootMs: 30_000, commandMs: 30_000 };
/** How long a retiring session's idle workers get to leave the machine (a stop command takes microseconds). */
const RETIRE_MS = 2_000;
/** Loads of a done word before sleeping while a running vCPU acknowledges a pause. */
const PAUSE_SPIN = 4000;

const STOP_NAMES = new Map<number, StopName>([
  [RunStop.budget, 'budget'],
  [RunStop.exit, 'exit'],
  [RunStop.halted, 'halted'],
  [RunStop.attention, 'paused'],
  [RunStop.shutdown, 'shutdown'],
]);

type AcquireEvent = Extract<DispatchEvent, { type: 'ACQUIRE' }>;
// The lock's events are made once (per vCPU for exits): a handler runs under the lock on every VM exit.
const TIMER_LOCK: AcquireEvent = { type: 'ACQUIRE', holder: { kind: 'timer' } };
const DAEMON_LOCK: AcquireEvent = { type: 'ACQUIRE', holder: { kind: 'daemon' } };
const RELEASE_LOCK: DispatchEvent = { type: 'RELEASE' };

const EXIT_NAMES = new Map<number, string>(Object.entries(ExitReason).map(([name, code]) => [code, name]));
const exitName = (reason: number): string => EXIT_NAMES.get(reason) ?? `exit#${reason}`;

export class Session implements Hypervisor {
  readonly machine: Machine;
  readonly vcpuCount: number;
  readonly freeRunning: boolean;
  readonly ept: PendingEpt;
  random: RandomSource;
  private options: SessionOptions;
  private readonly timeouts: SessionTimeouts;
  private readonly fleet: VcpuFleet;
  /** Per vCPU: how its exit handler is named in errors, and the lock event that hands it the lock. */
  private readonly exitLocks: readonly { readonly what: string; readonly acquire: AcquireEvent }[];
  private readonly sessionActor: ProtocolActor<typeof sessionMachine>;
  private pauseActor: ProtocolActor<typeof pauseMachine>;
  private readonly exitQueue: number[] = [];
  private readonly hostBuffer: SharedArrayBuffer;
  /** The handler lock (HVMI's gLock). */
  private readonly dispatchActor: ProtocolActor<typeof dispatchMachine>;
  private readonly daemon = new Daemon();
  /** Errors thrown by actor effects, rethrown after the send that ran them. */
  private readonly effects = new EffectErrors();
  /**
   * Called at engine preemption points while a handler runs and the vCPUs are not paused; the
   * deterministic runner sets it so its scheduler can run other vCPUs there (null: no preemption).
   */
  preemptor: ((label: string, handlerVcpu: number) => void) | null = null;
  private clockSteps = 0;
  /** Exits so far in this run: the n-th exit gets ticket n. */
  private exitTickets = 0;
  private nextTimer: number;
  /** The hypervisor's REP optimisation (IntToggleRepOptimization): an allowed REP string instruction runs a page at a time. */
  private repOptimization = true;
  private failure: SessionError | null = null;
  private closing: Promise<void> | null = null;
  /** The session-long actors' subscriptions to the current run's `inspect`, if it has one. */
  private readonly runInspection: Subscription[] = [];
  /** What the session-long actors were created observing (`open`'s inspect). */
  private readonly openedInspect: SessionOptions['inspect'];
  /** Set when a guest outcome (a triple fault) ended the run. */
  verdict: Verdict | null = null;

  private constructor(options: SessionOptions) {
    this.options = options;
    this.machine = options.machine;
    this.vcpuCount = options.machine.vcpuCount;
    this.freeRunning = options.freeRunning === true;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.random = options.random ?? { below: () => 0 };
    this.nextTimer = options.timer?.periodSteps ?? Number.POSITIVE_INFINITY;
    this.hostBuffer = createHostBuffer(this.vcpuCount);
    this.ept = new PendingEpt(
      options.machine.ept,
      (gpa, rights, pages) => this.emit({ kind: 'ept', gpa, rights, pages }),
      (pages) => this.emit({ kind: 'ept-commit', pages }),
      () => this.forceVmEntries(),
    );
    const inspect = options.inspect;
    this.openedInspect = inspect;
    const interpreter = this.interpreter;
    this.fleet = new VcpuFleet(options.machine, inspect, interpreter);
    this.exitLocks = Array.from({ length: this.vcpuCount }, (_, vcpu) => ({ what: `exit handler for vCPU ${vcpu}`, acquire: { type: 'ACQUIRE', holder: { kind: 'exit', vcpu } } }));
    this.sessionActor = startProtocolActor(sessionMachine, { id: 'session', input: { vcpus: this.vcpuCount }, interpreter, ...(inspect ? { inspect } : {}) });
    this.dispatchActor = startProtocolActor(dispatchMachine, { id: 'dispatch', interpreter, ...(inspect ? { inspect } : {}) });
    this.pauseActor = this.startPauseActor();
  }

  private startPauseActor(): ProtocolActor<typeof pauseMachine> {
    const inspect = this.options.inspect;
    return startProtocolActor(
      pauseMachine.provide({
        actions: {
          requestPause: this.effects.guard(() => this.stopEveryVcpu()),
          resumeAll: this.effects.guard(() => this.resumeEveryVcpu()),
        },
      }),
      { id: 'pause', input: { counted: this.options.countedPause !== false }, interpreter: this.interpreter, ...(inspect ? { inspect } : {}) },
    );
  }

  /** Who runs the protocol machines of this session (and of the engine's actors over it). */
  get interpreter(): ProtocolInterpreter {
    return this.options.interpreter ?? 'table';
  }

  /**
   * Opens a session: starts one host per vCPU (workers are awaited, bounded) and the actors.
   * On any failure every host already started is terminated before the error propagates.
   */
  static open(options: SessionOptions): Session {
    const session = new Session(options);
    const { machine } = options;
    Atomics.store(machine.memory.header, Header.sessionState, 0);
    try {
      for (let id = 0; id < session.vcpuCount; id++) {
        const host =
          typeof options.hosts !== 'string'
            ? adopted(options.hosts, id, machine)
            : options.hosts === 'workers'
            ? WorkerHost.start(id, machine, session.hostBuffer, { spin: options.spin ?? 2000, waitSpin: options.waitSpin ?? (options.freeRunning !== true && os.availableParallelism() > 1 ? 100_000 : 0), idlePollMs: 250 }, session.timeouts.bootMs)
            : new InlineHost(id, machine);
        session.fleet.add(host, (vcpu, access) => session.exitContext(vcpu, access));
      }
    } catch (error) {
      void session.close();
      throw error;
    }
    session.sessionActor.send({ type: 'BOOTED' });
    return session;
  }

  /**
   * Starts a new run on the same hosts (no new workers): the caller has restored the machine
   * (MachineSnapshot). Every host drops its caches and reloads the vCPU state, every actor starts
   * over, and the exit queue, clock, verdict and pending EPT requests are cleared. Options given
   * here (a fresh handler, event sink, random source) replace the old ones.
   */
  restart(overrides: Partial<Pick<SessionOptions, 'handler' | 'events' | 'random' | 'timer' | 'afterHandler' | 'countedPause' | 'emulateAtReply' | 'inspect'>> = {}): void {
    this.assertLive();
    if (this.fleet.inFlight().length > 0) throw new SessionError('restart() while vCPUs are running: stop them first');
    this.options = { ...this.options, ...overrides };
    this.random = this.options.random ?? this.random;
    this.inspectRun(this.options.inspect);
    this.fleet.slots.forEach((slot, id) => {
      slot.host.start(CommandKind.reset, 0, 0);
      this.waitHost(id);
      this.fleet.restartSlot(id);
    });
    this.pauseActor.stop();
    this.pauseActor = this.startPauseActor();
    this.exitQueue.length = 0;
    this.clockSteps = 0;
    this.exitTickets = 0;
    this.nextTimer = this.options.timer?.periodSteps ?? Number.POSITIVE_INFINITY;
    this.repOptimization = true;
    this.verdict = null;
    this.daemon.clear();
    this.ept.discard();
  }

  /**
   * Points this run's actors at `inspect`: the ones restart creates get it at creation; the
   * session-long ones (which observe what `open` was given) are subscribed until the next restart
   * and told their current state first, so an observer knows every actor's state from the start.
   */
  private inspectRun(inspect: SessionOptions['inspect']): void {
    for (const subscription of this.runInspection.splice(0)) subscription.unsubscribe();
    this.fleet.inspect = inspect;
    if (inspect === undefined || inspect === this.openedInspect) return;
    for (const actor of [this.sessionActor, this.dispatchActor]) {
      this.runInspection.push(actor.system.inspect(inspect));
      inspect({ type: '@xstate.snapshot', rootId: actor.sessionId, actorRef: actor, snapshot: actor.getSnapshot(), event: { type: 'vcpusim.run-start' } });
    }
  }

  // --- state ------------------------------------------------------------------------------------------

  /** The session actor's state: booting, running, failed, shuttingDown or closed. */
  get status(): string {
    return String(this.sessionActor.getSnapshot().value);
  }

  /** Virtual time: steps retired by all vCPUs. */
  get clock(): number {
    return this.clockSteps;
  }

  /** Exits so far in this run (the ticket of the latest one). */
  get ticket(): number {
    return this.exitTickets;
  }

  stateOf(vcpu: number): VcpuStateName {
    return this.fleet.stateOf(vcpu);
  }

  /** Steps retired by one vCPU. */
  retiredBy(vcpu: number): number {
    return this.fleet.slot(vcpu).retired;
  }

  /** vCPUs stopped at an exit whose handler has not run, in arrival order. */
  pendingExits(): readonly number[] {
    return this.exitQueue;
  }

  /** The reason of `vcpu`'s pending exit (ExitReason), or null when it has none. */
  pendingExitReason(vcpu: number): number | null {
    return this.exitQueue.includes(vcpu) ? this.fleet.slot(vcpu).context.exit.reason : null;
  }

  /** A vCPU that can be given a run command now. */
  isRunnable(vcpu: number): boolean {
    return this.fleet.isRunnable(vcpu);
  }

  isInFlight(vcpu: number): boolean {
    return this.fleet.slot(vcpu).inFlight;
  }

  /** True when every vCPU is stopped for good (or failed). */
  get finished(): boolean {
    return this.fleet.finished;
  }

  timerDue(): boolean {
    return this.options.timer !== undefined && this.clockSteps >= this.nextTimer && this.lockHolder === null;
  }

  /** Exits handed to a handler, timer ticks and daemon tasks since the session opened. */
  get handled(): number {
    return this.dispatchActor.getSnapshot().context.exits;
  }

  get ticks(): number {
    return this.dispatchActor.getSnapshot().context.ticks;
  }

  /** Who holds the handler lock: a vCPU, -1 for the timer, -2 for the daemon; null when free. */
  private get lockHolder(): number | null {
    const holder = this.dispatchActor.getSnapshot().context.holder;
    return holder === null ? null : holder.kind === 'exit' ? holder.vcpu : holder.kind === 'timer' ? -1 : -2;
  }

  /**
   * Asks the integrator's daemon to run `run` under the lock once `afterSteps` of virtual time have
   * passed (replacing any task it had). The scheduler decides when, among everything enabled.
   */
  defer(label: string, afterSteps: number, run: () => void): void {
    this.daemon.defer(label, this.clockSteps, afterSteps, run);
  }

  /** The daemon's pending task, if any (its label and due time). */
  get daemonPending(): { readonly label: string; readonly due: number } | null {
    return this.daemon.pending;
  }

  /** The daemon has work due (or nothing else could make time pass until it is). */
  daemonDue(nothingElse = false): boolean {
    return this.lockHolder === null && this.daemon.isDue(this.clockSteps, nothingElse);
  }

  /** Runs the daemon's due task under the lock (it competes with exits and the timer). */
  runDaemon(): void {
    this.assertLive();
    const task = this.daemon.take();
    if (task === null) throw new SessionError('the daemon has no task');
    this.emit({ kind: 'daemon', label: task.label });
    this.underLock(`daemon task "${task.label}"`, DAEMON_LOCK, task.run, undefined);
  }

  /** Pause depth (0 when the guest may run). */
  get pauseDepth(): number {
    return this.pauseActor.getSnapshot().context.depth;
  }

  /** Where runtime events go (a trace); replaceable between runs. */
  get eventSink(): EventSink | undefined {
    return this.options.events;
  }

  set eventSink(sink: EventSink | undefined) {
    this.options = { ...this.options, events: sink };
  }

  private emit(event: RuntimeEvent): void {
    this.options.events?.(event, this.clockSteps);
  }

  // --- running vCPUs -------------------------------------------------------------------------------

  /** Deterministic mode: runs vCPU `vcpu` for up to `budget` steps and processes how it stopped. */
  runSlice(vcpu: number, budget: number): StopName {
    this.launch(vcpu, budget);
    return this.collect(vcpu, this.waitHost(vcpu));
  }

  /**
   * Deterministic mode: code was written (by another vCPU or the engine) since `vcpu` last looked,
   * so it may still execute the old bytes — until it serialises, or `seeCode` says it sees them.
   */
  codeStale(vcpu: number): boolean {
    return this.isRunnable(vcpu) && this.fleet.codeStale(vcpu);
  }

  /** `vcpu` sees every code write made so far from its next instruction on (an explored choice: SDM 8.1.3). */
  seeCode(vcpu: number): void {
    this.assertLive();
    if (!this.codeStale(vcpu)) throw new SessionError(`vCPU ${vcpu} has no stale code to see: it is ${this.stateOf(vcpu)}, and no code was written since it last looked`, vcpu);
    this.fleet.seeCode(vcpu);
  }

  /** Starts a run command without waiting (free-running mode, and the first half of runSlice). */
  launch(vcpu: number, budget: number): void {
    this.assertLive();
    if (!this.isRunnable(vcpu)) throw new SessionError(`vCPU ${vcpu} cannot run now: it is ${this.stateOf(vcpu)}${this.isInFlight(vcpu) ? ' and already running a command' : ''}`, vcpu);
    if (this.pauseDepth > 0) throw new SessionError(`vCPU ${vcpu} cannot run while the vCPUs are paused`, vcpu);
    try {
      this.fleet.launch(vcpu, budget);
    } catch (error) {
      this.failHost(vcpu, error);
    }
  }

  /** Free-running mode: waits (bounded) for any in-flight vCPU to stop; collects and returns them. */
  waitForStops(timeoutMs: number): number[] {
    const header = this.machine.memory.header;
    const bell = Atomics.load(header, Header.doorbell);
    let done = this.fleet.doneInFlight();
    if (done.length === 0 && timeoutMs > 0) {
      Atomics.wait(header, Header.doorbell, bell, timeoutMs);
      done = this.fleet.doneInFlight();
    }
    const outcomes = done.map((vcpu) => ({ vcpu, outcome: this.fleet.slot(vcpu).host.wait(0) }));
    // Stops are processed in the order the vCPUs stopped (their exit tickets).
    outcomes.sort((a, b) => (a.outcome.ticket || Number.MAX_SAFE_INTEGER) - (b.outcome.ticket || Number.MAX_SAFE_INTEGER) || a.vcpu - b.vcpu);
    for (const { vcpu, outcome } of outcomes) this.collect(vcpu, outcome);
    return outcomes.map((o) => o.vcpu);
  }

  private waitHost(vcpu: number, spin?: number): HostOutcome {
    try {
      return this.fleet.slot(vcpu).host.wait(this.timeouts.commandMs, spin);
    } catch (error) {
      return this.failHost(vcpu, error);
    }
  }

  /** Applies a finished command's outcome to the actors, the exit queue and the clock. */
  private collect(vcpu: number, result: HostOutcome): StopName {
    const slot = this.fleet.slot(vcpu);
    slot.inFlight = false;
    if (result.outcome === Outcome.error) return this.failHost(vcpu, null);
    slot.retired += result.retired;
    this.clockSteps += result.retired;
    const stop = STOP_NAMES.get(result.outcome);
    if (stop === undefined) return this.failHost(vcpu, new Error(`unknown outcome ${result.outcome}`));
    const state = this.machine.vcpu(vcpu);
    if (stop === 'budget') {
      // Recorded too, so "did vCPU n run between A and B" is a question the events answer.
      this.emit({ kind: 'stop', vcpu, stop, reason: '', rip: state.rip, retired: result.retired, exit: null });
      return stop;
    }
    // The exit record is read once, here; the handler gets this copy (it cannot change while the vCPU waits).
    const exit = stop === 'exit' ? state.exit() : null;
    const rip = exit !== null ? exit.rip : state.rip;
    if (exit !== null && exit.reason === ExitReason.tripleFault) {
      this.verdict ??= { kind: 'triple-fault', vcpu, rip };
      this.fleet.settle(vcpu, 'shutdown', `triple fault at RIP 0x${rip.toString(16)}`);
      this.emit({ kind: 'stop', vcpu, stop: 'shutdown', reason: 'tripleFault', rip, retired: result.retired, exit: null });
      return 'shutdown';
    }
    let facts: ExitFacts | null = null;
    if (exit !== null) {
      slot.context.exit = exit;
      slot.exitTicket = ++this.exitTickets;
      const access = exit.reason === ExitReason.eptViolation ? exit.qualification & (ExitAccess.read | ExitAccess.write | ExitAccess.execute) : 0;
      facts = { ticket: slot.exitTicket, gpa: exit.gpa, gla: exit.gla, access };
    }
    this.fleet.settle(vcpu, stop, 'the CPU is in shutdown');
    if (stop === 'exit') this.exitQueue.push(vcpu);
    const reason = exit !== null ? exitName(exit.reason) : stop === 'shutdown' ? 'shutdown' : '';
    this.emit({ kind: 'stop', vcpu, stop, reason, rip, retired: result.retired, exit: facts });
    return stop;
  }

  // --- handlers and the timer -------------------------------------------------------------------------

  /** Hands vCPU `vcpu`'s pending exit to the exit handler and applies its reply. */
  handleExit(vcpu: number, fault?: HypervisorFault): ExitReply {
    this.assertLive();
    if (this.stateOf(vcpu) !== 'exited') throw new SessionError(`vCPU ${vcpu} has no pending exit (it is ${this.stateOf(vcpu)})`, vcpu);
    const index = this.exitQueue.indexOf(vcpu);
    if (index >= 0) this.exitQueue.splice(index, 1);
    const slot = this.fleet.slot(vcpu);
    const context = slot.context;
    const exit = context.exit;
    context.exitTicket = slot.exitTicket;
    if (fault !== undefined) this.emit({ kind: 'note', what: 'hypervisor-fault', detail: { vcpu, fault, ticket: slot.exitTicket } });
    // A duplicated event reaches the engine twice, with the vCPU as it exited; only the last
    // answer is carried out (the first one's register changes stay, as the engine made them).
    const lock = this.exitLocks[vcpu]!;
    if (fault === 'duplicate-exit') this.underLock(`${lock.what} (first delivery)`, lock.acquire, this.options.handler, context);
    const reply = this.underLock(lock.what, lock.acquire, this.options.handler, context, fault === 'late-flush');
    const problem = replyProblem(reply, exit.instructionLength);
    if (problem !== null) this.fail(`${lock.what} ${problem}`, vcpu);
    let flags = applyReply(this.machine.vcpu(vcpu), reply, exit);
    if (flags !== null && (flags & CommandFlag.emulateFirst) !== 0 && !this.repOptimization) flags |= CommandFlag.firstOneIteration;
    this.fleet.replied(vcpu, flags);
    this.emit({
      kind: 'handle',
      vcpu,
      reason: exitName(exit.reason),
      rip: exit.rip,
      action: reply.action,
      inject: reply.inject?.vector ?? -1,
      ticket: slot.exitTicket,
    });
    // An in-hypervisor integrator carries the allowed instruction out on the exiting CPU before
    // anything else can happen; a slice of no steps beyond it does the same here.
    const emulates = flags !== null && (flags & CommandFlag.emulateFirst) !== 0;
    if (emulates && this.options.emulateAtReply === true && !this.freeRunning && this.pauseDepth === 0 && this.isRunnable(vcpu)) this.runSlice(vcpu, 0);
    return reply;
  }

  /** The hypervisor as an exit handler sees it, plus the exiting vCPU (one object per vCPU, reused). */
  private exitContext(vcpu: number, self: GuardedVcpu): MutableExitContext {
    const session = this;
    return {
      vcpuId: vcpu,
      exit: this.machine.vcpu(vcpu).exit(),
      exitTicket: 0,
      self,
      vcpuCount: this.vcpuCount,
      memory: this.memory,
      ept: this.ept,
      random: this.random,
      get clock() {
        return session.clock;
      },
      get ticket() {
        return session.ticket;
      },
      get pauseDepth() {
        return session.pauseDepth;
      },
      vcpu: (id) => session.vcpu(id),
      pauseVcpus: () => session.pauseVcpus(),
      resumeVcpus: () => session.resumeVcpus(),
      note: (what, detail) => session.note(what, detail),
      preemptionPoint: (label) => session.preemptionPoint(label),
      toggleRepOptimization: (enable) => session.toggleRepOptimization(enable),
    };
  }

  /** Runs the periodic timer callback (it competes with exits for the lock). */
  fireTimer(): void {
    this.assertLive();
    const timer = this.options.timer;
    if (timer === undefined) throw new SessionError('this session has no timer');
    this.nextTimer = this.clockSteps + timer.periodSteps;
    this.emit({ kind: 'timer' });
    this.underLock('timer callback', TIMER_LOCK, timer.callback, this);
  }

  /** Runs `body` as the only handler (gLock), then the after-handler step and the EPT commit. */
  private underLock<A, T>(what: string, acquire: AcquireEvent, body: (argument: A) => T, argument: A, lateFlush = false): T {
    const refused = this.dispatchActor.getSnapshot().context.refused;
    this.dispatchActor.send(acquire);
    if (this.dispatchActor.getSnapshot().context.refused > refused) throw new SessionError(`${what} started while another handler holds the lock (handlers do not nest)`);
    let result: T;
    try {
      result = body(argument);
      this.options.afterHandler?.(this);
    } catch (error) {
      if (error instanceof SessionError) throw error;
      return this.fail(`${what} threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    } finally {
      this.dispatchActor.send(RELEASE_LOCK);
    }
    // The integrator flushes the EPT changes it batched during the event when it answers it
    // (libbdvmi's flushPageProtections): every vCPU, running or not, enters with the new rights.
    // A late flush (a hypervisor fault) commits the rights for later entries only.
    if (this.ept.size > 0) {
      if (lateFlush) this.ept.commit();
      else this.ept.flush();
    }
    return result;
  }

  /** Injects an external interrupt, taken at the vCPU's next VM entry when IF allows. */
  injectInterrupt(vcpu: number, vector: number): void {
    if (this.isInFlight(vcpu)) throw new SessionError(`vCPU ${vcpu} is running a command: stop it before injecting`, vcpu);
    if (!Number.isInteger(vector) || vector < 32 || vector > 255) throw new RangeError(`external interrupt vector must be 32..255, got ${vector}`);
    this.machine.vcpu(vcpu).set32('pendingInterrupt', vector);
    this.fleet.interrupted(vcpu);
    this.emit({ kind: 'irq', vcpu, vector });
  }

  // --- Hypervisor interface -------------------------------------------------------------------------

  get memory(): Machine['memory'] {
    return this.machine.memory;
  }

  vcpu(id: number): VcpuAccess {
    return this.fleet.slot(id).access;
  }

  pauseVcpus(): void {
    this.assertLive();
    this.pauseActor.send({ type: 'PAUSE' });
    this.effects.rethrow();
    this.emit({ kind: 'pause', depth: this.pauseDepth });
  }

  resumeVcpus(): void {
    this.assertLive();
    const before = this.pauseActor.getSnapshot().context;
    this.pauseActor.send({ type: 'RESUME' });
    this.effects.rethrow();
    const after = this.pauseActor.getSnapshot().context;
    if (after.underflows > before.underflows) throw new SessionError('resumeVcpus() called more times than pauseVcpus()');
    if (after.ignored > before.ignored) return;
    this.emit({ kind: 'resume', depth: this.pauseDepth });
    // The guest runs again while the handler goes on (only the exiting vCPU waits for it).
    if (this.pauseDepth === 0) this.preemptionPoint('resume');
  }

  note(what: string, detail: Readonly<Record<string, string | number | bigint | boolean>> = {}): void {
    // An event is a fact of its moment: the caller may change its object later (the trace writes
    // an event out only when read, and oracles read the log after the run).
    this.emit({ kind: 'note', what, detail: { ...detail } });
  }

  toggleRepOptimization(enable: boolean): void {
    if (this.repOptimization === enable) return;
    this.repOptimization = enable;
    this.emit({ kind: 'note', what: 'rep-optimization', detail: { enabled: enable } });
  }

  preemptionPoint(label: string): void {
    if (this.lockHolder === null || this.preemptor === null || this.pauseDepth > 0) return;
    this.preemptor(label, this.lockHolder);
  }

  /**
   * Every vCPU enters again before it runs on, so it takes the committed EPT rights: running vCPUs
   * are stopped and let go (pause/resume, HVMI's flush fallback), waiting ones are marked.
   */
  private forceVmEntries(): void {
    if (this.fleet.inFlight().length > 0 && this.pauseDepth === 0) {
      this.pauseVcpus();
      this.resumeVcpus();
    }
    this.fleet.markEntries();
  }

  /** Pause coordinator effect: stop every vCPU at an instruction boundary (bounded waits). */
  private stopEveryVcpu(): void {
    const words = (vcpu: number): Int32Array => this.machine.vcpu(vcpu).words;
    const running = this.fleet.inFlight();
    for (const vcpu of running) Atomics.store(words(vcpu), Vcpu.attention, 1);
    // A running vCPU sees its attention word within a few blocks: spin briefly (≈30 µs) before
    // sleeping, since waking this thread would cost more than the wait itself.
    for (const vcpu of running) this.collect(vcpu, this.waitHost(vcpu, PAUSE_SPIN));
    for (const vcpu of running) Atomics.store(words(vcpu), Vcpu.attention, 0);
    this.fleet.markPaused();
    this.pauseActor.send({ type: 'ALL_STOPPED' });
  }

  /** Pause coordinator effect: commit EPT rights, then let every paused vCPU run (with VM entry). */
  private resumeEveryVcpu(): void {
    this.ept.commit();
    this.fleet.markResumed();
  }

  // --- failure and shutdown ------------------------------------------------------------------------

  private assertLive(): void {
    if (this.failure !== null) throw this.failure;
    const status = this.status;
    if (status !== 'running') throw new SessionError(`the session is ${status}`);
  }

  /** Fails the session (once) and throws. */
  fail(reason: string, vcpu: number | null = null): never {
    if (this.failure === null) {
      this.failure = new SessionError(reason, vcpu);
      this.sessionActor.send({ type: 'FAIL', reason });
      this.emit({ kind: 'fail', reason });
    }
    throw this.failure;
  }

  private failHost(vcpu: number, error: unknown): never {
    const slot = this.fleet.slot(vcpu);
    const description = slot.host.describe();
    const cause = error === null ? '' : `${error instanceof Error ? error.message : String(error)}\n`;
    slot.actor.send({ type: 'FAILED', reason: cause || description });
    return this.fail(`vCPU ${vcpu} failed: ${cause}${description}`, vcpu);
  }

  /** Why the session failed, or null. */
  get failed(): SessionError | null {
    return this.failure;
  }

  /** One line per vCPU: state, RIP and steps — for "stuck run" reports. */
  describeVcpus(): string {
    return this.fleet.describe();
  }

  /**
   * Closes the session and gives its hosts to the next session over this machine (`hosts` of
   * Session.open) when every one is idle and sound — a failed session whose handler threw leaves
   * them so; its workers go on waiting for commands instead of being started again. Null, and the
   * session left open, when not (a vCPU running, a host that died or hung).
   */
  handOver(): readonly VcpuHost[] | null {
    if (this.closing !== null) return null;
    const hosts = this.fleet.handOver();
    if (hosts !== null) void this.close();
    return hosts;
  }

  /**
   * Closes the session and says whether its machine may serve a new session at once: every host
   * stopped using the machine's words, as known in this thread within `timeoutMs` (inline hosts
   * always have). Not when a vCPU was still running or did not answer — its worker may write the
   * machine until terminated, so the next session needs a machine of its own.
   */
  retire(timeoutMs = RETIRE_MS): boolean {
    const free = this.closing === null && this.fleet.leave(timeoutMs);
    void this.close();
    return free;
  }

  /**
   * Terminates every host and stops every actor. Always safe to call, any number of times, in any
   * state; resolves once every worker thread has exited.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    for (const subscription of this.runInspection.splice(0)) subscription.unsubscribe();
    // Handed-over workers stay: the session state word tells idle workers to leave.
    if (!this.fleet.handedOver) {
      Atomics.store(this.machine.memory.header, Header.sessionState, 1);
      Atomics.notify(this.machine.memory.header, Header.doorbell);
    }
    this.sessionActor.send({ type: 'CLOSE' });
    // Inline, the actors stop before this returns (see VcpuFleet.close).
    this.closing = this.fleet.close(() => {
      this.pauseActor.stop();
      this.dispatchActor.stop();
      this.sessionActor.send({ type: 'CLOSED' });
      this.sessionActor.stop();
    });
    return this.closing;
  }

  /** Fault injection for tests: vCPU `vcpu`'s host throws ('crash') or stops answering ('hang'). */
  injectHostFault(vcpu: number, fault: 'crash' | 'hang'): void {
    const slot = this.fleet.slot(vcpu);
    slot.inFlight = true;
    slot.host.start(fault === 'crash' ? CommandKind.crash : CommandKind.hang, 0, 0);
    this.collect(vcpu, this.waitHost(vcpu));
  }
}

export { HostError };

/** Host `id` of those another session handed over, checked to run that vCPU of this machine. */
function adopted(hosts: readonly VcpuHost[], id: number, machine: Machine): VcpuHost {
  const host = hosts[id];
  if (hosts.length !== machine.vcpuCount || host === undefined || host.id !== id || host.machine !== machine) {
    throw new RangeError(`a session over ${machine.vcpuCount} vCPUs takes over one host per vCPU of the same machine, in order (got ${hosts.length}; host ${id} is ${host === undefined ? 'missing' : `vCPU ${host.id}'s${host.machine === machine ? '' : ' of another machine'}`})`);
  }
  if (!host.idle()) throw new RangeError(`vCPU ${id}'s host cannot be taken over: it is not idle\n${host.describe()}`);
  return host;
}
