/**
 * Stops of generated code: how a fault or a VM exit leaves a block.
 *
 * The stop is recorded in the CPU's fields first. The two common ones then *return*: a memory
 * access's translation fault or EPT violation returns STOPPED from the MMU, and an instruction
 * exit returns EXITED from its helper; the block returns `-1 - index` of the instruction, and the
 * dispatcher reads the CPU fields. Everything else throws the pre-allocated `STOP`, which unwinds
 * out of any helper depth to the dispatcher: no allocation, but ~0.4 µs a throw in isolation and
 * ~1 µs an exit in the exit path's profile when exits were thrown (13 % of it). Any other
 * thrown value is a bug in vcpusim and propagates unchanged.
 */
export const STOP: { readonly stop: true } = Object.freeze({ stop: true as const });

/**
 * What a helper that may take a VM exit returns: `EXITED` once it filled the exit record (see
 * `Cpu.recordExit`) and the instruction must have no effect, `GO_ON` when it ran. The generated
 * block then returns instead of unwinding with STOP.
 */
export const GO_ON = 0;
export const EXITED = 1;
export type HelperExit = typeof GO_ON | typeof EXITED;

/**
 * What the MMU's slow path returns (instead of throwing STOP) once it recorded a fault or an EPT
 * violation in the CPU: generated code then returns from the block at that instruction. Never a
 * physical address (those are ≥ 0) nor a split handle (those are ≡ 3 mod 4).
 */
export const STOPPED = -2;

/** What a STOP meant; stored in `Cpu.stopKind` before throwing. */
export const StopKind = {
  none: 0,
  /** An architectural exception to deliver (vector/error in the CPU's fault fields). */
  fault: 1,
  /** A VM exit: the exit record in shared memory is filled. */
  exit: 2,
} as const;

/** Exception vectors the CPU raises. */
export const Vector = {
  DE: 0,
  DB: 1,
  NMI: 2,
  BP: 3,
  OF: 4,
  BR: 5,
  UD: 6,
  NM: 7,
  DF: 8,
  TS: 10,
  NP: 11,
  SS: 12,
  GP: 13,
  PF: 14,
  MF: 16,
  AC: 17,
  MC: 18,
  XM: 19,
} as const;

/** Page-fault error code bits. */
export const PfError = { present: 1, write: 2, user: 4, reserved: 8, fetch: 16 } as const;

/** Vectors that push an error code when delivered as exceptions. */
export function pushesErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || vector === 21;
}

/** Exception class for the double-fault rules (SDM Vol. 3A, Table 6-5). */
export function exceptionClass(vector: number): 'benign' | 'contributory' | 'pageFault' {
  if (vector === Vector.PF) return 'pageFault';
  if (vector === Vector.DE || (vector >= 10 && vector <= 13)) return 'contributory';
  return 'benign';
}
