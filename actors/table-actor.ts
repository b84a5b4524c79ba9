import {
  createActor,
  type AnyEventObject,
  type AnyStateMachine,
  type ContextFrom,
  type EventFromLogic,
  type InputFrom,
  type InspectionEvent,
  type Snapshot,
  type Subscription,
} from 'xstate';

/**
 * A flat xstate machine run from a table built once from its definition, for the protocols a
 * session drives on every VM exit (vCPU EXITED/REPLIED, the handler lock, the hook commit, the
 * uninit's HANDLER_RETURNED): xstate's interpreter spends ~4 µs per send here computing
 * transition domains and entry/exit sets a one-level machine does not need, over half the exit path.
 *
 * The machine stays the protocol's definition: states, guards, actions and their order all come
 * from it, and `test/actors/table-actor.test.ts` runs every machine the session uses side by side
 * with xstate's own actor over random event sequences. What a table covers — a root with atomic and
 * final children; event and eventless (`always`) transitions with named or inline guards; named
 * or inline actions that are `assign` or plain functions; entry and exit actions — is checked
 * when the table is built, and a machine outside it gets xstate's actor (`startProtocolActor`).
 * One more rule cannot be checked then: contexts are keyed by strings (an assign that added a
 * symbol key would lose it at the next copy, see ContextCopier).
 */

/** What the session reads of an actor: xstate's own actors have the same shape. */
export type ProtocolSnapshot<TContext> = Snapshot<unknown> & {
  readonly value: unknown;
  readonly context: TContext;
};

/** The part of an actor the session uses; both a table actor and xstate's `Actor` are one. */
export interface ProtocolActor<TMachine extends AnyStateMachine> {
  readonly id: string;
  readonly sessionId: string;
  send(event: EventFromLogic<TMachine>): void;
  getSnapshot(): ProtocolSnapshot<ContextFrom<TMachine>>;
  stop(): void;
  /** Observes the actor's events and snapshots from now on (xstate's inspection events). */
  readonly system: { inspect(observer: (event: InspectionEvent) => void): Subscription };
}

/** How an actor is started: xstate's `createActor` options that the session uses. */
export interface ProtocolActorOptions<TMachine extends AnyStateMachine> {
  readonly id: string;
  readonly input?: InputFrom<TMachine>;
  /** Given at creation, the actor is xstate's own, so every inspection event of its protocol is seen. */
  readonly inspect?: (event: InspectionEvent) => void;
  /** Who runs the machine: a table where its shape allows (default), or always xstate's interpreter. */
  readonly interpreter?: ProtocolInterpreter;
}

/** Who runs the protocol machines: tables (fast, the default) or xstate's own interpreter (for comparison, debugging). */
export type ProtocolInterpreter = 'table' | 'xstate';

type Context = Record<string, unknown>;
type ActionArgs = { context: Context; event: AnyEventObject; self: unknown };
type Guard = (args: ActionArgs, params: undefined) => boolean;
/** An action as the table runs it: an assign returns the fields it sets, an effect runs. */
type Step = { readonly assign: Assigner } | { readonly effect: (args: ActionArgs, params: undefined) => void };
/** An assign's update: the fields it sets (the actor merges them into a copy of the context). */
type Assigner = (context: Context, event: AnyEventObject, self: unknown) => Context;

/**
 * Copies contexts that have exactly `keys` as their own string keys, with an object literal
 * generated for those keys: V8 builds it in one step (~35 ns for five fields, against ~85 ns for
 * `Object.assign({}, context)`), and every VM exit makes a few contexts. Made from the initial
 * context; an assign that adds a key goes the general way and makes a copier for the new keys.
 */
interface ContextCopier {
  readonly keys: Readonly<Record<string, true>>;
  readonly copy: (context: Context) => Context;
}

/**
 * Copiers by key list, shared by every actor whose contexts have those keys: a session starts its
 * vCPU actors again for every run, and a copier made per actor would be compiled anew and start
 * cold each time. Key lists are the protocol machines' few context shapes;
 * a machine whose assigns keep adding keys clears the map now and then (COPIERS_MAX).
 */
