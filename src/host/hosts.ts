import type { Worker } from 'node:worker_threads';
import type { Cpu } from '../cpu/cpu.ts';
import { disassembleAround } from '../cpu/diagnostics.ts';
import { CommandKind, Control, VcpuHostState } from '../machine/layout.ts';
import type { Machine, MachineDescriptor } from '../machine/machine.ts';
import { completeInThread, executeCommand, failCommand } from './command.ts';
import { readHostError } from './host-buffer.ts';
import { spawnTsWorker } from './spawn.ts';

/** What the session passes to a vCPU worker. */
export interface VcpuWorkerInput {
  readonly machine: MachineDescriptor;
  readonly vcpu: number;
  readonly hostBuffer: SharedArrayBuffer;
  /** Loads of the command word before sleeping on it (cheap hand-offs when a core is free). */
  readonly spin: number;
  /** How long one idle sleep lasts before the worker checks whether the session closed. */
  readonly idlePollMs: number;
}

/**
 * Where a vCPU's CPU runs, behind one interface: in the hypervisor's thread (inline) or in its
 * own worker thread. Commands and outcomes go through the same control words either way
 * (machine/layout.ts `Control`), and the same `executeCommand` runs them.
 */

/** The outcome of a command. */
export interface HostOutcome {
  /** A RunStop code, or Outcome.error (machine/layout.ts). */
  readonly outcome: number;
  readonly retired: number;
  /** Order of this stop among all vCPUs (free-running), 0 when the budget simply ran out. */
  readonly ticket: number;
}

/** Raised when a host does not answer in time or died; carries a description of the vCPU. */
export class HostError extends Error {
  constructor(
    message: string,
    readonly vcpu: number,
  ) {
    super(message);
    this.name = 'HostError';
  }
}

export interface VcpuHost {
  readonly id: number;
  readonly kind: 'inline' | 'worker';
  /** The machine whose vCPU `id` it runs. */
  readonly machine: Machine;
  /** Starts a command; an inline host finishes it before returning. */
  start(kind: number, budget: number, flags: number): void;
  /** True once the last command started has completed. */
  done(): boolean;
  /**
   * Waits (at most `timeoutMs`) for the last command and returns its outcome; `spin` overrides
   * the host's spin-before-sleep (a running vCPU answers a pause within microseconds).
   */
  wait(timeoutMs: number, spin?: number): HostOutcome;
  /** Text for error reports: the host's failure, or where the vCPU is. */
  describe(): string;
  /** The code epoch the vCPU's decoded code was last checked against (as of its last command). */
  codeSeen(): number;
  /** Sound and waiting for a command: another session over the same machine may take it over. */
  idle(): boolean;
  /**
   * Stops the host's use of the machine's words, in this thread and within `timeoutMs`: true once
   * nothing of it will write them again, so the machine may serve another session's hosts. False
   * when that cannot be known in time (a command still running, a worker already terminated or
   * not answering); `close()` is still needed either way.
   */
  leave(timeoutMs: number): boolean;
  /** Ends the host; always safe to call, more than once. */
  close(): Promise<void>;
}

abstract class ControlWordHost implements VcpuHost {
  abstract readonly kind: 'inline' | 'worker';
  protected seq: number;
  protected readonly words: Int32Array;

  constructor(
    readonly id: number,
    readonly machine: Machine,
  ) {
    this.words = machine.vcpu(id).words;
    // A machine a closed session left behind: the command sequence goes on from there (its hosts
    // finished their last command before they left it).
    this.seq = Atomics.load(this.words, Control.commandSeq);
  }

  protected writeCommand(kind: number, budget: number, flags: number): number {
    if (!this.done()) throw new HostError(`vCPU ${this.id}: a command was started while the previous one is still running`, this.id);
    if (!Number.isInteger(budget) || budget < 0 || budget > 0x7fffffff) throw new RangeError(`step budget ${budget} out of range`);
    const w = this.words;
    w[Control.commandKind] = kind;
    w[Control.commandBudget] = budget;
    w[Control.commandFlags] = flags;
    w[Control.errorLength] = 0;
    this.seq++;
    return this.seq;
  }

