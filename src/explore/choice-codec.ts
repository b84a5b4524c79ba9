import type { Alternative } from './schedule-shape.ts';
import type { Choice, HypervisorFault } from './schedule.ts';
import type { ChoicePoint } from './schedulers/lenient.ts';

/**
 * Choices and choice points as int32 words, for handing schedules between threads: a structured
 * clone of a run's choice objects cost more than a third of the run itself on a pool (2 ms of a
 * 6 ms mem-table run), a copy of these words next to nothing. Three words a choice: kind, vCPU, and
 * the steps, the vector or the hypervisor fault.
 */

const KINDS = ['run', 'handle', 'timer', 'daemon', 'irq', 'proceed', 'see-code'] as const satisfies readonly Choice['kind'][];
const FAULTS = [undefined, 'duplicate-exit', 'late-flush'] as const satisfies readonly (HypervisorFault | undefined)[];
const WORDS = 3;

function put(words: Int32Array, at: number, choice: Choice): void {
  words[at] = KINDS.indexOf(choice.kind);
  words[at + 1] = 'vcpu' in choice ? choice.vcpu : 0;
  words[at + 2] = choice.kind === 'run' ? choice.steps : choice.kind === 'irq' ? choice.vector : choice.kind === 'handle' ? FAULTS.indexOf(choice.fault) : 0;
}

function get(words: Int32Array, at: number): Choice {
  const vcpu = words[at + 1];
  const arg = words[at + 2];
  const kind = KINDS[words[at]];
  switch (kind) {
    case 'run': return { kind, vcpu, steps: arg };
    case 'handle': {
      const fault = FAULTS[arg];
      return fault === undefined ? { kind, vcpu } : { kind, vcpu, fault };
    }
    case 'irq': return { kind, vcpu, vector: arg };
    case 'see-code': return { kind, vcpu };
    case 'timer': case 'daemon': case 'proceed': return { kind };
    default: throw new RangeError(`choice code ${words[at]} at word ${at} is no choice`);
  }
}

export function encodeChoices(choices: readonly Choice[]): Int32Array {
  const words = new Int32Array(choices.length * WORDS);
  for (let k = 0; k < choices.length; k++) put(words, k * WORDS, choices[k]);
  return words;
}

export function decodeChoices(words: Int32Array): Choice[] {
  const choices: Choice[] = [];
  for (let at = 0; at < words.length; at += WORDS) choices.push(get(words, at));
  return choices;
}

/** Choice points `from` on: per point, preemptions and deviations before it, its alternatives' count, then each alternative's choice and whether it preempts. */
export function encodePoints(points: readonly ChoicePoint[], from: number): Int32Array {
  let size = 0;
  for (let k = from; k < points.length; k++) size += 3 + points[k].alternatives.length * (WORDS + 1);
  const words = new Int32Array(size);
  let at = 0;
  for (let k = from; k < points.length; k++) {
    const point = points[k];
    words[at++] = point.preemptionsBefore;
    words[at++] = point.deviationsBefore;
    words[at++] = point.alternatives.length;
    for (const alternative of point.alternatives) {
      put(words, at, alternative.choice);
      words[at + WORDS] = alternative.preempts ? 1 : 0;
      at += WORDS + 1;
    }
  }
  return words;
}

/** The points of `encodePoints`, at their indices from `from` on (the array has no entries before). */
export function decodePoints(words: Int32Array, from: number): ChoicePoint[] {
  const points: ChoicePoint[] = [];
  points.length = from;
  for (let at = 0; at < words.length;) {
    const preemptionsBefore = words[at++];
    const deviationsBefore = words[at++];
    const alternatives: Alternative[] = [];
    for (let n = words[at++]; n > 0; n--) {
      alternatives.push({ choice: get(words, at), preempts: words[at + WORDS] === 1 });
      at += WORDS + 1;
    }
    points.push({ alternatives, preemptionsBefore, deviationsBefore });
  }
  return points;
}
