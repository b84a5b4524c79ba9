import { EngineDecoder } from './decoder.ts';
import { Detours } from './detours.ts';
import { handleEptViolation, type EptStage } from './ept-violation.ts';
import { DEFAULT_FIXES, type Fixes } from './fixes.ts';
import type { ExitEvent, Glue, NoteDetail } from './glue.ts';
import { GpaHookTable, HOOK_TYPES, type GpaHook } from './gpa-hooks.ts';
import { InstructionCache, type IcacheSwapHooks } from './icache.ts';
import { PageTableWrites } from './page-table-writes.ts';
import { PtsHooks, type PtsHook } from './pts-hooks.ts';
import { pagingLayout, rootOf, type PagingLayout } from './paging-layout.ts';
import { VasMonitor, type VasMonitorHandle } from './vas-monitor.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import { MemoryCloak } from './memcloak.ts';
import { MemTables, type KernelLayout } from './memtables.ts';
import { parseImage, type ParsedImage } from './pe.ts';
import { RegisterHooks } from './callbacks/register-hooks.ts';
import { UnwindCache } from './rtlpvu.ts';
import { IntegrityRegions } from './integrity.ts';
import { TokenPrivileges } from './token-privileges.ts';
import { SlackAllocator } from './slack.ts';
import { IntroAction, type IntroActionCode } from './status.ts';
import type { GuestDescription } from '../guest/description.ts';

/**
 * The introspection engine ("introcore"): its state and its entry points, each called by the
 * hypervisor side with the global lock held (one at a time). The modules are plain objects; the
 * actors decide when these run.
 */

export interface IntrocoreOptions {
  readonly fixes?: Fixes;
  /** Told when a hook is flagged for removal (the hook-commit actor). */
  readonly onHookRemoved?: () => void;
  /** Asks the integrator to unload the engine (its daemon calls IntDisableIntro when it gets to run). */
  readonly requestUnload?: () => void;
  /** gGuest.DisableOnReturn: a callback asks for a disable when its handler returns. */
  readonly requestDisableOnReturn?: () => void;
}

/** An exception the engine asks the integrator to inject. */
export interface ExceptionInjection {
  readonly vector: number;
  readonly errorCode?: number;
  /** For a #PF: the faulting address. */
  readonly cr2?: bigint;
}

/** A hypercall the engine answers: 'continue' past the VMCALL, or 'stop' the vCPU for good. */
export interface EngineHypercall {
  readonly name: string;
  handle(event: ExitEvent): 'continue' | 'stop';
}

export interface EngineStats {
  eptViolations: number;
  breakpoints: number;
  timerTicks: number;
  retries: { fetchFail: number; toctou: number; peerPatched: number };
  /** Integrity-check mismatches found by the timer. */
  integrityViolations: number;
}

