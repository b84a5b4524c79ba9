/**
 * Goal: each actor's protocol, on its own. Method: drive the xstate machines with events (no
 * hosts involved) and check states, context and which effects ran; then walk every simple path
 * of each machine with xstate/graph to be sure no state is unreachable.
 */
import test from 'ava';
import { createActor } from 'xstate';
import { getSimplePaths } from 'xstate/graph';

// Context counters would make every visit a new state: explore by state value only.
const byValue = { serializeState: (state: { value: unknown }) => JSON.stringify(state.value) };
import { pauseMachine, type PauseContext } from '../../actors/pause.machine.ts';
import { sessionMachine } from '../../actors/session.machine.ts';
import { ACCESSIBLE_STATES, vcpuMachine } from '../../actors/vcpu.machine.ts';

test('vcpu: exit → reply returns to running', (t) => {
  const actor = createActor(vcpuMachine, { input: { id: 3 } }).start();
  t.is(actor.getSnapshot().value, 'running');
  actor.send({ type: 'EXITED' });
  t.is(actor.getSnapshot().value, 'exited');
  actor.send({ type: 'PAUSED' }); // an exited vCPU is already stopped: pausing changes nothing
  t.is(actor.getSnapshot().value, 'exited');
  actor.send({ type: 'REPLIED' });
  t.is(actor.getSnapshot().value, 'running');
});

test('vcpu: pause/resume, halt/wake, and the final states', (t) => {
  const actor = createActor(vcpuMachine, { input: { id: 0 } }).start();
  actor.send({ type: 'PAUSED' });
  t.is(actor.getSnapshot().value, 'paused');
  actor.send({ type: 'EXITED' }); // not possible while paused
  t.is(actor.getSnapshot().value, 'paused');
  actor.send({ type: 'RESUMED' });
  actor.send({ type: 'HALTED' });
  t.is(actor.getSnapshot().value, 'halted');
  actor.send({ type: 'PAUSED' });
  t.is(actor.getSnapshot().value, 'paused');
  actor.send({ type: 'FAILED', reason: 'worker died' });
  t.is(actor.getSnapshot().value, 'failed');
  t.is(actor.getSnapshot().status, 'done');
  t.is(actor.getSnapshot().context.reason, 'worker died');
});

test('vcpu: registers are accessible exactly when exited, paused or finished', (t) => {
  t.deepEqual([...ACCESSIBLE_STATES].sort(), ['exited', 'failed', 'paused', 'stopped']);
  const states = getSimplePaths(vcpuMachine, { input: { id: 0 }, ...byValue }).map((p) => String(p.state.value));
  t.deepEqual([...new Set(states)].sort(), ['exited', 'failed', 'halted', 'paused', 'running', 'stopped']);
});

function pauseActor(counted = true) {
  const calls: string[] = [];
  const actor = createActor(
    pauseMachine.provide({
      actions: {
        requestPause: () => calls.push('requestPause'),
        resumeAll: () => calls.push('resumeAll'),
      },
    }),
    { input: { counted } },
  ).start();
  return { actor, calls };
}

test('pause: a pause stops the vCPUs once; nested pauses only count', (t) => {
  const { actor, calls } = pauseActor();
  actor.send({ type: 'PAUSE' });
  t.is(actor.getSnapshot().value, 'pausing');
  actor.send({ type: 'PAUSE' }); // nested while still pausing
  actor.send({ type: 'ALL_STOPPED' });
  t.is(actor.getSnapshot().value, 'paused');
  actor.send({ type: 'PAUSE' });
  t.is(actor.getSnapshot().context.depth, 3);
  t.deepEqual(calls, ['requestPause']);
});

test('pause: only the last resume lets the vCPUs run (and commits EPT)', (t) => {
  const { actor, calls } = pauseActor();
  actor.send({ type: 'PAUSE' });
  actor.send({ type: 'ALL_STOPPED' });
  actor.send({ type: 'PAUSE' });
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().value, 'paused');
  t.deepEqual(calls, ['requestPause']);
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().value, 'running');
  t.is(actor.getSnapshot().context.depth, 0);
  t.is(actor.getSnapshot().context.cycles, 1);
  t.deepEqual(calls, ['requestPause', 'resumeAll']);
});

test('pause, naive (countedPause off): the first inner resume releases the outer pause', (t) => {
  const { actor, calls } = pauseActor(false);
  actor.send({ type: 'PAUSE' });
  actor.send({ type: 'ALL_STOPPED' });
  actor.send({ type: 'PAUSE' });
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().value, 'running', 'a boolean pause ends at the inner resume');
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().context.ignored, 1, 'the outer resume finds nothing paused and passes');
  t.is(actor.getSnapshot().context.underflows, 0);
  t.deepEqual(calls, ['requestPause', 'resumeAll']);
});

test('pause: resume without a pause is refused and recorded (underflow)', (t) => {
  const { actor, calls } = pauseActor();
  actor.send({ type: 'RESUME' });
  t.is(actor.getSnapshot().value, 'running');
  t.is(actor.getSnapshot().context.underflows, 1);
  t.is(actor.getSnapshot().context.depth, 0);
  t.deepEqual(calls, []);
});

test('session: boot → running → shuttingDown → closed, and failure from any live state', (t) => {
  const actor = createActor(sessionMachine, { input: { vcpus: 2 } }).start();
  t.is(actor.getSnapshot().value, 'booting');
  actor.send({ type: 'BOOTED' });
  actor.send({ type: 'FAIL', reason: 'vCPU 1 died' });
  actor.send({ type: 'FAIL', reason: 'second reason is ignored' });
  t.is(actor.getSnapshot().value, 'failed');
  t.is(actor.getSnapshot().context.failure, 'vCPU 1 died');
  actor.send({ type: 'CLOSE' });
  t.is(actor.getSnapshot().value, 'shuttingDown');
  actor.send({ type: 'CLOSED' });
  t.is(actor.getSnapshot().value, 'closed');
  t.is(actor.getSnapshot().status, 'done');
});

test('every state of the pause and session machines is reachable', (t) => {
  const pauseStates = new Set(getSimplePaths(pauseMachine, { input: { counted: true }, ...byValue }).map((p) => String(p.state.value)));
  for (const counted of [true, false]) {
    const events = [{ type: 'PAUSE' }, { type: 'ALL_STOPPED' }, { type: 'RESUME' }] as const;
    // A state is its value, its depth (capped: deeper nesting adds nothing) and whether a resume was refused or ignored.
    const serializeState = (state: { value: unknown; context: PauseContext }) =>
      JSON.stringify([state.value, Math.min(state.context.depth, 2), state.context.underflows > 0, state.context.ignored > 0]);
    const ends = getSimplePaths(pauseMachine, { input: { counted }, events: [...events], serializeState }).map((p) => p.state.context);
    t.true(ends.some((c) => (counted ? c.underflows : c.ignored) > 0), `counted=${counted}: a resume with nothing paused is ${counted ? 'refused' : 'ignored'}`);
    t.true(ends.every((c) => (counted ? c.ignored : c.underflows) === 0));
  }
  t.deepEqual([...pauseStates].sort(), ['paused', 'pausing', 'running']);
  const sessionStates = new Set(getSimplePaths(sessionMachine, { input: { vcpus: 1 }, ...byValue }).map((p) => String(p.state.value)));
  t.deepEqual([...sessionStates].sort(), ['booting', 'closed', 'failed', 'running', 'shuttingDown']);
});
