import { RunStop, type Cpu } from '../cpu/cpu.ts';
import { ExitControl, ExitReason, PAGE_BYTES, type ExitReasonCode } from './layout.ts';
import { enterLongMode, writeGdt } from './long-mode.ts';
import { Machine } from './machine.ts';
import { PageTableBuilder, Pte } from './page-tables.ts';
import { enterProtectedModePae, loadPdptes, writeGdt32 } from './protected-mode.ts';
import { GPR_NAMES, type ExitRecord, type GprName, type VcpuState } from './vcpu-state.ts';

/**
 * Run a piece of x86-64 code — or 32-bit code in protected mode with PAE paging — on a fresh
 * single-vCPU machine: the quickest way to see what the emulated CPU does with some bytes. The code and the memory regions are identity-mapped
 * (linear = guest-physical), every exception stops the run instead of being delivered (there is
 * no IDT), and the run ends when execution reaches the first byte after the code.
 */

/** Where the code is placed unless `codeAddress` says otherwise (same as the native harness). */
export const SNIPPET_CODE_ADDRESS = 0x200000n;
/** Stack given to snippets that do not set RSP: 64 KiB ending here. */
export const SNIPPET_STACK_TOP = 0x1f0000n;
const SNIPPET_STACK_BYTES = 0x10000;

/**
 * How a SnippetMachine runs its code: 64-bit long mode, 32-bit code in compatibility mode (long
 * mode, 4-level paging), or 32-bit protected mode with PAE paging.
 */
export type SnippetMode = 'long' | 'compat' | 'protected-pae';

/** One memory region to place before running. */
export interface SnippetMemory {
  address: bigint;
  bytes: Uint8Array;
}

export interface SnippetOptions {
  code: Uint8Array;
  regs?: Partial<Record<GprName, bigint>>;
  /** Initial RFLAGS (bit 1 is forced on). Default 0x2. */
  rflags?: bigint;
  memory?: SnippetMemory[];
  /** Step limit; default 1,000,000. */
  maxSteps?: number;
  /** Linear (= physical) address of the code. Default 0x200000. */
  codeAddress?: bigint;
  /** Privilege level to run at. Default 0 (the harness uses 3 to match the host). */
  ring?: 0 | 3;
}

/** Why a snippet stopped. */
export type SnippetStop =
  | { kind: 'end' }
  | { kind: 'maxSteps' }
  | { kind: 'exception'; detail: { vector: number; errorCode?: number; address?: bigint; rip: bigint } }
  | { kind: 'exit'; detail: { reason: ExitReasonName; exit: ExitRecord } };

export type ExitReasonName = keyof typeof ExitReason;

export interface SnippetResult {
  regs: Record<GprName, bigint>;
  rflags: bigint;
  /** Reads guest memory after the run (identity-mapped addresses). */
  readMemory(address: bigint, length: number): Uint8Array;
  /** Steps retired (instructions; a long REP string instruction counts once per chunk). */
  steps: number;
  stop: SnippetStop;
}

const EXIT_NAMES = new Map<number, ExitReasonName>(
  (Object.entries(ExitReason) as Array<[ExitReasonName, ExitReasonCode]>).map(([name, code]) => [code, name]),
);

function pageOf(address: bigint): bigint {
  return address & ~0xfffn;
}

/**
 * A machine set up for running snippets, reusable across many runs (the differential harness
 * runs a million cases through one). Pages are mapped on demand and stay mapped.
 */
export class SnippetMachine {
  readonly machine: Machine;
  readonly cpu: Cpu;
  readonly state: VcpuState;
  private readonly tables: PageTableBuilder;
  private readonly mapped = new Set<bigint>();
  private readonly dirty: Array<[number, number]> = [];
  private ring: 0 | 3;
  readonly mode: SnippetMode;

  constructor(options: { ramBytes?: number; ring?: 0 | 3; mode?: SnippetMode } = {}) {
    const ramBytes = options.ramBytes ?? 0x4000000;
    this.machine = Machine.create({ ramBytes, vcpus: 1 });
    this.ring = options.ring ?? 0;
    this.mode = options.mode ?? 'long';
    const memory = this.machine.memory;
    // Reserved at the top of RAM: GDT page, then page tables.
    const gdt = ramBytes - 0x100000;
    const pae = this.mode === 'protected-pae';
    this.tables = new PageTableBuilder(memory, gdt + PAGE_BYTES, ramBytes, pae ? 'pae' : '4-level');
    const gdtLimit = pae ? writeGdt32(memory, gdt) : writeGdt(memory, gdt);
    this.map(BigInt(gdt), false);
    this.state = this.machine.vcpu(0);
    const common = { ring: this.ring, gdtLimit, exitControls: ExitControl.hlt, exceptionBitmap: -1 };
    if (pae) enterProtectedModePae(this.state, memory, { ...common, cr3: this.tables.root, gdtBase: gdt });
    else enterLongMode(this.state, { ...common, cr3: this.tables.root, gdtBase: BigInt(gdt), compat: this.mode === 'compat' });
    this.cpu = this.machine.createCpu(0);
  }

  private get limit(): bigint {
    return BigInt(this.machine.memory.bytes - 0x100000);
  }

