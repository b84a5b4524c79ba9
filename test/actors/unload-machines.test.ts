/**
 * Goal: the protocols added for unloading — the handler lock, the thread-safeness check and the
 * uninit flow with its retries — decide what they should, in the order HVMI does it. Method: drive
 * each xstate machine with events and recorded effects (no session), and walk their graphs with
 * xstate/graph, including the retry and failure paths.
 */
import test from 'ava';
import { assign, createActor } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import { dispatchMachine } from '../../actors/dispatch.machine.ts';
import { threadSafenessMachine } from '../../actors/thread-safeness.machine.ts';
import { uninitMachine, type UninitEvent, type UninitInput } from '../../actors/uninit.machine.ts';
import { IntStatus } from '../../src/intro/status.ts';
import type { ThreadScan } from '../../src/intro/thread-safeness.ts';

const byValue = { serializeState: (state: { value: unknown }) => JSON.stringify(state.value) };

/** An uninit actor whose check says "safe" from attempt `safeFrom` on, recording every effect. */
function uninit(input: Partial<UninitInput> = {}, safeFrom = 1) {
  const effects: string[] = [];
  const record = (name: string) => () => void effects.push(name);
  const machine = uninitMachine.provide({
    actions: {
      pause: record('pause'), resume: record('resume'), prepare: record('prepare'), uninit: record('uninit'), scheduleRetry: record('scheduleRetry'),
      check: assign(({ context }) => {
        effects.push('check');
        return { safe: context.tries >= safeFrom };
      }),
    },
  });
  const actor = createActor(machine, { input: { maxTries: 3, checkSafeness: true, deferToReturn: true, ...input } }).start();
  return { actor, effects, machine };
}

test('uninit: safe at once — pause twice, prepare, check, tear down, resume twice', (t) => {
  const { actor, effects } = uninit();
  actor.send({ type: 'DISABLE' });
  t.is(actor.getSnapshot().value, 'unloaded');
  t.deepEqual(effects, ['pause', 'pause', 'prepare', 'check', 'uninit', 'resume', 'resume']);
});

test('uninit: unsafe, then a retry that is safe — PrepareUninit runs once', (t) => {
  const { actor, effects } = uninit({}, 2);
  actor.send({ type: 'DISABLE' });
  t.is(actor.getSnapshot().value, 'waiting');
  t.deepEqual(effects, ['pause', 'pause', 'prepare', 'check', 'resume', 'resume', 'scheduleRetry']);
  effects.length = 0;
  actor.send({ type: 'RETRY' });
  t.is(actor.getSnapshot().value, 'unloaded');
  t.deepEqual(effects, ['pause', 'pause', 'check', 'uninit', 'resume', 'resume'], 'no second prepare');
  t.is(actor.getSnapshot().context.tries, 2);
});

test('uninit: the tries run out — failed, with the vCPUs resumed and no teardown', (t) => {
  const { actor, effects } = uninit({ maxTries: 2 }, 99);
  actor.send({ type: 'DISABLE' });
  actor.send({ type: 'RETRY' });
  t.is(actor.getSnapshot().value, 'failed');
  t.false(effects.includes('uninit'));
  t.is(effects.filter((e) => e === 'pause').length, effects.filter((e) => e === 'resume').length, 'every pause resumed');
  actor.send({ type: 'DISABLE' });
  t.is(actor.getSnapshot().value, 'failed', 'final');
});

test('uninit: a final DISABLE gives up after one unsafe check; one that ignores safeness tears down without a check', (t) => {
  const final = uninit({}, 99);
  final.actor.send({ type: 'DISABLE', final: true });
  t.is(final.actor.getSnapshot().value, 'failed');
  const ignoring = uninit({}, 99);
  ignoring.actor.send({ type: 'DISABLE', final: true, ignoreSafeness: true });
  t.is(ignoring.actor.getSnapshot().value, 'unloaded');
  t.false(ignoring.effects.includes('check'));
});

test('uninit: without the thread-safeness check (the fix off) it tears down at once', (t) => {
  const { actor, effects } = uninit({ checkSafeness: false }, 99);
  actor.send({ type: 'DISABLE' });
  t.is(actor.getSnapshot().value, 'unloaded');
  t.deepEqual(effects, ['pause', 'pause', 'prepare', 'uninit', 'resume', 'resume']);
});

