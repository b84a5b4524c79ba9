/**
 * npm run bench:runtime — costs of the runtime's protocols next to the floors they are built on,
 * all measured in this run:
 *  - floor: Atomics wait/notify ping-pong between two threads (and with a short spin first);
 *  - exit → handler → resume round trip through the real stack (worker, control words, xstate
 *    actors, handler), deterministic and free-running;
 *  - floor: an Atomics barrier of N threads; pause-all → resume through the pause actor;
 *  - deterministic steps/s, inline vs workers.
 * Targets: exit round trip ≤ 2× the ping-pong floor; pause-all ≤ 2× the barrier floor.
 */
import os from 'node:os';
import type { ExitHandler } from '../actors/hypervisor.ts';
import { Session } from '../actors/session.ts';
import { CODE, TestMachine } from '../test/support/test-machine.ts';
import { counterRig } from '../test/support/runtime.ts';
import { runDeterministic } from '../src/explore/deterministic.ts';
import { runFree } from '../src/explore/free-running.ts';
import { RoundRobinScheduler } from '../src/explore/schedulers/index.ts';
import { Trace } from '../src/explore/trace.ts';
import { spawnTsWorker } from '../src/host/spawn.ts';
import type { FloorInput } from './floors.worker.ts';

const us = (seconds: number): string => `${(seconds * 1e6).toFixed(1)} µs`;
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function pingPong(spin: number, rounds: number): Promise<number> {
  const words = new SharedArrayBuffer(16);
  const w = new Int32Array(words);
  const input: FloorInput = { kind: 'pingpong', words, spin, parties: 1 };
  const worker = spawnTsWorker(new URL('./floors.worker.ts', import.meta.url), input);
  await settle(400);
  const samples: number[] = [];
  for (let rep = 0; rep < 5; rep++) {
    const began = performance.now();
    for (let i = 0; i < rounds; i++) {
      const n = rep * rounds + i + 1;
      Atomics.store(w, 0, n);
      Atomics.notify(w, 0);
      for (let k = 0; k < spin && Atomics.load(w, 1) !== n; k++);
      while (Atomics.load(w, 1) !== n) Atomics.wait(w, 1, n - 1, 1000);
    }
    samples.push((performance.now() - began) / 1000 / rounds);
  }
  Atomics.store(w, 2, 1);
  Atomics.notify(w, 0);
  await worker.terminate();
  return median(samples);
}

async function barrier(parties: number, rounds: number): Promise<number> {
  const words = new SharedArrayBuffer(16);
  const w = new Int32Array(words);
  const workers = Array.from({ length: parties }, () =>
    spawnTsWorker(new URL('./floors.worker.ts', import.meta.url), { kind: 'barrier', words, spin: 0, parties } satisfies FloorInput),
  );
  await settle(500);
  const samples: number[] = [];
  let epoch = 0;
  for (let rep = 0; rep < 5; rep++) {
    const began = performance.now();
    for (let i = 0; i < rounds; i++) {
      epoch++;
      Atomics.store(w, 0, epoch);
      Atomics.notify(w, 0);
      const target = parties * epoch;
      for (let now = Atomics.load(w, 1); now !== target; now = Atomics.load(w, 1)) Atomics.wait(w, 1, now, 1000);
    }
    samples.push((performance.now() - began) / 1000 / rounds);
  }
  Atomics.store(w, 2, 1);
  Atomics.notify(w, 0);
  await Promise.all(workers.map((worker) => worker.terminate()));
  return median(samples);
}

/** A guest whose every iteration is one VMCALL exit. */
function exitLoop(vcpus: number): TestMachine {
  const machine = new TestMachine({ vcpus });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.vmcall();
    a.jmp(top);
  });
  return machine;
}

/** The median of `rounds` runs of `run`, one after the other (each awaits its session's close, so no worker is still ending while the next is timed). */
async function medianOf(rounds: number, run: () => Promise<number>): Promise<number> {
  const times: number[] = [];
  for (let k = 0; k < rounds; k++) times.push(await run());
  return median(times);
}

async function exitRoundTrip(hosts: 'inline' | 'workers', exits: number, spin?: number): Promise<number> {
  const machine = exitLoop(1);
  let handled = 0;
  const handler: ExitHandler = () => (++handled >= exits ? { action: 'shutdown' } : { action: 'allowedVirtual' });
  const session = Session.open({ machine: machine.machine, hosts, handler, ...(spin === undefined ? {} : { spin, waitSpin: spin }) });
  try {
    const began = performance.now();
    runDeterministic({ session, scheduler: new RoundRobinScheduler(1000), trace: new Trace(), stepsMax: exits * 10 });
    return (performance.now() - began) / 1000 / exits;
  } finally {
    await session.close();
  }
}

