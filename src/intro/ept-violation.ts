import { ExitAccess } from '../machine/layout.ts';
import { accessReads, accessWrites, linearAddress, type DecodedInstruction } from './decoder.ts';
import type { ExitEvent } from './glue.ts';
import { HookFlag, HookType, type HookTypeCode } from './gpa-hooks.ts';
import { IC_ANY_VAS } from './icache.ts';
import { cr3Root, translateGva, tryReadGuestVirtual } from './kernvm.ts';
import type { Introcore } from './engine.ts';
import { IntStatus, IntroAction, combineActions, type IntroActionCode } from './status.ts';

/**
 * IntHandleEptViolation, in HVMI's order (hvmi-notes §10): decode through the icache; the TOCTOU
 * rule (an instruction just added to the cache is not analysed — retry, so that on the next fault
 * it is cached and its page write-protected); the "patched by another vCPU" check; then every
 * address the instruction accesses is translated and handed to the memory-access handler, and
 * the actions are combined by priority. Hooks are committed after the handler (hook-commit actor).
 */

const PAGE = 0x1000;
/** The start of the canonical upper half: kernel addresses, cached for every address space. */
const KERNEL_SPACE = 0xffff800000000000n;
const MAX_INSTRUCTION = 15;

/** The decoded instruction at RIP and whether it came from the cache. */
export interface DecodeResult {
  readonly instruction: DecodedInstruction | null;
  readonly cached: boolean;
  /** The fetch hit a page that is not mapped (HVMI's fetchfail: retry). */
  readonly fetchFailed: boolean;
}

/** IntDecDecodeInstructionAtRipWithCache. */
export function decodeAtRip(engine: Introcore, rip: bigint, cr3: bigint, useCache: boolean): DecodeResult {
  const kernel = rip >= KERNEL_SPACE;
  // User-mode code is cached only for known processes; this engine tracks none.
  const cache = useCache && kernel;
  if (cache) {
    const hit = engine.icache.lookup(rip, IC_ANY_VAS);
    if (hit !== null) return { instruction: hit, cached: true, fetchFailed: false };
  }
  const root = cr3Root(cr3);
  const memory = engine.glue.memory;
  const firstGpa = translateGva(memory, root, rip);
  if (firstGpa === null) return { instruction: null, cached: false, fetchFailed: true };
  const inFirst = Math.min(MAX_INSTRUCTION, PAGE - (firstGpa % PAGE));
  const first = memory.read(firstGpa, inFirst);
  let bytes = first;
  let spillGpa: number | null = null;
  if (inFirst < MAX_INSTRUCTION) {
    const second = tryReadGuestVirtual(memory, root, rip + BigInt(inFirst), MAX_INSTRUCTION - inFirst);
    if (second !== null) {
      bytes = new Uint8Array(MAX_INSTRUCTION);
      bytes.set(first);
      bytes.set(second, inFirst);
      spillGpa = translateGva(memory, root, rip + BigInt(inFirst));
    }
  }
  const instruction = engine.decoder.decode(bytes, rip);
  if (instruction === null) return { instruction: null, cached: false, fetchFailed: false };
  if (cache) {
    const spills = instruction.length > inFirst && spillGpa !== null;
    engine.icache.add(rip, IC_ANY_VAS, true, instruction, {
      gpaPage: firstGpa - (firstGpa % PAGE),
      spillGpaPage: spills && spillGpa !== null ? spillGpa - (spillGpa % PAGE) : null,
    });
  }
  return { instruction, cached: false, fetchFailed: false };
}

