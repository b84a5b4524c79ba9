import { assign, type EventFromLogic, type InspectionEvent } from 'xstate';
import { handleCrWrite } from '../src/intro/callbacks/cr-write.ts';
import { handleDtr } from '../src/intro/callbacks/dtr.ts';
import { handleIntroCall } from '../src/intro/callbacks/intro-call.ts';
import { handleMsrWrite } from '../src/intro/callbacks/msr-write.ts';
import { handleXcrWrite } from '../src/intro/callbacks/xcr-write.ts';
import { Introcore } from '../src/intro/engine.ts';
import type { GuestDescription } from '../src/guest/description.ts';
import type { Fixes } from '../src/intro/fixes.ts';
import type { ExitEvent } from '../src/intro/glue.ts';
import { HookType } from '../src/intro/gpa-hooks.ts';
import { IntroAction, IntroError, IntStatus, type IntroActionCode } from '../src/intro/status.ts';
import { checkThreads, UNLOAD_CHECK, type ThreadScan } from '../src/intro/thread-safeness.ts';
import { ExitAccess, ExitEptFlags, ExitReason, type ExitReasonCode } from '../src/machine/layout.ts';
import { EffectErrors } from './effects.ts';
import { hookCommitMachine } from './hook-commit.machine.ts';
import { startProtocolActor, type ProtocolActor } from './table-actor.ts';
import { threadSafenessMachine } from './thread-safeness.machine.ts';
import { uninitMachine } from './uninit.machine.ts';
import type { ExitContext, ExitReply, Hypervisor } from './hypervisor.ts';
import type { Session } from './session.ts';

/**
 * The integrator: wires the introspection engine into a session. Exits go to the engine's entry
 * points (EPT violations, INT3, VMCALL, MSR/CR/XCR writes, descriptor-table accesses), and a
 * VMCALL the engine does not claim to the guest's own hypercalls; the timer runs the engine's
 * TIMER_FRIENDLY checks; after every handler and tick the hook-commit actor deletes flagged
 * hooks. The engine's actions become exit replies here.
 */

/** What a guest's own VMCALL means: go on past it, or stop this vCPU for good. */
export type GuestCallOutcome = 'continue' | 'stop';

export interface IntrospectionOptions {
  readonly guest: GuestDescription;
  readonly fixes: Fixes;
  /** A scenario's own teardown, run at the start of GuestUninit (whenever the unload happens). */
  readonly beforeUninit?: (engine: Introcore) => void;
  /** The daemon's unload attempts before it gives up, and the virtual time between two (HVMI: 300 × 100 ms). */
  readonly unloadTries?: number;
  readonly unloadRetrySteps?: number;
  /** VMCALLs of the guest's protocol (thread exit, bug check); null: not one of them. */
  readonly guestCall?: (event: ExitEvent) => GuestCallOutcome | null;
  readonly inspect?: (event: InspectionEvent) => void;
}

/** HVMI's daemon: 300 attempts; between two, 100 ms of guest time (virtual steps here). */
const DEFAULT_TRIES = 300;
const DEFAULT_RETRY_STEPS = 2000;

const REPLIES: Readonly<Record<IntroActionCode, ExitReply>> = {
  [IntroAction.allowed]: { action: 'allowed' },
  [IntroAction.allowedVirtual]: { action: 'allowedVirtual' },
  // The patch buffer is the hypervisor emulator's business; this engine never asks for it.
  [IntroAction.allowedPatched]: { action: 'allowed' },
  [IntroAction.notAllowed]: { action: 'notAllowed' },
  // introGuestIgnore: no opinion — the hypervisor's default, which is to let it run.
  [IntroAction.ignore]: { action: 'allowed' },
  [IntroAction.retry]: { action: 'retry' },
};

/** Where the unload stands, for oracles and reports. */
export interface UnloadReport {
  /** active (not asked), waiting (a retry is due), unloaded, failed, or in progress. */
  readonly state: string;
  readonly tries: number;
  /** The last thread-safeness result (null before any check, or when the check was refused). */
  readonly scan: ThreadScan | null;
  /** Checks asked for while the vCPUs were running (refused). */
  readonly refusedChecks: number;
}

