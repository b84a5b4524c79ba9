import type { DecodedInstruction } from './decoder.ts';
import type { Detour, DetourCall } from './detours.ts';
import type { Introcore } from './engine.ts';
import type { IntegrityRegion, IntegrityResponse } from './integrity.ts';
import type { EptStage } from './ept-violation.ts';
import type { Fixes } from './fixes.ts';
import type { ExitEvent, Glue, NoteDetail, VcpuAccess } from './glue.ts';
import { HookType, type CallbackResult, type GpaHook, type HookedAccess } from './gpa-hooks.ts';
import type { RegisterHook, RegisterHookBase, RegisterHookList } from './callbacks/hook-list.ts';
import { DescriptorAccess, type CrHook, type CrWrite, type DtrHook, type DtrLoad, type MsrHook, type MsrWrite, type XcrHook, type XcrWrite } from './callbacks/register-hooks.ts';
import { translateGva, tryReadGuestVirtual, writeGuestVirtual } from './kernvm.ts';
import type { PtsHook, SwapChange } from './pts-hooks.ts';
import { IntStatus, IntroAction, type IntroActionCode, type IntroActionName } from './status.ts';
import type { VasChange, VasMonitorHandle } from './vas-monitor.ts';

/**
 * The engine as a scenario's own engine logic sees it: the same entry points HVMI's modules use —
 * GPA hooks with callbacks, MSR/CR/XCR/descriptor-table write hooks, detours whose calls reach a
 * TypeScript callback, hypercalls, stages in the EPT-violation pipeline — under the same rules. A
 * hook placed or removed while a handler runs is committed, and reaches every vCPU, when the
 * handler answers (the integrator's flush); removal is deferred to the hook commit like every
 * HVMI hook; whatever a scenario placed is taken down when the engine unloads. Guest writes go
 * through the engine's host mapping one byte at a time, each a point where vCPUs that are not
 * paused may run.
 */

/** Where and what a scenario hooks: a byte range inside one page, by guest-physical or kernel virtual address. */
export type ScenarioHookSpec = ({ readonly gpa: number } | { readonly gva: bigint }) & {
  readonly length: number;
  readonly type: 'read' | 'write' | 'execute';
  /** Who placed it, for reports. */
  readonly owner: string;
  /** Called for every access to the range: a status and an action, or just an action's name. */
  readonly callback: (access: HookedAccess, hook: GpaHook) => CallbackResult | IntroActionName;
  /**
   * The range holds page-table entries (HOOK_FLG_PAGING_STRUCTURE): a write to it is carried out
   * by the engine's page-table write emulation before the callback runs, and the exit completes
   * as allowedVirtual whatever the callback answers.
   */
  readonly pagingStructure?: boolean;
};

/** A swap hook: a callback whenever the translation of one page changes (frame, P, R/W, U/S, PS). */
export interface SwapHookSpec {
  /** A page of the address space at `root` (default: the kernel's). */
  readonly gva: bigint;
  /** GPA of the address space's root table (CR3 without its flag bits); default the system CR3's. */
  readonly root?: number;
  readonly owner: string;
  readonly callback: (change: SwapChange) => void;
}

/** An address space whose page tables are all watched (the VAS monitor). */
export interface AddressSpaceMonitorSpec {
  /** GPA of the root table; default the system CR3's. Only the user half (PML4 entries 0..255) is watched. */
  readonly root?: number;
  readonly owner: string;
  /** Entry bits whose change is a leaf change (default: P, R/W, U/S, PS and the frame — HOOK_PTS_MONITORED_BITS). */
  readonly monitoredBits?: bigint;
  /** Called for every change of a leaf mapping, and for every leaf of a table taken away (new = 0). */
  readonly callback: (change: VasChange) => void;
}

/** A register hook's callback: the write (before it happens) and the hook; a status and an action, or just an action's name. */
export type RegisterWriteCallback<W> = (write: W, hook: RegisterHook<W>) => CallbackResult | IntroActionName;

/** A hook on writes to one MSR (WRMSR with ECX = `msr`). */
export interface MsrHookSpec {
  readonly msr: number;
  /** Who placed it, for reports. */
  readonly owner: string;
  readonly callback: RegisterWriteCallback<MsrWrite>;
}

