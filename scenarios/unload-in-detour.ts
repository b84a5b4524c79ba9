import { defineScenario, notesOf } from '../src/index.ts';
import { learnHandlers, scanVsThreadInHandler, teardown, THREADED_GUEST, threadInHandler, UNLOAD_WINDOWS, unloadOnCall, unloadOracles } from './unload-common.ts';

/**
 * Unload while a thread is inside a detour handler (hvmi-notes §13.11). Six threads on three
 * vCPUs call the detoured APIs; the clock interrupt preempts them anywhere, inside the slack
 * handlers too. The engine asks for its unload; the daemon's IntDisableIntro restores the
 * prologues, then checks thread safety: a live RIP, or a saved one on a preempted thread's stack,
 * inside a handler means CANNOT_UNLOAD — resume, wait, retry. Without the check
 * (threadSafenessCheck off) the handlers' slack is zeroed under the thread, which then runs zeros.
 */
export const unloadInDetour = defineScenario({
  name: 'unload-in-detour',
  title: 'Unload while a thread is inside a detour handler',
  description:
    'Six preemptible threads call detoured APIs while the engine unloads. HVMI checks every vCPU\'s RIP and every ' +
    'preempted thread\'s stack for a pointer into a handler and retries while one is there; unloading at once lets ' +
    'a thread return into slack that has just been zeroed.',
  ...THREADED_GUEST,
  bugs: [{ name: 'unloaded under a thread in a handler', fixesOff: ['threadSafenessCheck'], caughtBy: 'guest-alive' }],
  engine: { start: unloadOnCall(12) },
  oracles: unloadOracles(),
  orderings: [
    {
      name: 'teardown-vs-thread-in-detour',
      description: 'A: the teardown (GuestUninit zeroes the handlers\' slack); B: a vCPU inside a detour handler, from the stop that found it there until its next stop outside. A during B is the bug: slack zeroed under a running thread',
      learn: learnHandlers('detour handler'),
      a: teardown,
      b: threadInHandler,
    },
    scanVsThreadInHandler('scan-vs-thread-in-detour', 'detour handler', 'a detour handler'),
  ],
  windows: [
    ...UNLOAD_WINDOWS,
    {
      name: 'thread-in-detour-at-check',
      description: 'a check found a thread inside (or returning into) a detour handler',
      reached: (world) => notesOf(world.events, 'thread-safeness').some((c) => String(c.event.detail.region ?? '').startsWith('detour handler')),
    },
  ],
});
