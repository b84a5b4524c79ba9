/**
 * Goal: the hook-commit actor deletes only when something was removed, and always read, then
 * write, then execute. Method: the machine with recording actions, and its graph walked with
 * xstate/graph for both outcomes of a commit.
 */
import test from 'ava';
import { createActor } from 'xstate';
import { getShortestPaths, getSimplePaths } from 'xstate/graph';
import { hookCommitMachine } from '../../actors/hook-commit.machine.ts';

test('COMMIT deletes read, write, execute in that order, only after a removal', (t) => {
  const log: string[] = [];
  const actor = createActor(
    hookCommitMachine.provide({
      actions: {
        deleteReadHooks: () => void log.push('read'),
        deleteWriteHooks: () => void log.push('write'),
        deleteExecuteHooks: () => void log.push('execute'),
      },
    }),
  ).start();
  t.teardown(() => actor.stop());
  actor.send({ type: 'COMMIT' });
  t.deepEqual(log, [], 'clean: nothing to delete');
  actor.send({ type: 'HOOK_REMOVED' });
  actor.send({ type: 'HOOK_REMOVED' });
  t.is(actor.getSnapshot().value, 'dirty');
  actor.send({ type: 'COMMIT' });
  t.deepEqual(log, ['read', 'write', 'execute']);
  t.is(actor.getSnapshot().value, 'clean');
  t.is(actor.getSnapshot().context.commits, 1);
  actor.send({ type: 'COMMIT' });
  t.is(log.length, 3);
});

test('a commit that leaves removals pending (a deletion failed) stays dirty, as HVMI keeps Dirty set', (t) => {
  let pending = true;
  const actor = createActor(hookCommitMachine.provide({ guards: { removalsPending: () => pending } })).start();
  t.teardown(() => actor.stop());
  actor.send({ type: 'HOOK_REMOVED' });
  actor.send({ type: 'COMMIT' });
  t.is(actor.getSnapshot().value, 'dirty');
  pending = false;
  actor.send({ type: 'COMMIT' });
  t.is(actor.getSnapshot().value, 'clean');
  t.is(actor.getSnapshot().context.commits, 2);
});

test('hook-commit graph: both outcomes of a commit are reachable, and dirty is left only through a commit', (t) => {
  // A state is its value and whether a commit has deleted anything yet, so "clean again after a commit" is a state of its own.
  const serializeState = (state: { value: unknown; context: { commits: number } }) => JSON.stringify([state.value, state.context.commits > 0]);
  const events = [{ type: 'HOOK_REMOVED' }, { type: 'COMMIT' }] as const;
  for (const pending of [false, true]) {
    const machine = hookCommitMachine.provide({ guards: { removalsPending: () => pending } });
    const paths = getSimplePaths(machine, { events: [...events], serializeState });
    t.deepEqual([...new Set(paths.map((p) => String(p.state.value)))].sort(), ['clean', 'dirty'], '"committing" is transient: the guard decides at once');
    const cleanAgain = getShortestPaths(machine, { events: [...events], serializeState }).find((p) => p.state.value === 'clean' && p.state.context.commits > 0);
    t.is(cleanAgain === undefined, pending, pending ? 'a commit that leaves removals never gets back to clean' : 'removed, committed, clean');
    if (cleanAgain !== undefined) t.deepEqual(cleanAgain.steps.slice(1).map((s) => s.event.type), ['HOOK_REMOVED', 'COMMIT']);
  }
});
