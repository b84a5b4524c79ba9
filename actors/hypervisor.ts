import type { GuestMemory } from '../src/machine/memory.ts';
import type { ExitRecord, Field32, Field64, GprName } from '../src/machine/vcpu-state.ts';

/**
 * What exit handlers and the timer callback get: HVMI's integrator interface, reduced to what the
 * simulated introspection engine needs. Everything here runs in the hypervisor's one thread, one
 * call at a time (HVMI's gLock).
 */

/** How a handled exit resumes the vCPU (HVMI's INTRO_ACTION, plus stopping the vCPU for good). */
export type ExitAction =
  /** Re-execute the instruction at the same RIP (introGuestRetry). */
  | 'retry'
  /** Execute the instruction once with EPT ignored (introGuestAllowed). */
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
}

/** Registers of one vCPU, readable and writable only while it is stopped (exited or paused). */
export interface VcpuAccess {
  readonly id: number;
  gpr(name: GprName): bigint;
  setGpr(name: GprName, value: bigint): void;
  rip(): bigint;
  setRip(value: bigint): void;
  rflags(): bigint;
  get64(field: Field64): bigint;
  set64(field: Field64, value: bigint): void;
  get32(field: Field32): number;
}

/** The committed-versus-pending EPT, as the integrator exposes it. */
export interface EptAccess {
  /** Rights a vCPU would get at its next VM entry (pending changes included). */
  rightsAt(gpa: number): number;
  /** Requests new rights for `pages` pages; they take effect when committed (flush or resume). */
  setRights(gpa: number, rights: number, pages?: number): void;
  /** Commits pending rights now (IntFlushEPTPermissions); running vCPUs still see them only at entry. */
  flush(): void;
}

/** A seeded source of random numbers (the engine's random replacement choices). */
export interface RandomSource {
  below(bound: number): number;
}

export interface Hypervisor {
  readonly vcpuCount: number;
  /** Guest-physical memory; writes here bypass EPT (the engine's own mapping). */
  readonly memory: GuestMemory;
  readonly ept: EptAccess;
  /** Virtual time: steps retired by all vCPUs so far. */
  readonly clock: number;
  readonly random: RandomSource;
  /** Registers of vCPU `id`; any access throws unless that vCPU is stopped or paused. */
  vcpu(id: number): VcpuAccess;
  /** Pauses every vCPU at an instruction boundary (counted; nests). */
  pauseVcpus(): void;
  /** Undoes one pauseVcpus(); the last one commits EPT rights and lets the vCPUs run. */
  resumeVcpus(): void;
  /** Records an engine event in the trace (patches, cache flushes…); counts as a PCT event. */
  note(what: string, detail?: Readonly<Record<string, string | number | bigint | boolean>>): void;
}

/** What an exit handler gets: the hypervisor, plus the exiting vCPU and its exit record. */
export interface ExitContext extends Hypervisor {
  readonly vcpuId: number;
  readonly exit: ExitRecord;
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