  /** Identity-maps the page holding `address`. */
  private map(address: bigint, user: boolean): void {
    const page = pageOf(address);
    if (this.mapped.has(page)) return;
    this.tables.map(page, Number(page), Pte.writable | (user ? Pte.user : 0n));
    this.mapped.add(page);
  }

  private mapRegion(address: bigint, length: number): void {
    if (address < 0n || address + BigInt(length) > this.limit) {
      throw new RangeError(
        `snippet region 0x${address.toString(16)}+${length} is outside the identity-mappable range 0..0x${this.limit.toString(16)}`,
      );
    }
    for (let page = pageOf(address); page < address + BigInt(Math.max(length, 1)); page += 0x1000n) this.map(page, true);
  }

  /** Runs one snippet. */
  run(options: SnippetOptions): SnippetResult {
    const memory = this.machine.memory;
    const ring = options.ring ?? 0;
    if (ring !== this.ring) throw new Error(`this SnippetMachine runs at ring ${this.ring}, not ${ring}`);
    for (const [address, length] of this.dirty.splice(0)) memory.fill(address, length, 0);
    const codeAddress = options.codeAddress ?? SNIPPET_CODE_ADDRESS;
    const code = options.code;
    const end = codeAddress + BigInt(code.length);
    // VMCALL right after the code marks the end: the run stops there with an exit at `end`.
    const sentinel = new Uint8Array([0x0f, 0x01, 0xc1]);
    this.mapRegion(codeAddress, code.length + sentinel.length);
    memory.write(Number(codeAddress), code);
    memory.write(Number(end), sentinel);
    this.dirty.push([Number(codeAddress), code.length + sentinel.length]);
    for (const region of options.memory ?? []) {
      this.mapRegion(region.address, region.bytes.length);
      memory.write(Number(region.address), region.bytes);
      this.dirty.push([Number(region.address), region.bytes.length]);
    }
    const regs = options.regs ?? {};
    if (regs.rsp === undefined) {
      this.mapRegion(SNIPPET_STACK_TOP - BigInt(SNIPPET_STACK_BYTES), SNIPPET_STACK_BYTES);
      this.dirty.push([Number(SNIPPET_STACK_TOP) - SNIPPET_STACK_BYTES, SNIPPET_STACK_BYTES]);
    }
    // New mappings may have added a PDPTE: reload the registers, as a hypervisor that edited a
    // PAE guest's PDPT updates the VMCS guest-PDPTE fields.
    if (this.mode === 'protected-pae') loadPdptes(this.state, memory, this.tables.root);
    for (const name of GPR_NAMES) this.state.setGpr(name, regs[name] ?? (name === 'rsp' ? SNIPPET_STACK_TOP : 0n));
    this.state.rip = codeAddress;
    this.state.rflags = (options.rflags ?? 0x2n) | 0x2n;
    this.state.set32('activity', 0);
    this.state.set32('interruptibility', 0);
    this.state.clearExit();
    this.cpu.enter();
    const maxSteps = options.maxSteps ?? 1_000_000;
    const startRetired = this.cpu.retired;
    const stop = this.drive(maxSteps, startRetired, end);
    return {
      regs: this.state.gprs(),
      rflags: this.state.rflags,
      readMemory: (address, length) => memory.read(Number(address), length),
      steps: this.cpu.retired - startRetired,
      stop,
    };
  }

  private drive(maxSteps: number, startRetired: number, end: bigint): SnippetStop {
    const why = this.cpu.run(maxSteps - (this.cpu.retired - startRetired));
    if (why === RunStop.budget) return { kind: 'maxSteps' };
    const exit = this.state.exit();
    if (why !== RunStop.exit) return { kind: 'exit', detail: { reason: 'none', exit } };
    if (exit.reason === ExitReason.vmcall && exit.rip === end) return { kind: 'end' };
    if (exit.reason === ExitReason.exception) {
      const vector = exit.info0;
      const hasError = exit.value >> 32n !== 0n;
      return {
        kind: 'exception',
        detail: {
          vector,
          ...(hasError ? { errorCode: Number(exit.value & 0xffffffffn) } : {}),
          ...(vector === 14 ? { address: exit.gla } : {}),
          rip: exit.rip,
        },
      };
    }
    return { kind: 'exit', detail: { reason: EXIT_NAMES.get(exit.reason) ?? 'none', exit } };
  }
}

/**
 * Runs `code` in ring 0 (or `ring`) with the code and scratch memory identity-mapped, until it runs
 * off the end of `code`, raises an exception, exits, or uses up `maxSteps`.
 *
 * @example
 * const { regs } = runSnippet({ code: new Uint8Array([0x48, 0x01, 0xd8]), regs: { rax: 1n, rbx: 2n } });
 * // regs.rax === 3n
 */
export function runSnippet(options: SnippetOptions): SnippetResult {
  const highest = [options.codeAddress ?? SNIPPET_CODE_ADDRESS, ...(options.memory ?? []).map((m) => m.address + BigInt(m.bytes.length))]
    .reduce((a, b) => (a > b ? a : b), 0n);
  const needed = Number(highest + BigInt(options.code.length) + 0x100000n + 0x200000n);
  const ramBytes = Math.min(1 << 30, Math.max(0x800000, Math.ceil(needed / 0x100000) * 0x100000));
  return new SnippetMachine({ ramBytes, ring: options.ring ?? 0 }).run(options);
}
