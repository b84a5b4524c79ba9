import type { GuestMemory } from '../machine/memory.ts';
import type { ExitRecord, Field32, Field64, GprName } from '../machine/vcpu-state.ts';

/**
 * What the introspection engine needs from the hypervisor that hosts it — HVMI's GLUE_IFACE,
 * reduced to what this engine uses. The engine defines it; the runtime (actors/session.ts)
 * implements it. Everything here runs in the hypervisor's one thread, one call at a time
 * (HVMI's gLock), while vCPUs that are not paused keep running guest code.
 */

/** Registers of one vCPU, readable and writable only while it is stopped (exited or paused). */
export interface VcpuAccess {
  readonly id: number;
  gpr(name: GprName): bigint;
  setGpr(name: GprName, value: bigint): void;
  rip(): bigint;
  setRip(value: bigint): void;
  rflags(): bigint;
  /** Replaces RFLAGS (an emulated instruction's flags). */
  setRflags(value: bigint): void;
  get64(field: Field64): bigint;
  set64(field: Field64, value: bigint): void;
  get32(field: Field32): number;
}

/** The committed-versus-pending EPT, as the integrator exposes it (Get/SetEPTPageProtection). */
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

/** Detail values of an engine note (they go into the trace as text). */
export type NoteDetail = Readonly<Record<string, string | number | bigint | boolean>>;

export interface Glue {
  readonly vcpuCount: number;
  /** Guest-physical memory; writes here bypass EPT (the engine's own host mapping). */
  readonly memory: GuestMemory;
  readonly ept: EptAccess;
  /** Virtual time: steps retired by all vCPUs so far. */
  readonly clock: number;
  /** Exits so far in the run: the latest exit's ticket (a hook placed now postdates every exit up to it). */
  readonly ticket: number;
  readonly random: RandomSource;
  /** Registers of vCPU `id`; any access throws unless that vCPU is stopped or paused. */
  vcpu(id: number): VcpuAccess;
  /** How many pauses are in force (0: the guest runs). */
  readonly pauseDepth: number;
  /** Pauses every vCPU at an instruction boundary (counted; nests). IntPauseVcpus. */
  pauseVcpus(): void;
  /** Undoes one pauseVcpus(); the last one commits EPT rights and lets the vCPUs run. */
  resumeVcpus(): void;
  /** Records an engine event in the trace (patches, cache flushes…); counts as a PCT event. */
  note(what: string, detail?: NoteDetail): void;
  /**
   * A point inside an engine operation where vCPUs that are not paused may run guest code before
   * the operation goes on — in HVMI only the exiting vCPU waits for the engine. The deterministic
   * scheduler may run other vCPUs here; with every vCPU paused it is a no-op.
   */
  preemptionPoint(label: string): void;
  /**
   * IntToggleRepOptimization: whether the hypervisor carries out an allowed REP string
   * instruction a page at a time (on, the default) or one iteration at a time (off).
   */
  toggleRepOptimization(enable: boolean): void;
}

/** One VM exit handed to the engine: the exiting vCPU, its exit record and its registers. */
export interface ExitEvent {
  readonly vcpuId: number;
  readonly exit: ExitRecord;
  /** This exit's ticket: exits are numbered 1, 2, … in the order vCPUs stopped at them. */
  readonly exitTicket: number;
  /** The exiting vCPU's registers (always accessible: it is stopped at the exit). */
  readonly self: VcpuAccess;
}
