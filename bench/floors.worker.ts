/**
 * Floor measurements for bench/runtime.ts: the cheapest possible cross-thread hand-offs with
 * Atomics, to compare the real runtime against (same machine, same run).
 */
import { workerData } from 'node:worker_threads';
import type { TsWorkerData } from '../src/host/spawn.ts';

export interface FloorInput {
  readonly kind: 'pingpong' | 'barrier';
  readonly words: SharedArrayBuffer;
  /** pingpong: spin loads before sleeping (0 = pure wait/notify). */
  readonly spin: number;
  /** barrier: how many workers take part. */
  readonly parties: number;
}

/** Word indexes: 0 = request / epoch, 1 = reply / arrivals, 2 = stop flag. */
const input = (workerData as TsWorkerData<FloorInput>).data;
const w = new Int32Array(input.words);

function waitChange(index: number, seen: number): number {
  for (let k = 0; k < input.spin; k++) {
    const now = Atomics.load(w, index);
    if (now !== seen) return now;
  }
  for (;;) {
    Atomics.wait(w, index, seen, 1000);
    const now = Atomics.load(w, index);
    if (now !== seen || Atomics.load(w, 2) !== 0) return now;
  }
}

let seen = 0;
while (Atomics.load(w, 2) === 0) {
  seen = waitChange(0, seen);
  if (Atomics.load(w, 2) !== 0) break;
  if (input.kind === 'pingpong') {
    Atomics.store(w, 1, seen);
    Atomics.notify(w, 1);
  } else if (Atomics.add(w, 1, 1) + 1 === input.parties * seen) {
    Atomics.notify(w, 1);
  }
}
