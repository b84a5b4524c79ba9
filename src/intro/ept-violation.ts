import { ExitAccess } from '../machine/layout.ts';
import { accessReads, accessWrites, linearAddress, type DecodedInstruction } from './decoder.ts';
import type { ExitEvent } from './glue.ts';
import { HOOK_TYPES, HookFlag, HookType, hookTypeName, type HookTypeCode } from './gpa-hooks.ts';
import { translateGva } from './kernvm.ts';
import { decodeAtRip } from './decode-at-rip.ts';
import { fetchRetryOnPageBoundary, MAX_INSTRUCTION, PAGE, pageOf, probeFindsHook, validatePageRights, type Access } from './ept-special-cases.ts';
import type { Introcore } from './engine.ts';
import { nextPaeStore } from './pae-lookahead.ts';
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
 * optimisation is on. After an emulated half of a PAE entry, the store of the other half may be
 * carried out in the same exit (the PAE second-store lookahead, pae-lookahead.ts).
 */

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

  const action = analyseInstruction(engine, event, ins, access, probe);
  const writes = engine.pageTableWrites;
  if (!writes.buffer(event.vcpuId).emulated) return action;
  // A page-table write the engine carried out is done, whatever the callbacks said. 12. After
  // half of a PAE entry, the store of the other half may follow in this exit (lookahead passes,
  // `_process_again` with the buffers reset); the reply then skips every instruction carried out.
  let done = ins;
  for (let next = nextPaeStore(engine, event, done); next !== null; next = nextPaeStore(engine, next.event, done)) {
    writes.beginPass(event.vcpuId);
    analyseInstruction(engine, next.event, next.instruction, access, false);
    // Its store was not carried out (no live page-table hook took it): it runs in the guest, and
    // exits on its own if it must.
    if (!writes.buffer(event.vcpuId).emulated) break;
    done = next.instruction;
  }
  if (done !== ins) engine.emulatedThrough(event.vcpuId, Number(done.nextIp - rip));
  return IntroAction.allowedVirtual;
}

/**
 * Steps 7–11 for one instruction (one pass): its accesses analysed — the exit's GLA, or every
 * address it touches — and the callbacks' emulation request carried out if the pass allows it
 * virtually. Returns the pass's action; the REP probe's hit is a retry.
 */
function analyseInstruction(engine: Introcore, event: ExitEvent, ins: DecodedInstruction, access: number, probe: boolean): IntroActionCode {
  const { exit, self } = event;
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
      const rep = engine.rep;
      rep.disabledOn.add(event.vcpuId);
      if (rep.disabledCount++ === 0) engine.glue.toggleRepOptimization(false);
      engine.note('rep-probe-hit', { vcpu: event.vcpuId, rip: exit.rip, rcx: self.gpr('rcx') });
      return IntroAction.retry;
    }
    action = analyseAccesses(engine, event, ins, accesses, emulation);
  }
  if (action === IntroAction.allowedVirtual && emulation.apply !== null) emulation.apply();
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
