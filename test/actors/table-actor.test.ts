/**
 * Goal: a table actor is the same protocol as xstate's actor for every machine the session runs —
 * same state, context and status after each event, same effects in the same order seeing the same
 * context and the same (not yet updated) snapshot, events sent from inside an action queued the
 * same way — and a machine outside what a table covers falls back to xstate's actor.
 * Method: each machine, with effects and guards provided as the session provides them, is driven
 * by 400 seeded random events through both actors side by side; and a scenario's runs, whole, on both.
 */
import test from 'ava';
import { assign, createActor, setup, type AnyStateMachine, type EventFromLogic, type InspectionEvent } from 'xstate';
import { dispatchMachine } from '../../actors/dispatch.machine.ts';
import { hookCommitMachine } from '../../actors/hook-commit.machine.ts';
import { pauseMachine } from '../../actors/pause.machine.ts';
import { sessionMachine } from '../../actors/session.machine.ts';
import { machineTable, startProtocolActor, TableActor, type ProtocolActor } from '../../actors/table-actor.ts';
import { threadSafenessMachine } from '../../actors/thread-safeness.machine.ts';
import { uninitMachine } from '../../actors/uninit.machine.ts';
import { vcpuMachine } from '../../actors/vcpu.machine.ts';
import { Prng } from '../../src/explore/prng.ts';
import { ScenarioRig, type RunReport } from '../../src/index.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';

/** What both runs share: the effect log and the outside world guards and scans read. */
interface World {
  readonly log: string[];
  step: number;
  self: ProtocolActor<AnyStateMachine> | null;
}

interface Case {
  readonly name: string;
  readonly input?: unknown;
  /** The machine with effects that log what they see (a fresh world per run). */
  machine(world: World): AnyStateMachine;
  event(prng: Prng): { type: string; [key: string]: unknown };
}

const seen = (world: World, what: string, context: unknown): void => {
  world.log.push(`${world.step} ${what} snapshot=${JSON.stringify(world.self?.getSnapshot().value)}/${JSON.stringify(world.self?.getSnapshot().context)} context=${JSON.stringify(context)}`);
};
const pick = <T>(prng: Prng, items: readonly T[]): T => items[prng.below(items.length)]!;

