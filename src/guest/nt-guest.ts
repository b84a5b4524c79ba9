import { enterLongMode, TSS_BYTES, writeGdt, writeIdtGate } from '../machine/long-mode.ts';
import { ExitControl } from '../machine/layout.ts';
import { Machine } from '../machine/machine.ts';
import { PageTableBuilder, Pte } from '../machine/page-tables.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import { buildKernelImage, HOOKED_APIS, Rva, serviceValue, type KernelImage } from './kernel.ts';
import {
  GDT_OFFSET, Hypercall, IDT_OFFSET, KERNEL_BASE, KERNEL_GPA, MAX_VCPUS, PAGE_TABLES_GPA, PerCpu, RAM_BYTES,
  STACK_BYTES, STACKS_GPA, STACKS_GVA, TABLES_GPA, TABLES_GVA, TSS_OFFSET,
} from './layout.ts';
import { SWITCHES, caseValue, defaultValue } from './switch-functions.ts';

/**
 * The NT-like guest as a whole: a machine with 4-level page tables mapping the kernel image at
 * its canonical address, the descriptor tables, one kernel stack and one worker thread per vCPU
 * (GS pointing at its per-vCPU block), and INT3 exits on (the engine's detours use them). Also
 * everything a scenario checks against: the exact results the original code computes, and
 * readers for what the guest actually did.
 */

export interface NtGuestOptions {
  readonly vcpus: number;
  /** Iterations of each worker thread (≤ PerCpu.maxIterations). */
  readonly iterations: number;
}

/** What one vCPU's thread did, read from its per-vCPU block. */
export interface ThreadReport {
  readonly completed: number;
  readonly results: readonly number[];
  readonly apiCalls: number;
  readonly clockTicks: number;
  readonly serviceSum: number;
}

/** A guest bug check (from the exception stubs' hypercall). */
export interface BugCheck {
  readonly vcpu: number;
  readonly vector: number;
  readonly rip: bigint;
  readonly errorCode: bigint;
}

/** Register access the guest-call interpreter needs (the exiting vCPU's). */
export interface GuestRegisters {
  gpr(name: GprName): bigint;
}

export class NtGuest {
  readonly machine: Machine;
  readonly kernel: KernelImage;
  readonly tables: PageTableBuilder;
  readonly vcpus: number;
  readonly iterations: number;
  /** Bug checks reported by the guest (filled by `guestCall`). */
  readonly bugChecks: BugCheck[] = [];
  /** vCPUs whose thread reported completion. */
  readonly finished = new Set<number>();

  constructor(options: NtGuestOptions) {
    const { vcpus, iterations } = options;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new RangeError(`NT guest: vcpus must be 1..${MAX_VCPUS}, got ${vcpus}`);
    if (!Number.isInteger(iterations) || iterations < 0 || iterations > PerCpu.maxIterations) {
      throw new RangeError(`NT guest: iterations must be 0..${PerCpu.maxIterations}, got ${iterations}`);
    }
    this.vcpus = vcpus;
    this.iterations = iterations;
    this.machine = Machine.create({ ramBytes: RAM_BYTES, vcpus });
    const memory = this.machine.memory;
    this.tables = new PageTableBuilder(memory, PAGE_TABLES_GPA, RAM_BYTES);
    this.kernel = buildKernelImage(memory, KERNEL_GPA);
    this.mapKernel();
    for (let page = 0; page < 3; page++) this.tables.map(TABLES_GVA + BigInt(page * 0x1000), TABLES_GPA + page * 0x1000, Pte.writable | Pte.noExecute);
    this.tables.mapRange(STACKS_GVA, STACKS_GPA, MAX_VCPUS * STACK_BYTES, Pte.writable | Pte.noExecute);
    this.writeDescriptorTables();
    for (let vcpu = 0; vcpu < vcpus; vcpu++) this.startThread(vcpu);
  }

  /** Image pages: code RX, data RW-NX, the rest R-NX (supervisor only; CR0.WP makes RO stick). */
  private mapKernel(): void {
    for (let rva = 0; rva < Rva.sizeOfImage; rva += 0x1000) {
      const section = this.kernel.sections.find((s) => rva >= s.virtualAddress && rva < s.virtualAddress + Math.max(0x1000, Math.ceil(s.virtualSize / 0x1000) * 0x1000));
      const c = section?.characteristics ?? 0;
      const flags = (c & 0x80000000 ? Pte.writable : 0n) | (c & 0x20000000 ? 0n : Pte.noExecute);
      this.tables.map(KERNEL_BASE + BigInt(rva), KERNEL_GPA + rva, flags);
    }
  }

