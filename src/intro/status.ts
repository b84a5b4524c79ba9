/**
 * HVMI's status codes and exit actions (hvmi-notes §12). A status is `sev<<30 | 1<<29 |
 * facility<<16 | code`; INT_SUCCESS is "non-negative as int32", so informational codes count as
 * success and a caller that only checks INT_SUCCESS treats them like SUCCESS.
 */

export const IntStatus = {
  success: 0,
  notNeededHint: 0x61000000,
  notInitializedHint: 0x61000001,
  alreadyInitializedHint: 0x61000002,
  /** A callback asks for its own hook to be removed when it returns. */
  removeHookOnRet: 0x62400006,
  /** Skip the remaining callbacks on this page. */
  skipOtherCallbacks: 0x62400008,
  /** Both of the above. */
  removeAndSkip: 0x62400009,
  /** Only part of a page-table entry is written yet: callbacks wait for the rest. */
  partialWrite: 0x6240000b,
  noDetourEmu: 0x6240000f,
  /** An instruction was patched: the exiting vCPU must re-execute it (introGuestRetry). */
  instructionPatched: 0x62400011,
  notInitialized: 0xe1000501 | 0,
  unexpectedRaceCondition: 0xe1000502 | 0,
  invalidInternalState: 0xe1000503 | 0,
  insufficientResources: 0xe1000506 | 0,
  notFound: 0xe1000507 | 0,
  notSupported: 0xe1000508 | 0,
  accessDenied: 0xe1000509 | 0,
  noMappingStructures: 0xe2400013 | 0,
  pageNotPresent: 0xe2400016 | 0,
  cannotUnload: 0xe2400040 | 0,
  unsuccessful: 0xe24000fe | 0,
  fatalError: 0xe24000ff | 0,
} as const;

/** A status code (one of IntStatus, as an int32). */
export type IntStatusCode = number;

const NAMES = new Map<number, string>(Object.entries(IntStatus).map(([name, code]) => [code, name]));

/** INT_SUCCESS: success and informational codes. */
export function intSuccess(status: IntStatusCode): boolean {
  return (status | 0) >= 0;
}

/** `notFound (0xe1000507)` — for messages and traces. */
export function statusName(status: IntStatusCode): string {
  const hex = `0x${(status >>> 0).toString(16)}`;
  const name = NAMES.get(status | 0);
  return name === undefined ? hex : `${name} (${hex})`;
}

/**
 * INTRO_ACTION. Combining two actions keeps the larger value (IntHandleEptViolation): a retry
 * beats everything, a denial beats any allowance.
 */
export const IntroAction = {
  allowed: 0,
  allowedVirtual: 1,
  allowedPatched: 2,
  notAllowed: 3,
  ignore: 4,
  retry: 5,
} as const;
export type IntroActionCode = (typeof IntroAction)[keyof typeof IntroAction];

export function combineActions(a: IntroActionCode, b: IntroActionCode): IntroActionCode {
  return a > b ? a : b;
}

/** An action's name, for notes and reports ("retry", "notAllowed"…). */
export type IntroActionName = keyof typeof IntroAction;

const ACTION_NAMES = Object.fromEntries(Object.entries(IntroAction).map(([name, code]) => [code, name])) as Record<IntroActionCode, IntroActionName>;

export function actionName(action: IntroActionCode): IntroActionName {
  return ACTION_NAMES[action];
}

/** An engine operation failed with an error-class status; the message says where and why. */
export class IntroError extends Error {
  constructor(
    readonly status: IntStatusCode,
    message: string,
  ) {
    super(`${message}: ${statusName(status)}`);
    this.name = 'IntroError';
  }
}
