import {
  defineScenario, eventsBetween, exitByTicket, guestAlive, IntroAction, IntStatus, notesOf, NtGuest, pendingExitsAt,
  type GpaHook, type ScenarioEngine,
} from '../src/index.ts';
import { CONFIG, configGpa, configWriteExit, handlingVcpu, learnConfig, SLOT_BYTES, writersOnly, writesLanded } from './config-writers.ts';

/**
 * A stale EPT violation after a hook is replaced. Writer threads on every vCPU store into their
 * own slot of a configuration page that the engine write-protects; the engine renews its hook
 * every few writes (removes it and places a new one on the same range, as it does when a policy
 * is reloaded). A write that faulted under the old hook may still wait for the lock when the new
 * hook is committed — and the naive engine hands that old exit to the new hook, whose callback
 * then judges a write made before it existed. The mitigation (`staleExitRetry`, this scenario's
 * own fix) is an EPT-pipeline stage: an exit older than a hook it would reach is retried, so the
 * vCPU writes again and the new hook sees a fresh exit. Exit tickets make "older" exact.
 */

/** Stores each writer makes. */
const WRITES = 24;
/** The engine renews its hook after this many writes reached it. */
const RENEW_EVERY = 5;

/**
 * The engine's part: a write hook on the slots that counts the writes reaching it and renews
 * itself every RENEW_EVERY of them; with the fix on, a stage retries exits older than the hook
 * they would reach.
 */
function protectConfig(engine: ScenarioEngine<'staleExitRetry'>, guest: NtGuest): void {
  const gpa = configGpa(guest);
  const length = guest.vcpus * SLOT_BYTES;
  const policy = engine.state({ generation: 0, seen: 0 });
  const place = (): GpaHook =>
    engine.hook({
      gpa,
      length,
      type: 'write',
      owner: `config policy v${++policy.generation}`,
      callback: (access, hook) => {
        engine.note('config-write', { vcpu: access.vcpuId, exit: access.exitTicket, hook: hook.id, placed: hook.placedTicket });
        if (++policy.seen % RENEW_EVERY !== 0) return 'allowed';
        engine.removeHook(hook);
        const renewed = place();
        engine.note('config-renew', { old: hook.id, hook: renewed.id, placed: renewed.placedTicket });
        // The walk goes on over the page's hooks, the new one included: this access was judged.
        return { status: IntStatus.skipOtherCallbacks, action: IntroAction.allowed };
      },
    });
  place();
  if (engine.fixes.staleExitRetry) {
    engine.eptStage('stale exit', (exit) => {
      const newer = exit.hooksAt(exit.gpa, 1, 'write').some((hook) => hook.placedTicket >= exit.exitTicket);
      return newer ? 'retry' : null;
    });
  }
}

export const staleViolation = defineScenario({
  name: 'stale-violation',
  title: 'Stale EPT violation dispatched to the hook that replaced its own',
  description:
    'Writers on every vCPU store into a write-protected configuration page whose hook the engine renews every few ' +
    'writes. An exit raised under the old hook can wait for the lock until the new one is committed; the naive ' +
    'engine gives it to the new hook. With staleExitRetry, an exit older than the hook it would reach is retried.',
  ...writersOnly(WRITES),
  fixes: [{ name: 'staleExitRetry', description: 'retry an EPT exit raised before the hook it would reach was placed (off: the new hook judges an old write)' }],
  bugs: [{ name: 'stale exit reaches the new hook', fixesOff: ['staleExitRetry'], caughtBy: 'callbacks-see-fresh-exits' }],
  engine: { start: protectConfig },
  oracles: [
    {
      name: 'callbacks-see-fresh-exits',
      phase: 'continuous',
      description: 'no hook callback ran for an exit raised before that hook was placed',
      check(world) {
        for (const write of notesOf(world.events, 'config-write')) {
          const { exit, placed, hook, vcpu } = write.event.detail as { exit: number; placed: number; hook: number; vcpu: number };
          if (exit > placed) continue;
          const raised = exitByTicket(world.events, exit);
          const where = raised === null ? '' : ` at RIP 0x${raised.event.rip.toString(16)} (clock ${raised.clock})`;
          return `hook #${hook}, placed after exit #${placed}, was given exit #${exit} of vCPU ${vcpu}${where}: a write that faulted under the hook it replaced`;
        }
        return null;
      },
    },
    writesLanded(WRITES),
    guestAlive(),
  ],
  orderings: [
    {
      name: 'renewal-vs-pending-write',
      description: "A: the engine renews its hook (in one vCPU's handler); B: another vCPU's write exit on the page, from the exit until its handler returned. A during B is the window: an exit raised under the old hook is handled under the new one",
      learn: learnConfig,
      a: { begins: (event, memory) => (event.kind === 'note' && event.what === 'config-renew' ? { key: CONFIG, vcpu: handlingVcpu(memory) } : null) },
      b: configWriteExit,
    },
  ],
  windows: [
    {
      name: 'exit-pending-across-renewal',
      description: 'a write exit on the configuration page was waiting for the lock when the hook was renewed',
      reached(world) {
        const renewals = notesOf(world.events, 'config-renew');
        return renewals.some((renewal) => [...pendingExitsAt(world.events, renewal.index)].some(([, exit]) => exit.event.reason === 'eptViolation' && exit.event.exit.ticket <= Number(renewal.event.detail.placed)));
      },
    },
    {
      name: 'stale-exit-retried',
      description: 'the stale-exit stage retried an exit, and the vCPU wrote again',
      reached: (world) => eventsBetween(world.events, -1, world.events.length, (e) => e.kind === 'note' && e.what === 'ept-stage').length > 0,
    },
  ],
});

