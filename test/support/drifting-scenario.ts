import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';

/**
 * memtable-stale-icache under another name, with its guests' clock interrupts every
 * VCPUSIM_TEST_CLOCK_EVERY steps (default: the original's 1,500): a trace recorded at one period
 * and checked at another is a recording the scenario has drifted from, as after a change of code.
 */
export const driftingMemtable = {
  ...memtableStaleIcache,
  name: 'memtable-drifting',
  bounds: { ...memtableStaleIcache.bounds, clockEverySteps: Number(process.env.VCPUSIM_TEST_CLOCK_EVERY ?? memtableStaleIcache.bounds.clockEverySteps) },
};