test('uninit: a disable asked for inside a callback waits for the handler to return — unless the fix is off', (t) => {
  const deferred = uninit();
  deferred.actor.send({ type: 'REQUEST_ON_RETURN' });
  t.is(deferred.actor.getSnapshot().value, 'active');
  t.deepEqual(deferred.effects, [], 'nothing happens inside the callback');
  deferred.actor.send({ type: 'HANDLER_RETURNED' });
  t.is(deferred.actor.getSnapshot().value, 'unloaded');
  const returnedAgain = uninit();
  returnedAgain.actor.send({ type: 'HANDLER_RETURNED' });
  t.is(returnedAgain.actor.getSnapshot().value, 'active', 'no flag, no disable');
  const naive = uninit({ deferToReturn: false });
  naive.actor.send({ type: 'REQUEST_ON_RETURN' });
  t.is(naive.actor.getSnapshot().value, 'unloaded', 'torn down inside the callback');
});

test('uninit graph: every stable state is reachable, and the shortest ways to each are the expected ones', (t) => {
  const { machine } = uninit({ maxTries: 2 }, 2);
  const events: UninitEvent[] = [{ type: 'DISABLE' }, { type: 'RETRY' }, { type: 'REQUEST_ON_RETURN' }, { type: 'HANDLER_RETURNED' }, { type: 'DISABLE', final: true }];
  const options = { input: { maxTries: 2, checkSafeness: true, deferToReturn: true }, events, ...byValue };
  const states = new Set(getSimplePaths(machine, options).map((p) => String(p.state.value)));
  t.deepEqual([...states].sort(), ['active', 'failed', 'unloaded', 'waiting']);
  const shortest = getShortestPaths(machine, options);
  const route = (state: string): string[] => shortest.find((p) => p.state.value === state)!.steps.slice(1).map((s) => JSON.stringify(s.event));
  t.deepEqual(route('waiting'), ['{"type":"DISABLE"}']);
  t.deepEqual(route('unloaded').slice(0, 1), ['{"type":"DISABLE"}']);
  t.is(route('unloaded').length, 2, 'one unsafe attempt, then a retry (or a new DISABLE) that is safe');
  t.deepEqual(route('failed'), ['{"type":"DISABLE","final":true}']);
});

const scan = (unsafe: boolean): ThreadScan => ({
  status: unsafe ? IntStatus.cannotUnload : IntStatus.success,
  unsafe: unsafe ? { thread: { index: 1, record: 0x1000n }, vcpu: null, where: 'stack', slot: 0x2000n, pointer: 0x3000n, region: { kind: 'detour', owner: 'detour handler X', start: 0x3000n, size: 11 } } : null,
  threads: 2,
  words: 10,
});

test('thread safeness: scans only with the vCPUs paused; safe or unsafe by what the scan found', (t) => {
  let unsafe = false;
  const actor = createActor(threadSafenessMachine.provide({ actions: { scan: assign(() => ({ result: scan(unsafe) })) } })).start();
  actor.send({ type: 'CHECK', paused: true });
  t.is(actor.getSnapshot().value, 'safe');
  unsafe = true;
  actor.send({ type: 'CHECK', paused: true });
  t.is(actor.getSnapshot().value, 'unsafe');
  t.is(actor.getSnapshot().context.result?.unsafe?.region.owner, 'detour handler X');
  actor.send({ type: 'CHECK', paused: false });
  t.is(actor.getSnapshot().value, 'refused');
  t.is(actor.getSnapshot().context.refusals, 1);
  t.is(actor.getSnapshot().context.scans, 2, 'a refused check does not scan');
  const states = new Set(getSimplePaths(threadSafenessMachine.provide({ actions: { scan: assign(() => ({ result: scan(true) })) } }), { events: [{ type: 'CHECK', paused: true }, { type: 'CHECK', paused: false }], ...byValue }).map((p) => String(p.state.value)));
  t.deepEqual([...states].sort(), ['idle', 'refused', 'unsafe']);
});

test('the handler lock: one holder at a time; a second acquire is refused and counted', (t) => {
  const actor = createActor(dispatchMachine).start();
  actor.send({ type: 'ACQUIRE', holder: { kind: 'exit', vcpu: 2 } });
  t.is(actor.getSnapshot().value, 'held');
  actor.send({ type: 'ACQUIRE', holder: { kind: 'timer' } });
  t.deepEqual(actor.getSnapshot().context.holder, { kind: 'exit', vcpu: 2 });
  t.is(actor.getSnapshot().context.refused, 1);
  actor.send({ type: 'RELEASE' });
  actor.send({ type: 'ACQUIRE', holder: { kind: 'daemon' } });
  actor.send({ type: 'RELEASE' });
  t.like(actor.getSnapshot().context, { holder: null, exits: 1, ticks: 0, tasks: 1 });
  const states = new Set(getSimplePaths(dispatchMachine, { events: [{ type: 'ACQUIRE', holder: { kind: 'timer' } }, { type: 'RELEASE' }], ...byValue }).map((p) => String(p.state.value)));
  t.deepEqual([...states].sort(), ['free', 'held']);
});
