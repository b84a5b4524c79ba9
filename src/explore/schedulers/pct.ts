import type { Prng } from '../prng.ts';
import type { Choice, Enabled, Scheduler } from '../schedule.ts';

/**
 * PCT — Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010), with its change
 * points counted over semantic events (exits, engine notes, pauses, the handler's preemption
 * points) instead of instructions, so k is the number of interesting events and a depth-d bug is
 * found with probability ≥ 1/(n·k^(d−1)) per run.
 *
 * Each vCPU gets a distinct random priority ≥ d. The highest-priority vCPU that can do anything
 * does it (handle its pending exit, else run a slice). When the event count reaches change point
 * i (d−1 of them, uniform in 1..k), the vCPU that acted last drops to priority i — below every
 * initial priority. Due timer ticks, daemon tasks and interrupts are taken at once. Inside a handler (a
 * preemption point) a runnable vCPU runs only if it outranks the vCPU being handled.
 */
export class PctScheduler implements Scheduler {
  readonly name: string;
  private readonly priority: number[];
  /** Remaining change points, ascending; invariant: length ≤ depth − 1. */
  private readonly changePoints: number[];
  private lastActor = -1;
  private fired = 0;

  constructor(
    prng: Prng,
    vcpus: number,
    readonly depth: number,
    /** k: the expected number of events in a run. */
    eventsMax: number,
    private readonly slice: number,
  ) {
    if (!Number.isInteger(depth) || depth < 1) throw new RangeError(`PCT depth must be ≥ 1, got ${depth}`);
    if (!Number.isInteger(eventsMax) || eventsMax < 1) throw new RangeError(`PCT event bound must be ≥ 1, got ${eventsMax}`);
    this.name = `pct(d=${depth})`;
    const order = Array.from({ length: vcpus }, (_, v) => v);
    for (let i = order.length - 1; i > 0; i--) {
      const j = prng.below(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    this.priority = new Array<number>(vcpus);
    order.forEach((vcpu, rank) => (this.priority[vcpu] = depth + rank));
    const points = new Set<number>();
    while (points.size < Math.min(depth - 1, eventsMax)) points.add(1 + prng.below(eventsMax));
    this.changePoints = [...points].sort((a, b) => a - b);
  }

  choose(enabled: Enabled): Choice {
    while (this.changePoints.length > 0 && enabled.events >= this.changePoints[0]) {
      this.changePoints.shift();
      // The k-th change point drops the vCPU that acted last to priority d − k (< every initial one).
      this.fired++;
      if (this.lastActor >= 0) this.priority[this.lastActor] = this.depth - this.fired;
    }
    if (enabled.preemption !== null) return this.atPreemption(enabled);
    if (enabled.timerDue) return { kind: 'timer' };
    if (enabled.daemonDue) return { kind: 'daemon' };
    if (enabled.interrupts.length > 0) return { kind: 'irq', ...enabled.interrupts[0] };
    let best = -1;
    for (let vcpu = 0; vcpu < enabled.vcpus; vcpu++) {
      const able = enabled.pendingExits.includes(vcpu) || enabled.runnable.includes(vcpu);
      if (able && (best < 0 || this.priority[vcpu] > this.priority[best])) best = vcpu;
    }
    if (best < 0) throw new Error('PCT: nothing is enabled');
    this.lastActor = best;
    return enabled.pendingExits.includes(best) ? { kind: 'handle', vcpu: best } : { kind: 'run', vcpu: best, steps: this.slice };
  }

  /**
   * Inside a handler the engine acts for the exiting vCPU, with its priority: a runnable vCPU of
   * higher priority runs first. The timer outranks every vCPU.
   */
  private atPreemption(enabled: Enabled): Choice {
    const handler = enabled.preemption?.handlerVcpu ?? -1;
    if (handler < 0) return { kind: 'proceed' };
    let best = -1;
    for (const vcpu of enabled.runnable) if (this.priority[vcpu] > this.priority[handler] && (best < 0 || this.priority[vcpu] > this.priority[best])) best = vcpu;
    if (best < 0) return { kind: 'proceed' };
    this.lastActor = best;
    return { kind: 'run', vcpu: best, steps: this.slice };
  }
}
