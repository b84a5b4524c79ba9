/**
 * A minimal vCPU host for tests and benchmarks: attaches to a machine, runs one vCPU from a common
 * start signal until it leaves with anything but "budget used up", and reports how far it got.
 * (The full vCPU worker with the pause/exit protocol is workers/vcpu.worker.ts.)
 */
import { parentPort, workerData } from 'node:worker_threads';
import { RunStop } from '../src/cpu/cpu.ts';
import { Machine, type MachineDescriptor } from '../src/machine/machine.ts';
import type { TsWorkerData } from './spawn.ts';

/** Input of the worker. */
export interface RunUntilExitInput {
  readonly machine: MachineDescriptor;
  readonly vcpu: number;
  /** Int32Array over this buffer: word 0 is the start flag (0 → wait, 1 → go). */
  readonly start: SharedArrayBuffer;
  /** Steps per `run` call (the worker polls nothing in between; it just keeps going). */
  readonly slice: number;
  /** Give up after this many steps. */
  readonly stepsMax: number;
  /** Wait for the start flag at most this long. */
  readonly startTimeoutMs: number;
}

/** What the worker reports. */
export interface RunUntilExitResult {
  readonly vcpu: number;
  readonly stop: number;
  readonly steps: number;
  /** Wall time of the run measured inside the worker (for benchmarks only). */
  readonly elapsedMs: number;
}

const input = (workerData as TsWorkerData<RunUntilExitInput>).data;
const machine = Machine.attach(input.machine);
const cpu = machine.createCpu(input.vcpu);
const start = new Int32Array(input.start);
if (Atomics.wait(start, 0, 0, input.startTimeoutMs) === 'timed-out') {
  throw new Error(`vCPU ${input.vcpu}: no start signal within ${input.startTimeoutMs} ms`);
}
cpu.enter();
const began = performance.now();
const first = cpu.retired;
let stop: number = RunStop.budget;
while (stop === RunStop.budget && cpu.retired - first < input.stepsMax) stop = cpu.run(input.slice);
const result: RunUntilExitResult = { vcpu: input.vcpu, stop, steps: cpu.retired - first, elapsedMs: performance.now() - began };
parentPort?.postMessage(result);
