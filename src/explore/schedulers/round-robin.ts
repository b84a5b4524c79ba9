import type { Choice, Enabled, Scheduler } from '../schedule.ts';

/**
 * Round-robin: vCPUs in turn, a fixed slice each; a vCPU whose turn comes while it is stopped at
 * an exit gets its exit handled instead. Due timer ticks and interrupts go first; handlers are never
 * preempted. No randomness:
 * the baseline that shows what the other strategies add.
 */
export class RoundRobinScheduler implements Scheduler {
  readonly name = 'rr';
  private turn = 0;

  constructor(private readonly slice: number) {
    if (!Number.isInteger(slice) || slice < 1) throw new RangeError(`round-robin slice must be a positive integer, got ${slice}`);
  }

  choose(enabled: Enabled): Choice {
    // The baseline never preempts a handler.
    if (enabled.preemption !== null) return { kind: 'proceed' };
    if (enabled.timerDue) return { kind: 'timer' };
    if (enabled.daemonDue) return { kind: 'daemon' };
    if (enabled.interrupts.length > 0) return { kind: 'irq', ...enabled.interrupts[0] };
    for (let k = 0; k < enabled.vcpus; k++) {
      const vcpu = (this.turn + k) % enabled.vcpus;
      if (enabled.pendingExits.includes(vcpu)) {
        this.turn = vcpu;
        return { kind: 'handle', vcpu };
      }
      if (enabled.runnable.includes(vcpu)) {
        this.turn = (vcpu + 1) % enabled.vcpus;
        return { kind: 'run', vcpu, steps: this.slice };
      }
    }
    throw new Error('round-robin: nothing is enabled');
  }
}