const CASES: readonly Case[] = [
  {
    name: 'vcpu',
    input: { id: 3 },
    machine: () => vcpuMachine,
    event: (prng) => {
      const type = pick(prng, ['EXITED', 'REPLIED', 'PAUSED', 'RESUMED', 'HALTED', 'WOKEN', 'EXITED', 'REPLIED', 'SHUT_DOWN', 'FAILED'] as const);
      return type === 'SHUT_DOWN' || type === 'FAILED' ? { type, reason: `r${prng.below(5)}` } : { type };
    },
  },
  {
    name: 'dispatch',
    machine: () => dispatchMachine,
    event: (prng) => (prng.below(2) === 0 ? { type: 'RELEASE' } : { type: 'ACQUIRE', holder: pick(prng, [{ kind: 'exit', vcpu: 1 }, { kind: 'timer' }, { kind: 'daemon' }]) }),
  },
  {
    name: 'session',
    input: { vcpus: 2 },
    machine: () => sessionMachine,
    event: (prng) => {
      const type = pick(prng, ['BOOTED', 'FAIL', 'CLOSE', 'CLOSED', 'FAIL'] as const);
      return type === 'FAIL' ? { type, reason: `r${prng.below(3)}` } : { type };
    },
  },
  ...[true, false].map(
    (counted): Case => ({
      name: `pause (${counted ? 'counted' : 'boolean'})`,
      input: { counted },
      machine: (world) =>
        pauseMachine.provide({
          actions: {
            // The inline session reports every vCPU stopped from inside the pause request: a send to itself.
            requestPause: ({ context }) => {
              seen(world, 'requestPause', context);
              if (world.step % 3 === 0) world.self!.send({ type: 'ALL_STOPPED' });
            },
            resumeAll: ({ context }) => seen(world, 'resumeAll', context),
          },
        }),
      event: (prng) => ({ type: pick(prng, ['PAUSE', 'RESUME', 'ALL_STOPPED', 'RESUME'] as const) }),
    }),
  ),
  {
    name: 'hook commit',
    machine: (world) =>
      hookCommitMachine.provide({
        actions: {
          deleteReadHooks: ({ context }) => seen(world, 'deleteRead', context),
          deleteWriteHooks: ({ context }) => seen(world, 'deleteWrite', context),
          deleteExecuteHooks: ({ context }) => seen(world, 'deleteExecute', context),
        },
        guards: { removalsPending: () => world.step % 4 === 1 },
      }),
    event: (prng) => ({ type: pick(prng, ['HOOK_REMOVED', 'COMMIT', 'COMMIT'] as const) }),
  },
  {
    name: 'thread safeness',
    machine: (world) =>
      threadSafenessMachine.provide({
        actions: {
          scan: assign(({ context }) => {
            seen(world, 'scan', context);
            return { result: world.step % 3 === 0 ? { unsafe: null, scanned: world.step } : { unsafe: { vcpu: 1 }, scanned: world.step } } as never;
          }),
        },
      }),
    event: (prng) => ({ type: 'CHECK', paused: prng.below(3) !== 0 }),
  },
  ...[
    { maxTries: 3, checkSafeness: true, deferToReturn: true },
    { maxTries: 2, checkSafeness: false, deferToReturn: false },
  ].map(
    (input): Case => ({
      name: `uninit (${JSON.stringify(input)})`,
      input,
      machine: (world) =>
        uninitMachine.provide({
          actions: {
            pause: ({ context }) => seen(world, 'pause', context),
            resume: ({ context }) => seen(world, 'resume', context),
            prepare: ({ context }) => seen(world, 'prepare', context),
            check: assign(({ context }) => {
              seen(world, 'check', context);
              return { safe: world.step % 5 === 4 };
            }),
            uninit: ({ context }) => seen(world, 'uninit', context),
            scheduleRetry: ({ context }) => seen(world, 'scheduleRetry', context),
          },
        }),
      event: (prng) => {
        const type = pick(prng, ['DISABLE', 'RETRY', 'REQUEST_ON_RETURN', 'HANDLER_RETURNED', 'RETRY'] as const);
        return type === 'DISABLE' ? { type, final: prng.below(4) === 0, ignoreSafeness: prng.below(4) === 0 } : { type };
      },
    }),
  ),
  {
    // None of the session's machines handles one event both in a state and at the root, or targets its own state.
    name: 'a synthetic machine: an event handled by a state and by the root, self-targets, entry, exit, always',
    machine: (world) =>
      setup({
        types: { context: {} as { n: number }, events: {} as { type: 'GO' } | { type: 'STAY' } },
        actions: { bump: assign(({ context }) => ({ n: context.n + 1 })), note: ({ context }) => seen(world, 'note', context) },
        guards: { even: ({ context }) => context.n % 2 === 0 },
      }).createMachine({
        context: { n: 0 },
        initial: 'a',
        on: { GO: { target: '.b', actions: ['bump', 'note'] }, STAY: { actions: 'bump' } },
        states: {
          a: { entry: 'note', exit: ['bump', 'note'], on: { GO: { guard: 'even', target: 'c', actions: 'bump' } } },
          b: { exit: 'note', on: { GO: 'a' } },
          c: { entry: ['note', 'bump'], always: { guard: 'even', target: 'a' }, on: { STAY: { target: 'c', actions: 'note' } } },
        },
      }),
    event: (prng) => ({ type: pick(prng, ['GO', 'STAY'] as const) }),
  },
  {
    // The table copies contexts with a literal made for their keys: an assign that adds a key must
    // not lose it at the next copy, and the keys keep xstate's order (the lines compare JSON).
    name: 'a synthetic machine: assigns that add keys, object-form assigns, per-property functions',
    machine: () =>
      setup({
        types: { context: {} as Record<string, number>, events: {} as { type: 'ADD'; key: string } | { type: 'SET' } | { type: 'BUMP' } },
        actions: {
          add: assign(({ context, event }) => (event.type === 'ADD' ? { [event.key]: (context[event.key] ?? 0) + 1 } : {})),
          set: assign({ fixed: 7, counted: ({ context }) => (context.counted ?? 0) + 1 }),
          bump: assign(({ context }) => ({ n: context.n + 1 })),
        },
      }).createMachine({
        context: { n: 0 },
        initial: 'idle',
        states: { idle: { on: { ADD: { actions: 'add' }, SET: { actions: 'set' }, BUMP: { actions: 'bump' } } } },
      }),
    event: (prng) => {
      const type = pick(prng, ['ADD', 'SET', 'BUMP', 'BUMP'] as const);
      return type === 'ADD' ? { type, key: pick(prng, ['a', 'b', 'n', '0', 'z']) } : { type };
    },
  },
];

