import { defineScenario, notesOf } from '../src/index.ts';
import { THREADED_GUEST, UNLOAD_WINDOWS, unloadAttempt, unloadOnCall, unloadOracles, vcpuRan, vcpusReleased } from './unload-common.ts';

/**
 * Nested pause and resume (hvmi-notes §13.13). IntDisableIntro pauses, IntGuestDisableIntro pauses
 * again, and every uncloak inside PrepareUninit and GuestUninit pauses and resumes a third time.
 * The integrator counts (xc_domain_pause/unpause), so the guest runs only when the count is back
 * at zero. With a boolean pause (countedPause off) the first inner resume lets every vCPU run
 * while the unload is half done, and the thread-safeness check that follows is asked for with
 * the vCPUs running — the engine stops there (an assertion HVMI's check makes implicitly).
 */
export const unloadNestedPause = defineScenario({
  name: 'unload-nested-pause',
  title: 'Nested pause and resume during the unload',
  description:
    'The unload nests three pauses deep. Counted, the guest stays stopped until the outermost resume; with a ' +
    'boolean pause the first inner resume releases the vCPUs in the middle of PrepareUninit, and the ' +
    'thread-safeness check then runs against vCPUs that are moving.',
  ...THREADED_GUEST,
  bugs: [{ name: 'boolean pause released mid-unload', fixesOff: ['countedPause'], caughtBy: 'engine-runs' }],
  engine: { start: unloadOnCall(12) },
  oracles: unloadOracles(),
  orderings: [
    {
      name: 'unload-vs-release',
      description: 'A: an unload attempt, from the daemon\'s task until its thread-safeness scan (or teardown); B: a resume that brings the pause count to zero. A during B is the bug: an inner resume released the vCPUs mid-unload',
      a: unloadAttempt,
      b: vcpusReleased,
    },
    {
      name: 'unload-vs-running-vcpu',
      description: 'A: an unload attempt, from the daemon\'s task until its thread-safeness scan (or teardown); B: a vCPU executing guest code. A during B: released, a vCPU actually ran mid-unload',
      a: unloadAttempt,
      b: vcpuRan,
    },
  ],
  windows: [
    ...UNLOAD_WINDOWS,
    {
      name: 'pause-nested-three-deep',
      description: 'the unload held the vCPUs at a pause depth of 3',
      reached: (world) => world.events.some(({ event }) => event.kind === 'pause' && event.depth >= 3)
        && notesOf(world.events, 'uninit').length > 0,
    },
  ],
});
