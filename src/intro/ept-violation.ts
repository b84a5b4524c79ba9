import { ExitAccess } from '../machine/layout.ts';
import { accessReads, accessWrites, linearAddress, type DecodedInstruction } from './decoder.ts';
import type { ExitEvent } from './glue.ts';
import { HOOK_TYPES, HookFlag, HookType, hookTypeName, type HookTypeCode } from './gpa-hooks.ts';
import { IC_ANY_VAS } from './icache.ts';
import { translateGva, tryReadGuestVirtual } from './kernvm.ts';
import { fetchRetryOnPageBoundary, MAX_INSTRUCTION, PAGE, pageOf, probeFindsHook, validatePageRights, type Access } from './ept-special-cases.ts';
import type { Introcore } from './engine.ts';
import { PageTableWrites } from './page-table-writes.ts';
import { IntStatus, IntroAction, IntroError, actionName, combineActions, type IntroActionCode } from './status.ts';

/**
 * IntHandleEptViolation, in HVMI's order (hvmi-notes §10): decode through the icache; the TOCTOU
 * rule (an instruction just added to the cache is not analysed — retry, so that on the next fault
 * it is cached and its page write-protected); the "patched by another vCPU" check; then every
 * address the instruction accesses is translated page by page and handed to the memory-access
 * handler, and the actions are combined by priority. Hooks are committed after the handler
 * (hook-commit actor); an emulation a callback asked for is applied only if the final action is
 * allowedVirtual (HVMI's patch buffer, handed to the hypervisor's emulator).
 *
 * IntValidatePageRights re-applies the rights of a page with no hooks that still faults; an
 * execute retry on an instruction spilling into a missing page injects that page's #PF (step 13).
 * Not modelled: #VE (step 9), and the re-execute context (steps 3 and 14: an exit from the RIP
 * allowed to execute, raised while the hypervisor re-executes it with only that right) — this
 * hypervisor carries an allowed instruction out with EPT ignored for all of it, so that exit
 * cannot happen; HVMI itself only uses the flag in its CHECK_PAGE_RIGHTS build. The REP probe
 * (step 8) widens a string instruction's accesses to RCX elements while the hypervisor's REP
 * optimisation is on.
 */

/** The decoded instruction at RIP, and whether it came from the cache or was just added to it. */
export interface DecodeResult {
  readonly instruction: DecodedInstruction | null;
  readonly cached: boolean;
  /** Decoded now and put in the cache (the TOCTOU rule retries these). */
  readonly added: boolean;
  /** A page the instruction's bytes need is not mapped (HVMI's fetchfail: retry). */
  readonly fetchFailed: boolean;
}

const FETCH_FAILED: DecodeResult = { instruction: null, cached: false, added: false, fetchFailed: true };

/** IntDecDecodeInstructionAtRipWithCache. */
export function decodeAtRip(engine: Introcore, rip: bigint, cr3: bigint, useCache: boolean): DecodeResult {
  // User-mode code is cached only for known processes; this engine tracks none.
  const cache = useCache && rip >= engine.layout.kernelSpace;
  if (cache) {
    const hit = engine.icache.lookup(rip, IC_ANY_VAS);
    if (hit !== null) return { instruction: hit, cached: true, added: false, fetchFailed: false };
  }
  const root = engine.rootOf(cr3);
  const paging = engine.kernel.paging;
  const memory = engine.glue.memory;
  const firstGpa = translateGva(memory, root, rip, paging);
  if (firstGpa === null) return FETCH_FAILED;
  const inFirst = Math.min(MAX_INSTRUCTION, PAGE - (firstGpa % PAGE));
  const first = memory.read(firstGpa, inFirst);
  let bytes = first;
  let spillGpa: number | null = null;
  if (inFirst < MAX_INSTRUCTION) {
    const second = tryReadGuestVirtual(memory, root, rip + BigInt(inFirst), MAX_INSTRUCTION - inFirst, paging);
    if (second !== null) {
      bytes = new Uint8Array(MAX_INSTRUCTION);
      bytes.set(first);
      bytes.set(second, inFirst);
      spillGpa = translateGva(memory, root, rip + BigInt(inFirst), paging);
    }
  }
  const instruction = engine.decoder.decode(bytes, rip);
  // An instruction cut short by an unmapped next page cannot be analysed: retry (the vCPU will #PF).
  if (instruction === null) return spillGpa === null && inFirst < MAX_INSTRUCTION ? FETCH_FAILED : { instruction: null, cached: false, added: false, fetchFailed: false };
  if (!cache) return { instruction, cached: false, added: false, fetchFailed: false };
  const spills = instruction.length > inFirst && spillGpa !== null;
  engine.icache.add(rip, IC_ANY_VAS, true, instruction, { gpaPage: pageOf(firstGpa), spillGpaPage: spills && spillGpa !== null ? pageOf(spillGpa) : null });
  return { instruction, cached: false, added: true, fetchFailed: false };
}