/** Drives one actor kind through the case's events; returns what was seen after each event. */
function drive(c: Case, seed: number, kind: 'xstate' | 'table'): string[] {
  const world: World = { log: [], step: 0, self: null };
  const machine = c.machine(world);
  const table = machineTable(machine);
  if (table.unsupported !== null) throw new Error(`${c.name}: ${table.unsupported}`);
  const actor: ProtocolActor<AnyStateMachine> =
    kind === 'table' ? new TableActor(table, c.name, c.input) : (createActor(machine, { input: c.input }).start() as unknown as ProtocolActor<AnyStateMachine>);
  world.self = actor;
  const prng = new Prng(seed);
  const seenAfter: string[] = [];
  for (let step = 0; step < 400; step++) {
    world.step = step;
    const event = c.event(prng);
    actor.send(event as EventFromLogic<AnyStateMachine>);
    const snapshot = actor.getSnapshot();
    seenAfter.push(`${step} ${JSON.stringify(event)} → ${JSON.stringify(snapshot.value)} ${snapshot.status} ${JSON.stringify(snapshot.context)}`);
  }
  return [...world.log, ...seenAfter];
}

for (const c of CASES) {
  test(`${c.name}: the table actor and xstate's agree on 3 × 400 random events`, (t) => {
    for (const seed of [1, 2, 3]) {
      const xstate = drive(c, seed, 'xstate');
      const table = drive(c, seed, 'table');
      const differs = xstate.findIndex((line, i) => line !== table[i]);
      t.is(differs, -1, `seed ${seed}: first difference\n  xstate: ${xstate[differs]}\n  table:  ${table[differs]}`);
      t.is(table.length, xstate.length);
    }
  });
}

test('a machine a table does not cover runs on xstate, and one inspected from creation does too', (t) => {
  const nested = setup({}).createMachine({ initial: 'a', states: { a: { initial: 'b', states: { b: {} } } } });
  const delayed = setup({}).createMachine({ initial: 'a', states: { a: { after: { 10: 'b' } }, b: {} } });
  t.regex(String(machineTable(nested).unsupported), /state a is compound/);
  t.regex(String(machineTable(delayed).unsupported), /invokes, delays or keeps history/);
  t.false(startProtocolActor(nested, { id: 'n' }) instanceof TableActor);
  t.true(startProtocolActor(vcpuMachine, { id: 'v', input: { id: 0 } }) instanceof TableActor);
  const inspected = startProtocolActor(vcpuMachine, { id: 'v', input: { id: 0 }, inspect: () => undefined });
  t.false(inspected instanceof TableActor);
});

test('a table actor reports its events and snapshots to an inspector subscribed later, until unsubscribed', (t) => {
  const actor = startProtocolActor(vcpuMachine, { id: 'vcpu0', input: { id: 0 } });
  const seenEvents: string[] = [];
  const subscription = actor.system.inspect((event: InspectionEvent) => {
    if (event.type === '@xstate.snapshot') seenEvents.push(`${event.event.type} → ${String((event.snapshot as unknown as { value: unknown }).value)}`);
    if (event.type === '@xstate.event') seenEvents.push(event.event.type);
  });
  actor.send({ type: 'EXITED' });
  actor.send({ type: 'REPLIED' });
  subscription.unsubscribe();
  actor.send({ type: 'EXITED' });
  t.deepEqual(seenEvents, ['EXITED', 'EXITED → exited', 'REPLIED', 'REPLIED → running']);
  t.is(actor.getSnapshot().value, 'exited');
});

test('an action that throws makes send throw and leaves the actor in error', (t) => {
  const failing = pauseMachine.provide({
    actions: {
      requestPause: () => {
        throw new Error('the vCPUs would not stop');
      },
    },
  });
  const actor = startProtocolActor(failing, { id: 'pause', input: { counted: true } });
  t.throws(() => actor.send({ type: 'PAUSE' }), { message: 'the vCPUs would not stop' });
  t.is(actor.getSnapshot().status, 'error');
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().context.depth, 0, 'the failed step changes nothing (as in xstate), and later events are ignored');
});

test('a scenario run gives the same trace hash and violations whether tables or xstate run the protocols', async (t) => {
  const reports = await Promise.all(
    (['table', 'xstate'] as const).map(async (interpreter) => {
      const rig = ScenarioRig.open(memtableStaleIcache, 'inline', { interpreter });
      try {
        return [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => rig.run({ seed, strategy: 'random', depth: 2, fixes: rig.fixes.without(['icacheFlushOnPatch', 'patchedGuard']) }));
      } finally {
        await rig.close();
      }
    }),
  );
  const [table, xstate] = reports as [RunReport[], RunReport[]];
  t.deepEqual(table.map((r) => r.hash), xstate.map((r) => r.hash));
  t.deepEqual(table.map((r) => r.violations.map((v) => v.oracle)), xstate.map((r) => r.violations.map((v) => v.oracle)));
  t.true(table.some((r) => r.violations.length > 0), 'one of the runs finds the race (the comparison covers a failing run)');
});