/** A hook on MOV to one control register. */
export interface CrHookSpec {
  readonly cr: 0 | 3 | 4 | 8;
  readonly owner: string;
  readonly callback: RegisterWriteCallback<CrWrite>;
}

/** A hook on XSETBV to one XCR (0 unless said: the only one this CPU has). */
export interface XcrHookSpec {
  readonly xcr?: number;
  readonly owner: string;
  readonly callback: RegisterWriteCallback<XcrWrite>;
}

/**
 * A hook on LIDT or LGDT: called only when the load changes a register that is already set up,
 * after the EPT hooks on the operand allowed the read (HVMI's IntHandleDtrViolation).
 */
export interface DtrHookSpec {
  readonly register: 'idtr' | 'gdtr';
  readonly owner: string;
  readonly callback: RegisterWriteCallback<DtrLoad>;
}

/** A hypercall the engine answers for a scenario: the calling vCPU (stopped at its VMCALL) and its registers. */
export interface EngineCall {
  readonly vcpuId: number;
  readonly exitTicket: number;
  readonly self: VcpuAccess;
}

/** What a stage of the EPT pipeline sees. */
export interface EptStageExit {
  readonly vcpuId: number;
  readonly exitTicket: number;
  readonly self: VcpuAccess;
  readonly instruction: DecodedInstruction;
  /** ExitAccess bits (read 1, write 2, execute 4). */
  readonly access: number;
  readonly gpa: number;
  readonly gla: bigint;
  /** Live hooks of `type` on the exit's page that overlap [gpa, gpa + size). */
  hooksAt(gpa: number, size: number, type: 'read' | 'write' | 'execute'): readonly GpaHook[];
}

const TYPES = { read: HookType.read, write: HookType.write, execute: HookType.execute } as const;
const PAGE = 0x1000;

export class ScenarioEngine<F extends string = string> {
  constructor(
    /** The whole engine, for what the facade does not cover (oracles read its modules too). */
    readonly engine: Introcore,
    /** The run's fixes: HVMI's and the scenario's own. */
    readonly fixes: Fixes<F>,
  ) {}

  private get glue(): Glue {
    return this.engine.glue;
  }

  /**
   * The run's state of the scenario's engine logic — counters, flags, the hook it moves — as one
   * object its callbacks share: `const state = engine.state({ calls: 0 })`, then `state.calls++`.
   * Keep such state here, not in variables the callbacks close over: a run branched from a
   * snapshot gets back every object of the run, but no snapshot can see a closure's variables
   * (`ScenarioRig.branch` checks, and names the first entry where a suffix came out different).
   */
  state<S extends object>(initial: S): S {
    this.engine.scenarioState.push(initial);
    return initial;
  }

  get vcpuCount(): number {
    return this.glue.vcpuCount;
  }

  /** Virtual time (steps retired by every vCPU). */
  get clock(): number {
    return this.glue.clock;
  }

  /** Exits so far in the run (the latest exit's ticket). */
  get ticket(): number {
    return this.glue.ticket;
  }

  /** The run's seeded random source (the engine's stream). */
  below(bound: number): number {
    return this.glue.random.below(bound);
  }

  /** Records an engine event in the trace; it counts as a PCT event. */
  note(what: string, detail: NoteDetail = {}): void {
    this.glue.note(what, detail);
  }

  pauseVcpus(): void {
    this.glue.pauseVcpus();
  }

  resumeVcpus(): void {
    this.glue.resumeVcpus();
  }

  /** Registers of vCPU `id` (only while it is stopped or paused, HVMI's TIMER_FRIENDLY rule). */
  vcpu(id: number): VcpuAccess {
    return this.glue.vcpu(id);
  }

  /** The GPA of a kernel address under the system page tables, or null. */
  translate(gva: bigint): number | null {
    return translateGva(this.glue.memory, this.engine.kernel.systemCr3, gva, this.engine.kernel.paging);
  }

  /** Reads kernel memory through the engine's host mapping (no EPT). */
  read(gva: bigint, length: number): Uint8Array {
    const bytes = tryReadGuestVirtual(this.glue.memory, this.engine.kernel.systemCr3, gva, length, this.engine.kernel.paging);
    if (bytes === null) throw new RangeError(`scenario engine: 0x${gva.toString(16)} + ${length} is not mapped`);
    return bytes;
  }

