/**
 * Goal: ordering coverage counts what runs really did. On a hand-built event list the orders of
 * a pair (A before B, B before A, A during B) come out as counted by hand — keys tie occurrences,
 * one vCPU is never compared with itself, an interval never ended runs to the end — and the
 * coverage adds runs up, says what was never seen, and knows two instants cannot overlap. On a
 * real scenario every run reports its orderings, a bad pair is refused when the scenario is
 * checked, and a pair whose check throws is reported, not fatal. A scan copied part-way (a branch
 * point) goes on independently of the one it was copied from, learned memory included.
 */
import test from 'ava';
import type { RuntimeEvent } from '../../actors/events.ts';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { OrderingCoverage, OrderingScan, orderingsOf, possibleByPair, possibleOrderings, spansOf, type OrderingPair } from '../../src/explore/orderings.ts';
import { ScenarioRig } from '../../src/explore/scenario-rig.ts';
import { validateScenario, type ScenarioDefinition, type ScenarioGuest } from '../../src/explore/scenario.ts';

const note = (what: string, detail: Record<string, string | number>): RuntimeEvent => ({ kind: 'note', what, detail });
const exitAt = (vcpu: number, rip: bigint): RuntimeEvent => ({ kind: 'stop', vcpu, stop: 'exit', reason: 'eptViolation', rip, retired: 1, exit: { ticket: 1, gpa: 0x5000n, gla: 0x5000n, access: 1 } });
const handled = (vcpu: number, rip: bigint): RuntimeEvent => ({ kind: 'handle', vcpu, reason: 'eptViolation', rip, action: 'allowed', inject: -1, ticket: 1 });

/** A: a patch of a RIP by a vCPU (instant). B: a vCPU waiting at that RIP, from its exit to its handling. */
const patchVsWaiting: OrderingPair = {
  name: 'patch-vs-waiting',
  description: 'test pair',
  a: { begins: (e) => (e.kind === 'note' && e.what === 'patch' ? { key: String(e.detail.rip), vcpu: Number(e.detail.vcpu) } : null) },
  b: {
    begins: (e) => (e.kind === 'stop' && e.exit !== null ? { key: String(e.rip), vcpu: e.vcpu } : null),
    ends: (e, waiting) => e.kind === 'handle' && e.vcpu === waiting.vcpu,
  },
};

// Positions:      0                 1                      2                  3                         4                 5                 6
const EVENTS: RuntimeEvent[] = [exitAt(1, 0x10n), note('patch', { rip: '16', vcpu: 0 }), handled(1, 0x10n), note('patch', { rip: '32', vcpu: 0 }), exitAt(2, 0x10n), exitAt(0, 0x10n), note('patch', { rip: '16', vcpu: 2 })];

test('a hand-built run: each order of the pair with its first witness, counted by hand', (t) => {
  const spansA = spansOf(patchVsWaiting.a, EVENTS);
  const spansB = spansOf(patchVsWaiting.b, EVENTS);
  t.deepEqual(spansA.map((s) => [s.key, s.vcpu, s.from, s.to]), [['16', 0, 1, 1], ['32', 0, 3, 3], ['16', 2, 6, 6]]);
  // vCPU 1 waits 0..2; vCPU 2 and vCPU 0 are never handled: their intervals run to the end (7).
  t.deepEqual(spansB.map((s) => [s.key, s.vcpu, s.from, s.to]), [['16', 1, 0, 2], ['16', 2, 4, 7], ['16', 0, 5, 7]]);
  const found = orderingsOf([patchVsWaiting], EVENTS, (index) => index * 10);
  // patch@1 (v0) vs wait v1 [0,2]: during. patch@1 vs wait v2 [4,7]: A before B. patch@1 vs v0: same vCPU, skipped.
  // patch of 0x20 has no B with its key. patch@6 (v2) vs wait v1 [0,2]: B before A; vs itself (v2): skipped.
  t.deepEqual(found.map((w) => [w.ordering, w.a.from, w.b.from, w.b.vcpu]), [['a-during-b', 1, 0, 1], ['a-before-b', 1, 4, 2], ['b-before-a', 6, 0, 1]]);
  t.is(found[0].a.choiceFrom, 10, 'positions map to the choices made before them');
  t.is(found[1].b.choiceTo, 70);
});

test('coverage adds runs up, names what was never produced, and knows two instants never overlap', (t) => {
  const instants: OrderingPair = { name: 'two-instants', description: 'test', a: patchVsWaiting.a, b: { begins: patchVsWaiting.b.begins } };
  t.deepEqual(possibleOrderings(instants), ['a-before-b', 'b-before-a']);
  const coverage = OrderingCoverage.of([patchVsWaiting, instants]);
  t.deepEqual(coverage.covered, { seen: 0, of: 5 });
  coverage.add(orderingsOf([patchVsWaiting, instants], EVENTS));
  coverage.add(orderingsOf([patchVsWaiting, instants], EVENTS.slice(0, 3)));
  t.deepEqual(coverage.runsWith('patch-vs-waiting'), { 'a-before-b': 1, 'b-before-a': 1, 'a-during-b': 2 });
  // Two instants: patch@1 vs exit v1@0 (B before A), vs exit v2@4 (A before B); patch@6 vs exit v1@0 (B before A).
  t.deepEqual(coverage.runsWith('two-instants'), { 'a-before-b': 1, 'b-before-a': 2, 'a-during-b': 0 });
  t.deepEqual(coverage.covered, { seen: 5, of: 5 });
  t.deepEqual(coverage.unseen(), []);
  t.deepEqual(coverage.rarest(), [{ pair: 'patch-vs-waiting', ordering: 'a-before-b' }, { pair: 'patch-vs-waiting', ordering: 'b-before-a' }, { pair: 'two-instants', ordering: 'a-before-b' }]);
  t.deepEqual(coverage.describe(), ['patch-vs-waiting: A before B 1, B before A 1, A during B 2 (3/3)', 'two-instants: A before B 1, B before A 2 (2/2)']);
  const merged = new OrderingCoverage(possibleByPair([patchVsWaiting, instants]));
  merged.addCounts(coverage.toJSON());
  merged.addCounts(coverage.toJSON());
  t.is(merged.runsWith('patch-vs-waiting')['a-during-b'], 4);
  t.throws(() => coverage.runsWith('nope'), { message: /no ordering pair "nope"/ });
});

