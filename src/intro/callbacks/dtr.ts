import { DtrKind } from '../../machine/layout.ts';
import type { Field32, Field64 } from '../../machine/vcpu-state.ts';
import { accessWrites, linearAddress, type DecodedInstruction } from '../decoder.ts';
import type { Introcore } from '../engine.ts';
import { decodeAtRip } from '../decode-at-rip.ts';
import { handleMemAccess, type PendingEmulation } from '../ept-violation.ts';
import type { ExitEvent } from '../glue.ts';
import { HookType } from '../gpa-hooks.ts';
import { translateGva, tryReadGuestVirtual } from '../kernvm.ts';
import { IntStatus, IntroAction, actionName, combineActions, type IntroActionCode } from '../status.ts';
import type { RegisterExitResult } from './hook-list.ts';
import { DescriptorAccess, type DescriptorTable } from './register-hooks.ts';

/**
 * IntHandleDtrViolation. A descriptor-table exit comes before the CPU has checked anything about
 * the operand — EPT rights included — so letting the hypervisor carry the instruction out would
 * slip past every EPT hook on the operand. The handler therefore decides in HVMI's order:
 *
 *   1. the bytes at RIP must still be a descriptor-table instruction (else retry: they changed);
 *   2. a register operand (LTR/LLDT/STR/SLDT r16) touches no memory and is allowed as it is;
 *   3. the operand's linear range is translated page by page and run through the EPT
 *      memory-access handlers; anything but allowed from them is the answer;
 *   4. only LIDT and LGDT go on to the DTR hooks, and not when the load leaves the register as
 *      it is or sets it up for the first time (a null base loaded with a non-null one);
 *   5. the hooks whose access flags equal the exit's are called; actions combine by priority.
 *
 * HVMI's handler has no NOT_FOUND: every outcome is SUCCESS.
 */

const PAGE = 0x1000;
const DESCRIPTOR_INSTRUCTIONS = new Set(['lidt', 'lgdt', 'sidt', 'sgdt', 'lldt', 'sldt', 'ltr', 'str']);

/** The registers LIDT and LGDT load, and where the vCPU keeps each. */
const LOADS: ReadonlyMap<string, { readonly register: 'idtr' | 'gdtr'; readonly base: Field64; readonly limit: Field32 }> = new Map([
  ['lidt', { register: 'idtr', base: 'idtrBase', limit: 'idtrLimit' }],
  ['lgdt', { register: 'gdtr', base: 'gdtrBase', limit: 'gdtrLimit' }],
] as const);

/** The exit's kind as HVMI's integrator reports it (IG_DESC_ACCESS). */
const ACCESS_OF_KIND: ReadonlyMap<number, number> = new Map([
  [DtrKind.lgdt, DescriptorAccess.gdtr | DescriptorAccess.write],
  [DtrKind.lidt, DescriptorAccess.idtr | DescriptorAccess.write],
  [DtrKind.sgdt, DescriptorAccess.gdtr | DescriptorAccess.read],
  [DtrKind.sidt, DescriptorAccess.idtr | DescriptorAccess.read],
  [DtrKind.ltr, DescriptorAccess.tr | DescriptorAccess.write],
]);

/** Where the handler decided, for the trace. */
type DtrDecision = 'fetch-failed' | 'undecodable' | 'not-descriptor' | 'register-operand' | 'unmapped' | 'memory' | 'not-a-load' | 'unchanged' | 'initialisation' | 'hooks';

/** A 64-bit descriptor-table operand: a 2-byte limit, then the 8-byte base. */
const TABLE_OPERAND_BYTES = 10;

export function handleDtr(engine: Introcore, event: ExitEvent): RegisterExitResult {
  const { action, decision } = decide(engine, event);
  engine.note('dtr', { vcpu: event.vcpuId, kind: event.exit.info0, decision, action: actionName(action) });
  return { status: IntStatus.success, action };
}

function decide(engine: Introcore, event: ExitEvent): { readonly action: IntroActionCode; readonly decision: DtrDecision } {
  const { self } = event;
  const cr3 = self.get64('cr3');
  const decoded = decodeAtRip(engine, self.rip(), cr3, engine.kernel.systemCr3 !== 0);
  // The page holding RIP went away under the exit: let the vCPU fetch it again.
  if (decoded.fetchFailed) return { action: IntroAction.retry, decision: 'fetch-failed' };
  const ins = decoded.instruction;
  // HVMI gives up with its default action; the vCPU meets whatever the bytes are (a #UD).
  if (ins === null) return { action: IntroAction.allowed, decision: 'undecodable' };
  if (!DESCRIPTOR_INSTRUCTIONS.has(ins.mnemonic)) return { action: IntroAction.retry, decision: 'not-descriptor' };
  const operand = ins.memory;
  if (ins.operands[0]?.kind !== 'memory' || operand === null) return { action: IntroAction.allowed, decision: 'register-operand' };

  const gla = linearAddress(operand, self);
  const memory = checkOperand(engine, event, ins, gla, operand.size, accessWrites(operand.access) ? HookType.write : HookType.read);
  if (memory === null) return { action: IntroAction.allowed, decision: 'unmapped' };
  if (memory !== IntroAction.allowed) return { action: memory, decision: 'memory' };

  const load = LOADS.get(ins.mnemonic);
  if (load === undefined) return { action: IntroAction.allowed, decision: 'not-a-load' };
  const bytes = tryReadGuestVirtual(engine.glue.memory, engine.rootOf(cr3), gla, TABLE_OPERAND_BYTES, engine.kernel.paging);
  if (bytes === null) return { action: IntroAction.allowed, decision: 'unmapped' };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const newValue: DescriptorTable = { limit: view.getUint16(0, true), base: view.getBigUint64(2, true) };
  const oldValue: DescriptorTable = { limit: self.get32(load.limit), base: self.get64(load.base) };
  if (oldValue.base === newValue.base && oldValue.limit === newValue.limit) return { action: IntroAction.allowed, decision: 'unchanged' };
  if (oldValue.base === 0n && newValue.base !== 0n) return { action: IntroAction.allowed, decision: 'initialisation' };

  const access = ACCESS_OF_KIND.get(event.exit.info0) ?? 0;
  const result = engine.registerHooks.dtr.call(access, {
    vcpuId: event.vcpuId, exitTicket: event.exitTicket, self, access, register: load.register, oldValue, newValue, instruction: ins,
  });
  return { action: result.action, decision: 'hooks' };
}

/**
 * The EPT memory-access handlers on every page of [gla, gla + size), as if the access had
 * faulted; null when a page is not mapped (HVMI then stops and lets the CPU raise the #PF).
 */
function checkOperand(engine: Introcore, event: ExitEvent, ins: DecodedInstruction, gla: bigint, size: number, type: number): IntroActionCode | null {
  const root = engine.rootOf(event.self.get64('cr3'));
  const emulation: PendingEmulation = { apply: null, request: (apply) => void (emulation.apply ??= apply) };
  let action: IntroActionCode = IntroAction.allowed;
  let at = gla;
  let left = Math.max(1, size);
  while (left > 0) {
    const gpa = translateGva(engine.glue.memory, root, at, engine.kernel.paging);
    if (gpa === null) return null;
    const bytes = Math.min(left, PAGE - (gpa % PAGE));
    action = combineActions(action, handleMemAccess(engine, event, ins, gpa, at, bytes, type, emulation));
    left -= bytes;
    at += BigInt(bytes);
  }
  // A callback's emulation stands in for the instruction only when it is not run (HVMI's patch buffer).
  if (action === IntroAction.allowedVirtual && emulation.apply !== null) emulation.apply();
  return action;
}