  private writeDescriptorTables(): void {
    const memory = this.machine.memory;
    writeGdt(memory, TABLES_GPA + GDT_OFFSET, { linear: TABLES_GVA + BigInt(TSS_OFFSET) });
    memory.fill(TABLES_GPA + TSS_OFFSET, TSS_BYTES, 0);
    for (const [vector, handler] of this.kernel.vectors) writeIdtGate(memory, TABLES_GPA + IDT_OFFSET, vector, handler);
  }

  /** GVA of vCPU `vcpu`'s per-vCPU block (its GS base). */
  perCpu(vcpu: number): bigint {
    return KERNEL_BASE + BigInt(Rva.data + vcpu * PerCpu.bytes);
  }

  private perCpuGpa(vcpu: number): number {
    return KERNEL_GPA + Rva.data + vcpu * PerCpu.bytes;
  }

  private startThread(vcpu: number): void {
    const state = this.machine.vcpu(vcpu);
    enterLongMode(state, {
      cr3: this.tables.root,
      ring: 0,
      gdtBase: TABLES_GVA + BigInt(GDT_OFFSET),
      gdtLimit: 0x4f,
      idtBase: TABLES_GVA + BigInt(IDT_OFFSET),
      idtLimit: 256 * 16 - 1,
      tss: { linear: TABLES_GVA + BigInt(TSS_OFFSET) },
      exitControls: ExitControl.int3,
    });
    state.set64('gsBase', this.perCpu(vcpu));
    state.setGpr('rsp', STACKS_GVA + BigInt((vcpu + 1) * STACK_BYTES - 0x28));
    state.rip = this.kernel.entry;
    const memory = this.machine.memory;
    memory.write32(this.perCpuGpa(vcpu) + PerCpu.index, vcpu);
    memory.write32(this.perCpuGpa(vcpu) + PerCpu.iterations, this.iterations);
  }

  /** The engine's view of the guest: image, SSDT, page-table root, APIs to hook. */
  get description(): { kernelBase: bigint; systemCr3: number; ssdt: bigint; ssdtEntries: number; hookedApis: { name: string; gva: bigint }[] } {
    return {
      kernelBase: KERNEL_BASE,
      systemCr3: this.tables.root,
      ssdt: this.kernel.ssdt,
      ssdtEntries: 4,
      hookedApis: HOOKED_APIS.map((name) => ({ name, gva: this.kernel.symbols.get(name)! })),
    };
  }

  /** What iteration `i` of vCPU `vcpu` must store: the value the original code computes. */
  expectedResult(vcpu: number, i: number): number {
    const fn = i % 3;
    const cases = SWITCHES[fn].cases;
    const index = (5 * i + 3 * vcpu) % (cases + 1);
    return index < cases ? caseValue(fn, index) : defaultValue(fn);
  }

  /** What vCPU `vcpu`'s thread must have done (clock ticks depend on the schedule: not predicted). */
  expected(vcpu: number): Omit<ThreadReport, 'clockTicks'> {
    const results = Array.from({ length: this.iterations }, (_, i) => this.expectedResult(vcpu, i));
    let apiCalls = 0;
    let serviceSum = 0;
    for (let i = 0; i < this.iterations; i++) {
      if ((i & 3) === 3) apiCalls++;
      if ((i & 15) === 9) apiCalls++;
      if ((i & 7) === 5) serviceSum = (serviceSum + serviceValue((i >> 3) & 3, vcpu)) >>> 0;
    }
    return { completed: this.iterations, results, apiCalls, serviceSum };
  }

  /** What vCPU `vcpu`'s thread actually did. */
  report(vcpu: number): ThreadReport {
    const memory = this.machine.memory;
    const base = this.perCpuGpa(vcpu);
    return {
      completed: memory.read32(base + PerCpu.completed),
      results: Array.from({ length: this.iterations }, (_, i) => memory.read32(base + PerCpu.results + 4 * i) >>> 0),
      apiCalls: memory.read32(base + PerCpu.apiCalls),
      clockTicks: memory.read32(base + PerCpu.clockTicks),
      serviceSum: memory.read32(base + PerCpu.serviceSum) >>> 0,
    };
  }

  /**
   * The guest's own hypercalls: thread completion and bug checks. Returns 'stop' for both (the
   * vCPU has nothing left to run), or null when RAX is not one of them.
   */
  guestCall(vcpu: number, regs: GuestRegisters): 'stop' | null {
    const code = regs.gpr('rax');
    if (code === Hypercall.threadDone) {
      this.finished.add(vcpu);
      return 'stop';
    }
    if (code === Hypercall.bugCheck) {
      this.bugChecks.push({ vcpu, vector: Number(regs.gpr('rcx')), rip: regs.gpr('rdx'), errorCode: regs.gpr('r8') });
      return 'stop';
    }
    return null;
  }

  /** Forgets bug checks and completions (before a re-run from a snapshot). */
  resetObservations(): void {
    this.bugChecks.length = 0;
    this.finished.clear();
  }
}