export class Introcore {
  readonly glue: Glue;
  readonly fixes: Fixes;
  readonly decoder: EngineDecoder;
  readonly hooks: GpaHookTable;
  readonly icache: InstructionCache;
  readonly cloak: MemoryCloak;
  readonly image: ParsedImage;
  readonly slack: SlackAllocator;
  readonly kernel: KernelLayout;
  /** What the engine was told about the guest (OS detection, CAMI offsets). */
  readonly guest: GuestDescription;
  readonly memtables: MemTables;
  /** The guest's page-table layout (4-level or PAE). */
  readonly layout: PagingLayout;
  /** Guest page-table writes: emulation, per-vCPU buffers, whole entries out of partial writes. */
  readonly pageTableWrites: PageTableWrites;
  /** Swap hooks on translations (hook_pts). */
  readonly pts: PtsHooks;
  /** Address spaces whose page tables are all watched (vasmonitor). */
  readonly vas: VasMonitor;
  readonly detours: Detours;
  /** The RtlpVirtualUnwind read cache (its handlers are detours too). */
  readonly unwindCache: UnwindCache;
  /** Structures the timer compares with a copy (IntIntegrityAddRegion). */
  readonly integrity: IntegrityRegions;
  /** The timer's check of the SYSTEM token's privileges (null: the guest has no token to check). */
  readonly tokens: TokenPrivileges | null;
  /** Hypercalls the engine answers itself (a scenario's), by RAX: dispatched before the guest's own. */
  readonly hypercalls = new Map<bigint, EngineHypercall>();
  /** EPT-violation stages a scenario added, in order. */
  readonly eptStages: EptStage[] = [];
  /** State objects of a scenario's engine logic (`ScenarioEngine.state`): held here so a run's snapshot holds them. */
  readonly scenarioState: object[] = [];
  /** Hooks a scenario placed: removed when the engine unloads. */
  readonly scenarioHooks = new Set<GpaHook>();
  /** Swap hooks and monitored address spaces a scenario placed: removed when the engine unloads. */
  readonly scenarioSwapHooks = new Set<PtsHook>();
  readonly scenarioSpaces = new Set<VasMonitorHandle>();
  /** MSR, CR, XCR and descriptor-table write hooks (their handlers: src/intro/callbacks). */
  readonly registerHooks: RegisterHooks;
  /** Asks the integrator to unload the engine later (as its daemon would). */
  readonly requestUnload: () => void;
  /** From inside a callback: disable when the handler returns (gGuest.DisableOnReturn). */
  readonly requestDisableOnReturn: () => void;
  readonly stats: EngineStats = { eptViolations: 0, breakpoints: 0, timerTicks: 0, retries: { fetchFail: 0, toctou: 0, peerPatched: 0 }, integrityViolations: 0 };
  private state: 'active' | 'disabled' | 'uninitialised' = 'active';
  /** The REP optimisation switch (gGuest.RepOptsDisableCount, and each vCPU's RepOptDisabled). */
  readonly rep = { disabledCount: 0, disabledOn: new Set<number>() };
  /** Exceptions to inject at the vCPU's next entry (IntInjectExceptionInGuest), by vCPU. */
  private readonly injections = new Map<number, ExceptionInjection>();
  /** Bytes from the exit's RIP the engine carried out in this exit, when more than its instruction, by vCPU. */
  private readonly emulatedLengths = new Map<number, number>();

