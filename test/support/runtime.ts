import { Session } from '../../actors/session.ts';
import { runDeterministic, type InterruptSource, type RunResult } from '../../src/explore/deterministic.ts';
import { Prng } from '../../src/explore/prng.ts';
import { createScheduler, type StrategyName } from '../../src/explore/schedulers/index.ts';
import { Trace } from '../../src/explore/trace.ts';
import { MachineSnapshot } from '../../src/machine/snapshot.ts';
import { counterGuest, GUEST_VECTOR, type CounterGuest } from './counter-guest.ts';

/**
 * A counter guest with a session that can be re-run from its initial snapshot: what the
 * determinism, replay and benchmark code needs to run many seeds without new workers.
 */
export interface CounterRig {
  readonly guest: CounterGuest;
  readonly session: Session;
  readonly snapshot: MachineSnapshot;
  /** Restores the snapshot and runs one seed; returns the result and the trace. */
  run(seed: number, strategy: StrategyName): { result: RunResult; trace: Trace };
  close(): Promise<void>;
}

export const RIG_INTERRUPTS: readonly InterruptSource[] = [
  { vcpu: 0, vector: GUEST_VECTOR, everySteps: 700 },
  { vcpu: 2, vector: GUEST_VECTOR, everySteps: 1100 },
];

export function counterRig(hosts: 'inline' | 'workers', options: { vcpus?: number; iterations?: number; period?: number } = {}): CounterRig {
  const guest = counterGuest(options.vcpus ?? 4, options.iterations ?? 200, options.period ?? 20);
  const snapshot = new MachineSnapshot(guest.test.machine);
  const timer = {
    periodSteps: 1500,
    // Pauses everyone and notes how far each vCPU got: exercises pause/resume in every run.
    callback: (hv: import('../../actors/hypervisor.ts').Hypervisor) => {
      hv.pauseVcpus();
      const left: Record<string, bigint> = {};
      for (let v = 0; v < hv.vcpuCount; v++) {
        const access = hv.vcpu(v);
        try {
          left[`v${v}`] = access.gpr('rcx');
        } catch {
          left[`v${v}`] = -1n;
        }
      }
      hv.note('progress', left);
      hv.resumeVcpus();
    },
  };
  const session = Session.open({ machine: guest.test.machine, hosts, handler: guest.handler, timer });
  return {
    guest,
    session,
    snapshot,
    run(seed, strategy) {
      snapshot.restore(guest.test.machine);
      guest.resetTicks();
      const trace = new Trace();
      const prng = new Prng(seed);
      session.restart({ events: (event, clock) => trace.recordEvent(event, clock), random: prng.fork('engine') });
      const scheduler = createScheduler(strategy, prng.fork('scheduler'), { vcpus: guest.test.machine.vcpuCount, slice: 150, depth: 3, events: 60 });
      const result = runDeterministic({ session, scheduler, trace, stepsMax: 5_000_000, interrupts: RIG_INTERRUPTS });
      return { result, trace };
    },
    close: () => session.close(),
  };
}
