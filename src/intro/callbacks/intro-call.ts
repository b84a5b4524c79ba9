import type { Introcore } from '../engine.ts';
import type { ExitEvent } from '../glue.ts';
import { IntStatus, type IntStatusCode } from '../status.ts';

/**
 * IntHandleIntroCall: who in the engine answers a VMCALL, in HVMI's order. HVMI asks the #VE
 * agent, the PT filter, the detours (where VMCALL is their hypercall) and then its agents; the
 * first that claims the call handles it. Of those, this engine has its own hypercalls (the ones
 * a scenario registers) — its detours signal with INT3, so none of them is a VMCALL. NOT_FOUND
 * hands the VMCALL back to the hypervisor, whose own protocol (the guest's hypercalls) comes
 * after the engine.
 */

/** Go on past the VMCALL, or stop the vCPU for good. */
export type IntroCallOutcome = 'continue' | 'stop';

export interface IntroCallResult {
  /** SUCCESS when a handler claimed it, NOT_FOUND otherwise. */
  readonly status: IntStatusCode;
  readonly outcome: IntroCallOutcome | null;
  /** Which handler claimed it. */
  readonly claimedBy: string | null;
}

interface IntroCallClaimant {
  readonly name: string;
  /** Handles the call and says how it ends, or null when it is not this handler's. */
  claim(engine: Introcore, event: ExitEvent): IntroCallOutcome | null;
}

/** In the order they are asked. */
const CLAIMANTS: readonly IntroCallClaimant[] = [
  { name: 'engine hypercall', claim: (engine, event) => engine.hypercalls.get(event.self.gpr('rax'))?.handle(event) ?? null },
];

export function handleIntroCall(engine: Introcore, event: ExitEvent): IntroCallResult {
  for (const claimant of CLAIMANTS) {
    const outcome = claimant.claim(engine, event);
    if (outcome !== null) return { status: IntStatus.success, outcome, claimedBy: claimant.name };
  }
  return { status: IntStatus.notFound, outcome: null, claimedBy: null };
}