  /** IntGuestInit for a detected guest: reads the kernel image and places the API hooks. */
  constructor(glue: Glue, guest: GuestDescription, options: IntrocoreOptions = {}) {
    this.glue = glue;
    this.guest = guest;
    this.decoder = new EngineDecoder(guest.bits ?? 64);
    const paging = guest.paging ?? '4-level';
    this.layout = pagingLayout(paging);
    this.fixes = options.fixes ?? DEFAULT_FIXES;
    this.requestUnload = options.requestUnload ?? (() => undefined);
    this.requestDisableOnReturn = options.requestDisableOnReturn ?? (() => undefined);
    const note = (what: string, detail: NoteDetail): void => glue.note(what, detail);
    this.hooks = new GpaHookTable(glue, options.onHookRemoved, this.fixes.deferredHookRemoval);
    this.registerHooks = new RegisterHooks(() => glue.ticket);
    const fixes = this.fixes;
    const preemptionPoint = (label: string): void => glue.preemptionPoint(label);
    this.pageTableWrites = new PageTableWrites(
      glue.memory,
      () => ({ cas: fixes.casPageTableEmulation, assemble: fixes.partialWriteAssembly, dropDuplicates: fixes.duplicateWriteDrop }),
      preemptionPoint,
      note,
      8,
      guest.bits === 32,
    );
    const hookThenRead = (): boolean => fixes.hookThenRead;
    this.pts = new PtsHooks({ memory: glue.memory, hooks: this.hooks, writes: this.pageTableWrites, hookThenRead, preemptionPoint, note });
    this.vas = new VasMonitor({
      memory: glue.memory, hooks: this.hooks, writes: this.pageTableWrites, hookThenRead, pauseAroundHook: () => fixes.pauseAroundVasHook,
      pause: () => glue.pauseVcpus(), resume: () => glue.resumeVcpus(), preemptionPoint, note,
    });
    const systemRoot = guest.systemCr3;
    const swapHooks: IcacheSwapHooks = {
      watch: (gvaPage, changed) => this.pts.set(gvaPage, systemRoot, 'icache', (change) => changed(change.old, change.new), paging),
      unwatch: (handle) => this.pts.remove(handle as PtsHook),
    };
    this.icache = new InstructionCache(this.hooks, glue.random, note, undefined, undefined, () => (fixes.icacheSwapHook ? swapHooks : null));
    this.cloak = new MemoryCloak(glue, this.hooks, note, paging);
    this.image = parseImage(glue.memory, guest.systemCr3, guest.kernelBase, paging);
    this.slack = new SlackAllocator(this.image, glue.memory, guest.systemCr3, paging);
    this.kernel = {
      base: guest.kernelBase, size: this.image.sizeOfImage, ssdt: guest.ssdt, ssdtEntries: guest.ssdtEntries, wordSize: (guest.bits ?? 64) / 8, systemCr3: guest.systemCr3, paging,
    };
    this.memtables = new MemTables({ glue, fixes: this.fixes, icache: this.icache, cloak: this.cloak, slack: this.slack, kernel: this.kernel, note });
    this.detours = new Detours({ glue, decoder: this.decoder, slack: this.slack, cloak: this.cloak, systemCr3: guest.systemCr3, paging, note });
    for (const api of guest.hookedApis) this.detours.install(api.name, api.gva);
    this.unwindCache = new UnwindCache({ glue, detours: this.detours, cloak: this.cloak, kernel: this.kernel, liveRipCheck: () => fixes.rtlpvuLiveRipCheck, note });
    this.unwindCache.install(guest.unwindSites ?? []);
    this.integrity = new IntegrityRegions({ glue, systemCr3: guest.systemCr3, paging, note });
    this.tokens = guest.systemToken === undefined ? null : new TokenPrivileges({ glue, systemCr3: guest.systemCr3, paging, token: guest.systemToken, fixes, note });
  }

  note(what: string, detail: NoteDetail = {}): void {
    this.glue.note(what, detail);
  }

  /** The page-table root a CR3 value names, in the guest's paging (PAE: the 32-byte-aligned PDPT). */
  rootOf(cr3: bigint): number {
    return rootOf(this.layout, Number(cr3 & 0x000f_ffff_ffff_ffe0n));
  }

  /**
   * IntInjectExceptionInGuest: the integrator delivers it when the vCPU enters next (with CR2 set
   * for a #PF). One per vCPU, as HVMI keeps one pending exception per vCPU.
   */
  injectException(vcpu: number, injection: ExceptionInjection): void {
    if (this.injections.has(vcpu)) return;
    this.injections.set(vcpu, injection);
    this.note('inject', { vcpu, vector: injection.vector, errorCode: injection.errorCode ?? -1, cr2: injection.cr2 ?? 0n });
  }

  /** The exception requested for `vcpu` during this exit, handed over once (the integrator's side). */
  takeInjection(vcpu: number): ExceptionInjection | null {
    const injection = this.injections.get(vcpu) ?? null;
    this.injections.delete(vcpu);
    return injection;
  }

  /**
   * The engine carried out the instructions after the exiting one too (the PAE second-store
   * lookahead): `bytes` from the exit's RIP. HVMI's emulation leaves RIP there itself (IntSetGprs);
   * here the integrator's allowedVirtual reply moves it.
   */
  emulatedThrough(vcpu: number, bytes: number): void {
    this.emulatedLengths.set(vcpu, bytes);
  }

  /** Bytes from the exit's RIP the engine carried out in `vcpu`'s exit (null: the exiting instruction alone), handed over once. */
  takeEmulatedLength(vcpu: number): number | null {
    const bytes = this.emulatedLengths.get(vcpu) ?? null;
    this.emulatedLengths.delete(vcpu);
    return bytes;
  }

  /** IntHandleEptViolation. */
  handleEptViolation(event: ExitEvent): IntroActionCode {
    if (this.state === 'uninitialised') return IntroAction.allowed;
    return handleEptViolation(this, event);
  }

