import { configGpa, SLOT_BYTES } from '../../scenarios/config-writers.ts';
import { disableFromCallback } from '../../scenarios/disable-from-callback.ts';
import type { ScenarioDefinition } from '../../src/explore/scenario.ts';
import type { NtGuest } from '../../src/guest/nt-guest.ts';

/**
 * disable-from-callback with a hook callback that counts writes in a closure variable — run state
 * no snapshot can see, so a run from a restored snapshot differs from the first one (note
 * "counted writes=N"): what a branch's and a walk's checks must catch.
 */
export const leakyCounterScenario: ScenarioDefinition<NtGuest> = {
  ...(disableFromCallback as unknown as ScenarioDefinition<NtGuest>),
  engine: {
    start(engine, guest) {
      let writes = 0; // the mistake: state a snapshot cannot see
      engine.hook({
        gpa: configGpa(guest), length: guest.vcpus * SLOT_BYTES, type: 'write', owner: 'leaky counter',
        callback: () => {
          engine.note('counted', { writes: ++writes });
          return 'allowed';
        },
      });
    },
  },
};
