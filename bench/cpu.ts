/**
 * npm run bench:cpu — emulated vs native speed on the benchmark guest loop (bench/guest-loop.ts),
 * for one vCPU and for two vCPUs in two worker threads at once.
 *
 * The floor is the host CPU running the same bytes through the native runner in the same run.
 * Instruction counts come from the emulator (the loop is deterministic, so the host retires the
 * same instructions). Figures are medians of several repetitions; nothing here asserts timing.
 */
import os from 'node:os';
import { RunStop } from '../src/cpu/cpu.ts';
import { TestMachine } from '../test/support/test-machine.ts';
import { nativeRunnerConfig, runNativeBatch, CODE_BASE, type GprName } from '../test/cpu/diff/native/native-runner.ts';
import { Session } from '../actors/session.ts';
import { runFree } from '../src/explore/free-running.ts';
import { Trace } from '../src/explore/trace.ts';
import { assembleGuestLoop } from './guest-loop.ts';

const COUNTER = 0x300000n;
/** Per-vCPU counters for the uncontended variant, on separate cache lines. */
const PRIVATE_COUNTERS = [0x300000n, 0x300100n];
const STACKS = [0x308000n, 0x30c000n];
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 3_000_000);
const REPETITIONS = Number(process.env.BENCH_REPETITIONS ?? 5);

const code = assembleGuestLoop(CODE_BASE);
const end = code.addressOf('done');

function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
}

function loopRegisters(vcpu: number, iterations: number, shared = true): Partial<Record<GprName, bigint>> {
  return { rcx: BigInt(iterations), rsi: shared ? COUNTER : PRIVATE_COUNTERS[vcpu], rdi: BigInt(vcpu * 3), rbx: 0n, rsp: STACKS[vcpu] };
}

/** A machine with the loop loaded and `vcpus` vCPUs ready at its first instruction. */
function loopMachine(vcpus: number, iterations: number, shared = true): TestMachine {
  const machine = new TestMachine({ vcpus });
  machine.machine.memory.write(Number(CODE_BASE), code.bytes);
  machine.machine.memory.write(Number(end), new Uint8Array([0x0f, 0x01, 0xc1])); // VMCALL ends the run
  for (let vcpu = 0; vcpu < vcpus; vcpu++) {
    const state = machine.state(vcpu);
    for (const [name, value] of Object.entries(loopRegisters(vcpu, iterations, shared))) state.setGpr(name as GprName, value);
    state.rip = CODE_BASE;
  }
  return machine;
}

function emulateInline(iterations: number): { steps: number; seconds: number } {
  const machine = loopMachine(1, iterations);
  const cpu = machine.cpu(0);
  cpu.enter();
  const began = performance.now();
  let stop: number = RunStop.budget;
  while (stop === RunStop.budget) stop = cpu.run(1 << 20);
  const seconds = (performance.now() - began) / 1000;
  if (stop !== RunStop.exit || machine.read64(COUNTER) !== BigInt(iterations)) throw new Error(`loop did not finish correctly (stop ${stop})`);
  return { steps: cpu.retired, seconds };
}

/** Runs the loop on `vcpus` vCPUs, one free-running worker each, all at once. */
async function emulateWorkers(vcpus: number, iterations: number, shared = true): Promise<{ steps: number; seconds: number }> {
  const machine = loopMachine(vcpus, iterations, shared);
  const session = Session.open({ machine: machine.machine, hosts: 'workers', freeRunning: true, spin: 0, handler: () => ({ action: 'shutdown' }) });
  try {
    const began = performance.now();
    const result = runFree({ session, trace: new Trace(), wallMs: 600_000, sliceSteps: 1 << 30 });
    const seconds = (performance.now() - began) / 1000;
    if (result.outcome !== 'done') throw new Error(`the loop did not finish: ${result.outcome} ${result.detail}`);
    const total = shared ? machine.read64(COUNTER) : PRIVATE_COUNTERS.slice(0, vcpus).reduce((sum, c) => sum + machine.read64(c), 0n);
    if (total !== BigInt(iterations * vcpus)) throw new Error('lost LOCK increments in the benchmark');
    return { steps: session.clock, seconds };
  } finally {
    await session.close();
  }
}