  abstract start(kind: number, budget: number, flags: number): void;

  done(): boolean {
    return Atomics.load(this.words, Control.doneSeq) === this.seq;
  }

  protected outcome(): HostOutcome {
    const w = this.words;
    return { outcome: w[Control.outcome], retired: w[Control.retired], ticket: w[Control.ticket] };
  }

  abstract wait(timeoutMs: number, spin?: number): HostOutcome;
  abstract describe(): string;

  codeSeen(): number {
    return Atomics.load(this.words, Control.codeSeen);
  }

  idle(): boolean {
    return this.done() && Atomics.load(this.words, Control.hostState) === VcpuHostState.idle;
  }

  abstract leave(timeoutMs: number): boolean;
  abstract close(): Promise<void>;
}

/** Runs the vCPU in the calling thread: fastest for deterministic runs. */
export class InlineHost extends ControlWordHost {
  readonly kind = 'inline' as const;
  private readonly cpu: Cpu;
  private failure = '';

  constructor(id: number, machine: Machine) {
    super(id, machine);
    this.cpu = machine.createCpu(id);
    // An inline command always finished before its start returned; this host is the done word's writer.
    Atomics.store(this.words, Control.doneSeq, this.seq);
    Atomics.store(this.words, Control.hostState, VcpuHostState.idle);
  }

  start(kind: number, budget: number, flags: number): void {
    const seq = this.writeCommand(kind, budget, flags);
    Atomics.store(this.words, Control.commandSeq, seq);
    try {
      executeCommand(this.cpu, this.words, this.machine.memory.header);
    } catch (error) {
      this.failure = `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n${disassembleAround(this.cpu)}`;
      failCommand(this.words);
      Atomics.store(this.words, Control.hostState, VcpuHostState.dead);
    }
    completeInThread(this.words, this.machine.memory.header, seq);
  }

  wait(): HostOutcome {
    return this.outcome();
  }

  describe(): string {
    return this.failure !== '' ? this.failure : disassembleAround(this.cpu);
  }

  leave(): boolean {
    // Nothing runs here between commands: closing is all it takes, and it is done before this returns.
    void this.close();
    return true;
  }

  async close(): Promise<void> {
    Atomics.store(this.words, Control.hostState, VcpuHostState.dead);
  }
}

/** Options of worker hosts. */
export interface WorkerHostOptions {
  /** Loads of the command word the worker makes before sleeping on it (worth it when a core is free). */
  readonly spin: number;
  /**
   * Loads of the done word the hypervisor thread makes before sleeping on it. A deterministic run
   * has nothing else to do while a slice runs, and waking the thread costs more than most slices.
   */
  readonly waitSpin: number;
  /** Idle sleep of the worker between checks that the session is still open. */
  readonly idlePollMs: number;
}

/** Runs the vCPU in its own worker thread. */
export class WorkerHost extends ControlWordHost {
  readonly kind = 'worker' as const;
  private worker: Worker | null;
  private exited = false;
  /** The worker said it left the machine's words (VcpuHostState.gone): nothing here writes them any more. */
  private left = false;

  private constructor(
    id: number,
    machine: Machine,
    private readonly hostBuffer: SharedArrayBuffer,
    private readonly options: WorkerHostOptions,
  ) {
    super(id, machine);
    Atomics.store(this.words, Control.hostState, VcpuHostState.starting);
    const input: VcpuWorkerInput = {
      machine: machine.descriptor,
      vcpu: id,
      hostBuffer,
      spin: options.spin,
      idlePollMs: options.idlePollMs,
    };
    this.worker = spawnTsWorker(new URL('../../workers/vcpu.worker.ts', import.meta.url), input, { name: `vcpusim vCPU ${id}` });
    // Errors arrive here only once the hypervisor thread returns to its event loop; the shared
    // host buffer carries them synchronously. This listener just keeps them from being unhandled.
    this.worker.on('error', () => undefined);
    this.worker.on('exit', () => {
      this.exited = true;
    });
  }

