import type { RuntimeEvent } from '../../../actors/events.ts';
import type { Choice, Enabled, PreemptionPoint, Scheduler } from '../schedule.ts';

/**
 * The interesting events each actor (every vCPU, then the timer) has had in a run: a vCPU's VM
 * exits and the preemption points inside the handlers of its exits; the timer's callbacks. These
 * are the events whose order decides an introspection race — SURW's "interesting events".
 */
export class InterestingEvents {
  /** One count per vCPU, then the timer's. */
  readonly counts: Int32Array;
  private lastPoint: PreemptionPoint | null = null;

  constructor(readonly vcpus: number) {
    this.counts = new Int32Array(vcpus + 1);
  }

  observe(event: RuntimeEvent): void {
    if (event.kind === 'stop' && event.exit !== null) this.counts[event.vcpu]++;
    else if (event.kind === 'timer') this.counts[this.vcpus]++;
  }

  /** Counts a preemption point the first time a choice is asked for at it. */
  seeChoice(enabled: Enabled): void {
    const point = enabled.preemption;
    if (point === null || point === this.lastPoint) return;
    this.lastPoint = point;
    this.counts[point.handlerVcpu < 0 ? this.vcpus : point.handlerVcpu]++;
  }
}

/** Runs another strategy unchanged and counts the interesting events of its run (SURW's estimate). */
export class CountingScheduler implements Scheduler {
  readonly name: string;
  readonly seen: InterestingEvents;

  constructor(private readonly inner: Scheduler, vcpus: number) {
    this.name = inner.name;
    this.seen = new InterestingEvents(vcpus);
  }

  choose(enabled: Enabled): Choice {
    this.seen.seeChoice(enabled);
    return this.inner.choose(enabled);
  }

  observe(event: RuntimeEvent): void {
    this.seen.observe(event);
    this.inner.observe?.(event);
  }
}