const copiers = new Map<string, ContextCopier>();
const COPIERS_MAX = 1000;

/** A copier for `context`'s keys, or null for a context a literal cannot copy like Object.assign (symbol keys, `__proto__`). */
function copierFor(context: Context): ContextCopier | null {
  const names = Object.keys(context);
  if (names.includes('__proto__') || Object.getOwnPropertySymbols(context).length > 0) return null;
  const id = names.join('\u0000');
  let copier = copiers.get(id);
  if (copier === undefined) {
    const keys: Record<string, true> = Object.create(null) as Record<string, true>;
    for (const name of names) keys[name] = true;
    const fields = names.map((name) => `${JSON.stringify(name)}: context[${JSON.stringify(name)}]`).join(', ');
    // Property names only, each quoted by JSON.stringify: no value of the context reaches the source.
    copier = Object.freeze({ keys: Object.freeze(keys), copy: new Function('context', `return { ${fields} };`) as (context: Context) => Context });
    if (copiers.size >= COPIERS_MAX) copiers.clear();
    copiers.set(id, copier);
  }
  return copier;
}

/**
 * `Object.assign({}, context, partial)` (xstate's assign) through the copier when the partial adds
 * no key; null when it would, or when it is not a plain object (the caller then assigns the
 * general way). For-in over a plain object sees its own string keys, as Object.assign does: a
 * table's contexts hold no symbol keys (see buildTable).
 */
function mergeWith(copier: ContextCopier, context: Context, partial: Context): Context | null {
  if (Object.getPrototypeOf(partial) !== Object.prototype) return null;
  const next = copier.copy(context);
  for (const key in partial) {
    if (copier.keys[key] !== true) return null;
    next[key] = partial[key];
  }
  return next;
}

interface Edge {
  readonly guard: Guard | null;
  /** Index of the target state; -1: stay (no exit or entry). */
  readonly target: number;
  readonly steps: readonly Step[];
}

interface TableState {
  readonly name: string;
  readonly final: boolean;
  readonly entry: readonly Step[];
  readonly exit: readonly Step[];
  /** Event type → candidate edges in document order (the state's own, then the root's). */
  readonly on: ReadonlyMap<string, { readonly own: readonly Edge[]; readonly root: readonly Edge[] }>;
  readonly always: readonly Edge[];
}

/** A machine's table: why it could not be built, or its states. */
export type MachineTable = { readonly unsupported: string } | { readonly unsupported: null; readonly machine: AnyStateMachine; readonly states: readonly TableState[]; readonly initial: number };

/** Field-for-field what xstate's StateNode and TransitionDefinition expose (public in its types). */
interface NodeShape {
  readonly key: string;
  readonly type: string;
  readonly config: { readonly invoke?: unknown; readonly after?: unknown; readonly initial?: unknown; readonly context?: unknown };
  readonly states: Record<string, NodeShape>;
  readonly entry: readonly unknown[];
  readonly exit: readonly unknown[];
  readonly always?: readonly TransitionShape[];
  readonly transitions: Map<string, TransitionShape[]>;
  readonly history: unknown;
}
interface TransitionShape {
  readonly target?: readonly NodeShape[];
  readonly actions: readonly unknown[];
  readonly guard?: unknown;
  readonly reenter: boolean;
}

class Unsupported extends Error {}

const tables = new WeakMap<AnyStateMachine, MachineTable>();
const built = new WeakSet<object>();

/** The table for `machine`, built on first use (a provided machine is a machine of its own). */
export function machineTable(machine: AnyStateMachine): MachineTable {
  let table = tables.get(machine);
  if (table === undefined) {
    table = buildTable(machine);
    tables.set(machine, table);
    built.add(table);
  }
  return table;
}

/** Whether `value` is a machine's table: immutable logic (a run's snapshot keeps it by identity, as it does xstate's machines). */
export function isMachineTable(value: object): boolean {
  return built.has(value);
}