export class Introspection {
  private engineInstance: Introcore | null = null;
  private readonly commitActor: ProtocolActor<typeof hookCommitMachine>;
  private readonly safenessActor: ProtocolActor<typeof threadSafenessMachine>;
  private readonly uninitActor: ProtocolActor<typeof uninitMachine>;
  private readonly effects = new EffectErrors();

  constructor(
    private readonly session: Session,
    private readonly options: IntrospectionOptions,
  ) {
    const engine = (): Introcore => this.engine;
    const actorOptions = { interpreter: session.interpreter, ...(options.inspect ? { inspect: options.inspect } : {}) };
    this.safenessActor = startProtocolActor(
      threadSafenessMachine.provide({
        actions: { scan: assign(() => ({ result: this.effects.attempt(() => checkThreads(engine(), UNLOAD_CHECK, options.guest.threads), null) })) },
      }),
      { id: 'threadSafeness', ...actorOptions },
    );
    this.uninitActor = startProtocolActor(
      uninitMachine.provide({
        actions: {
          pause: this.effects.guard(() => session.pauseVcpus()),
          resume: this.effects.guard(() => session.resumeVcpus()),
          prepare: this.effects.guard(() => this.prepareUninit()),
          check: assign(() => ({ safe: this.effects.attempt(() => this.checkSafeness(), false) })),
          uninit: this.effects.guard(() => this.guestUninit()),
          scheduleRetry: this.effects.guard(() => session.defer('unload retry', options.unloadRetrySteps ?? DEFAULT_RETRY_STEPS, () => this.send({ type: 'RETRY' }))),
        },
      }),
      {
        id: 'uninit',
        input: { maxTries: options.unloadTries ?? DEFAULT_TRIES, checkSafeness: options.fixes.threadSafenessCheck, deferToReturn: options.fixes.deferDisableToReturn },
        ...actorOptions,
      },
    );
    this.commitActor = startProtocolActor(
      hookCommitMachine.provide({
        actions: {
          deleteReadHooks: this.effects.guard(() => void engine().deleteRemovedHooks(HookType.read)),
          deleteWriteHooks: this.effects.guard(() => void engine().deleteRemovedHooks(HookType.write)),
          deleteExecuteHooks: this.effects.guard(() => void engine().deleteRemovedHooks(HookType.execute)),
        },
        guards: {
          removalsPending: () => this.engineInstance !== null && this.engineInstance.hooks.dirty,
        },
      }),
      { id: 'hookCommit', ...actorOptions },
    );
  }

  private send(event: EventFromLogic<typeof uninitMachine>): void {
    this.uninitActor.send(event);
    this.effects.rethrow();
  }

  /** IntGuestPrepareUninit (once): patches out, handler INT3s NOPed, hooks committed. */
  private prepareUninit(): void {
    this.engine.disable();
    this.commit();
    this.engine.note('uninit-prepare', { pauseDepth: this.session.pauseDepth });
  }

  /**
   * IntGuestIsSafeToDisable: the thread-safeness actor's verdict. The check assumes every vCPU is
   * paused; asked while they run (something resumed them under the unload's pause) it is refused,
   * and the engine stops there rather than trust registers that are changing.
   */
  private checkSafeness(): boolean {
    this.safenessActor.send({ type: 'CHECK', paused: this.session.pauseDepth > 0 });
    const snapshot = this.safenessActor.getSnapshot();
    if (snapshot.value === 'refused') {
      throw new IntroError(IntStatus.invalidInternalState, 'the thread-safeness check was asked for while the vCPUs were running: a resume inside the unload released its pause');
    }
    const scan = snapshot.context.result;
    const unsafe = scan?.unsafe ?? null;
    this.engine.note('thread-safeness', {
      verdict: String(snapshot.value),
      pauseDepth: this.session.pauseDepth,
      ...(unsafe !== null ? { vcpu: unsafe.vcpu ?? -1, thread: unsafe.thread?.index ?? -1, pointer: unsafe.pointer, region: unsafe.region.owner } : {}),
    });
    return snapshot.value === 'safe';
  }

