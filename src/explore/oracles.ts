import { KERNEL_GPA } from '../guest/layout.ts';
import type { NtGuest, BugCheck } from '../guest/nt-guest.ts';
import type { Oracle, World } from './scenario.ts';
import { describeFailedUnload } from './unload-report.ts';
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

/**
 * `uninit-restores-image` (after-uninit): every byte of the kernel's code sections and all their
 * slack are as the guest was built — no patch, no handler, no byte of either left behind.
 */
export function imageRestored<G extends NtGuest, F extends string = string>(): Oracle<G, F> {
  return {
    name: 'uninit-restores-image',
    phase: 'after-uninit',
    description: 'after the engine unloads, every code byte and all slack are as the guest was built',
    check(world) {
      const memory = world.guest.machine.memory;
      for (const section of world.guest.kernel.sections) {
        if ((section.characteristics & 0x80000000) !== 0) continue;
        const pageEnd = Math.ceil(section.virtualSize / 0x1000) * 0x1000;
        const now = memory.read(KERNEL_GPA + section.virtualAddress, pageEnd);
        for (let k = 0; k < pageEnd; k++) {
          const want = k < section.bytes.length ? section.bytes[k] : 0;
          if (now[k] !== want) {
            const gva = world.guest.kernel.base + BigInt(section.virtualAddress + k);
            return `${section.name}+${hex(k)} (${hex(gva)}) is ${hex(now[k])} after uninit, was ${hex(want)}${k >= section.virtualSize ? ' (slack)' : ''}`;
          }
        }
      }
      return null;
    },
  };
}

/** `uninit-removes-hooks` (after-uninit): no hook, no cloaked region and no EPT restriction is left. */
export function hooksRemoved<G extends NtGuest, F extends string = string>(): Oracle<G, F> {
  return {
    name: 'uninit-removes-hooks',
    phase: 'after-uninit',
    description: 'after the engine unloads, no hook, cloak or EPT restriction is left',
    check(world) {
      const { engine, session } = world;
      const hooks = engine.hooks.liveHooks();
      if (hooks.length > 0) return `${hooks.length} hook(s) left after uninit, e.g. ${hooks[0].owner} on GPA ${hex(hooks[0].gpaPage)}`;
      const registerHooks = engine.registerHooks.liveHooks();
      if (registerHooks.length > 0) return `${registerHooks.length} register hook(s) left after uninit, e.g. ${registerHooks[0].owner} on ${registerHooks[0].kind} ${hex(registerHooks[0].key)}`;
      const regions = engine.cloak.liveRegions();
      if (regions.length > 0) return `${regions.length} cloaked region(s) left after uninit, e.g. "${regions[0].owner}" at ${hex(regions[0].gva)}`;
      for (let page = 0; page < world.guest.kernel.sizeOfImage; page += 0x1000) {
        const rights = session.ept.rightsAt(KERNEL_GPA + page);
        if (rights !== 7) return `EPT rights of kernel page ${hex(KERNEL_GPA + page)} are ${rights}, not rwx, after uninit`;
      }
      return null;
    },
  };
}

/**
 * `unload-succeeds` (continuous): an unload that was asked for never gives up — the daemon's
 * attempts ran out while a thread stayed in the way. The report names the thread, the vCPU, the
 * stack slot, the pointer and the handler it points into.
 */
export function unloadSucceeds<G extends NtGuest, F extends string = string>(): Oracle<G, F> {
  return {
    name: 'unload-succeeds',
    phase: 'continuous',
    description: 'an unload that was asked for finishes within the daemon\'s attempts',
    check(world) {
      const report = world.introspection.unloadReport;
      return report.state === 'failed' ? describeFailedUnload(report, world.guest.machine) : null;
    },
  };
}

/**
 * `threads-correct` (end), scheduler mode: every thread terminated with exactly the results the
 * original worker computes, and the hooked APIs were called as often as the threads must call them.
 */
export function threadsCorrect<G extends NtGuest, F extends string = string>(): Oracle<G, F> {
  return {
    name: 'threads-correct',
    phase: 'end',
    description: 'every thread terminated with exactly the results the original code computes',
    check(world) {
      const { guest } = world;
      let calls = 0;
      for (let t = 0; t < guest.threadCount; t++) {
        if (!guest.finishedThreads.has(t)) return `thread ${t} did not terminate`;
        const got = guest.threadReport(t);
        const want = guest.expected(t);
        if (got.completed !== want.completed) return `thread ${t} completed ${got.completed} of ${want.completed} iterations`;
        const bad = got.results.findIndex((value, i) => value !== want.results[i]);
        if (bad >= 0) return `thread ${t} iteration ${bad}: stored ${hex(got.results[bad])}, the original code computes ${hex(want.results[bad])}`;
        calls += want.apiCalls;
      }
      let made = 0;
      for (let vcpu = 0; vcpu < guest.vcpus; vcpu++) made += guest.report(vcpu).apiCalls;
      return made === calls ? null : `the threads made ${made} hooked-API calls, they must make ${calls}`;
    },
  };
}
