import type { Prng } from '../prng.ts';
import { faultApplies, type Choice, type Enabled, type Scheduler } from '../schedule.ts';

/**
 * Random: every enabled choice (a slice for any runnable vCPU, any pending exit — also with each
 * hypervisor fault the scenario allows —, a due timer or interrupt; inside a handler, letting it
 * proceed) is equally likely; slice lengths are log-uniform between 1 and `sliceMax`, so both
 * instruction-level interleavings and long runs happen.
 */
export class RandomScheduler implements Scheduler {
  readonly name = 'random';

  constructor(
    private readonly prng: Prng,
    private readonly sliceMax: number,
  ) {
    if (!Number.isInteger(sliceMax) || sliceMax < 1) throw new RangeError(`random slice maximum must be a positive integer, got ${sliceMax}`);
  }

  choose(enabled: Enabled): Choice {
    const options: Choice[] = [];
    if (enabled.preemption !== null) options.push({ kind: 'proceed' });
    for (const vcpu of enabled.runnable) options.push({ kind: 'run', vcpu, steps: 0 });
    for (const vcpu of enabled.pendingExits) {
      options.push({ kind: 'handle', vcpu });
      for (const fault of enabled.faults ?? []) if (faultApplies(fault, vcpu, enabled)) options.push({ kind: 'handle', vcpu, fault });
    }
    if (enabled.timerDue) options.push({ kind: 'timer' });
    if (enabled.daemonDue) options.push({ kind: 'daemon' });
    for (const irq of enabled.interrupts) options.push({ kind: 'irq', ...irq });
    const choice = this.prng.pick(options);
    return choice.kind === 'run' ? { ...choice, steps: this.slice() } : choice;
  }

  private slice(): number {
    const bits = Math.log2(this.sliceMax);
    return Math.min(this.sliceMax, Math.max(1, Math.floor(2 ** (this.prng.nextFloat() * bits))));
  }
}