  /** IntGuestUninit in HVMI's order, then the hooks a scenario placed, committed. */
  private guestUninit(): void {
    this.options.beforeUninit?.(this.engine);
    this.engine.note('uninit', { pauseDepth: this.session.pauseDepth });
    this.engine.uninit();
    this.commit();
  }

  /** Where the unload stands. */
  get unloadReport(): UnloadReport {
    const snapshot = this.uninitActor.getSnapshot();
    const safeness = this.safenessActor.getSnapshot().context;
    return { state: String(snapshot.value), tries: snapshot.context.tries, scan: safeness.result, refusedChecks: safeness.refusals };
  }

  /** The integrator's daemon will ask for the unload (IntDisableIntro), when the scheduler lets it run. */
  requestUnload(): void {
    this.session.defer('unload', 0, () => this.send({ type: 'DISABLE' }));
  }

  /** The engine (after `start`). */
  get engine(): Introcore {
    if (this.engineInstance === null) throw new Error('the introspection engine is not started: call start() after the session is (re)started');
    return this.engineInstance;
  }

  /** Hook-commit actor state: 'clean' or 'dirty'. */
  get commitState(): string {
    return String(this.commitActor.getSnapshot().value);
  }

  /**
   * IntNewGuestNotification: the engine reads the guest and places its hooks; then `extend` (a
   * scenario's engine logic) places its own. Everything placed is committed before the guest runs.
   */
  start(extend?: (engine: Introcore) => void): Introcore {
    this.engineInstance = new Introcore(this.session, this.options.guest, {
      fixes: this.options.fixes,
      onHookRemoved: () => this.commitActor.send({ type: 'HOOK_REMOVED' }),
      requestUnload: () => this.requestUnload(),
      requestDisableOnReturn: () => this.send({ type: 'REQUEST_ON_RETURN' }),
    });
    extend?.(this.engineInstance);
    this.commit();
    if (this.session.ept.size > 0) this.session.ept.flush();
    return this.engineInstance;
  }

  /** The session's exit handler: the engine's answer, then a disable a callback asked for (DisableOnReturn). */
  readonly handler = (context: ExitContext): ExitReply => {
    const reply = this.dispatch(context);
    this.send({ type: 'HANDLER_RETURNED' });
    return reply;
  };

  private dispatch(context: ExitContext): ExitReply {
    const handle = this.exitHandlers[context.exit.reason];
    if (handle === undefined) {
      throw new Error(`vCPU ${context.vcpuId}: unexpected exit reason ${context.exit.reason} at RIP 0x${context.exit.rip.toString(16)}`);
    }
    return handle(context);
  }

  /** The engine's entry point for each exit reason it handles (HVMI's IntHandle*), and how its answer becomes a reply. */
  private readonly exitHandlers: Readonly<Partial<Record<ExitReasonCode, (context: ExitContext) => ExitReply>>> = {
    [ExitReason.eptViolation]: (context) => (isAccessedDirtyUpdate(context) ? this.assistAccessedDirty(context) : this.withInjection(context, this.eptReply(context))),
    [ExitReason.int3]: (context) => {
      const { action, reinject } = this.engine.handleBreakpoint(context);
      // A guest INT3 goes back to the guest as #BP, past the INT3 like the trap it is.
      return reinject ? { action: 'allowedVirtual', inject: { vector: 3 } } : REPLIES[action];
    },
    [ExitReason.vmcall]: (context) => this.introCall(context),
    [ExitReason.msrWrite]: (context) => REPLIES[handleMsrWrite(this.engine, context).action],
    [ExitReason.crWrite]: (context) => REPLIES[handleCrWrite(this.engine, context).action],
    [ExitReason.xcrWrite]: (context) => REPLIES[handleXcrWrite(this.engine, context).action],
    [ExitReason.dtr]: (context) => REPLIES[handleDtr(this.engine, context).action],
  };

  /** IntHandleEptViolation's action as a reply; one that carried out more than the exiting instruction says how much. */
  private eptReply(context: ExitContext): ExitReply {
    const action = this.engine.handleEptViolation(context);
    const emulatedLength = this.engine.takeEmulatedLength(context.vcpuId);
    return emulatedLength === null ? REPLIES[action] : { ...REPLIES[action], emulatedLength };
  }

