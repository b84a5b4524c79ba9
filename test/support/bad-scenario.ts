import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import type { ScenarioDefinition } from '../../src/explore/scenario.ts';
import type { NtGuest } from '../../src/guest/nt-guest.ts';

/** A scenario whose bug names an oracle that does not exist (a typo): refused when it is registered. */
export const badCaughtBy: ScenarioDefinition<NtGuest> = {
  ...memtableStaleIcache,
  name: 'bad-caught-by',
  title: 'caughtBy names no oracle',
  bugs: [{ name: 'typo', fixesOff: ['pauseWhilePatching'], caughtBy: 'guest-alvie' }],
};