  /** Starts a worker for vCPU `id` and waits (bounded) until it is ready for commands. */
  static start(id: number, machine: Machine, hostBuffer: SharedArrayBuffer, options: WorkerHostOptions, timeoutMs: number): WorkerHost {
    const host = new WorkerHost(id, machine, hostBuffer, options);
    const deadline = performance.now() + timeoutMs;
    while (Atomics.load(host.words, Control.hostState) === VcpuHostState.starting) {
      const left = deadline - performance.now();
      if (left <= 0) {
        void host.close();
        throw new HostError(`vCPU ${id}: worker did not start within ${timeoutMs} ms`, id);
      }
      Atomics.wait(host.words, Control.hostState, VcpuHostState.starting, Math.min(left, 100));
    }
    return host;
  }

  start(kind: number, budget: number, flags: number): void {
    if (this.worker === null || Atomics.load(this.words, Control.hostState) === VcpuHostState.dead) {
      throw new HostError(`vCPU ${this.id}: its worker is gone\n${this.describe()}`, this.id);
    }
    const seq = this.writeCommand(kind, budget, flags);
    Atomics.store(this.words, Control.commandSeq, seq);
    Atomics.notify(this.words, Control.commandSeq);
  }

  wait(timeoutMs: number, spin = this.options.waitSpin): HostOutcome {
    const w = this.words;
    for (let k = 0; k < spin && !this.done(); k++);
    const deadline = performance.now() + timeoutMs;
    while (!this.done()) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new HostError(
          `vCPU ${this.id}: no answer within ${timeoutMs} ms (host state ${Atomics.load(w, Control.hostState)}, ` +
            `command ${Atomics.load(w, Control.commandSeq)} done ${Atomics.load(w, Control.doneSeq)} expected ${this.seq})`,
          this.id,
        );
      }
      Atomics.wait(w, Control.doneSeq, this.seq - 1, Math.min(left, 50));
    }
    return this.outcome();
  }

  describe(): string {
    const text = readHostError(this.hostBuffer, this.words, this.id);
    if (text !== '') return text;
    const state = this.machine.vcpu(this.id);
    return `vCPU ${this.id} (worker${this.exited ? ', exited' : ''}) at RIP 0x${state.rip.toString(16)}`;
  }

  /** Sends the worker a stop command when it is idle and waits for its last word (`gone`). */
  leave(timeoutMs: number): boolean {
    if (this.left) return true;
    const w = this.words;
    if (this.worker === null || !this.done()) return false;
    if (Atomics.load(w, Control.hostState) === VcpuHostState.idle) this.start(CommandKind.stop, 0, 0);
    // A worker that crashed leaves by itself right after it reported the failure.
    const deadline = performance.now() + timeoutMs;
    for (let state = Atomics.load(w, Control.hostState); state !== VcpuHostState.gone; state = Atomics.load(w, Control.hostState)) {
      const wait = deadline - performance.now();
      if (wait <= 0) return false;
      Atomics.wait(w, Control.hostState, state, Math.min(wait, 50));
    }
    this.left = true;
    return true;
  }

  /** Terminates the worker (one that left is exiting anyway); marks it dead unless it left. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (worker === null) return;
    this.worker = null;
    await worker.terminate();
    // After `leave` the machine may already serve another session's worker for this vCPU.
    if (!this.left) Atomics.store(this.words, Control.hostState, VcpuHostState.dead);
  }

  /** Test hook: whether the thread has exited. */
  get threadExited(): boolean {
    return this.exited;
  }
}