  /**
   * An exception the engine asked for during the exit rides on its reply (the integrator injects
   * it at the next entry); a #PF gets its CR2 first.
   */
  private withInjection(context: ExitContext, reply: ExitReply): ExitReply {
    const injection = this.engine.takeInjection(context.vcpuId);
    if (injection === null) return reply;
    if (injection.cr2 !== undefined) context.self.set64('cr2', injection.cr2);
    return { ...reply, inject: { vector: injection.vector, errorCode: injection.errorCode } };
  }

  /**
   * The hypervisor's A/D assist: sets the bit the walk wanted in the entry (A if it is clear —
   * every walk through an entry needs it — otherwise D, the only other bit a walk writes) and
   * lets the instruction run again, so its own access still meets the EPT as it is.
   */
  private assistAccessedDirty(context: ExitContext): ExitReply {
    const memory = this.engine.glue.memory;
    const index = Math.floor(Number(context.exit.gpa) / 8);
    const entry = Atomics.load(memory.i64, index);
    Atomics.or(memory.i64, index, (entry & ACCESSED) === 0n ? ACCESSED : DIRTY);
    memory.noteWrite(index * 8, 8);
    return REPLIES[IntroAction.retry];
  }

  /** IntHandleIntroCall first; what the engine does not claim goes to the guest's own protocol. */
  private introCall(context: ExitContext): ExitReply {
    const outcome = handleIntroCall(this.engine, context).outcome ?? this.options.guestCall?.(context) ?? null;
    if (outcome === null) {
      throw new Error(`vCPU ${context.vcpuId}: VMCALL at RIP 0x${context.exit.rip.toString(16)} with RAX 0x${context.self.gpr('rax').toString(16)} is not a hypercall this guest or engine knows`);
    }
    return outcome === 'stop' ? { action: 'shutdown' } : { action: 'allowedVirtual' };
  }

  /** The session's timer callback (IntHandleTimer). */
  readonly timer = (_hypervisor: Hypervisor): void => {
    this.engine.handleTimer();
  };

  /** Runs after every handler and timer tick (IntGuestPreReturnCallback(POST_COMMIT_MEM)). */
  readonly afterHandler = (_hypervisor: Hypervisor): void => {
    this.commit();
  };

  /** Commits flagged hooks now (also done by uninit). */
  commit(): void {
    this.commitActor.send({ type: 'COMMIT' });
    this.effects.rethrow();
  }

  /**
   * The end of a run: unloads now if the engine is still loaded, with one last attempt (waiting
   * would change nothing once the guest is done). `ignoreSafeness` when no guest thread will run
   * again whatever state it is in (a run stopped midway).
   */
  unload(options: { readonly ignoreSafeness?: boolean } = {}): UnloadReport {
    const state = String(this.uninitActor.getSnapshot().value);
    if (state === 'active' || state === 'waiting') this.send({ type: 'DISABLE', final: true, ignoreSafeness: options.ignoreSafeness === true });
    return this.unloadReport;
  }

  /** Stops the actors and frees the engine's decoder. */
  stop(): void {
    this.stopActors();
    this.engineInstance?.free();
    this.engineInstance = null;
  }

  /**
   * Stops the actors and keeps the engine's WASM objects: a run branched from a snapshot ends many
   * times, and every restore brings back an engine that still decodes with them.
   */
  stopActors(): void {
    this.commitActor.stop();
    this.safenessActor.stop();
    this.uninitActor.stop();
  }
}

/**
 * A page walk setting an A or D bit in a write-protected page table (a write to a paging
 * structure, not to the translated page): the hypervisor completes it itself and the engine never
 * hears of it — HVMI: "we don't get notifications on A/D bits modifications made by the CPU".
 */
function isAccessedDirtyUpdate(context: ExitContext): boolean {
  const qualification = context.exit.qualification;
  return (qualification & ExitEptFlags.finalTranslation) === 0 && (qualification & ExitEptFlags.glaValid) !== 0 && (qualification & ExitAccess.write) !== 0;
}

const ACCESSED = 0x20n;
const DIRTY = 0x40n;
