import { ScheduleShape } from '../../src/explore/schedule-shape.ts';
import { LenientScheduler } from '../../src/explore/schedulers/lenient.ts';
import type { Choice, Enabled, Scheduler } from '../../src/explore/schedule.ts';
import type { ShrinkAttempt } from '../../src/explore/shrink.ts';
import type { ListedChoice } from '../../src/explore/schedulers/lenient.ts';
import type { ExhaustiveAttempt } from '../../src/explore/exhaustive.ts';

/**
 * A toy program for testing schedule tools without the emulator: thread 0 runs 6 steps, thread 1
 * runs 4; the "race" is thread 1 taking a step while thread 0 has done exactly 3 of its own. The
 * least preemptive failing schedule is hand-countable: run thread 0 for 3 steps, then switch to
 * thread 1 while thread 0 could go on — one preemption, two decisive choices.
 */

export const TOY_SLICE = 10;
const LENGTHS = [6, 4];

export interface ToyRun {
  readonly oracle: string | null;
  readonly choices: readonly Choice[];
}

function enabledOf(pc: readonly number[], events: number): Enabled {
  const runnable = pc.flatMap((at, thread) => (at < LENGTHS[thread] ? [thread] : []));
  return { runnable, pendingExits: [], timerDue: false, daemonDue: false, interrupts: [], events, vcpus: LENGTHS.length, preemption: null };
}

/** Runs the toy under `scheduler` until both threads finish. */
export function runToy(scheduler: Scheduler, pc = [0, 0]): ToyRun {
  const choices: Choice[] = [];
  let oracle: string | null = null;
  for (let events = 0; pc.some((at, thread) => at < LENGTHS[thread]); events++) {
    const choice = scheduler.choose(enabledOf(pc, events));
    choices.push(choice);
    if (choice.kind !== 'run') throw new Error(`the toy only runs threads, got ${choice.kind}`);
    for (let step = 0; step < choice.steps && pc[choice.vcpu] < LENGTHS[choice.vcpu]; step++) {
      if (choice.vcpu === 1 && pc[0] === 3) oracle ??= 'toy-race';
      pc[choice.vcpu]++;
    }
  }
  return { oracle, choices };
}

/** A shrinker's attempt on the toy: `choices` followed leniently. */
export function toyAttempt(choices: readonly ListedChoice[]): ShrinkAttempt<ToyRun> {
  const shape = new ScheduleShape(TOY_SLICE);
  const pc = [0, 0];
  const scheduler = new LenientScheduler(choices, shape, (thread) => pc[thread]);
  const run = runToy(scheduler, pc);
  return { oracle: run.oracle, preemptions: shape.preemptions, preemptionAt: shape.preemptionAt, preempted: shape.preempted, decisive: shape.decisive, executed: scheduler.followed, run };
}

/** A bounded-exhaustive attempt on the toy, one step per choice point. */
export function toyBoundedAttempt(choices: readonly Choice[]): ExhaustiveAttempt<ToyRun> {
  const shape = new ScheduleShape(1);
  const pc = [0, 0];
  const scheduler = new LenientScheduler(choices, shape, (thread) => pc[thread], undefined, true);
  const run = runToy(scheduler, pc);
  const hash = run.choices.map((c) => (c.kind === 'run' ? `${c.vcpu}x${c.steps}` : c.kind)).join(',');
  return { oracle: run.oracle, hash, executed: run.choices, points: scheduler.points, preemptions: shape.preemptions, deviations: shape.deviations, run };
}
