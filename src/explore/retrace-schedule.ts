import type { RuntimeEvent } from '../../actors/events.ts';
import type { FreeObservation } from './free-observation.ts';
import type { Choice } from './schedule.ts';
import type { ListedChoice } from './schedulers/lenient.ts';

/**
 * The deterministic schedule that retraces a free run in the order the hypervisor side saw it.
 *
 * A free-running vCPU ran concurrently with everything between its launch and its stop; the
 * hypervisor side only saw where it stopped (its RIP and the steps it had retired) and in which
 * order stops, handlers and timer ticks came. The schedule gives each vCPU, at the place of each
 * of its stops, a slice of the steps it retired up to that stop (one more when it stopped by
 * itself — at an exit, a HLT — so the slice ends there, not just before it); and hands exits to
 * the handler, fires the timer and injects interrupts in the observed order. A stop the runner
 * collected inside a handler or timer tick (a vCPU stopped by its pause, or one that exited
 * meanwhile) happened while that handler ran, so its slice goes before the handler — unless the
 * vCPU was only launched inside it (at a preemption point): then its slice follows the handling
 * and runs at the handler's first preemption point, or after it.
 *
 * Slices are anchored to the vCPU's own progress (run until it has retired so many steps), so a
 * slice skipped because its vCPU could not run then is made up for by its next one. A vCPU that
 * spins while another works spins for as long as that takes in wall time — while a handler runs,
 * millions of steps — and in a deterministic run a handler takes no time at all; so the longest
 * slices are cut to a common length that lets the whole schedule fit in half the scenario's step
 * bound, and the anchors count the slices as cut. Followed leniently, a choice that does not apply
 * is skipped; a slice ending at an exit ends there even when its anchor lies further.
 */

/** A handler or timer tick in progress while the runner collected stops. */
interface Span {
  /** Index of its choice in the schedule (slices placed before it move it on). */
  start: number;
  /** The vCPU whose exit it handles; -1 for the timer or the daemon. */
  readonly vcpu: number;
  /** vCPUs launched inside it (at its preemption points). */
  readonly launched: Set<number>;
}

/** A vCPU's progress up to one of its stops, before it is anchored. */
interface PlannedSlice {
  readonly kind: 'slice';
  readonly vcpu: number;
  /** Steps the vCPU retired up to the stop. */
  readonly retired: number;
  /** It stopped by itself (an exit, a HLT): the slice may reach one step past and still stop there. */
  readonly selfEnding: boolean;
}

/** Stops that end a slice by themselves. */
const SELF_ENDING = new Set(['exit', 'halted', 'shutdown']);

/** @param stepsMax the scenario's bound on a run's steps (what the slices must fit in) */
export function retraceSchedule(observation: FreeObservation, stepsMax: number): ListedChoice[] {
  const builder = new RetraceBuilder();
  for (const step of observation.steps) {
    if (step.kind === 'choice') builder.choice(step.choice);
    else builder.event(step.event);
  }
  const cap = sliceCap(builder.schedule.flatMap((item) => (item.kind === 'slice' ? [item.retired] : [])), Math.floor(stepsMax / 2));
  // Each slice anchored to where its vCPU is after its slices up to this one, cut as they are:
  // a slice given up on (its vCPU could not run then) is made up for by the next one.
  const reached = new Map<number, number>();
  return builder.schedule.map((item) => {
    if (item.kind !== 'slice') return item;
    const total = (reached.get(item.vcpu) ?? 0) + Math.min(item.retired, cap);
    reached.set(item.vcpu, total);
    return { kind: 'run', vcpu: item.vcpu, steps: 1, until: total + (item.selfEnding ? 1 : 0) };
  });
}

/** The largest slice length that makes `slices`, each cut to it, add up to at most `budget` steps. */
export function sliceCap(slices: readonly number[], budget: number): number {
  const total = (cap: number): number => slices.reduce((sum, steps) => sum + Math.min(steps, cap), 0);
  // Not Math.max(...slices): a long free run has more stops than a call takes arguments.
  let high = slices.reduce((most, steps) => Math.max(most, steps), 1);
  if (total(high) <= budget) return high;
  let low = 1;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (total(mid) <= budget) low = mid;
    else high = mid - 1;
  }
  return low;
}

/** Builds the schedule step by step, knowing which handler or tick is in progress. */
class RetraceBuilder {
  readonly schedule: (Choice | PlannedSlice)[] = [];
  private span: Span | null = null;

  choice(choice: Choice): void {
    switch (choice.kind) {
      case 'run':
        // A launch: the vCPU's progress shows at its stop. The main loop launching ends a tick.
        if (this.span !== null && this.span.vcpu < 0) this.span = null;
        this.span?.launched.add(choice.vcpu);
        return;
      case 'handle':
        return this.open(choice, choice.vcpu);
      case 'timer':
      case 'daemon':
        return this.open(choice, -1);
      default:
        this.span = null;
        this.schedule.push(choice);
    }
  }

  event(event: RuntimeEvent): void {
    if (event.kind === 'handle' && this.span?.vcpu === event.vcpu) this.span = null;
    if (event.kind !== 'stop') return;
    const selfEnding = SELF_ENDING.has(event.stop);
    // A pause that found the vCPU where it was last stopped moved it no further.
    if (!selfEnding && event.retired === 0) return;
    const slice: PlannedSlice = { kind: 'slice', vcpu: event.vcpu, retired: event.retired, selfEnding };
    const span = this.span;
    if (span !== null && !span.launched.has(event.vcpu)) this.schedule.splice(span.start++, 0, slice);
    else this.schedule.push(slice);
  }

  private open(choice: Choice, vcpu: number): void {
    this.schedule.push(choice);
    this.span = { start: this.schedule.length - 1, vcpu, launched: new Set() };
  }
}