function buildTable(machine: AnyStateMachine): MachineTable {
  try {
    const root = machine.root as unknown as NodeShape;
    refuseExtras(root, 'the root');
    if (root.type !== 'compound') throw new Unsupported(`the root is ${root.type}, not compound`);
    if (root.entry.length > 0 || root.exit.length > 0 || root.always !== undefined) throw new Unsupported('the root has entry, exit or always actions');
    const names = Object.keys(root.states);
    const index = new Map(names.map((name, i) => [name, i]));
    const implementations = machine.implementations as { actions: Record<string, unknown>; guards: Record<string, unknown> };
    const targetOf = (t: TransitionShape, where: string): number => {
      if (t.target === undefined || t.target.length === 0) return -1;
      const node = t.target[0]!;
      if (t.target.length > 1 || root.states[node.key] !== node) throw new Unsupported(`${where} targets something other than one top-level state`);
      return index.get(node.key)!;
    };
    /** A state's transition to itself without `reenter` neither exits nor enters it (xstate's rule): a stay. */
    const edge = (t: TransitionShape, where: string, own: number): Edge => {
      const target = targetOf(t, where);
      return Object.freeze({ guard: guardOf(t.guard, implementations.guards, where), target: target === own && !t.reenter ? -1 : target, steps: stepsOf(t.actions, implementations.actions, where) });
    };
    const rootOn = new Map<string, readonly Edge[]>();
    for (const [type, list] of root.transitions) rootOn.set(type, Object.freeze(list.map((t) => edge(t, `the root's ${type}`, -1))));
    const states = names.map((name, own): TableState => {
      const node = root.states[name]!;
      refuseExtras(node, `state ${name}`);
      if (node.type !== 'atomic' && node.type !== 'final') throw new Unsupported(`state ${name} is ${node.type}`);
      const on = new Map<string, { own: readonly Edge[]; root: readonly Edge[] }>();
      for (const [type, list] of node.transitions) on.set(type, Object.freeze({ own: Object.freeze(list.map((t) => edge(t, `${name}'s ${type}`, own))), root: rootOn.get(type) ?? [] }));
      for (const [type, list] of rootOn) if (!on.has(type)) on.set(type, Object.freeze({ own: [], root: list }));
      for (const type of on.keys()) if (type.includes('*')) throw new Unsupported(`wildcard event ${type}`);
      return Object.freeze({
        name,
        final: node.type === 'final',
        entry: stepsOf(node.entry, implementations.actions, `${name}'s entry`),
        exit: stepsOf(node.exit, implementations.actions, `${name}'s exit`),
        on,
        always: Object.freeze((node.always ?? []).map((t) => edge(t, `${name}'s always`, own))),
      });
    });
    const initial = index.get(String(root.config.initial));
    if (initial === undefined) throw new Unsupported('no initial state');
    return Object.freeze({ unsupported: null, machine, states: Object.freeze(states), initial });
  } catch (error) {
    if (error instanceof Unsupported) return { unsupported: error.message };
    throw error;
  }
}

function refuseExtras(node: NodeShape, where: string): void {
  if (node.config.invoke !== undefined || node.config.after !== undefined || node.history) throw new Unsupported(`${where} invokes, delays or keeps history`);
}

function guardOf(guard: unknown, named: Record<string, unknown>, where: string): Guard | null {
  if (guard === undefined) return null;
  const body = typeof guard === 'string' ? named[guard] : guard;
  // Higher-order guards (not/and/or/stateIn) carry a `check`: xstate resolves them itself.
  if (typeof body !== 'function' || 'check' in body) throw new Unsupported(`${where} has a guard that is not a plain function`);
  return body as Guard;
}

function stepsOf(actions: readonly unknown[], named: Record<string, unknown>, where: string): readonly Step[] {
  return Object.freeze(
    actions.map((action): Step => {
      const body = typeof action === 'string' ? named[action] : action;
      if (typeof body !== 'function') throw new Unsupported(`${where} has an action that is not a function (${String(action)})`);
      const builtin = body as { type?: unknown; assignment?: unknown; resolve?: unknown };
      if (builtin.type === 'xstate.assign') return Object.freeze({ assign: assignerOf(builtin.assignment, where) });
      // Every other builtin (raise, sendTo, spawn, log, enqueueActions...) resolves inside xstate.
      if ('resolve' in builtin) throw new Unsupported(`${where} has the builtin action ${String(builtin.type)}`);
      return Object.freeze({ effect: body as (args: ActionArgs, params: undefined) => void });
    }),
  );
}

