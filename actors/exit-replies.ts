import { CommandFlag, EventInfo, ExitReason, type ExitReasonCode } from '../src/machine/layout.ts';
import type { ExitRecord, VcpuState } from '../src/machine/vcpu-state.ts';
import type { ExitAction, ExitReply } from './hypervisor.ts';

/**
 * What each exit action does to the vCPU before it enters again — one row per action, so the
 * reply a handler gives maps to VM-entry state in one place.
 */
interface ReplyEffect {
  /** The instruction is done (emulated or refused): RIP moves past it. */
  readonly skips: boolean;
  /** The next entry executes one instruction with EPT ignored (how, by exit reason: EMULATION_FLAGS). */
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

/**
 * How the hypervisor performs an instruction it let run ("emulateFirst"), by the reason it
 * exited. EPT is ignored for every one: the engine judged the access. An instruction that exited
 * on its own exit control — WRMSR, MOV CR, XSETBV, LGDT/LIDT/SGDT/SIDT/LTR — would exit on that
 * control again if merely re-run, forever; the hypervisor carries it out instead, as a real one
 * completes the write it intercepted. The others keep their instruction exits.
 */
const CARRIED_OUT: number = CommandFlag.emulateFirst | CommandFlag.firstWithoutExits;
const EMULATION_FLAGS: Readonly<Record<ExitReasonCode, number>> = {
  [ExitReason.none]: CommandFlag.emulateFirst,
  [ExitReason.eptViolation]: CommandFlag.emulateFirst,
  [ExitReason.vmcall]: CommandFlag.emulateFirst,
  [ExitReason.int3]: CommandFlag.emulateFirst,
  [ExitReason.crWrite]: CARRIED_OUT,
  [ExitReason.msrWrite]: CARRIED_OUT,
  [ExitReason.xcrWrite]: CARRIED_OUT,
  [ExitReason.dtr]: CARRIED_OUT,
  [ExitReason.hlt]: CommandFlag.emulateFirst,
  [ExitReason.exception]: CommandFlag.emulateFirst,
  [ExitReason.tripleFault]: CommandFlag.emulateFirst,
};

/** Why a handler's reply cannot be applied to an exit whose instruction is `length` bytes, or null. */
export function replyProblem(reply: unknown, length: number): string | null {
  const action = typeof reply === 'object' && reply !== null ? (reply as { action?: unknown }).action : undefined;
  if (typeof action !== 'string' || !Object.hasOwn(REPLY_EFFECTS, action)) {
    return `returned ${JSON.stringify(reply)}; expected { action: ${Object.keys(REPLY_EFFECTS).join(' | ')} }`;
  }
  if (REPLY_EFFECTS[action as ExitAction].skips && length === 0) return 'asked to skip an instruction, but this exit has no instruction length';
  const emulated = (reply as { emulatedLength?: unknown }).emulatedLength;
  if (emulated !== undefined) {
    if (action !== 'allowedVirtual') return `gave emulatedLength with ${action}; only allowedVirtual carries instructions out`;
    if (typeof emulated !== 'number' || !Number.isInteger(emulated) || emulated < length) return `gave emulatedLength ${String(emulated)}, less than the exiting instruction's ${length} bytes`;
  }
  return null;
}

/** The parts of an exit a reply is applied to. */
export type RepliedExit = Pick<ExitRecord, 'reason' | 'rip' | 'instructionLength'>;

/**
 * Writes a checked reply into the vCPU's state (an injected exception, RIP past the exiting
 * instruction) and returns the command flags of its next entry, or null when it stops for good.
 */
export function applyReply(state: VcpuState, reply: ExitReply, exit: RepliedExit): number | null {
  const effect = REPLY_EFFECTS[reply.action];
  const { rip, instructionLength: length } = exit;
  if (effect.stops) return null;
  if (reply.inject !== undefined) {
    const { vector, errorCode } = reply.inject;
    const info = EventInfo.valid | (EventInfo.hardwareException << EventInfo.typeShift) | (vector & 0xff) | (errorCode !== undefined ? EventInfo.hasError : 0);
    state.set32('pendingEvent', info);
    state.set32('pendingEventError', errorCode ?? 0);
  }
  // The handler may have moved RIP itself; skipping is relative to the exiting instruction (and
  // covers whatever the engine carried out after it).
  if (effect.skips) state.rip = rip + BigInt(reply.emulatedLength ?? length);
  return CommandFlag.entry | (effect.emulateFirst ? EMULATION_FLAGS[exit.reason] : 0);
}
