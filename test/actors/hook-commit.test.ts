/**
 * Goal: the hook-commit actor deletes only when something was removed, and always read, then
 * write, then execute. Method: the machine with recording actions.
 */
import test from 'ava';
import { createActor } from 'xstate';
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
