import type { RuntimeEvent } from '../../../actors/events.ts';
import type { Prng } from '../prng.ts';
import type { Choice, Enabled, Scheduler } from '../schedule.ts';
import { InterestingEvents } from './interesting-events.ts';
import { checkSliceMax, handleWithFaults, logUniformSlice } from './choice-draws.ts';

/**
 * SURW — Selectively Uniform Random Walk (Zhao, Wolff, Mathur, Roychoudhury; ASPLOS 2025). A plain
 * random walk favours interleavings in which actors with few events finish early; weighting each
 * actor by the interesting events it has *left* makes every interleaving of those events equally
 * likely. Here the interesting events are a vCPU's exits and the preemption points of its
 * handlers, and the timer's callbacks (`InterestingEvents`); how many each actor will have comes
 * from an earlier run of the same scenario and fixes (the rig profiles one round-robin run).
 *
 * Every choice picks an actor with probability proportional to its remaining events (at least 1,
 * so an actor the estimate got wrong still runs and every interleaving stays possible): a vCPU
 * has its pending exit handled or runs a log-uniform slice. Inside a handler the
 * handler's continuation competes with the runnable vCPUs the same way. Due timer ticks,
 * interrupts and daemon tasks go at once.
 */
export class SurwScheduler implements Scheduler {
  readonly name = 'surw';
  private readonly seen: InterestingEvents;
  private readonly weights: number[] = [];
  private readonly actors: number[] = [];

  constructor(
    private readonly prng: Prng,
    private readonly vcpus: number,
    private readonly sliceMax: number,
    /** Interesting events expected per vCPU, then for the timer (length vcpus + 1). */
    private readonly estimate: readonly number[],
  ) {
    checkSliceMax('SURW', sliceMax);
    if (estimate.length !== vcpus + 1 || estimate.some((n) => !Number.isInteger(n) || n < 0)) {
      throw new RangeError(`SURW needs a non-negative event estimate per vCPU and one for the timer (${vcpus + 1} numbers), got [${estimate.join(', ')}]`);
    }
    this.seen = new InterestingEvents(vcpus);
  }

  observe(event: RuntimeEvent): void {
    this.seen.observe(event);
  }

  choose(enabled: Enabled): Choice {
    this.seen.seeChoice(enabled);
    const point = enabled.preemption;
    if (point !== null) {
      const handler = point.handlerVcpu < 0 ? this.vcpus : point.handlerVcpu;
      const actor = this.pick([handler, ...enabled.runnable]);
      return actor === handler ? { kind: 'proceed' } : this.slice(actor);
    }
    // The environment's timing is not an actor to weigh: a due tick fires at once.
    if (enabled.timerDue) return { kind: 'timer' };
    if (enabled.daemonDue) return { kind: 'daemon' };
    if (enabled.interrupts.length > 0) return { kind: 'irq', ...enabled.interrupts[0] };
    const able: number[] = [];
    for (let vcpu = 0; vcpu < this.vcpus; vcpu++) if (enabled.pendingExits.includes(vcpu) || enabled.runnable.includes(vcpu)) able.push(vcpu);
    if (able.length === 0) throw new Error('SURW: nothing is enabled');
    const actor = this.pick(able);
    return enabled.pendingExits.includes(actor) ? handleWithFaults(this.prng, actor, enabled) : this.slice(actor);
  }

  /** An actor drawn with probability proportional to its remaining interesting events (at least 1). */
  private pick(candidates: readonly number[]): number {
    this.actors.length = 0;
    this.weights.length = 0;
    let total = 0;
    for (const actor of candidates) {
      const left = Math.max(1, this.estimate[actor] - this.seen.counts[actor]);
      this.actors.push(actor);
      this.weights.push(left);
      total += left;
    }
    let at = this.prng.nextFloat() * total;
    for (let i = 0; i < this.actors.length; i++) {
      at -= this.weights[i];
      if (at < 0) return this.actors[i];
    }
    return this.actors[this.actors.length - 1];
  }

  private slice(vcpu: number): Choice {
    return { kind: 'run', vcpu, steps: logUniformSlice(this.prng, this.sliceMax) };
  }
}
