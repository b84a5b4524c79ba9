import { decodeAtRip } from './decode-at-rip.ts';
import { linearAddress, type DecodedInstruction } from './decoder.ts';
import type { Introcore } from './engine.ts';
import { pageOf } from './ept-special-cases.ts';
import type { ExitEvent } from './glue.ts';

/**
 * The PAE second-store lookahead (IntHandleEptViolation, hvmi-notes §8): a 32-bit PAE kernel
 * writes an 8-byte page-table entry as two 4-byte stores, which would be two exits. After the
 * engine has carried out one half, it decodes the instruction after it; a 4-byte MOV, XCHG or
 * CMPXCHG into the same entry is processed in the same exit, as a new pass with the exit's GLA
 * and GPA rewritten to that store — so the entry is assembled whole within one exit and its
 * callbacks run once, with the complete old and new values.
 *
 * HVMI decodes that instruction through the icache but does not apply the TOCTOU rule to it (an
 * instruction just added is analysed at once, not retried): its bytes were never write-protected
 * before they were judged. Modelled as HVMI has it.
 */

/** A lookahead pass: the store, and the exit as the pass sees it (GLA, GPA and RIP of that store). */
export interface LookaheadPass {
  readonly instruction: DecodedInstruction;
  readonly event: ExitEvent;
}

/** HVMI's ND_INS_MOV, ND_INS_XCHG and ND_INS_CMPXCHG. */
const STORES: ReadonlySet<string> = new Set(['mov', 'xchg', 'cmpxchg']);

/**
 * The pass for the instruction after `done`, when the pass that carried `done` out (`event`) left
 * a 4-byte partial page-table write and that instruction stores 4 bytes into the same 8-byte
 * entry; null otherwise (or with `paeStoreLookahead` off: the other half is its own exit).
 */
export function nextPaeStore(engine: Introcore, event: ExitEvent, done: DecodedInstruction): LookaheadPass | null {
  if (!engine.fixes.paeStoreLookahead || engine.kernel.paging !== 'pae' || engine.guest.bits !== 32) return null;
  const buffer = engine.pageTableWrites.buffer(event.vcpuId);
  if (!buffer.emulated || !buffer.partial || buffer.size !== 4) return null;
  const { exit, self } = event;
  const ins = decodeAtRip(engine, done.nextIp, self.get64('cr3'), engine.kernel.systemCr3 !== 0).instruction;
  if (ins === null || !STORES.has(ins.mnemonic)) return null;
  const target = ins.operands[0];
  if (target === undefined || target.kind !== 'memory' || target.size !== 4 || ins.memory === null) return null;
  // `mov [edi], ecx` then `mov [edi+4], edx`, or the other way round. HVMI asks only for the same
  // entry: a store to the half just written is taken too, and leaves the entry partial.
  const gla = linearAddress(ins.memory, self);
  if ((gla & ~7n) !== (exit.gla & ~7n)) return null;
  const gpa = pageOf(Number(exit.gpa)) + Number(gla & 0xfffn);
  engine.note('pae-lookahead', { vcpu: event.vcpuId, rip: ins.ip, ins: ins.mnemonic, gla, gpa });
  return {
    instruction: ins,
    event: { vcpuId: event.vcpuId, exitTicket: event.exitTicket, self, exit: { ...exit, rip: ins.ip, gla, gpa: BigInt(gpa), instructionLength: ins.length } },
  };
}
