import type { Prng } from '../prng.ts';
import { faultApplies, type Choice, type Enabled } from '../schedule.ts';

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

/**
 * Handling `vcpu`'s pending exit, plain or with one of the hypervisor faults the scenario lets the
 * scheduler inject, each equally likely (as the random strategy weighs them once it handles that exit).
 */
export function handleWithFaults(prng: Prng, vcpu: number, enabled: Enabled): Choice {
  const faults = (enabled.faults ?? []).filter((fault) => faultApplies(fault, vcpu, enabled));
  if (faults.length === 0) return { kind: 'handle', vcpu };
  const pick = prng.below(faults.length + 1);
  return pick === 0 ? { kind: 'handle', vcpu } : { kind: 'handle', vcpu, fault: faults[pick - 1] };
}