  /** Writes kernel memory through the host mapping, byte by byte; with vCPUs running, each byte after the first is a preemption point. */
  write(gva: bigint, bytes: Uint8Array, label: string): void {
    writeGuestVirtual(this.glue, this.engine.kernel.systemCr3, gva, bytes, label, this.engine.kernel.paging);
  }

  /**
   * Asks the integrator to unload the engine (IntDisableIntro from its daemon): it runs when the
   * scheduler lets the daemon run, checks thread safety (with every vCPU paused) and, when a
   * thread is in the way, resumes and retries later.
   */
  requestUnload(): void {
    this.engine.requestUnload();
  }

  /** From inside a callback: unload when the handler returns (gGuest.DisableOnReturn). */
  disableOnReturn(): void {
    this.note('disable-on-return');
    this.engine.requestDisableOnReturn();
  }

  /** Places a hook (IntHookGpaSetHook): a write hook must exist before a read hook on the same page. */
  hook(spec: ScenarioHookSpec): GpaHook {
    const gpa = 'gpa' in spec ? spec.gpa : this.translate(spec.gva);
    if (gpa === null) throw new RangeError(`hook "${spec.owner}": 0x${(spec as { gva: bigint }).gva.toString(16)} is not mapped`);
    if (gpa % PAGE + spec.length > PAGE) throw new RangeError(`hook "${spec.owner}": [0x${gpa.toString(16)}, +${spec.length}) crosses a page; place one hook per page`);
    const callback = spec.callback;
    const hook = this.engine.hooks.set(gpa, spec.length, TYPES[spec.type], (placed, access) => {
      const result = callback(access, placed);
      return typeof result === 'string' ? { status: IntStatus.success, action: IntroAction[result] } : result;
    }, spec.owner, { pagingStructure: spec.pagingStructure === true });
    this.engine.scenarioHooks.add(hook);
    this.note('hook', { owner: spec.owner, gpa, type: spec.type, id: hook.id });
    return hook;
  }

  /**
   * Protects a structure EPT cannot guard by comparing it with its current bytes on every timer
   * tick (IntIntegrityAddRegion): a change is an `integrity-violation` note, and with 'restore'
   * the bytes are written back with every vCPU paused. Removed when the engine unloads.
   */
  integrity(spec: { readonly gva: bigint; readonly length: number; readonly owner: string; readonly response: IntegrityResponse }): IntegrityRegion {
    const region = this.engine.integrity.add(spec.gva, spec.length, spec.owner, spec.response);
    this.note('integrity-region', { owner: spec.owner, gva: spec.gva, length: spec.length });
    return region;
  }

  /**
   * Places a swap hook (IntHookPtsSetHook): every paging-structure entry of the translation is
   * write-hooked — first hooked, then read — and a complete write that changes the leaf calls back.
   * Removed when the engine unloads.
   */
  swapHook(spec: SwapHookSpec): PtsHook {
    const hook = this.engine.pts.set(spec.gva, spec.root ?? this.engine.kernel.systemCr3, spec.owner, spec.callback, this.engine.kernel.paging);
    this.engine.scenarioSwapHooks.add(hook);
    return hook;
  }

  removeSwapHook(hook: PtsHook): void {
    this.engine.pts.remove(hook);
    this.engine.scenarioSwapHooks.delete(hook);
  }

  /**
   * Watches every page table of an address space's user half (IntVasStartMonitorVaSpace): tables
   * added are hooked (pausing every vCPU around each hook), tables removed are unhooked with an
   * `old → 0` callback for each of their leaves, and leaf changes call back. Stopped when the
   * engine unloads.
   */
  monitorAddressSpace(spec: AddressSpaceMonitorSpec): VasMonitorHandle {
    const handle = this.engine.vas.start(spec.root ?? this.engine.kernel.systemCr3, spec.owner, spec.callback, spec.monitoredBits, this.engine.kernel.paging);
    this.engine.scenarioSpaces.add(handle);
    return handle;
  }

  stopMonitoring(handle: VasMonitorHandle): void {
    this.engine.vas.stop(handle);
    this.engine.scenarioSpaces.delete(handle);
  }

