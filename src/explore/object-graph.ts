/**
 * A snapshot of the JavaScript objects a run's state lives in — the session, its actors and hosts,
 * the engine, the scheduler, the trace — restored *in place*: every object reachable from the
 * roots when the snapshot was taken gets back the fields, elements or entries it had, so every
 * reference anyone holds (closures of actors, handlers registered with the session) still points
 * at the same, now rewound, object. Objects made after the snapshot simply drop out of the graph.
 *
 * What it cannot see, by the nature of JavaScript: variables captured by closures, private
 * `#fields`, and the contents of WeakMaps. Run state must therefore live in object fields (a rule
 * the branch tests check on every built-in scenario: a branch and the same schedule run from the
 * start must give one hash). A WeakMap, WeakSet, WeakRef or Promise met on the way is refused with
 * the path that reached it, since what it holds would silently not come back.
 *
 * Functions, shared memory (SharedArrayBuffer views: the machine's own checkpoint restores it)
 * and whatever `boundary` names (immutable logic, the machine) are kept by identity, not walked.
 */

/** True for an object to keep by identity without walking into it. */
export type GraphBoundary = (value: object) => boolean;

/** What the graph may know of an object beyond its own fields, to save less of it. */
export interface GraphShapes {
  /** The only fields of `value` that change once it is made (the others are walked, never saved or restored), or null for all. */
  readonly mutableFields?: (value: object) => readonly string[] | null;
  /** True for an array that only caches what other saved state holds: restored empty (every slot undefined), never saved or walked. */
  readonly derivedCache?: (value: object) => boolean;
}

const enum Kind {
  fields,
  elements,
  entries,
  members,
  bytes,
  log,
  emptied,
}

/** Raised when the graph holds something whose contents cannot be saved. */
export class UnsnapshottableState extends Error {
  constructor(what: string, path: string) {
    super(`cannot snapshot the run's state: a ${what} at ${path} holds contents no snapshot can read; keep run state in plain fields, arrays, Maps or Sets`);
    this.name = 'UnsnapshottableState';
  }
}

const REFUSED: readonly [new (...args: never[]) => object, string][] = [
  [WeakMap, 'WeakMap'],
  [WeakSet, 'WeakSet'],
  [WeakRef, 'WeakRef'],
  [Promise, 'Promise'],
];

export class ObjectGraphSnapshot {
  /** Per saved object: the object, its kind, what it held (keys and values interleaved, elements, entries, members, bytes). */
  private readonly targets: object[] = [];
  private readonly kinds: Kind[] = [];
  private readonly saved: unknown[] = [];

  private constructor() {}

  /** Objects whose contents the snapshot holds. */
  get objects(): number {
    return this.targets.length;
  }

  /**
   * Saves every object reachable from `roots` (`names` label them in errors). `appendOnly` arrays
   * are logs whose elements never change once pushed (a run's events, a trace's entries): only
   * their length is saved, and their elements are neither walked nor saved.
   */
  static capture(roots: readonly object[], names: readonly string[], boundary: GraphBoundary, appendOnly: ReadonlySet<unknown[]> = new Set(), shapes: GraphShapes = {}): ObjectGraphSnapshot {
    const snapshot = new ObjectGraphSnapshot();
    const seen = new Set<object>();
    const stack: object[] = [];
    /** Who reached each object, and through which key: the path in an error. */
    const parent = new Map<object, { from: object | null; key: string }>();
    const visit = (value: unknown, from: object | null, key: string): void => {
      if (typeof value !== 'object' || value === null || seen.has(value)) return;
      seen.add(value);
      parent.set(value, { from, key });
      stack.push(value);
    };
    roots.forEach((root, index) => visit(root, null, names[index] ?? `root ${index}`));
    const pathOf = (value: object): string => {
      const keys: string[] = [];
      for (let at: object | null = value; at !== null; at = parent.get(at)?.from ?? null) keys.push(parent.get(at)?.key ?? '?');
      return keys.reverse().join('.');
    };
    for (let value = stack.pop(); value !== undefined; value = stack.pop()) {
      if (boundary(value)) continue;
      if (appendOnly.has(value as unknown[])) {
        snapshot.record(value, Kind.log, (value as unknown[]).length);
        continue;
      }
      if (Array.isArray(value) && shapes.derivedCache?.(value) === true) {
        snapshot.record(value, Kind.emptied, null);
        continue;
      }
      for (const [type, what] of REFUSED) if (value instanceof type) throw new UnsnapshottableState(what, pathOf(value));
      snapshot.save(value, (child, key) => visit(child, value, key), shapes.mutableFields?.(value) ?? null);
    }
    return snapshot;
  }

