import { ExitAccess } from '../machine/layout.ts';
import type { DecodedInstruction } from './decoder.ts';
import type { Introcore } from './engine.ts';
import type { ExitEvent } from './glue.ts';
import { HOOK_TYPES, HookFlag } from './gpa-hooks.ts';
import { translateGva, tryReadGuestVirtual } from './kernvm.ts';

/**
 * The EPT pipeline's special cases (callbacks.c around IntHandleEptViolation): the REP probe
 * (step 8), the #PF for an execute retry spilling into a missing page (step 13), and
 * IntValidatePageRights for a page with no hook that still faults.
 */

export const PAGE = 0x1000;
export const MAX_INSTRUCTION = 15;

export const pageOf = (gpa: number): number => gpa - (gpa % PAGE);

/** One linear range an instruction accesses, with the access types to analyse. */
export interface Access {
  readonly gla: bigint;
  readonly size: number;
  readonly types: number;
}

/**
 * IntValidatePageRights: an exit on a page with no hook at all means a rights change was lost on
 * its way (an integrator cache that drops a request identical to the last one). For the exit's own
 * GPA, GLA and access — and not on RIP's page, where the hypervisor may be re-executing with rights
 * of its own — the accessed rights are set again: first none, so the request differs from any
 * cached one, then the current rights plus the accessed ones, and flushed.
 */
export function validatePageRights(engine: Introcore, event: ExitEvent, gpa: number, gla: bigint, types: number): void {
  const exit = event.exit;
  const exitAccess = exit.qualification & (ExitAccess.read | ExitAccess.write | ExitAccess.execute);
  if (gpa !== Number(exit.gpa) || gla !== exit.gla || types !== exitAccess) return;
  if ((exit.rip & ~0xfffn) === (gla & ~0xfffn)) return;
  const ept = engine.glue.ept;
  const rights = ept.rightsAt(gpa) | types;
  engine.note('page-rights-revalidated', { vcpu: event.vcpuId, gpa: pageOf(gpa), rights });
  ept.setRights(pageOf(gpa), 0);
  ept.setRights(pageOf(gpa), rights);
  ept.flush();
}

/** #PF error code bits: an instruction fetch, from user mode. */
const PFEC_ID = 0x10;
const PFEC_US = 0x4;

/**
 * IntHandleFetchRetryOnPageBoundary: the bytes up to the page end do not hold a whole instruction
 * (they would with more bytes after them), and the next page is not mapped — inject the #PF the
 * CPU would raise fetching it, so the guest pages it in.
 */
export function fetchRetryOnPageBoundary(engine: Introcore, event: ExitEvent, rip: bigint, cr3: bigint): void {
  const root = engine.rootOf(cr3);
  const memory = engine.glue.memory;
  const inPage = PAGE - Number(rip & 0xfffn);
  const head = tryReadGuestVirtual(memory, root, rip, inPage, engine.kernel.paging);
  if (head === null || engine.decoder.decode(head, rip) !== null) return;
  const padded = new Uint8Array(MAX_INSTRUCTION);
  padded.set(head);
  const whole = engine.decoder.decode(padded, rip);
  // Undecodable even with more bytes: not a spill — the CPU raises #UD itself.
  if (whole === null || whole.length <= inPage) return;
  const next = (rip + BigInt(PAGE)) & ~0xfffn;
  if (translateGva(memory, root, next, engine.kernel.paging) !== null) return;
  const ring = event.self.get32('cs') & 3;
  engine.injectException(event.vcpuId, { vector: 14, errorCode: PFEC_ID | (ring === 3 ? PFEC_US : 0), cr2: next });
}

/**
 * The probe of step 8: is there a live hook anywhere in what the REP instruction would touch up
 * to its page end (each access widened to element size × RCX)? No callback is called.
 */
export function probeFindsHook(engine: Introcore, event: ExitEvent, ins: DecodedInstruction, accesses: readonly Access[]): boolean {
  const exit = event.exit;
  const counter = event.self.gpr('rcx');
  const count = ins.accesses.some((a) => a.addr32) ? counter & 0xffffffffn : counter;
  const root = engine.rootOf(event.self.get64('cr3'));
  for (const used of accesses) {
    const inPage = PAGE - Number(used.gla & 0xfffn);
    const size = Number(BigInt(used.size) * count < BigInt(inPage) ? BigInt(used.size) * count : BigInt(inPage));
    const gpa = (used.gla & ~0xfffn) === (exit.gla & ~0xfffn) ? pageOf(Number(exit.gpa)) + Number(used.gla & 0xfffn) : translateGva(engine.glue.memory, root, used.gla, engine.kernel.paging);
    if (gpa === null) continue;
    const offset = gpa % PAGE;
    for (const type of HOOK_TYPES) {
      if ((used.types & type) === 0) continue;
      const live = engine.hooks.hooksAt(gpa, type).some((hook) => (hook.flags & (HookFlag.remove | HookFlag.disabled)) === 0 && offset < hook.offset + hook.length && offset + size > hook.offset);
      if (live) return true;
    }
  }
  return false;
}
