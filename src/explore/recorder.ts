import type { InspectionEvent } from 'xstate';
import type { RuntimeEvent } from '../../actors/events.ts';
import { tryReadGuestVirtual, vcpuView } from '../machine/guest-virtual.ts';
import type { Machine } from '../machine/machine.ts';
import type { OraclePhase, TimedEvent } from './scenario.ts';
import type { Choice } from './schedule.ts';
import type { TraceEntry } from './trace.ts';

/**
 * What a recorded run keeps beyond its report, for the Perfetto and HTML reports: every actor's
 * state changes (xstate inspection) and, at every VM exit, the vCPU's registers and the code at
 * its RIP. Recording only reads — the vCPU is stopped at its exit and guest memory is read by a
 * software walk — so a recorded run makes the same choices and has the same trace hash.
 */

/** Where an observation falls among the run's trace entries and events. */
export interface RunPosition {
  /** Trace entries (choices and events) recorded before it; stays at the trace's length once the run is over. */
  readonly entries: number;
  /** Runtime events observed before it (the unload's included). */
  readonly events: number;
  readonly clock: number;
}

/** An actor entering a state. */
export interface ActorChange {
  readonly at: RunPosition;
  /** The actor's id: session, dispatch, pause, vcpu0…, hookCommit, threadSafeness, uninit. */
  readonly actor: string;
  /** Its state value, nested states joined with dots. */
  readonly state: string;
  /** What else the state means, for actors where it says more (who holds the handler lock, why a vCPU stopped). */
  readonly detail: string | null;
}

/** A vCPU at one of its VM exits, read as the exit was collected. */
export interface ExitCapture {
  /** Index of the exit's `stop` event in the run's events. */
  readonly event: number;
  readonly vcpu: number;
  /** General-purpose registers, RIP, RFLAGS, control registers and the exit record's fields. */
  readonly registers: Readonly<Record<string, bigint>>;
  /** The bytes at RIP as this vCPU saw them (fewer when the next page is unmapped; empty when RIP is). */
  readonly code: Uint8Array;
  /** The code's width (32 for a 32-bit guest or compatibility mode). */
  readonly bitness: 32 | 64;
}

/** Everything the reports of one run are built from. */
export interface RunRecording {
  readonly vcpus: number;
  /** The trace's entries: choices (`> …`) and runtime events, in order. */
  readonly entries: readonly TraceEntry[];
  /** The choices among them, in order. */
  readonly choices: readonly Choice[];
  /** Every runtime event, the trace's and the unload's after it. */
  readonly events: readonly TimedEvent[];
  readonly actors: readonly ActorChange[];
  readonly exits: readonly ExitCapture[];
  /** When each oracle of the scenario is checked, so a report can place a violation in time. */
  readonly oraclePhases: Readonly<Record<string, OraclePhase>>;
}

/** Bytes read at an exit's RIP: enough for a few instructions. */
const CODE_BYTES = 32;
const PAGE = 0x1000;

type Snapshot = { readonly value?: unknown; readonly context?: unknown };

/** The state value of a machine snapshot as one string ("waiting", "a.b"). */
function stateName(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') return null;
  const [key, inner] = Object.entries(value as Record<string, unknown>)[0] ?? [];
  if (key === undefined) return null;
  const rest = stateName(inner);
  return rest === null ? key : `${key}.${rest}`;
}

const field = (context: unknown, name: string): unknown => (context !== null && typeof context === 'object' ? (context as Record<string, unknown>)[name] : undefined);

/** What a state of some actors means beyond its name, read from the actor's context. */
const DETAILS: readonly { readonly actor: RegExp; readonly detail: (context: unknown) => string | null }[] = [
  {
    actor: /^dispatch$/,
    detail: (context) => {
      const holder = field(context, 'holder');
      const kind = field(holder, 'kind');
      return kind === 'exit' ? `exit v${String(field(holder, 'vcpu'))}` : typeof kind === 'string' ? kind : null;
    },
  },
  { actor: /^vcpu\d+$/, detail: (context) => (typeof field(context, 'reason') === 'string' ? String(field(context, 'reason')) : null) },
  { actor: /^uninit$/, detail: (context) => (typeof field(context, 'tries') === 'number' ? `try ${String(field(context, 'tries'))}` : null) },
];

