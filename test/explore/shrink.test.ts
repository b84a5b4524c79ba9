import { fc, testProp } from '@fast-check/ava';
import test from 'ava';
import { Prng } from '../../src/explore/prng.ts';
import { ScheduleShape } from '../../src/explore/schedule-shape.ts';
import type { Choice, Enabled } from '../../src/explore/schedule.ts';
import { RandomScheduler } from '../../src/explore/schedulers/random.ts';
import { shrinkSchedule, ShrinkInputError } from '../../src/explore/shrink.ts';
import { runToy, TOY_SLICE, toyAttempt } from './toy-schedule.ts';

const enabled = (over: Partial<Enabled>): Enabled => ({ runnable: [], pendingExits: [], timerDue: false, daemonDue: false, interrupts: [], events: 0, vcpus: 2, preemption: null, ...over });

test('preemptions are the switches away from an actor that could go on, counted by hand', (t) => {
  const shape = new ScheduleShape(TOY_SLICE);
  const point = { label: 'patch-written', handlerVcpu: 1 };
  const steps: [Enabled, Choice, boolean][] = [
    [enabled({ runnable: [0, 1] }), { kind: 'run', vcpu: 0, steps: 5 }, false], // nobody was running
    [enabled({ runnable: [0, 1] }), { kind: 'run', vcpu: 1, steps: TOY_SLICE }, true], // vCPU 0 could go on
    [enabled({ runnable: [0], pendingExits: [1] }), { kind: 'run', vcpu: 0, steps: TOY_SLICE }, true], // vCPU 1's exit could be handled
    [enabled({ runnable: [0], pendingExits: [1] }), { kind: 'handle', vcpu: 1 }, true], // vCPU 0 could go on
    [enabled({ runnable: [0], preemption: point }), { kind: 'run', vcpu: 0, steps: TOY_SLICE }, true], // the handler could go on
    [enabled({ runnable: [0], preemption: point }), { kind: 'run', vcpu: 0, steps: TOY_SLICE }, false], // vCPU 0 goes on
    [enabled({ runnable: [0], preemption: point }), { kind: 'proceed' }, true], // vCPU 0 could go on
    [enabled({ runnable: [1], timerDue: true }), { kind: 'timer' }, false], // the environment, when due
    [enabled({ runnable: [1] }), { kind: 'run', vcpu: 1, steps: 3 }, false], // the handler's vCPU goes on
    [enabled({ runnable: [0] }), { kind: 'run', vcpu: 0, steps: TOY_SLICE }, false], // vCPU 1 cannot go on
  ];
  const preempting = steps.map(([e, choice]) => shape.observe(e, choice).preempts);
  t.deepEqual(preempting, steps.map(([, , expected]) => expected));
  t.deepEqual(shape.preemptionAt, [1, 2, 3, 4, 6]);
  t.deepEqual(shape.preempted, [0, 1, 0, -1, 0]);
  // The last choice is what the default would do; the one before (a 3-step slice) is not.
  t.is(shape.decisive, 9);
});

test('the environment\'s handler (the timer\'s, the daemon\'s) switches no actor: after it goes on, the vCPU that ran before it is the one that could go on', (t) => {
  const shape = new ScheduleShape(TOY_SLICE);
  const tick = { label: 'daemon-resumed', handlerVcpu: -1 };
  const steps: [Enabled, Choice, boolean][] = [
    [enabled({ runnable: [0, 1] }), { kind: 'run', vcpu: 1, steps: TOY_SLICE }, false], // nobody was running
    [enabled({ runnable: [0, 1], daemonDue: true }), { kind: 'daemon' }, false], // the environment, when due
    [enabled({ runnable: [0, 1], preemption: tick }), { kind: 'proceed' }, false], // the daemon's handler goes on
    [enabled({ runnable: [0, 1] }), { kind: 'run', vcpu: 0, steps: TOY_SLICE }, true], // vCPU 1 could go on
  ];
  t.deepEqual(steps.map(([e, choice]) => shape.observe(e, choice).preempts), steps.map(([, , expected]) => expected));
  t.deepEqual(shape.preempted, [1]);
  const after = new ScheduleShape(TOY_SLICE);
  for (const [e, choice] of steps.slice(0, 3)) after.observe(e, choice);
  t.deepEqual(after.defaultChoice(enabled({ runnable: [0, 1] })), { kind: 'run', vcpu: 1, steps: TOY_SLICE });
  t.deepEqual(after.alternatives(enabled({ runnable: [0, 1] })), [{ choice: { kind: 'run', vcpu: 0, steps: TOY_SLICE }, preempts: true }]);
});

test('the default continuation alone never breaks the toy; its least preemptive failure has one preemption', (t) => {
  t.is(toyAttempt([]).oracle, null);
  const minimal = toyAttempt([{ kind: 'run', vcpu: 0, steps: 3 }, { kind: 'run', vcpu: 1, steps: 1 }]);
  t.is(minimal.oracle, 'toy-race');
  t.is(minimal.preemptions, 1);
  t.is(minimal.decisive, 2);
});

/** A failing toy schedule made by the random strategy from `seed`, or null. */
function failingToy(seed: number): readonly Choice[] | null {
  const run = runToy(new RandomScheduler(new Prng(seed), TOY_SLICE));
  return run.oracle === null ? null : run.choices;
}

test('shrinking a random failing schedule finds the one preemption that matters', (t) => {
  const input = Array.from({ length: 200 }, (_, seed) => failingToy(seed)).find((choices) => choices !== null && toyAttempt(choices).preemptions > 1);
  if (input === undefined || input === null) return t.fail('no random schedule of the toy failed with more than one preemption');
  const result = shrinkSchedule(input, toyAttempt);
  t.true(result.minimal);
  t.is(result.best.oracle, 'toy-race');
  t.is(result.best.preemptions, 1);
  t.is(result.best.decisive, 2);
  t.like(result.best.executed[0], { kind: 'run', vcpu: 0, steps: 3 });
  t.true(result.from.preemptions > 1);
});

test('a schedule that breaks nothing is refused, and the budget is honoured', (t) => {
  t.throws(() => shrinkSchedule([], toyAttempt), { instanceOf: ShrinkInputError });
  const input = Array.from({ length: 200 }, (_, seed) => failingToy(seed)).find((choices) => choices !== null && toyAttempt(choices).preemptions > 2)!;
  const result = shrinkSchedule(input, toyAttempt, { maxRuns: 3 });
  t.is(result.runs, 3);
  t.false(result.minimal);
  t.is(result.best.oracle, 'toy-race');
});

testProp(
  'shrinking is sound, never adds preemptions, and is stable (shrinking the result again changes nothing)',
  [fc.integer({ min: 0, max: 1_000_000 })],
  (t, seed) => {
    const input = failingToy(seed);
    fc.pre(input !== null);
    const first = shrinkSchedule(input!, toyAttempt);
    t.is(first.best.oracle, 'toy-race');
    t.true(first.best.preemptions <= first.from.preemptions);
    t.true(first.minimal);
    const again = shrinkSchedule(first.best.executed, toyAttempt);
    t.deepEqual(again.best.executed, first.best.executed);
    t.is(again.best.preemptions, first.best.preemptions);
    t.is(again.best.decisive, first.best.decisive);
  },
  { numRuns: 60 },
);
