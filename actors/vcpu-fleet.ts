import type { InspectionEvent } from 'xstate';
import { CommandFlag, CommandKind } from '../src/machine/layout.ts';
import type { Machine } from '../src/machine/machine.ts';
import type { VcpuHost } from '../src/host/hosts.ts';
import type { StopName } from './events.ts';
import type { ExitContext } from './hypervisor.ts';
import { startProtocolActor, type ProtocolActor, type ProtocolInterpreter } from './table-actor.ts';
import { GuardedVcpu } from './vcpu-access.ts';
import { ACCESSIBLE_STATES, vcpuMachine, type VcpuStateName } from './vcpu.machine.ts';

/**
 * The vCPUs as the session holds them: per vCPU its host, its vcpu actor, guarded register access,
 * and what the next VM entry must do. The fleet keeps this bookkeeping in one place; the session
 * decides when to run, stop, pause and resume.
 */

/** The exit context object kept per vCPU; `exit` and `exitTicket` are replaced before each handler call. */
export type MutableExitContext = Omit<ExitContext, 'exit' | 'exitTicket'> & { exit: ExitContext['exit']; exitTicket: number };

export interface VcpuSlot {
  readonly host: VcpuHost;
  readonly context: MutableExitContext;
  actor: ProtocolActor<typeof vcpuMachine>;
  readonly access: GuardedVcpu;
  /** A run command was started and not yet collected. */
  inFlight: boolean;
  /** CommandFlag bits for the next run (VM entry after an exit or pause; emulate-first). */
  nextFlags: number;
  /** An interrupt was injected and not yet taken (a halted vCPU is runnable again). */
  interruptPending: boolean;
  retired: number;
  /** Ticket of the exit this vCPU stopped at last. */
  exitTicket: number;
}

/** What a stop does to the vCPU's actor and its next entry (budget stops change nothing). */
const STOP_EFFECTS: Readonly<Record<Exclude<StopName, 'budget'>, { readonly event: 'EXITED' | 'HALTED' | 'PAUSED' | 'SHUT_DOWN'; readonly entry: boolean }>> = {
  exit: { event: 'EXITED', entry: false },
  halted: { event: 'HALTED', entry: false },
  paused: { event: 'PAUSED', entry: true },
  shutdown: { event: 'SHUT_DOWN', entry: false },
};

export class VcpuFleet {
  readonly slots: VcpuSlot[] = [];
  private handed = false;

  constructor(
    private readonly machine: Machine,
    /** Observes the vcpu actors started from now on (a run that is recorded sets it before restarting its slots). */
    public inspect: ((event: InspectionEvent) => void) | undefined,
    private readonly interpreter: ProtocolInterpreter,
  ) {}

  /** Adds vCPU `slots.length`, hosted by `host`; `contextFor` builds its exit context. */
  add(host: VcpuHost, contextFor: (vcpu: number, access: GuardedVcpu) => MutableExitContext): void {
    const id = this.slots.length;
    const access = new GuardedVcpu(this.machine.vcpu(id), () => {
      const state = this.stateOf(id);
      return ACCESSIBLE_STATES.has(state) ? null : state;
    });
    this.slots.push({
      host, actor: this.startActor(id), access, context: contextFor(id, access),
      inFlight: false, nextFlags: CommandFlag.entry, interruptPending: false, retired: 0, exitTicket: 0,
    });
  }

  private startActor(id: number): ProtocolActor<typeof vcpuMachine> {
    return startProtocolActor(vcpuMachine, { id: `vcpu${id}`, input: { id }, interpreter: this.interpreter, ...(this.inspect ? { inspect: this.inspect } : {}) });
  }

  slot(vcpu: number): VcpuSlot {
    const slot = this.slots[vcpu];
    if (slot === undefined) throw new RangeError(`vCPU ${vcpu} does not exist (session has ${this.slots.length})`);
    return slot;
  }

  stateOf(vcpu: number): VcpuStateName {
    return this.slot(vcpu).actor.getSnapshot().value as VcpuStateName;
  }

  /** A vCPU that can be given a run command now. */
  isRunnable(vcpu: number): boolean {
    const slot = this.slot(vcpu);
    if (slot.inFlight) return false;
    const state = this.stateOf(vcpu);
    return state === 'running' || (state === 'halted' && slot.interruptPending);
  }

  /** Every vCPU is stopped for good (or failed). */
  get finished(): boolean {
    for (let id = 0; id < this.slots.length; id++) {
      const state = this.stateOf(id);
      if (state !== 'stopped' && state !== 'failed') return false;
    }
    return true;
  }

  inFlight(): number[] {
    return this.slots.flatMap((slot, vcpu) => (slot.inFlight ? [vcpu] : []));
  }

  /** In-flight vCPUs whose command has finished. */
  doneInFlight(): number[] {
    return this.slots.flatMap((slot, vcpu) => (slot.inFlight && slot.host.done() ? [vcpu] : []));
  }

  /** Starts a run command of `budget` steps with the flags the last stop or reply left. */
  launch(vcpu: number, budget: number): void {
    const slot = this.slot(vcpu);
    const flags = slot.nextFlags;
    slot.nextFlags = 0;
    slot.inFlight = true;
    if (this.stateOf(vcpu) === 'halted') slot.actor.send({ type: 'WOKEN' });
    try {
      slot.host.start(CommandKind.run, budget, flags);
    } catch (error) {
      slot.inFlight = false;
      throw error;
    }
  }