function native(threads: number, iterations: number, shared = true): { wallSeconds: number; perThread: number[] } {
  const [result] = runNativeBatch([
    {
      code: code.bytes,
      threads: Array.from({ length: threads }, (_, vcpu) => {
        const regs = Object.fromEntries(
          ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'].map((n) => [n, 0n]),
        ) as Record<GprName, bigint>;
        Object.assign(regs, loopRegisters(vcpu, iterations, shared));
        return { regs, rflags: 0x202n };
      }),
      scratchAddress: COUNTER,
      scratch: new Uint8Array(0x108),
      timeoutMs: 60_000,
    },
  ]);
  if (result.threads.some((t) => t.status !== 'end')) throw new Error(`native loop did not end: ${JSON.stringify(result.threads.map((t) => t.status))}`);
  return { wallSeconds: result.wallNs / 1e9, perThread: result.threads.map((t) => t.elapsedNs / 1e9) };
}

const fmt = (rate: number): string => `${(rate / 1e6).toFixed(1)} M instr/s`;

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${ITERATIONS} iterations × ${REPETITIONS} repetitions`);
  const runner = nativeRunnerConfig();
  console.log(`native runner: FS/GS bases through ${runner.fsgs}${runner.forced ? ' (forced)' : ''}, non-canonical RSP ${runner.nonCanonicalRsp}`);
  emulateInline(200_000); // warm-up: compile the blocks and let V8 optimise them
  const single = Array.from({ length: REPETITIONS }, () => emulateInline(ITERATIONS));
  const steps = single[0].steps;
  const perIteration = steps / ITERATIONS;
  const emulatedRate = median(single.map((r) => r.steps / r.seconds));
  native(1, 100_000);
  const nativeSingle = Array.from({ length: REPETITIONS }, () => native(1, ITERATIONS));
  const nativeRate = median(nativeSingle.map((r) => steps / r.perThread[0]));
  console.log(`\nguest loop: ${perIteration.toFixed(2)} instructions per iteration (switch table, arithmetic, push/call/ret/pop, lock inc)`);
  console.log('\n1 vCPU');
  console.log(`  native floor      ${fmt(nativeRate)}`);
  console.log(`  emulator inline   ${fmt(emulatedRate)}   = 1/${(nativeRate / emulatedRate).toFixed(1)} of native (target ≥ 1/20)`);

  const oneWorker = await emulateWorkers(1, ITERATIONS);
  const oneRate = oneWorker.steps / oneWorker.seconds;
  console.log(`\n  emulator in 1 worker ${fmt(oneRate)}`);
  for (const shared of [false, true]) {
    const runs: Array<{ steps: number; seconds: number }> = [];
    for (let k = 0; k < Math.max(1, Math.floor(REPETITIONS / 2)); k++) runs.push(await emulateWorkers(2, ITERATIONS, shared));
    const twoRate = median(runs.map((r) => r.steps / r.seconds));
    const nativeTwo = Array.from({ length: REPETITIONS }, () => native(2, ITERATIONS, shared));
    const nativeTwoRate = median(nativeTwo.map((r) => (2 * steps) / r.wallSeconds));
    console.log(`\n2 vCPUs in 2 workers, ${shared ? 'one shared counter (contended LOCK)' : 'a counter each (uncontended LOCK)'}`);
    console.log(`  native floor       ${fmt(nativeTwoRate)} aggregate (${(nativeTwoRate / nativeRate).toFixed(2)}× one thread)`);
    console.log(`  emulator 2 workers ${fmt(twoRate)} aggregate = ${(twoRate / oneRate).toFixed(2)}× one worker (target ≥ 1.8×), 1/${(nativeTwoRate / twoRate).toFixed(1)} of native`);
  }
}

await main();
