import type { NtGuest, BugCheck } from '../guest/nt-guest.ts';
import type { Oracle, World } from './scenario.ts';
import { instructionAt } from './vcpu-report.ts';

/**
 * Oracles most NT-guest scenarios want, ready made.
 */

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

/**
 * `guest-alive` (continuous): no vCPU bug-checked. The report names the vCPU, the vector, the
 * error code, the faulting RIP and its instruction; `explain` may add where that RIP is (e.g.
 * "inside the mem-table handler of …").
 */
export function guestAlive<G extends NtGuest, F extends string = string>(explain?: (world: World<G, F>, crash: BugCheck) => string | null): Oracle<G, F> {
  return {
    name: 'guest-alive',
    phase: 'continuous',
    description: 'no vCPU bug-checked (an exception in kernel mode)',
    check(world) {
      const crash = world.guest.bugChecks[0];
      if (crash === undefined) return null;
      const context = explain?.(world, crash) ?? null;
      const instruction = instructionAt(world.guest.machine, crash.vcpu, crash.rip);
      return `vCPU ${crash.vcpu} bug-checked: vector ${crash.vector} (error ${hex(crash.errorCode)}) at RIP ${hex(crash.rip)} (${instruction})${context === null ? '' : ` — ${context}`}`;
    },
  };
}