  private save(value: object, visit: (child: unknown, key: string) => void, mutable: readonly string[] | null): void {
    if (ArrayBuffer.isView(value)) {
      if (value.buffer instanceof SharedArrayBuffer) return;
      // Saved as its bytes, and restored through a byte view made once here.
      const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      this.record(bytes, Kind.bytes, bytes.slice());
      return;
    }
    if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return;
    if (Array.isArray(value)) {
      if (!Object.isFrozen(value)) this.record(value, Kind.elements, value.slice());
      value.forEach((element, index) => visit(element, `[${index}]`));
      return;
    }
    if (value instanceof Map) {
      const entries: unknown[] = [];
      for (const [key, entry] of value) {
        entries.push(key, entry);
        visit(key, '<key>');
        visit(entry, `get(${typeof key === 'object' ? '…' : String(key)})`);
      }
      this.record(value, Kind.entries, entries);
      return;
    }
    if (value instanceof Set) {
      const members = [...value];
      members.forEach((member) => visit(member, '<member>'));
      this.record(value, Kind.members, members);
      return;
    }
    const frozen = Object.isFrozen(value);
    const names: string[] = [];
    const values: unknown[] = [];
    const keys = Object.keys(value);
    for (const key of keys) {
      const descriptor = Object.getOwnPropertyDescriptor(value, key);
      // An accessor is code (e.g. a getter over other state), not state of its own.
      if (descriptor === undefined || !('value' in descriptor)) continue;
      visit(descriptor.value, key);
      if (!frozen && descriptor.writable === true && (mutable === null || mutable.includes(key))) {
        names.push(key);
        values.push(descriptor.value);
      }
    }
    if (frozen) return;
    // Only a plain object is used as a dictionary (keys come and go); a class instance has its fields from its constructor.
    const prototype: unknown = Object.getPrototypeOf(value);
    const dictionary = mutable === null && (prototype === Object.prototype || prototype === null);
    this.record(value, Kind.fields, { restore: fieldRestorer(names), values, keys: dictionary ? keys : null } satisfies SavedFields);
  }

  private record(target: object, kind: Kind, saved: unknown): void {
    this.targets.push(target);
    this.kinds.push(kind);
    this.saved.push(saved);
  }

  /** Puts every saved object back as it was at the capture. */
  restore(): void {
    const { targets, kinds, saved } = this;
    for (let index = 0; index < targets.length; index++) {
      const target = targets[index];
      const held = saved[index];
      switch (kinds[index]) {
        case Kind.fields:
          restoreFields(target as Record<string, unknown>, held as SavedFields);
          break;
        case Kind.elements: {
          const array = target as unknown[];
          const elements = held as unknown[];
          if (array.length !== elements.length) array.length = elements.length;
          for (let k = 0; k < elements.length; k++) if (array[k] !== elements[k]) array[k] = elements[k];
          break;
        }
        case Kind.entries:
          restoreEntries(target as Map<unknown, unknown>, held as unknown[]);
          break;
        case Kind.members: {
          const set = target as Set<unknown>;
          set.clear();
          for (const member of held as unknown[]) set.add(member);
          break;
        }
        case Kind.bytes:
          (target as Uint8Array).set(held as Uint8Array);
          break;
        case Kind.log:
          (target as unknown[]).length = held as number;
          break;
        case Kind.emptied:
          (target as unknown[]).fill(undefined);
      }
    }
  }
}

/**
 * Puts a Map's saved entries back. Maps mostly only grew since (a CPU's decoded blocks): when the
 * saved entries are still its first ones, in order, only the later ones go — far cheaper than
 * clearing and filling it again (the keys are often addresses above 2^31, hashed as doubles).
 */
function restoreEntries(map: Map<unknown, unknown>, entries: readonly unknown[]): void {
  const saved = entries.length >>> 1;
  if (map.size >= saved) {
    let k = 0;
    let kept = true;
    for (const [key, value] of map) {
      if (k >= entries.length) map.delete(key);
      else if (key !== entries[k] || value !== entries[k + 1]) {
        kept = false;
        break;
      }
      k += 2;
    }
    if (kept) return;
  }
  map.clear();
  for (let k = 0; k < entries.length; k += 2) map.set(entries[k], entries[k + 1]);
}

/** An object's writable fields: their values, the code that writes them back, and for a dictionary every key it had. */
interface SavedFields {
  readonly restore: FieldRestorer;
  readonly values: readonly unknown[];
  readonly keys: string[] | null;
}

type FieldRestorer = (target: Record<string, unknown>, values: readonly unknown[]) => void;

/**
 * One restorer per list of field names, generated: its property writes have constant names, so
 * each stays a fast monomorphic access for the objects of one shape, where a loop over names is
 * a slow keyed access on every field (about 10× slower on a run's few thousand objects).
 */
const restorers = new Map<string, FieldRestorer>();

function fieldRestorer(names: readonly string[]): FieldRestorer {
  const id = names.join('\u0000');
  let restorer = restorers.get(id);
  if (restorer === undefined) {
    const body = names.map((name, index) => {
      const field = `t[${JSON.stringify(name)}]`;
      return `if (${field} !== v[${index}]) ${field} = v[${index}];`;
    }).join('\n');
    restorer = new Function('t', 'v', body) as FieldRestorer;
    restorers.set(id, restorer);
  }
  return restorer;
}

function restoreFields(target: Record<string, unknown>, { restore, values, keys }: SavedFields): void {
  restore(target, values);
  if (keys === null) return;
  // Keys a dictionary gained since go again (counted first: for-in allocates nothing, and a
  // dictionary's prototype, Object.prototype or none, has no enumerable keys to skip).
  let count = 0;
  for (const _ in target) count++;
  if (count === keys.length) return;
  const kept = new Set(keys);
  for (const key of Object.keys(target)) if (!kept.has(key)) delete target[key];
}