  /**
   * Code was written since `vcpu` last checked its decoded code, and nothing already makes it look
   * again before it next runs (a VM entry serialises; so does a `seeCode` already asked for).
   */
  codeStale(vcpu: number): boolean {
    const slot = this.slot(vcpu);
    return !slot.inFlight && (slot.nextFlags & (CommandFlag.entry | CommandFlag.seeCode)) === 0 && slot.host.codeSeen() !== this.machine.memory.codeEpoch();
  }

  /** `vcpu` sees every code write made so far before it runs its next instruction. */
  seeCode(vcpu: number): void {
    this.slot(vcpu).nextFlags |= CommandFlag.seeCode;
  }

  /** Applies a collected stop to the vCPU's actor and its next entry. */
  settle(vcpu: number, stop: Exclude<StopName, 'budget'>, shutdownReason: string): void {
    const slot = this.slot(vcpu);
    const effect = STOP_EFFECTS[stop];
    if (stop === 'halted') slot.interruptPending = false;
    if (effect.entry) slot.nextFlags |= CommandFlag.entry;
    if (effect.event === 'SHUT_DOWN') slot.actor.send({ type: 'SHUT_DOWN', reason: shutdownReason });
    else slot.actor.send({ type: effect.event });
  }

  /** After a handler's reply: `flags` for the next entry, or null when the vCPU stops for good. */
  replied(vcpu: number, flags: number | null): void {
    const slot = this.slot(vcpu);
    if (flags === null) {
      slot.actor.send({ type: 'SHUT_DOWN', reason: 'the exit handler stopped it' });
      return;
    }
    slot.nextFlags |= flags;
    slot.actor.send({ type: 'REPLIED' });
  }

  /** Every vCPU that could run is now paused, and enters again when resumed. */
  markPaused(): void {
    this.slots.forEach((slot, vcpu) => {
      const state = this.stateOf(vcpu);
      if (state === 'running' || state === 'halted') {
        slot.actor.send({ type: 'PAUSED' });
        slot.nextFlags |= CommandFlag.entry;
      }
    });
  }

  markResumed(): void {
    this.slots.forEach((slot, vcpu) => {
      if (this.stateOf(vcpu) === 'paused') {
        slot.actor.send({ type: 'RESUMED' });
        slot.nextFlags |= CommandFlag.entry;
      }
    });
  }

  /** Every vCPU goes through a VM entry before it runs again (to take new EPT rights). */
  markEntries(): void {
    for (const slot of this.slots) slot.nextFlags |= CommandFlag.entry;
  }

  /** Marks an injected external interrupt: a halted vCPU becomes runnable. */
  interrupted(vcpu: number): void {
    const slot = this.slot(vcpu);
    slot.interruptPending = true;
    slot.nextFlags |= CommandFlag.entry;
  }

  /** A new run: fresh actor and bookkeeping (the host was reset by the caller). */
  restartSlot(vcpu: number): void {
    const slot = this.slot(vcpu);
    slot.actor.stop();
    slot.actor = this.startActor(vcpu);
    slot.inFlight = false;
    slot.nextFlags = CommandFlag.entry;
    slot.interruptPending = false;
    slot.retired = 0;
    slot.exitTicket = 0;
  }

  /** One line per vCPU: state, RIP and steps — for "stuck run" reports. */
  describe(): string {
    return this.slots
      .map((slot, vcpu) => `vCPU ${vcpu}: ${this.stateOf(vcpu)}${slot.inFlight ? ' (in flight)' : ''}, RIP 0x${this.machine.vcpu(vcpu).rip.toString(16)}, ${slot.retired} steps`)
      .join('\n');
  }

  /** The hosts went to another session: they are not this fleet's to end. */
  get handedOver(): boolean {
    return this.handed;
  }

  /**
   * The hosts, for another session over the same machine, when every one is idle (no command
   * running, none failed); this fleet's `close` then leaves them running. Null otherwise.
   */
  handOver(): VcpuHost[] | null {
    if (this.handed || !this.slots.every((slot) => !slot.inFlight && slot.host.idle())) return null;
    this.handed = true;
    return this.slots.map((slot) => slot.host);
  }

  /** Every host stops using the machine's words (VcpuHost.leave), within `timeoutMs` in all; false if one did not. */
  leave(timeoutMs: number): boolean {
    const deadline = performance.now() + timeoutMs;
    let all = true;
    for (const slot of this.slots) all = slot.host.leave(Math.max(0, deadline - performance.now())) && all;
    return all;
  }

  /**
   * Ends every host (unless handed over), then stops the vCPU actors and runs `then` (the
   * session's own actors). With every host in this thread (or handed over) nothing runs on its own,
   * so all of it happens before this returns: a closing left to a promise keeps the fleet alive
   * until the caller's synchronous loop (a bounded search, a shrink) yields, one fleet per failed run.
   */
  close(then: () => void = () => undefined): Promise<void> {
    const stopActors = (): void => {
      for (const slot of this.slots) slot.actor.stop();
      then();
    };
    if (this.handed || this.slots.every((slot) => slot.host.kind === 'inline')) {
      if (!this.handed) for (const slot of this.slots) void slot.host.close();
      stopActors();
      return Promise.resolve();
    }
    return Promise.allSettled(this.slots.map((slot) => slot.host.close())).then(stopActors);
  }
}
