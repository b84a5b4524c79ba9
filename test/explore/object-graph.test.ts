/**
 * Goal: a run's objects come back in place. Every object reachable from the roots at the capture
 * gets back its fields, elements, entries, members or bytes; references held elsewhere (closures)
 * still point at the same object; objects made since drop out; what is kept by identity is not
 * touched; state no snapshot could read (a WeakMap) is refused with the path that reached it.
 */
import test from 'ava';
import { ObjectGraphSnapshot, UnsnapshottableState } from '../../src/explore/object-graph.ts';

class Counter {
  count = 0;
  readonly seen = new Set<string>();
  readonly byName = new Map<string, { hits: number }>();
  readonly log: number[] = [];
  readonly bytes = new Uint8Array(4);
  next: Counter | null = null;
}

const nothingKept = (): boolean => false;

test('fields, nested objects, Maps, Sets, arrays and private typed arrays come back, in place', (t) => {
  const counter = new Counter();
  counter.byName.set('a', { hits: 1 });
  counter.seen.add('x');
  counter.log.push(1, 2);
  counter.bytes[0] = 9;
  const entry = counter.byName.get('a')!;
  const bump = (): number => ++counter.count; // a closure holding the object, not its state
  const snapshot = ObjectGraphSnapshot.capture([counter], ['counter'], nothingKept);
  bump();
  entry.hits = 5;
  counter.byName.set('b', { hits: 7 });
  counter.seen.delete('x');
  counter.seen.add('y');
  counter.log.push(3);
  counter.log[0] = 100;
  counter.bytes.fill(7);
  counter.next = new Counter();
  snapshot.restore();
  t.is(counter.count, 0);
  t.is(counter.byName.get('a'), entry, 'the same object, rewound');
  t.is(entry.hits, 1);
  t.deepEqual([...counter.byName.keys()], ['a']);
  t.deepEqual([...counter.seen], ['x']);
  t.deepEqual(counter.log, [1, 2]);
  t.deepEqual([...counter.bytes], [9, 0, 0, 0]);
  t.is(counter.next as Counter | null, null);
  t.is(bump(), 1, 'the closure works on the restored object');
  snapshot.restore();
  t.is(counter.count, 0, 'a snapshot restores any number of times');
});

test('a dictionary loses the keys it gained; accessors and frozen objects are left alone', (t) => {
  const base = { value: 1 };
  const dictionary: Record<string, number> = { a: 1 };
  const frozen = Object.freeze({ inner: base });
  const withGetter = {
    stored: 1,
    get doubled(): number {
      return this.stored * 2;
    },
  };
  const snapshot = ObjectGraphSnapshot.capture([dictionary, frozen, withGetter], ['dictionary', 'frozen', 'getter'], nothingKept);
  dictionary.b = 2;
  delete dictionary.a;
  base.value = 3;
  withGetter.stored = 5;
  snapshot.restore();
  t.deepEqual(dictionary, { a: 1 });
  t.is(base.value, 1, 'a frozen object\'s children are still walked');
  t.is(withGetter.doubled, 2);
});

test('a boundary is kept by identity and not walked; shared memory is never copied', (t) => {
  const shared = new Int32Array(new SharedArrayBuffer(8));
  const kept = { value: 1 };
  const holder = { kept, shared, own: { value: 1 } };
  const snapshot = ObjectGraphSnapshot.capture([holder], ['holder'], (value) => value === kept);
  kept.value = 2;
  shared[0] = 5;
  holder.own.value = 2;
  snapshot.restore();
  t.is(kept.value, 2);
  t.is(shared[0], 5);
  t.is(holder.own.value, 1);
  t.is(snapshot.objects, 2, 'holder and holder.own');
});

test('an append-only log is saved by its length, its elements neither walked nor saved', (t) => {
  const first = { n: 1 };
  const log = [first];
  const snapshot = ObjectGraphSnapshot.capture([{ log }], ['run'], nothingKept, new Set([log]));
  log.push({ n: 2 });
  snapshot.restore();
  t.is(log.length, 1);
  t.is(log[0], first);
  t.is(snapshot.objects, 2, 'the run object and its log, not the log\'s elements');
});

test('a WeakMap, WeakSet, WeakRef or Promise is refused with the path that reached it', (t) => {
  const state = { engine: { cache: new WeakMap<object, number>() } };
  const error = t.throws(() => ObjectGraphSnapshot.capture([state], ['run'], nothingKept), { instanceOf: UnsnapshottableState });
  t.regex(error.message, /WeakMap at run\.engine\.cache/);
  t.throws(() => ObjectGraphSnapshot.capture([{ pending: Promise.resolve(1) }], ['run'], nothingKept), { message: /Promise at run\.pending/ });
});

test('a Map comes back with its entries in their order, whether it only grew or was reordered', (t) => {
  // Order is state: code iterating a Map (an engine's hooks) must see the order it saw at the capture.
  const grown = new Map<number, string>([[1, 'a'], [2, 'b']]);
  const reordered = new Map<number, string>([[1, 'a'], [2, 'b'], [3, 'c']]);
  const changed = new Map<number, string>([[1, 'a'], [2, 'b']]);
  const snapshot = ObjectGraphSnapshot.capture([{ grown, reordered, changed }], ['maps'], nothingKept);
  grown.set(3, 'c').set(4, 'd');
  reordered.delete(1);
  reordered.set(1, 'a').set(5, 'e');
  changed.set(2, 'B');
  snapshot.restore();
  t.deepEqual([...grown], [[1, 'a'], [2, 'b']]);
  t.deepEqual([...reordered], [[1, 'a'], [2, 'b'], [3, 'c']]);
  t.deepEqual([...changed], [[1, 'a'], [2, 'b']]);
});

test('shapes: only the mutable fields an object declares are saved, and a derived cache comes back empty', (t) => {
  // A CPU's blocks change in a few bookkeeping fields only; its jump cache is rebuilt from its block maps.
  class Block {
    constructor(
      public fixed: number,
      public valid: boolean,
    ) {}
  }
  const block = new Block(1, true);
  const cache: (Block | undefined)[] = [block, undefined];
  const snapshot = ObjectGraphSnapshot.capture([{ block, cache }], ['cpu'], nothingKept, new Set(), {
    mutableFields: (value) => (value instanceof Block ? ['valid'] : null),
    derivedCache: (value) => value === cache,
  });
  block.valid = false;
  block.fixed = 2; // a field declared fixed is not the snapshot's to restore
  cache[1] = block;
  snapshot.restore();
  t.true(block.valid);
  t.is(block.fixed, 2);
  t.deepEqual(cache, [undefined, undefined]);
});
