import type { Prng } from '../prng.ts';

/**
 * A slice length drawn log-uniformly between 1 and `sliceMax`: single instructions and long runs
 * are both common, so a vCPU can stop anywhere inside a window as well as run past it.
 */
export function logUniformSlice(prng: Prng, sliceMax: number): number {
  const bits = Math.log2(sliceMax);
  return Math.min(sliceMax, Math.max(1, Math.floor(2 ** (prng.nextFloat() * bits))));
}

/** Throws unless `sliceMax` is a positive integer; `who` names the strategy in the message. */
export function checkSliceMax(who: string, sliceMax: number): void {
  if (!Number.isInteger(sliceMax) || sliceMax < 1) throw new RangeError(`${who} slice maximum must be a positive integer, got ${sliceMax}`);
}
