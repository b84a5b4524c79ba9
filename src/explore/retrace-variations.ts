import type { Prng } from './prng.ts';
import { actorOf } from './schedule-shape.ts';
import type { ListedChoice } from './schedulers/lenient.ts';

/**
 * Seeded variations of a retraced schedule (retrace-schedule.ts). The free run's order is only
 * partly observed — a vCPU's progress is seen where it stopped, not when it happened, and exits
 * that came together were collected together — so the deterministic run may miss the interleaving
 * by a little. A variation makes a few small edits that stay within what the free run allows: a
 * vCPU's slice moved across one other actor's choice, two neighbouring choices of different actors
 * swapped, a slice split so part of it runs earlier, a slice moved into a handler (to one of its
 * preemption points). Edits fall near the end of the schedule more often than near its start: a
 * continuous invariant breaks where the free run ended, and what led to it came shortly before.
 */

export interface Variation {
  readonly schedule: ListedChoice[];
  /** What was changed, e.g. "v1's slice before v0's handling", for the report. */
  readonly edits: readonly string[];
}

type Edit = (schedule: ListedChoice[], at: number, prng: Prng) => string | null;

/** Mean distances from the end at which edits fall, mixed so near and far both get tried. */
const SCALES = [4, 16, 64];
const PROCEED: ListedChoice = { kind: 'proceed' };

const describe = (choice: ListedChoice): string => {
  switch (choice.kind) {
    case 'run': return `v${choice.vcpu}'s slice`;
    case 'handle': return `v${choice.vcpu}'s handling`;
    default: return `the ${choice.kind}`;
  }
};

/** First index ≥ `from` (wrapping to the start) whose choice satisfies `test`, or -1. */
function findFrom(schedule: readonly ListedChoice[], from: number, test: (choice: ListedChoice, index: number) => boolean): number {
  for (let k = 0; k < schedule.length; k++) {
    const index = (from + k) % schedule.length;
    if (test(schedule[index], index)) return index;
  }
  return -1;
}

/** Nearest index from `index` in direction `step` whose choice is another actor's (not the handler going on). */
function otherActor(schedule: readonly ListedChoice[], index: number, step: 1 | -1): number {
  const actor = actorOf(schedule[index]);
  for (let k = index + step; k >= 0 && k < schedule.length; k += step) {
    const choice = schedule[k];
    if (choice.kind !== 'proceed' && actorOf(choice) !== actor) return k;
  }
  return -1;
}

const isSlice = (choice: ListedChoice): choice is Extract<ListedChoice, { kind: 'run' }> => choice.kind === 'run';

/** A slice moved before the nearest earlier choice of another actor: the vCPU got there first. */
const hoist: Edit = (schedule, at) => {
  const i = findFrom(schedule, at, isSlice);
  const j = i < 0 ? -1 : otherActor(schedule, i, -1);
  if (j < 0) return null;
  const [slice] = schedule.splice(i, 1);
  schedule.splice(j, 0, slice);
  return `${describe(slice)} before ${describe(schedule[j + 1])}`;
};

/** A slice moved after the nearest later choice of another actor: the vCPU got there later. */
const sink: Edit = (schedule, at) => {
  const i = findFrom(schedule, at, isSlice);
  const j = i < 0 ? -1 : otherActor(schedule, i, 1);
  if (j < 0) return null;
  const [slice] = schedule.splice(i, 1);
  schedule.splice(j, 0, slice);
  return `${describe(slice)} after ${describe(schedule[j - 1])}`;
};

/** Two neighbouring choices of different actors swapped. */
const swap: Edit = (schedule, at) => {
  const i = findFrom(schedule, at, (choice, index) => index + 1 < schedule.length && choice.kind !== 'proceed' && schedule[index + 1].kind !== 'proceed' && actorOf(choice) !== actorOf(schedule[index + 1]));
  if (i < 0) return null;
  [schedule[i], schedule[i + 1]] = [schedule[i + 1], schedule[i]];
  return `${describe(schedule[i])} before ${describe(schedule[i + 1])}`;
};

/** A slice split: the vCPU's first part of it runs before the nearest earlier choice of another actor. */
const split: Edit = (schedule, at, prng) => {
  const anchored = (choice: ListedChoice): choice is Extract<ListedChoice, { kind: 'run'; until: number }> => choice.kind === 'run' && 'until' in choice;
  const i = findFrom(schedule, at, anchored);
  const j = i < 0 ? -1 : otherActor(schedule, i, -1);
  if (j < 0) return null;
  const slice = schedule[i] as Extract<ListedChoice, { kind: 'run'; until: number }>;
  // Where its vCPU was before it: the anchor of its previous slice.
  let from = 0;
  for (let k = i - 1; k >= 0; k--) {
    const earlier = schedule[k];
    if (anchored(earlier) && earlier.vcpu === slice.vcpu) {
      from = earlier.until;
      break;
    }
  }
  if (slice.until - from < 2) return null;
  const part = from + 1 + prng.below(slice.until - from - 1);
  schedule.splice(j, 0, { kind: 'run', vcpu: slice.vcpu, steps: 1, until: part });
  return `${describe(slice)} split at step ${part}, its first part before ${describe(schedule[j + 1])}`;
};

/** Preemption points inside one handler that a slice moved into it may wait for (nearer ones more often). */
const POINTS = 8;

/** Another vCPU's next slice moved into a handler, at one of its first preemption points. */
const preempt: Edit = (schedule, at, prng) => {
  const j = findFrom(schedule, at, (choice) => choice.kind === 'handle');
  if (j < 0) return null;
  const handled = schedule[j];
  const i = findFrom(schedule, j + 1, (choice, index) => index > j && isSlice(choice) && choice.vcpu !== actorOf(handled));
  if (i < 0) return null;
  const [slice] = schedule.splice(i, 1);
  const point = Math.min(prng.below(POINTS), prng.below(POINTS));
  schedule.splice(j + 1, 0, ...Array.from({ length: point }, () => PROCEED), slice);
  return `${describe(slice)} inside ${describe(handled)} (preemption point ${point + 1})`;
};

const EDITS: readonly Edit[] = [hoist, sink, swap, split, preempt];

/** Where the next edit falls: a distance from the end, geometric with one of the mean scales. */
function position(length: number, prng: Prng): number {
  const scale = prng.pick([...SCALES, length]);
  const distance = Math.min(length - 1, Math.floor(-Math.log(1 - prng.nextFloat()) * scale));
  return length - 1 - distance;
}

/** One to three edits of `base`, all drawn from `prng`. */
export function varySchedule(base: readonly ListedChoice[], prng: Prng): Variation {
  const schedule = [...base];
  const edits: string[] = [];
  const wanted = 1 + prng.below(3);
  // An edit may find nothing to change where it falls: a few more tries, then as many as it made.
  for (let tries = 0; edits.length < wanted && tries < 4 * wanted && schedule.length > 1; tries++) {
    const made = prng.pick(EDITS)(schedule, position(schedule.length, prng), prng);
    if (made !== null) edits.push(made);
  }
  return { schedule, edits };
}
