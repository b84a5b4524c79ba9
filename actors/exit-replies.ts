import { CommandFlag, EventInfo } from '../src/machine/layout.ts';
import type { VcpuState } from '../src/machine/vcpu-state.ts';
import type { ExitAction, ExitReply } from './hypervisor.ts';

/**
 * What each exit action does to the vCPU before it enters again — one row per action, so the
 * reply a handler gives maps to VM-entry state in one place.
 */
interface ReplyEffect {
  /** The instruction is done (emulated or refused): RIP moves past it. */
  readonly skips: boolean;
  /** The next entry executes one instruction with EPT ignored. */
  readonly emulateFirst: boolean;
  /** The vCPU stops for good. */
  readonly stops: boolean;
}

const REPLY_EFFECTS: Readonly<Record<ExitAction, ReplyEffect>> = {
  retry: { skips: false, emulateFirst: false, stops: false },
  allowed: { skips: false, emulateFirst: true, stops: false },
  allowedVirtual: { skips: true, emulateFirst: false, stops: false },
  notAllowed: { skips: true, emulateFirst: false, stops: false },
  shutdown: { skips: false, emulateFirst: false, stops: true },
};

/** Why a handler's reply cannot be applied to an exit whose instruction is `length` bytes, or null. */
export function replyProblem(reply: unknown, length: number): string | null {
  const action = typeof reply === 'object' && reply !== null ? (reply as { action?: unknown }).action : undefined;
  if (typeof action !== 'string' || !Object.hasOwn(REPLY_EFFECTS, action)) {
    return `returned ${JSON.stringify(reply)}; expected { action: ${Object.keys(REPLY_EFFECTS).join(' | ')} }`;
  }
  if (REPLY_EFFECTS[action as ExitAction].skips && length === 0) return 'asked to skip an instruction, but this exit has no instruction length';
  return null;
}

/**
 * Writes a checked reply into the vCPU's state (an injected exception, RIP past the exiting
 * instruction) and returns the command flags of its next entry, or null when it stops for good.
 */
export function applyReply(state: VcpuState, reply: ExitReply, rip: bigint, length: number): number | null {
  const effect = REPLY_EFFECTS[reply.action];
  if (effect.stops) return null;
  if (reply.inject !== undefined) {
    const { vector, errorCode } = reply.inject;
    const info = EventInfo.valid | (EventInfo.hardwareException << EventInfo.typeShift) | (vector & 0xff) | (errorCode !== undefined ? EventInfo.hasError : 0);
    state.set32('pendingEvent', info);
    state.set32('pendingEventError', errorCode ?? 0);
  }
  // The handler may have moved RIP itself; skipping is relative to the exiting instruction.
  if (effect.skips) state.rip = rip + BigInt(length);
  return CommandFlag.entry | (effect.emulateFirst ? CommandFlag.emulateFirst : 0);
}
