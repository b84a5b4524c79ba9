/**
 * Non-local exits from generated code.
 *
 * A fault, a VM exit or an internal stop is recorded in the CPU's fields and then `STOP` is thrown.
 * Throwing one pre-allocated object costs ~0.4 µs and no allocation; it unwinds out of any helper
 * depth straight to the dispatcher, which reads the CPU fields to see what happened. Any other
 * thrown value is a bug in vcpusim and propagates unchanged.
 */
export const STOP: { readonly stop: true } = Object.freeze({ stop: true as const });

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