/** xstate's assign: a function of the arguments, or an object of values and per-property functions. */
function assignerOf(assignment: unknown, where: string): Assigner {
  if (typeof assignment === 'function') {
    const update = assignment as (args: ActionArgs, params: undefined) => Context;
    return (context, event, self) => update({ context, event, self }, undefined);
  }
  if (assignment === null || typeof assignment !== 'object') throw new Unsupported(`${where} has an assign of ${typeof assignment}`);
  const keys = Object.keys(assignment);
  const values = keys.map((key) => (assignment as Record<string, unknown>)[key]);
  return (context, event, self) => {
    const partial: Context = {};
    for (let k = 0; k < keys.length; k++) {
      const value = values[k];
      partial[keys[k]!] = typeof value === 'function' ? (value as (args: ActionArgs, params: undefined) => unknown)({ context, event, self }, undefined) : value;
    }
    return partial;
  };
}

let sessions = 0;

/**
 * An actor over a machine's table. Like xstate's: an event sent while one is being processed waits
 * in a mailbox; actions run in order with the context as far as the assigns before them made it,
 * and the snapshot changes once the whole step is done; a final state ends the actor. Unlike it, an
 * action or guard that throws makes `send` throw (xstate would report it later, outside the caller).
 */
export class TableActor<TMachine extends AnyStateMachine> implements ProtocolActor<TMachine> {
  readonly sessionId = `table:${++sessions}`;
  private snapshot: { value: string; context: Context; status: Snapshot<unknown>['status']; output: undefined; error: unknown };
  private state: number;
  private readonly mailbox: AnyEventObject[] = [];
  private processing = false;
  /** Copies this actor's contexts (all of one key set); null while they cannot be copied by a literal. */
  private copier: ContextCopier | null;
  private readonly observers: ((event: InspectionEvent) => void)[] = [];
  readonly system = { inspect: (observer: (event: InspectionEvent) => void): Subscription => this.observe(observer) };

  constructor(
    private readonly table: Extract<MachineTable, { unsupported: null }>,
    readonly id: string,
    input: unknown,
  ) {
    const declared = (table.machine.root as unknown as NodeShape).config.context;
    const context = (typeof declared === 'function' ? (declared as (args: { input: unknown; self: unknown }) => Context)({ input, self: this }) : (declared ?? {})) as Context;
    this.copier = copierFor(context);
    this.state = table.initial;
    this.snapshot = { value: table.states[table.initial]!.name, context, status: 'active', output: undefined, error: undefined };
    const init = { type: 'xstate.init', input } as AnyEventObject;
    const initial = this.settle(this.run(table.states[table.initial]!.entry, context, init), init);
    const state = table.states[this.state]!;
    this.snapshot = { value: state.name, context: initial, status: state.final ? 'done' : 'active', output: undefined, error: undefined };
  }

  getSnapshot(): ProtocolSnapshot<ContextFrom<TMachine>> {
    return this.snapshot as unknown as ProtocolSnapshot<ContextFrom<TMachine>>;
  }

  send(event: EventFromLogic<TMachine>): void {
    if (this.snapshot.status !== 'active') return;
    if (this.processing) {
      this.mailbox.push(event);
      return;
    }
    this.processing = true;
    try {
      // The event is processed at once; only what its actions send waits in the mailbox (most sends
      // queue nothing, and an array's push, shift and length reset cost more than the step itself).
      this.process(event);
      for (let k = 0; k < this.mailbox.length; k++) this.process(this.mailbox[k]);
    } finally {
      this.processing = false;
      if (this.mailbox.length > 0) this.mailbox.length = 0;
    }
  }

  stop(): void {
    if (this.snapshot.status === 'active') this.snapshot = { ...this.snapshot, status: 'stopped' };
    this.mailbox.length = 0;
  }

  private observe(observer: (event: InspectionEvent) => void): Subscription {
    this.observers.push(observer);
    return {
      unsubscribe: () => {
        const at = this.observers.indexOf(observer);
        if (at >= 0) this.observers.splice(at, 1);
      },
    };
  }

