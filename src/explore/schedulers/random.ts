import type { Prng } from '../prng.ts';
import { faultApplies, type Choice, type Enabled, type Scheduler } from '../schedule.ts';
import { checkSliceMax, logUniformSlice } from './choice-draws.ts';

/**
 * Random: every enabled choice (a slice for any runnable vCPU, any pending exit — also with each
 * hypervisor fault the scenario allows —, a due timer or interrupt, a vCPU that may run stale
 * cross-modified code seeing the new bytes now; inside a handler, letting it proceed) is equally likely; slice lengths are log-uniform between 1 and `sliceMax`, so both
 * instruction-level interleavings and long runs happen.
 */
export class RandomScheduler implements Scheduler {
  readonly name = 'random';

  constructor(
    private readonly prng: Prng,
    private readonly sliceMax: number,
  ) {
    checkSliceMax('random', sliceMax);
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
    for (const vcpu of enabled.staleCode ?? []) options.push({ kind: 'see-code', vcpu });
    const choice = this.prng.pick(options);
    return choice.kind === 'run' ? { ...choice, steps: logUniformSlice(this.prng, this.sliceMax) } : choice;
  }
}