export function handleEptViolation(engine: Introcore, event: ExitEvent): IntroActionCode {
  const { exit, self } = event;
  const stats = engine.stats;
  stats.eptViolations++;
  let access = exit.qualification & (ExitAccess.read | ExitAccess.write | ExitAccess.execute);
  const rip = self.rip();
  const cr3 = self.get64('cr3');
  engine.notePatchedRipExit(rip, event.vcpuId);

  // 2. Decode through the icache (not for execute violations: the bytes are the faulting page).
  const useCache = engine.kernel.systemCr3 !== 0 && (access & ExitAccess.execute) === 0;
  const decoded = decodeAtRip(engine, rip, cr3, useCache);
  if (decoded.fetchFailed) {
    stats.retries.fetchFail++;
    return IntroAction.retry;
  }
  const ins = decoded.instruction;
  if (ins === null) {
    engine.note('decode-failed', { vcpu: event.vcpuId, rip });
    return IntroAction.allowed;
  }
  engine.note('decode', { vcpu: event.vcpuId, rip, cached: decoded.cached, ins: ins.mnemonic });

  // 4. TOCTOU: analyse only instructions whose page is already write-protected by the cache.
  if (useCache && !decoded.cached && engine.fixes.toctouRetry) {
    stats.retries.toctou++;
    return IntroAction.retry;
  }

  // 6. The exit came before a peer vCPU rewrote this instruction: run the new one.
  if ((access & ExitAccess.execute) === 0 && engine.fixes.peerPatchedRetry) {
    if (ins.isInt3 || (ins.isJmpNearRelative && engine.memtables.insRelocated(rip))) {
      stats.retries.peerPatched++;
      engine.note('peer-patched-retry', { vcpu: event.vcpuId, rip, ins: ins.mnemonic });
      return IntroAction.retry;
    }
  }

  // 7. Xen reports R on every write; drop it when the instruction reads no memory.
  if ((access & ExitAccess.write) !== 0 && !ins.accesses.some((a) => accessReads(a.access))) access &= ~ExitAccess.read;

  const gpa = Number(exit.gpa);
  if ((access & ExitAccess.execute) !== 0) return handleMemAccess(engine, event, ins, gpa, exit.gla, 1, HookType.execute);

  // 11. One accessed address: the exit's GLA. Several (PUSH [mem], MOVS…): each of them.
  const accesses = ins.accesses;
  if (accesses.length <= 1) {
    const size = Math.max(1, accesses[0]?.size ?? 1);
    return handleMemAccess(engine, event, ins, gpa, exit.gla, Math.min(size, PAGE - (gpa % PAGE)), access as HookTypeCode);
  }
  let action: IntroActionCode = IntroAction.allowed;
  const root = cr3Root(cr3);
  const exitPage = exit.gla & ~0xfffn;
  for (const used of accesses) {
    const type = ((accessReads(used.access) ? HookType.read : 0) | (accessWrites(used.access) ? HookType.write : 0)) as HookTypeCode;
    let gla = linearAddress(used, self);
    let left = Math.max(1, used.size);
    while (left > 0) {
      const page = gla & ~0xfffn;
      const translated = page === exitPage ? (gpa & ~0xfff) + Number(gla & 0xfffn) : translateGva(engine.glue.memory, root, gla);
      // A translation failure stops the analysis of this instruction (the guest will #PF).
      if (translated === null) return action;
      const bytes = Math.min(left, PAGE - (translated % PAGE));
      action = combineActions(action, handleMemAccess(engine, event, ins, translated, gla, bytes, type));
      left -= bytes;
      gla += BigInt(bytes);
    }
  }
  return action;
}

/**
 * IntHandleMemAccess: calls every live hook of the accessed types whose range overlaps the access,
 * re-reading the list after each callback (callbacks may add hooks). A read nobody claims on a
 * hooked page goes to mem-tables.
 */
export function handleMemAccess(
  engine: Introcore,
  event: ExitEvent,
  ins: DecodedInstruction,
  gpa: number,
  gla: bigint,
  size: number,
  types: HookTypeCode | number,
): IntroActionCode {
  let action: IntroActionCode = IntroAction.allowed;
  let found = false;
  const offset = gpa % PAGE;
  for (const type of [HookType.read, HookType.write, HookType.execute] as const) {
    if ((types & type) === 0) continue;
    const hooks = engine.hooks.hooksAt(gpa, type);
    for (let i = 0; i < hooks.length; i++) {
      const hook = hooks[i];
      if ((hook.flags & (HookFlag.remove | HookFlag.disabled)) !== 0) continue;
      if (offset + size <= hook.offset || offset >= hook.offset + hook.length) continue;
      found = true;
      const result = hook.callback(hook, { vcpuId: event.vcpuId, gpa, gla, size, type, instruction: ins, self: event.self });
      action = combineActions(action, result.action);
      if (result.status === IntStatus.removeHookOnRet || result.status === IntStatus.removeAndSkip) engine.hooks.remove(hook);
      if (result.status === IntStatus.skipOtherCallbacks || result.status === IntStatus.removeAndSkip) break;
    }
  }
  if (!found && types === HookType.read && engine.hooks.isPageHooked(gpa)) {
    const status = engine.memtables.checkAccess({ vcpuId: event.vcpuId, self: event.self, instruction: ins, gla });
    if (status === IntStatus.instructionPatched) action = combineActions(action, IntroAction.retry);
  }
  return action;
}