  private process(event: AnyEventObject): void {
    if (this.snapshot.status !== 'active') return;
    const observers = this.observers;
    // Indexed loops here and below: this runs several times per VM exit, and for-of's iterators showed up in allocation profiles.
    for (let k = 0; k < observers.length; k++) observers[k]({ type: '@xstate.event', rootId: this.sessionId, actorRef: this, sourceRef: undefined, event });
    const before = this.snapshot;
    const stateBefore = this.state;
    let context = before.context;
    try {
      const candidates = this.table.states[this.state]!.on.get(event.type);
      const taken = candidates === undefined ? null : (this.select(candidates.own, context, event) ?? this.select(candidates.root, context, event));
      if (taken !== null) context = this.settle(this.take(taken, context, event), event);
    } catch (error) {
      // As in xstate, the failed step changes nothing but the status.
      this.state = stateBefore;
      this.snapshot = { ...before, status: 'error', error };
      throw error;
    }
    const state = this.table.states[this.state]!;
    if (context !== before.context || state.name !== before.value || state.final) {
      this.snapshot = { value: state.name, context, status: state.final ? 'done' : 'active', output: undefined, error: undefined };
    }
    for (let k = 0; k < observers.length; k++) observers[k]({ type: '@xstate.snapshot', rootId: this.sessionId, actorRef: this, snapshot: this.getSnapshot(), event });
  }

  private select(edges: readonly Edge[], context: Context, event: AnyEventObject): Edge | null {
    for (let k = 0; k < edges.length; k++) {
      const edge = edges[k];
      if (edge.guard === null || edge.guard({ context, event, self: this }, undefined)) return edge;
    }
    return null;
  }

  /** Takes eventless transitions until none is enabled (guards see the event that started the step). */
  private settle(context: Context, event: AnyEventObject): Context {
    if (this.table.states[this.state]!.always.length === 0) return context;
    let next = context;
    for (let edge = this.select(this.table.states[this.state]!.always, next, event); edge !== null; edge = this.select(this.table.states[this.state]!.always, next, event)) {
      next = this.take(edge, next, event);
    }
    return next;
  }

  /** One microstep: the source's exit actions, the edge's, the target's entry actions. */
  private take(edge: Edge, context: Context, event: AnyEventObject): Context {
    if (edge.target < 0) return edge.steps.length === 0 ? context : this.run(edge.steps, context, event);
    let next = this.run(this.table.states[this.state]!.exit, context, event);
    next = this.run(edge.steps, next, event);
    this.state = edge.target;
    return this.run(this.table.states[edge.target]!.entry, next, event);
  }

  /** xstate's `Object.assign({}, context, partial)`, through the copier while the keys stay the same. */
  private merge(context: Context, partial: Context): Context {
    if (this.copier !== null) {
      const next = mergeWith(this.copier, context, partial);
      if (next !== null) return next;
    }
    const next = Object.assign({}, context, partial);
    this.copier = copierFor(next);
    return next;
  }

  private run(steps: readonly Step[], context: Context, event: AnyEventObject): Context {
    let next = context;
    for (let k = 0; k < steps.length; k++) {
      const step = steps[k];
      if ('assign' in step) next = this.merge(next, step.assign(next, event, this));
      else step.effect({ context: next, event, self: this }, undefined);
    }
    return next;
  }
}

/**
 * Starts `machine` as a table actor, or as xstate's own when it is inspected from creation or its
 * shape is outside what a table covers.
 */
export function startProtocolActor<TMachine extends AnyStateMachine>(machine: TMachine, options: ProtocolActorOptions<TMachine>): ProtocolActor<TMachine> {
  const table = options.inspect === undefined && options.interpreter !== 'xstate' ? machineTable(machine) : null;
  if (table !== null && table.unsupported === null) return new TableActor<TMachine>(table, options.id, options.input);
  const { interpreter: _xstate, ...actorOptions } = options;
  return createActor(machine, actorOptions as Parameters<typeof createActor<TMachine>>[1]).start() as unknown as ProtocolActor<TMachine>;
}