async function freeExitRoundTrip(exits: number): Promise<number> {
  const machine = exitLoop(1);
  let handled = 0;
  const handler: ExitHandler = () => (++handled >= exits ? { action: 'shutdown' } : { action: 'allowedVirtual' });
  const session = Session.open({ machine: machine.machine, hosts: 'workers', freeRunning: true, spin: 0, handler });
  try {
    const began = performance.now();
    runFree({ session, trace: new Trace(), wallMs: 120_000 });
    return (performance.now() - began) / 1000 / exits;
  } finally {
    await session.close();
  }
}

/** pauseVcpus() on N free-running workers spinning in guest code, then resume and relaunch. */
async function pauseAll(parties: number, rounds: number): Promise<{ pause: number; cycle: number }> {
  const machine = new TestMachine({ vcpus: parties });
  machine.assemble(CODE, (a) => {
    const top = a.label();
    a.jmp(top);
  });
  const session = Session.open({ machine: machine.machine, hosts: 'workers', freeRunning: true, spin: 0, handler: () => ({ action: 'retry' }) });
  try {
    const launchAll = (): void => {
      for (let v = 0; v < parties; v++) session.launch(v, 1 << 30);
    };
    launchAll();
    await settle(100);
    const pauses: number[] = [];
    const cycles: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      let pauseTime = 0;
      const began = performance.now();
      for (let i = 0; i < rounds; i++) {
        const t0 = performance.now();
        session.pauseVcpus();
        pauseTime += performance.now() - t0;
        session.resumeVcpus();
        launchAll();
      }
      pauses.push(pauseTime / 1000 / rounds);
      cycles.push((performance.now() - began) / 1000 / rounds);
    }
    session.pauseVcpus();
    return { pause: median(pauses), cycle: median(cycles) };
  } finally {
    await session.close();
  }
}

function deterministicRate(hosts: 'inline' | 'workers', seeds: number): number {
  const rig = counterRig(hosts, { iterations: 2000, period: 100 });
  try {
    let steps = 0;
    const began = performance.now();
    for (let seed = 0; seed < seeds; seed++) steps += rig.run(seed, 'random').result.steps;
    return steps / ((performance.now() - began) / 1000);
  } finally {
    void rig.close();
  }
}

async function main(): Promise<void> {
  const cores = os.cpus().length;
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} × ${cores}`);
  const floorWait = await pingPong(0, 2000);
  const floorSpin = await pingPong(20_000, 20_000);
  console.log('\nexit → handler → resume (1 vCPU, every iteration a VMCALL)');
  console.log(`  floor: Atomics ping-pong, wait/notify     ${us(floorWait)}`);
  console.log(`  floor: Atomics ping-pong, spin then wait  ${us(floorSpin)}`);
  await exitRoundTrip('workers', 2000, 0);
  const exitWait = await medianOf(3, () => exitRoundTrip('workers', 4000, 0));
  const exitSpin = await medianOf(3, () => exitRoundTrip('workers', 20_000));
  // Warmed like the worker rounds above: V8 takes some 40,000 exits to finish optimising the path.
  await exitRoundTrip('inline', 60_000, 0);
  const exitInline = await medianOf(5, () => exitRoundTrip('inline', 20_000, 0));
  const exitFree = await medianOf(3, () => freeExitRoundTrip(4000));
  console.log(`  deterministic, worker, default hand-off    ${us(exitSpin)} = ${(exitSpin / floorWait).toFixed(2)}× wait/notify floor (target ≤ 2×)`);
  console.log(`  deterministic, worker, pure wait/notify    ${us(exitWait)} = ${(exitWait / floorWait).toFixed(2)}× wait/notify floor`);
  console.log(`  free-running, worker                       ${us(exitFree)} = ${(exitFree / floorWait).toFixed(2)}× floor`);
  console.log(`  deterministic, inline (no thread hop)      ${us(exitInline)}  ← the exit path's own software cost`);

  console.log(`\npause all → resume (N free-running workers spinning in guest code; ${cores} cores)`);
  for (const parties of [1, 2, 4]) {
    const floor = await barrier(parties, 2000);
    const { pause, cycle } = await pauseAll(parties, 1000);
    console.log(
      `  N=${parties}: barrier floor ${us(floor)}, pause-all ${us(pause)} = ${(pause / floor).toFixed(2)}× floor (target ≤ 2×), pause+resume+relaunch ${us(cycle)}`,
    );
  }

  console.log('\ndeterministic steps/s (4-vCPU counter guest, random strategy, 20 seeds)');
  deterministicRate('inline', 3);
  const inline = deterministicRate('inline', 20);
  const workers = deterministicRate('workers', 20);
  console.log(`  inline  ${(inline / 1e6).toFixed(2)} M steps/s`);
  console.log(`  workers ${(workers / 1e6).toFixed(2)} M steps/s (${(inline / workers).toFixed(1)}× slower: a thread hand-off per slice)`);
}

await main();