  /** Removes a hook (flagged now, deleted at the hook commit after the current handler). */
  removeHook(hook: GpaHook): void {
    this.engine.hooks.remove(hook);
    this.engine.scenarioHooks.delete(hook);
    this.note('unhook', { owner: hook.owner, id: hook.id });
  }

  /**
   * Places an MSR write hook (IntHookMsrSetHook). The vCPUs exit on WRMSR only with
   * ExitControl.msrWrite set; notAllowed skips the WRMSR, leaving the MSR as it was.
   */
  msrHook(spec: MsrHookSpec): MsrHook {
    return this.registerHook(this.engine.registerHooks.msr, spec.msr >>> 0, spec.owner, spec.callback);
  }

  /** Places a control-register write hook (IntHookCrSetHook; the vCPUs need that CR's ExitControl.crWrite bit). */
  crHook(spec: CrHookSpec): CrHook {
    return this.registerHook(this.engine.registerHooks.cr, spec.cr, spec.owner, spec.callback);
  }

  /** Places an XCR write hook (IntHookXcrSetHook; the vCPUs need ExitControl.xcrWrite). */
  xcrHook(spec: XcrHookSpec): XcrHook {
    return this.registerHook(this.engine.registerHooks.xcr, spec.xcr ?? 0, spec.owner, spec.callback);
  }

  /** Places an IDTR or GDTR load hook (IntHookDtrSetHook; the vCPUs need ExitControl.dtr). */
  dtrHook(spec: DtrHookSpec): DtrHook {
    return this.registerHook(this.engine.registerHooks.dtr, DescriptorAccess[spec.register] | DescriptorAccess.write, spec.owner, spec.callback);
  }

  /** Removes a register hook: never called again; out of its list once no exit of its kind is being handled. */
  removeRegisterHook(hook: RegisterHookBase): void {
    this.engine.registerHooks.remove(hook);
    this.note('unhook-register', { kind: hook.kind, key: hook.key, owner: hook.owner, id: hook.id });
  }

  /** A register hook whose callback may answer with an action's name; taken down with the engine. */
  private registerHook<W>(list: RegisterHookList<W>, key: number, owner: string, callback: RegisterWriteCallback<W>): RegisterHook<W> {
    const hook = list.set(key, (placed, write) => {
      const result = callback(write, placed);
      return typeof result === 'string' ? { status: IntStatus.success, action: IntroAction[result] } : result;
    }, owner);
    this.note('hook-register', { kind: list.kind, key, owner, id: hook.id });
    return hook;
  }

  /**
   * Calls `callback` on every call of the kernel function at `api`: attached to the engine's
   * detour of it if there is one, otherwise a new detour named `name`.
   */
  detour(api: bigint, name: string, callback: (call: DetourCall) => void): Detour {
    const detour = this.engine.detours.at(api) ?? this.engine.detours.install(name, api);
    detour.callbacks.push(callback);
    return detour;
  }

  /** A hypercall the engine answers (before the guest's own): VMCALL with RAX = `code`. */
  hypercall(code: bigint, name: string, handler: (call: EngineCall) => 'continue' | 'stop'): void {
    const known = this.engine.hypercalls.get(code);
    if (known !== undefined) throw new Error(`hypercall 0x${code.toString(16)} ("${name}") is already answered by "${known.name}"`);
    this.engine.hypercalls.set(code, { name, handle: (event: ExitEvent) => handler({ vcpuId: event.vcpuId, exitTicket: event.exitTicket, self: event.self }) });
  }

  /** Adds a stage to the EPT-violation pipeline (after decode, TOCTOU and peer-patched checks, before the analysis). */
  eptStage(name: string, decide: (exit: EptStageExit) => IntroActionName | null): void {
    const hooks = this.engine.hooks;
    const stage: EptStage = {
      name,
      decide: ({ event, instruction, access, gpa, gla }): IntroActionCode | null => {
        const result = decide({
          vcpuId: event.vcpuId,
          exitTicket: event.exitTicket,
          self: event.self,
          instruction,
          access,
          gpa,
          gla,
          hooksAt: (at, size, type) => hooks.hooksAt(at, TYPES[type]).filter((h) => h.flags === 0 && at % PAGE < h.offset + h.length && at % PAGE + size > h.offset),
        });
        return result === null ? null : IntroAction[result];
      },
    };
    this.engine.eptStages.push(stage);
  }
}
