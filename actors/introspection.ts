import { createActor, type Actor, type InspectionEvent } from 'xstate';
import { Introcore, type GuestDescription } from '../src/intro/engine.ts';
import type { Fixes } from '../src/intro/fixes.ts';
import type { ExitEvent } from '../src/intro/glue.ts';
import { HookType } from '../src/intro/gpa-hooks.ts';
import { IntroAction, type IntroActionCode } from '../src/intro/status.ts';
import { ExitReason } from '../src/machine/layout.ts';
import { EffectErrors } from './effects.ts';
import { hookCommitMachine } from './hook-commit.machine.ts';
import type { ExitContext, ExitReply, Hypervisor } from './hypervisor.ts';
import type { Session } from './session.ts';

/**
 * The integrator: wires the introspection engine into a session. Exits go to the engine's entry
 * points (EPT violations, INT3) or to the guest's own hypercalls; the timer runs the engine's
 * TIMER_FRIENDLY checks; after every handler and tick the hook-commit actor deletes flagged
 * hooks. The engine's actions become exit replies here.
 */

/** What a guest's own VMCALL means: go on past it, or stop this vCPU for good. */
export type GuestCallOutcome = 'continue' | 'stop';

export interface IntrospectionOptions {
  readonly guest: GuestDescription;
  readonly fixes: Fixes;
  /** VMCALLs of the guest's protocol (thread exit, bug check); null: not one of them. */
  readonly guestCall?: (event: ExitEvent) => GuestCallOutcome | null;
  readonly inspect?: (event: InspectionEvent) => void;
}

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

export class Introspection {
  private engineInstance: Introcore | null = null;
  private readonly commitActor: Actor<typeof hookCommitMachine>;
  private readonly effects = new EffectErrors();

  constructor(
    private readonly session: Session,
    private readonly options: IntrospectionOptions,
  ) {
    const engine = (): Introcore => this.engine;
    this.commitActor = createActor(
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
      { id: 'hookCommit', ...(options.inspect ? { inspect: options.inspect } : {}) },
    ).start();
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
    });
    extend?.(this.engineInstance);
    this.commit();
    if (this.session.ept.size > 0) this.session.ept.flush();
    return this.engineInstance;
  }

  /** The session's exit handler. */
  readonly handler = (context: ExitContext): ExitReply => {
    const exit = context.exit;
    switch (exit.reason) {
      case ExitReason.eptViolation:
        return REPLIES[this.engine.handleEptViolation(context)];
      case ExitReason.int3: {
        const { action, reinject } = this.engine.handleBreakpoint(context);
        // A guest INT3 goes back to the guest as #BP, past the INT3 like the trap it is.
        return reinject ? { action: 'allowedVirtual', inject: { vector: 3 } } : REPLIES[action];
      }
      case ExitReason.vmcall: {
        // The engine's own hypercalls first (a scenario's), then the guest's protocol.
        const engineCall = this.engine.hypercalls.get(context.self.gpr('rax'));
        const outcome = engineCall !== undefined ? engineCall.handle(context) : (this.options.guestCall?.(context) ?? null);
        if (outcome === null) {
          throw new Error(`vCPU ${context.vcpuId}: VMCALL at RIP 0x${exit.rip.toString(16)} with RAX 0x${context.self.gpr('rax').toString(16)} is not a hypercall this guest or engine knows`);
        }
        return outcome === 'stop' ? { action: 'shutdown' } : { action: 'allowedVirtual' };
      }
      default:
        throw new Error(`vCPU ${context.vcpuId}: unexpected exit reason ${exit.reason} at RIP 0x${exit.rip.toString(16)}`);
    }
  };

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
   * IntGuestDisableIntro without the thread-safeness wait: `before` (a scenario's own teardown)
   * runs first; then, with every vCPU paused, the patches come out, handlers and hooks go, and
   * the removals are committed.
   */
  uninit(before?: (engine: Introcore) => void): void {
    const engine = this.engine;
    before?.(engine);
    this.session.pauseVcpus();
    try {
      engine.uninit();
      this.commit();
    } finally {
      this.session.resumeVcpus();
    }
  }

  /** Stops the actor and frees the engine's decoder. */
  stop(): void {
    this.commitActor.stop();
    this.engineInstance?.free();
    this.engineInstance = null;
  }
}