  /**
   * IntHandleBreakpoint: an INT3 in a detour handler is a hooked API call — skip it. Otherwise the
   * bytes at RIP decide: a real INT3 (CC or CD 03) is the guest's own and goes back to it; anything
   * else means the breakpoint was removed while this exit waited for the lock — run what is there.
   */
  handleBreakpoint(event: ExitEvent): { readonly action: IntroActionCode; readonly reinject: boolean } {
    this.stats.breakpoints++;
    const rip = event.self.rip();
    const detour = this.detours.hit(rip);
    if (detour !== null) {
      for (const callback of detour.callbacks) callback({ vcpuId: event.vcpuId, exitTicket: event.exitTicket, self: event.self, detour });
      return { action: IntroAction.allowedVirtual, reinject: false };
    }
    const bytes = tryReadGuestVirtual(this.glue.memory, this.rootOf(event.self.get64('cr3')), rip, 2, this.kernel.paging);
    const int3 = bytes !== null && (bytes[0] === 0xcc || (bytes[0] === 0xcd && bytes[1] === 0x03));
    this.note(int3 ? 'breakpoint-reinject' : 'breakpoint-gone', { vcpu: event.vcpuId, rip });
    return int3 ? { action: IntroAction.allowedVirtual, reinject: true } : { action: IntroAction.retry, reinject: false };
  }

  /**
   * IntHandleTimer: TIMER_FRIENDLY integrity checks — global state and guest memory only, no
   * vCPU registers: the integrity regions, the token's privileges, and every cloaked patch still
   * in memory.
   */
  handleTimer(): void {
    if (this.state === 'uninitialised') return;
    this.stats.timerTicks++;
    this.integrity.checkAll();
    this.tokens?.checkIntegrity();
    for (const region of this.cloak.liveRegions()) {
      if (!region.applyPatch) continue;
      const now = tryReadGuestVirtual(this.glue.memory, region.cr3, region.gva, region.size, this.kernel.paging);
      if (now !== null && !now.every((b, k) => b === region.patched[k])) {
        this.stats.integrityViolations++;
        this.note('integrity-violation', { owner: region.owner, gva: region.gva });
      }
    }
  }

  /**
   * One commit step of the hook-commit actor: deletes the flagged hooks of one type. The actor
   * runs read, write, execute in that order.
   */
  deleteRemovedHooks(type: (typeof HOOK_TYPES)[number]): number {
    return this.hooks.deleteRemoved(type);
  }

  /** IntGuestPrepareUninit's engine part: patches come out, handlers stay for threads inside them. */
  disable(): void {
    if (this.state !== 'active') return;
    this.detours.disable();
    this.memtables.disable();
    this.state = 'disabled';
  }

  /**
   * IntGuestUninit's engine part, with every vCPU paused and thread safety checked by the caller:
   * mem-table handlers, detours (uncloaked before their slack is freed), slack records, the
   * icache, memory cloaks left behind, the integrity regions, the hooks a scenario placed, the register hooks (MSR, DTR,
   * CR, XCR, as HVMI), and the callbacks last.
   */
  uninit(): void {
    if (this.state === 'uninitialised') return;
    this.disable();
    this.glue.pauseVcpus();
    try {
      this.memtables.uninit();
      this.detours.uninit();
      this.slack.clear();
      this.icache.flushAll();
      this.cloak.uninit();
      this.integrity.clear();
      for (const hook of this.scenarioHooks) this.hooks.remove(hook);
      this.scenarioHooks.clear();
      for (const space of this.scenarioSpaces) this.vas.stop(space);
      this.scenarioSpaces.clear();
      for (const hook of this.scenarioSwapHooks) this.pts.remove(hook);
      this.scenarioSwapHooks.clear();
      this.registerHooks.uninit();
      this.hypercalls.clear();
      this.eptStages.length = 0;
    } finally {
      this.glue.resumeVcpus();
    }
    this.state = 'uninitialised';
  }

  /** Releases the decoder's WASM objects. */
  free(): void {
    this.decoder.free();
  }
}
