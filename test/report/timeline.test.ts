/**
 * Goal: the layout under both reports keeps its promises on small hand-made inputs — intervals
 * that would cross go to an extra lane instead of being cut, items of one step keep their order on
 * the axis (step × STEP_UNITS + rank), actor changes fall between the entries they happened
 * between, and a recording whose trace and events disagree is refused.
 */
import test from 'ava';
import type { RunRecording } from '../../src/explore/recorder.ts';
import { nest, type SliceDraft } from '../../src/report/nesting.ts';
import { STEP_UNITS, timelineItems } from '../../src/report/timeline-items.ts';
import type { Lane } from '../../src/report/timeline-model.ts';

const draft = (lane: string, name: string, start: number, end: number): SliceDraft => ({ lane, name, category: 'guest', start, end, args: {}, exit: null });

test('crossing intervals go to an overflow lane; nested ones keep their depth', (t) => {
  const lanes: Lane[] = [{ id: 'vcpu0', name: 'vCPU 0', kind: 'vcpu' }, { id: 'handler', name: 'hypervisor handler', kind: 'handler' }];
  const outer = draft('vcpu0', 'outer', 0, 10);
  const inner = draft('vcpu0', 'inner', 2, 5);
  const crossing = draft('vcpu0', 'crossing', 8, 14);
  const after = draft('vcpu0', 'after', 10, 12);
  const nested = nest(lanes, [crossing, inner, outer, after]);
  t.deepEqual(nested.lanes.map((lane) => lane.name), ['vCPU 0', 'vCPU 0 (overlapping)', 'hypervisor handler']);
  t.deepEqual(nested.placed.get(outer), { lane: 'vcpu0', name: 'outer', category: 'guest', start: 0, end: 10, depth: 0, args: {}, exit: null });
  t.is(nested.placed.get(inner)?.depth, 1);
  t.is(nested.placed.get(after)?.lane, 'vcpu0');
  t.is(nested.placed.get(after)?.depth, 0);
  t.is(nested.placed.get(crossing)?.lane, 'vcpu0~1');
  t.throws(() => nest(lanes, [draft('nowhere', 'x', 0, 1)]), { message: /lane "nowhere"/ });
});

const recording = (over: Partial<RunRecording>): RunRecording => ({ vcpus: 1, entries: [], choices: [], events: [], actors: [], exits: [], oraclePhases: {}, ...over });

test('items of one step are ranked in order; actor changes sit between the entries around them', (t) => {
  const items = timelineItems(recording({
    entries: [{ clock: 0, text: '> run v0 10' }, { clock: 10, text: 'stop v0 budget rip=1000 retired=10' }, { clock: 10, text: '> run v0 5' }],
    choices: [{ kind: 'run', vcpu: 0, steps: 10 }, { kind: 'run', vcpu: 0, steps: 5 }],
    events: [
      { clock: 10, event: { kind: 'stop', vcpu: 0, stop: 'budget', reason: '', rip: 0x1000n, retired: 10, exit: null } },
      { clock: 10, event: { kind: 'note', what: 'uninit', detail: {} } },
    ],
    actors: [
      { at: { entries: 0, events: 0, clock: 0 }, actor: 'vcpu0', state: 'running', detail: null },
      { at: { entries: 3, events: 1, clock: 10 }, actor: 'uninit', state: 'unloaded', detail: null },
    ],
  }));
  t.deepEqual(items.map((item) => [item.kind, item.ts, item.traced]), [
    ['actor', 0, true],
    ['choice', 1, true],
    ['event', 10 * STEP_UNITS, true],
    ['choice', 10 * STEP_UNITS + 1, true],
    ['actor', 10 * STEP_UNITS + 2, false],
    ['event', 10 * STEP_UNITS + 3, false],
  ]);
});

test('a recording whose trace entries are not its events is refused', (t) => {
  t.throws(() => timelineItems(recording({ entries: [{ clock: 0, text: 'timer' }], events: [{ clock: 0, event: { kind: 'irq', vcpu: 0, vector: 32 } }] })), { message: /is not the recording's event #0/ });
});
