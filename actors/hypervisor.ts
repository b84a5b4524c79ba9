import type { EptAccess, Glue, RandomSource, VcpuAccess } from '../src/intro/glue.ts';
import type { ExitRecord } from '../src/machine/vcpu-state.ts';

export type { EptAccess, RandomSource, VcpuAccess };

/**
 * What exit handlers and the timer callback get: HVMI's integrator interface, reduced to what the
 * simulated introspection engine needs. Everything here runs in the hypervisor's one thread, one
 * call at a time (HVMI's gLock).
 */

/** How a handled exit resumes the vCPU (HVMI's INTRO_ACTION, plus stopping the vCPU for good). */
export type ExitAction =
  /** Re-execute the instruction at the same RIP (introGuestRetry). */
  | 'retry'
  /**
   * Execute the instruction once with EPT ignored (introGuestAllowed); one that exited on its own
   * control (WRMSR, MOV CR, XSETBV, descriptor tables) is carried out without exiting again.
   */
  | 'allowed'
  /** The handler emulated it: skip to the next instruction (introGuestAllowedVirtual). */
  | 'allowedVirtual'
  /** Skip it without performing the access (introGuestNotAllowed). */
  | 'notAllowed'
  /** Stop this vCPU for good (a guest that finished, or a verdict). */
  | 'shutdown';

export interface ExitReply {
  readonly action: ExitAction;
  /** An exception to inject at VM entry (IntInjectExceptionInGuest). */
  readonly inject?: { readonly vector: number; readonly errorCode?: number };
  /**
   * allowedVirtual only: bytes from the exit's RIP the handler carried out — more than the exiting
   * instruction when the engine emulated the ones after it in the same exit (HVMI's PAE
   * second-store lookahead, whose emulation leaves RIP past both stores). Default: the exiting
   * instruction's length.
   */
  readonly emulatedLength?: number;
}

/** The hypervisor as handlers see it: the engine's glue interface (src/intro/glue.ts). */
export type Hypervisor = Glue;

/** What an exit handler gets: the hypervisor, plus the exiting vCPU and its exit record. */
export interface ExitContext extends Hypervisor {
  readonly vcpuId: number;
  readonly exit: ExitRecord;
  /** This exit's ticket (the n-th exit of the run has ticket n). */
  readonly exitTicket: number;
  /** The exiting vCPU's registers (always accessible: it is stopped at the exit). */
  readonly self: VcpuAccess;
}

export type ExitHandler = (context: ExitContext) => ExitReply;
export type TimerHandler = (hypervisor: Hypervisor) => void;

/** Raised when code reads or writes a vCPU that is running (TIMER_FRIENDLY violations). */
export class VcpuAccessError extends Error {
  constructor(
    readonly vcpu: number,
    readonly state: string,
  ) {
    super(
      `vCPU ${vcpu} is ${state}: its registers may only be accessed while it is stopped at an exit or paused ` +
        '(HVMI TIMER_FRIENDLY rule) — call pauseVcpus() first',
    );
    this.name = 'VcpuAccessError';
  }
}

/**
 * Faults of real hypervisors a scenario lets the scheduler explore, each on one handled exit:
 * `duplicate-exit` delivers an EPT violation to the engine twice (as seen on Xen), `late-flush`
 * commits the EPT changes of the handler without making running vCPUs enter again — they keep the
 * rights they entered with until their next exit.
 */
export type HypervisorFault = 'duplicate-exit' | 'late-flush';