/** A pair's `learn` for the tests below: the RIP of the last region note. */
const learnRegion: OrderingPair['learn'] = (e, memory) => {
  if (e.kind === 'note' && e.what === 'region') memory.set('rip', String(e.detail.rip));
};
/** Whether `e` patches the RIP `learnRegion` learned. */
const patchesLearned = (e: RuntimeEvent, memory: Map<string, unknown>): boolean => e.kind === 'note' && e.what === 'patch' && memory.get('rip') === String(e.detail.rip);

test('what a pair learns is per run', (t) => {
  const learning: OrderingPair = {
    name: 'learned',
    description: 'test',
    learn: learnRegion,
    a: { begins: (e, memory) => (patchesLearned(e, memory) ? { key: 'k', vcpu: 0 } : null) },
    b: { begins: (e) => (e.kind === 'stop' ? { key: 'k', vcpu: e.vcpu } : null) },
  };
  const run = [note('region', { rip: '16' }), exitAt(1, 0x10n), note('patch', { rip: '16', vcpu: 0 })];
  t.deepEqual(orderingsOf([learning], run).map((w) => w.ordering), ['b-before-a']);
  t.deepEqual(orderingsOf([learning], run.slice(1)), [], 'a new run starts knowing nothing');
});

test('a scan copied part-way goes on by itself: each continuation gives the orderings of its whole event list', (t) => {
  const learning: OrderingPair = {
    name: 'learned',
    description: 'test',
    learn: learnRegion,
    a: { begins: (e, memory) => (patchesLearned(e, memory) && e.kind === 'note' ? { key: String(e.detail.rip), vcpu: Number(e.detail.vcpu) } : null) },
    b: patchVsWaiting.b,
  };
  const pairs = [patchVsWaiting, learning];
  const prefix = [note('region', { rip: '16' }), exitAt(1, 0x10n)];
  const endings = [
    [note('patch', { rip: '16', vcpu: 0 }), handled(1, 0x10n)],
    [handled(1, 0x10n), note('region', { rip: '32' }), note('patch', { rip: '16', vcpu: 0 })],
    [],
  ];
  const choiceAt = (index: number): number => index * 3;
  const scan = new OrderingScan(pairs);
  prefix.forEach((event, index) => scan.feed(event, index, choiceAt));
  for (const ending of endings) {
    const own = scan.copy();
    ending.forEach((event, k) => own.feed(event, prefix.length + k, choiceAt));
    const whole = [...prefix, ...ending];
    t.deepEqual(own.witnesses(whole.length, choiceAt), orderingsOf(pairs, whole, choiceAt));
  }
  // The scan copied from is untouched by its copies.
  t.deepEqual(scan.witnesses(prefix.length, choiceAt), orderingsOf(pairs, prefix, choiceAt));
});

test('a real scenario reports its orderings on every run; a bad pair is refused; a throwing pair is reported', async (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const report = rig.run({ seed: 3, strategy: 'random', depth: 2, fixes: rig.fixes.without(memtableStaleIcache.bugs[0].fixesOff) });
  const pairs = new Set(report.orderings.map((w) => w.pair));
  t.true(pairs.has('patch-vs-waiting-peer') && pairs.has('patch-vs-running-peer'), [...pairs].join(', '));
  for (const w of report.orderings) t.true(w.a.choiceFrom >= 0 && w.a.choiceFrom <= report.choices);

  const base = memtableStaleIcache as ScenarioDefinition<ScenarioGuest>;
  t.throws(() => validateScenario({ ...base, orderings: [{ ...patchVsWaiting, name: 'results-correct' }] }), { message: /"results-correct" is used twice/ });
  t.throws(() => validateScenario({ ...base, orderings: [{ ...patchVsWaiting, a: {} as OrderingPair['a'] }] }), { message: /begins\(event\) function/ });

  const throwing: OrderingPair = { ...patchVsWaiting, name: 'throws', a: { begins: () => { throw new Error('bad pair'); } } };
  const broken = ScenarioRig.open({ ...base, name: 'memtable-throwing-pair', orderings: [throwing] }, 'inline');
  t.teardown(() => broken.close());
  const run = broken.run({ seed: 3, strategy: 'random', depth: 2, fixes: broken.fixes.without([]) });
  t.deepEqual(run.orderings, []);
  t.regex(run.violations.map((v) => `${v.oracle}: ${v.detail}`).join('\n'), /window-goals: an ordering pair threw: bad pair/);
});
