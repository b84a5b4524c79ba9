import {
  defineScenario, guestAlive, hooksRemoved, IntroAction, IntStatus, notesOf, NtGuest,
  type ScenarioEngine,
} from '../src/index.ts';
import { CONFIG, configGpa, configWriteExit, handlingVcpu, learnConfig, SLOT_BYTES, writersOnly, writesLanded } from './config-writers.ts';

/**
 * A hook removed inside its own callback (hvmi-notes §13.5). The engine watches the writers'
 * configuration page with an audit hook that counts every write, and every few writes it arms a
 * one-shot hook on the same range that removes itself on its first hit (REMOVE_HOOK_ON_RET). The
 * walk of the page's hooks goes on from that hook when its callback returns. HVMI only flags a
 * removed hook and deletes it at the commit after the handler; deleting it at once
 * (deferredHookRemoval off) frees the node the walk is standing on — a use after free.
 */

const WRITES = 30;
/** The audit hook arms a one-shot hook after this many writes. */
const ARM_EVERY = 4;

function watchConfig(engine: ScenarioEngine, guest: NtGuest): void {
  const gpa = configGpa(guest);
  const length = guest.vcpus * SLOT_BYTES;
  const audit = engine.state({ writes: 0, armed: false });
  engine.hook({
    gpa, length, type: 'write', owner: 'config audit',
    callback: () => {
      if (++audit.writes % ARM_EVERY === 0 && !audit.armed) {
        audit.armed = true;
        engine.hook({
          gpa, length, type: 'write', owner: 'config one-shot',
          callback: (access) => {
            audit.armed = false;
            engine.note('one-shot', { vcpu: access.vcpuId, exit: access.exitTicket });
            return { status: IntStatus.removeHookOnRet, action: IntroAction.allowed };
          },
        });
      }
      return 'allowed';
    },
  });
}

export const hookRemovedInCallback = defineScenario({
  name: 'hook-removed-in-callback',
  title: 'A hook removed inside its own callback',
  description:
    'A one-shot write hook removes itself from its callback while the engine walks the page\'s hooks. Flagged and ' +
    'deleted at the commit, the walk stays valid; deleted at once, the walk steps on freed memory.',
  ...writersOnly(WRITES),
  bugs: [{ name: 'hook deleted during the walk', fixesOff: ['deferredHookRemoval'], caughtBy: 'engine-runs' }],
  engine: { start: watchConfig },
  oracles: [writesLanded(WRITES), guestAlive(), hooksRemoved()],
  orderings: [
    {
      name: 'one-shot-vs-peer-write',
      description: "A: a one-shot hook, from being armed (in a handler's walk) until it fired and removed itself; B: another vCPU's write exit on the page, from the exit until its handler returned. A during B: a peer's exit was in flight while the one-shot lived — its walk can be the one the hook removes itself from",
      learn: learnConfig,
      a: {
        begins: (event, memory) => (event.kind === 'note' && event.what === 'hook' && event.detail.owner === 'config one-shot' ? { key: CONFIG, vcpu: handlingVcpu(memory) } : null),
        ends: (event) => event.kind === 'note' && event.what === 'one-shot',
      },
      b: configWriteExit,
    },
  ],
  windows: [
    {
      name: 'one-shot-fired',
      description: 'a one-shot hook removed itself from its callback',
      reached: (world) => notesOf(world.events, 'one-shot').length > 0,
    },
  ],
});