export function handleEptViolation(engine: Introcore, event: ExitEvent): IntroActionCode {
  const { exit, self } = event;
  const stats = engine.stats;
  stats.eptViolations++;
  engine.pageTableWrites.beginPass(event.vcpuId);
  let access = exit.qualification & (ExitAccess.read | ExitAccess.write | ExitAccess.execute);
  const rip = self.rip();
  const cr3 = self.get64('cr3');

  // 2. Decode through the icache (not for execute violations: the bytes are the faulting page).
  const useCache = engine.kernel.systemCr3 !== 0 && (access & ExitAccess.execute) === 0;
  const decoded = decodeAtRip(engine, rip, cr3, useCache);
  if (decoded.fetchFailed) {
    stats.retries.fetchFail++;
    // 13. An execute fault retried on an instruction that spills into a missing page would fault
    // on the first page again before the CPU ever touches the second: the #PF comes from here.
    if ((access & ExitAccess.execute) !== 0 && Number(rip & 0xfffn) + MAX_INSTRUCTION > PAGE) fetchRetryOnPageBoundary(engine, event, rip, cr3);
    return IntroAction.retry;
  }
  const ins = decoded.instruction;
  if (ins === null) {
    // No instruction an EPT violation could come from: the bytes changed under the exit. Let the
    // vCPU fetch them again (it raises #UD itself if they are garbage).
    engine.note('decode-failed', { vcpu: event.vcpuId, rip });
    return IntroAction.retry;
  }
  engine.note('decode', { vcpu: event.vcpuId, rip, cached: decoded.cached, ins: ins.mnemonic });

  // 4. TOCTOU: analyse only instructions whose page is already write-protected by the cache.
  if (decoded.added && engine.fixes.toctouRetry) {
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

  // Stages a scenario added, in the order they were added: the first that decides ends the exit.
  for (const stage of engine.eptStages) {
    const decided = stage.decide({ engine, event, instruction: ins, access, gpa: Number(exit.gpa), gla: exit.gla });
    if (decided !== null) {
      engine.note('ept-stage', { vcpu: event.vcpuId, stage: stage.name, action: actionName(decided) });
      return decided;
    }
  }

  // 7. Xen reports R on every write; drop it when the instruction reads no memory.
  if ((access & ExitAccess.write) !== 0 && !ins.accesses.some((a) => accessReads(a.access))) access &= ~ExitAccess.read;

  // 8. REP: while the hypervisor carries out an allowed REP instruction a page at a time, the
  // whole of it is probed (element size × RCX, to the page end); a hook in there turns that off —
  // for as long as a vCPU needs it — and the instruction is retried one iteration at a time.
  const rep = engine.rep;
  let probe = false;
  if (ins.isRepeated) probe = engine.fixes.repProbe && rep.disabledCount === 0;
  else if (rep.disabledOn.delete(event.vcpuId) && --rep.disabledCount === 0) engine.glue.toggleRepOptimization(true);

  const gpa = Number(exit.gpa);
  const emulation: PendingEmulation = { apply: null, request: (apply) => void (emulation.apply ??= apply) };
  let action: IntroActionCode;
  if ((access & ExitAccess.execute) !== 0) {
    action = handleMemAccess(engine, event, ins, gpa, exit.gla, 1, HookType.execute, emulation);
  } else {
    // 11. One accessed address: the exit's GLA. Several (PUSH [mem], MOVS…): each of them — once
    // allowed, the hypervisor emulates the whole instruction and its other accesses never fault.
    // The naive path (analyseEveryAddress off) looks at the exit's GLA alone.
    const exitAccess = ins.accesses.find((used) => linearAddress(used, self) === exit.gla) ?? ins.accesses[0];
    const accesses: Access[] =
      ins.accesses.length <= 1 || !engine.fixes.analyseEveryAddress
        ? [{ gla: exit.gla, size: Math.max(1, exitAccess?.size ?? 1), types: access }]
        : ins.accesses.map((used) => ({
            gla: linearAddress(used, self),
            size: Math.max(1, used.size),
            types: (accessReads(used.access) ? HookType.read : 0) | (accessWrites(used.access) ? HookType.write : 0),
          }));
    if (probe && probeFindsHook(engine, event, ins, accesses)) {
      rep.disabledOn.add(event.vcpuId);
      if (rep.disabledCount++ === 0) engine.glue.toggleRepOptimization(false);
      engine.note('rep-probe-hit', { vcpu: event.vcpuId, rip, rcx: self.gpr('rcx') });
      return IntroAction.retry;
    }
    action = analyseAccesses(engine, event, ins, accesses, emulation);
  }
  if (action === IntroAction.allowedVirtual && emulation.apply !== null) emulation.apply();
  // A page-table write the engine carried out is done, whatever the callbacks said.
  if (engine.pageTableWrites.buffer(event.vcpuId).emulated) return IntroAction.allowedVirtual;
  return action;
}

/** What an EPT stage sees: the engine, the exit, its decoded instruction and access bits. */
export interface EptStageInput {
  readonly engine: Introcore;
  readonly event: ExitEvent;
  readonly instruction: DecodedInstruction;
  /** ExitAccess bits (read 1, write 2, execute 4). */
  readonly access: number;
  readonly gpa: number;
  readonly gla: bigint;
}

/**
 * A step a scenario adds to the EPT-violation pipeline. It runs after HVMI's own early checks
 * (decode, TOCTOU, peer-patched) and before the accesses are analysed; returning an action ends
 * the exit with it, null goes on.
 */
export interface EptStage {
  readonly name: string;
  decide(input: EptStageInput): IntroActionCode | null;
}

/** A callback's request to complete the instruction itself (applied only for allowedVirtual; the first request wins). */
export interface PendingEmulation {
  apply: (() => void) | null;
  readonly request: (apply: () => void) => void;
}

/**
 * Every page of every access, translated (the exit's page reuses the exit GPA) and analysed. A
 * translation failure stops the analysis of the instruction: the guest takes its #PF itself.
 */
function analyseAccesses(engine: Introcore, event: ExitEvent, ins: DecodedInstruction, accesses: readonly Access[], emulation: PendingEmulation): IntroActionCode {
  const exit = event.exit;
  const root = engine.rootOf(event.self.get64('cr3'));
  const exitPage = exit.gla & ~0xfffn;
  const exitGpaPage = pageOf(Number(exit.gpa));
  let action: IntroActionCode = IntroAction.allowed;
  for (const used of accesses) {
    let gla = used.gla;
    let left = used.size;
    while (left > 0) {
      const translated = (gla & ~0xfffn) === exitPage ? exitGpaPage + Number(gla & 0xfffn) : translateGva(engine.glue.memory, root, gla, engine.kernel.paging);
      if (translated === null) return action;
      const bytes = Math.min(left, PAGE - (translated % PAGE));
      action = combineActions(action, handleMemAccess(engine, event, ins, translated, gla, bytes, used.types, emulation));
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
  emulation: PendingEmulation,
): IntroActionCode {
  let action: IntroActionCode = IntroAction.allowed;
  let found = false;
  const offset = gpa % PAGE;
  for (const type of HOOK_TYPES) {
    if ((types & type) === 0) continue;
    const hooks = engine.hooks.hooksAt(gpa, type);
    for (let i = 0; i < hooks.length; i++) {
      const hook = hooks[i];
      if ((hook.flags & (HookFlag.remove | HookFlag.disabled)) !== 0) continue;
      if (offset + size <= hook.offset || offset >= hook.offset + hook.length) continue;
      found = true;
      // Page-table writes are carried out before any callback sees them (IntHookPtwEmulateWrite);
      // a write that changed nothing watched ends the walk.
      if (hook.pagingStructure && type === HookType.write) {
        const buffer = engine.pageTableWrites.emulate(event, ins, gpa);
        if (PageTableWrites.unchanged(buffer)) break;
      }
      const result = hook.callback(hook, { vcpuId: event.vcpuId, exitTicket: event.exitTicket, gpa, gla, size, type, instruction: ins, self: event.self, emulate: emulation.request });
      action = combineActions(action, result.action);
      if (result.status === IntStatus.removeHookOnRet || result.status === IntStatus.removeAndSkip) engine.hooks.remove(hook);
      // The walk goes on from this hook's list link (HVMI re-reads Flink): it must still exist.
      if ((hook.flags & HookFlag.freed) !== 0) {
        throw new IntroError(IntStatus.invalidInternalState, `use after free: ${hookTypeName(type)} hook #${hook.id} (${hook.owner}) was deleted while the hooks of GPA page 0x${hook.gpaPage.toString(16)} were being walked`);
      }
      if (result.status === IntStatus.skipOtherCallbacks || result.status === IntStatus.removeAndSkip) break;
    }
  }
  const pageHooked = engine.hooks.isPageHooked(gpa);
  if (!pageHooked) validatePageRights(engine, event, gpa, gla, types);
  if (!found && types === HookType.read && pageHooked) {
    const status = engine.memtables.checkAccess({ vcpuId: event.vcpuId, self: event.self, instruction: ins, gla });
    if (status === IntStatus.instructionPatched) action = combineActions(action, IntroAction.retry);
    // Its status does not change the action: the read itself is allowed either way.
    engine.unwindCache.checkAccess(event, gla);
  }
  return action;
}