export class RunRecorder {
  private readonly actors: ActorChange[] = [];
  private readonly exits: ExitCapture[] = [];
  private readonly lastState = new Map<string, string>();
  private events = 0;
  private sealed = false;

  /**
   * @param machine the run's machine (registers and memory are read at exits)
   * @param clock the session's virtual clock
   * @param entries how many trace entries the run has recorded so far
   */
  constructor(
    private readonly machine: Machine,
    private readonly clock: () => number,
    private readonly entries: () => number,
  ) {}

  /** xstate's inspection callback: keeps each actor's state changes. */
  readonly inspect = (event: InspectionEvent): void => {
    if (this.sealed || event.type !== '@xstate.snapshot') return;
    const snapshot = event.snapshot as Snapshot;
    const state = stateName(snapshot.value);
    const ref: object = event.actorRef;
    const actor = 'id' in ref && typeof ref.id === 'string' ? ref.id : event.actorRef.sessionId;
    if (state === null || this.lastState.get(actor) === state) return;
    this.lastState.set(actor, state);
    const detail = DETAILS.find((d) => d.actor.test(actor))?.detail(snapshot.context) ?? null;
    this.actors.push({ at: this.position(), actor, state, detail });
  };

  /** Sees every runtime event (after the rig's own log): registers and code at each VM exit. */
  observe(event: RuntimeEvent): void {
    if (this.sealed) return;
    const index = this.events++;
    if (event.kind !== 'stop' || event.exit === null) return;
    const state = this.machine.vcpu(event.vcpu);
    const exit = state.exit();
    const registers: Record<string, bigint> = { ...state.gprs(), rip: event.rip, rflags: state.rflags };
    for (const name of ['cr0', 'cr2', 'cr3', 'cr4', 'fsBase', 'gsBase'] as const) registers[name] = state.get64(name);
    Object.assign(registers, { exitQualification: BigInt(exit.qualification), exitGpa: exit.gpa, exitGla: exit.gla, exitInstructionLength: BigInt(exit.instructionLength) });
    this.exits.push({ event: index, vcpu: event.vcpu, registers, code: this.codeAt(event.vcpu, event.rip), bitness: vcpuView(state).bitness });
  }

  /** The code at `rip` as vCPU `vcpu` maps it, stopping at an unmapped page. */
  private codeAt(vcpu: number, rip: bigint): Uint8Array {
    const view = vcpuView(this.machine.vcpu(vcpu));
    const memory = this.machine.memory;
    const full = tryReadGuestVirtual(memory, view.root, rip, CODE_BYTES, view.format);
    if (full !== null) return full;
    const toPageEnd = PAGE - Number(rip & BigInt(PAGE - 1));
    return (toPageEnd < CODE_BYTES ? tryReadGuestVirtual(memory, view.root, rip, toPageEnd, view.format) : null) ?? new Uint8Array(0);
  }

  private position(): RunPosition {
    // Before the run's first event the session may still show the last run's clock (its actors
    // start before the session restarts); nothing moves the clock before an event, so it is 0.
    return { entries: this.entries(), events: this.events, clock: this.events === 0 ? 0 : this.clock() };
  }

  /** Ends the recording: what the run's actors do afterwards (stopping, the next run) is not this run's. */
  finish(run: { readonly entries: readonly TraceEntry[]; readonly choices: readonly Choice[]; readonly events: readonly TimedEvent[]; readonly oraclePhases: Readonly<Record<string, OraclePhase>> }): RunRecording {
    this.sealed = true;
    return { vcpus: this.machine.vcpuCount, entries: run.entries, choices: run.choices, events: run.events, actors: this.actors, exits: this.exits, oraclePhases: run.oraclePhases };
  }
}
