import {
  defineScenario, guestAlive, hooksRemoved, imageRestored, notesOf, NtGuest, unloadSucceeds,
  type ScenarioEngine,
} from '../src/index.ts';
import { CONFIG, configGpa, configWriteExit, learnConfig, SLOT_BYTES, writersOnly, writesLanded } from './config-writers.ts';

/**
 * A disable asked for from inside a callback (hvmi-notes §13.19). The engine's write hook on the
 * configuration page decides, on a value it does not expect, to unload the engine. HVMI sets
 * gGuest.DisableOnReturn, and the handler's exit path — after the walk of the page's hooks —
 * runs the disable. Running it at once, inside the callback (deferDisableToReturn off), tears the
 * hooks down (and frees them at the commit) while the walk still stands on one of them.
 */

const WRITES = 30;
/** The value that makes the hook ask for the unload. */
const TRIGGER = 17n;

function watchConfig(engine: ScenarioEngine, guest: NtGuest): void {
  const gpa = configGpa(guest);
  const watch = engine.state({ asked: false });
  engine.hook({
    gpa, length: guest.vcpus * SLOT_BYTES, type: 'write', owner: 'config watch',
    callback: (access) => {
      if (!watch.asked && access.self.gpr('rax') === TRIGGER) {
        watch.asked = true;
        engine.note('unexpected-value', { vcpu: access.vcpuId });
        engine.disableOnReturn();
      }
      return 'allowed';
    },
  });
}

export const disableFromCallback = defineScenario({
  name: 'disable-from-callback',
  title: 'Disable asked for from inside a callback',
  description:
    'A write hook\'s callback asks for the engine to unload. Deferred to the handler\'s return, the unload runs once the ' +
    'hooks are no longer being walked; run at once, it frees the hook the walk stands on.',
  ...writersOnly(WRITES),
  bugs: [{ name: 'unload inside the callback', fixesOff: ['deferDisableToReturn'], caughtBy: 'engine-runs' }],
  engine: { start: watchConfig },
  oracles: [writesLanded(WRITES), guestAlive(), unloadSucceeds(), imageRestored(), hooksRemoved()],
  orderings: [
    {
      name: 'disable-vs-peer-write',
      description: "A: the disable, from the callback asking for it until GuestUninit; B: another vCPU's write exit on the page, from the exit until its handler returned. A during B: a peer's exit waited across the unload and is answered by an engine whose hooks are gone",
      learn: learnConfig,
      a: {
        begins: (event) => (event.kind === 'note' && event.what === 'unexpected-value' ? { key: CONFIG, vcpu: Number(event.detail.vcpu) } : null),
        ends: (event) => event.kind === 'note' && event.what === 'uninit',
      },
      b: configWriteExit,
    },
  ],
  windows: [
    {
      name: 'unloaded-mid-run',
      description: 'the engine unloaded while the writers were still writing',
      reached: (world) => {
        const uninit = notesOf(world.events, 'uninit')[0];
        return uninit !== undefined && world.events.some(({ event }, k) => k > uninit.index && event.kind === 'stop' && event.retired > 0);
      },
    },
  ],
});
