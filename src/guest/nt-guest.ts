import { enterLongMode, TSS_BYTES, writeGdt, writeIdtGate } from '../machine/long-mode.ts';
import { ExitControl } from '../machine/layout.ts';
import { Machine } from '../machine/machine.ts';
import { PageTableBuilder, Pte } from '../machine/page-tables.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import type { Assembler } from '../asm/index.ts';
import type { GuestDescription } from './description.ts';
import { translateGva, tryReadGuestVirtual } from '../machine/guest-virtual.ts';
import type { CodePartOptions, SymbolResolver } from './image-builder.ts';
import { HOOKED_APIS, kernelImageBuilder, PROCESSOR_BLOCK, serviceValue, SYSTEM_TOKEN, writeKernelImage, type KernelImage } from './kernel.ts';
import {
  CLOCK_VECTOR, Eprocess, GDT_OFFSET, Hypercall, IDT_OFFSET, KERNEL_BASE, KERNEL_GPA, Kthread, MAX_VCPUS, PAGE_TABLES_GPA, PerCpu, RAM_BYTES,
  STACK_BYTES, STACKS_GPA, STACKS_GVA, TABLES_GPA, TABLES_GVA, ThreadState, Token, TSS_OFFSET,
} from './layout.ts';
import { checkManagedRange, leafFlagsOf, linkManagedRange, type ManagedRange, type ManagedRangeOptions } from './managed-range.ts';
import { addSchedulerParts, addThreadRecords, linkThreadList, writeThread } from './scheduler.ts';
import { SWITCHES, caseValue, defaultValue } from './switch-functions.ts';
import { UNWIND_SITES } from './unwind.ts';

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
  /** A scenario's additions (code, data, threads, pages, hypercalls), applied in order before the guest is built. */
  readonly extensions?: readonly GuestExtension[];
  /**
   * Scheduler mode: this many preemptible worker threads (each `iterations` long) share the vCPUs,
   * switched by the clock interrupt, instead of one thread per vCPU.
   */
  readonly threads?: number;
  /**
   * Scheduler mode: where every thread starts (a symbol; default KiThreadWorker). It starts with
   * RBX = its data block, R13 = its index, R14 = `iterations`, and ends by jumping to KiTerminateThread.
   */
  readonly threadEntry?: string;
  /** Scheduler mode: a function (symbol) KiThreadWorker calls after each result; it may clobber RAX, RCX, RDX, R8–R11. */
  readonly workerCallout?: string;
}

/** Where the engine finds the guest's threads, as HVMI's CAMI data tells it the offsets of Windows structures. */
export interface ThreadLayout {
  /** GVA of the process whose thread list holds every thread. */
  readonly process: bigint;
  readonly eprocess: typeof Eprocess;
  readonly kthread: typeof Kthread;
  /** Offset of CurrentThread in the per-vCPU block GS points to. */
  readonly currentThread: number;
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

/** Register access the guest-call interpreter needs (the exiting vCPU's, stopped at its VMCALL). */
export interface GuestRegisters {
  gpr(name: GprName): bigint;
  /** Present when the caller may change registers (a hypercall that returns a value in RAX). */
  setGpr?(name: GprName, value: bigint): void;
}

/** A guest hypercall being handled: which vCPU, its registers, and the guest. */
export interface GuestCall {
  readonly vcpu: number;
  readonly regs: GuestRegisters;
  readonly guest: NtGuest;
}

/** What a guest hypercall does: 'continue' past the VMCALL, or 'stop' this vCPU for good. */
export type GuestHypercall = (call: GuestCall) => 'continue' | 'stop';

/** Guest pages outside the kernel image, from the guest's page allocator. */
export interface GuestPages {
  readonly name: string;
  readonly gva: bigint;
  readonly gpa: number;
  readonly bytes: number;
}

/** Kernel sections a scenario can add code to, and those it can add data to. */
export type CodeSection = '.text' | 'INITKDBG' | 'PAGE';
export type DataSection = '.rdata' | '.data';

/**
 * What a scenario may add to the NT-like guest before it is built — the same calls the guest uses
 * for itself. Symbols (part names and named labels) resolve while the image is linked, so code may
 * call kernel functions and use scenario variables by name.
 */
export interface NtGuestBuilder {
  readonly vcpus: number;
  readonly iterations: number;
  /** Adds assembled code to a kernel section; `name` labels its first byte. */
  code(section: CodeSection, name: string, build: (a: Assembler, symbol: SymbolResolver) => void, options?: CodePartOptions): void;
  /** Adds data (bytes, or a number of zero bytes) to a data section; `name` labels it. */
  data(section: DataSection, name: string, init: Uint8Array | number, options?: { readonly align?: number }): void;
  /** vCPU `vcpu`'s thread starts at symbol `entry` (default: KiWorkerThread), with GS at its per-vCPU block. */
  thread(vcpu: number, entry: string): void;
  /** `count` pages from the guest's page allocator, mapped supervisor-only at fresh kernel addresses. */
  pages(name: string, count: number, options?: { readonly writable?: boolean; readonly executable?: boolean }): GuestPages;
  /** A guest hypercall: VMCALL with RAX = `code` runs `handler`. */
  hypercall(code: bigint, name: string, handler: GuestHypercall): void;
  /**
   * A range the guest's own memory manager maps: its page directory and tables are pages of the
   * allocator (writable at their kernel addresses), its frames too. Found later in `ranges`.
   */
  managedRange(name: string, options: ManagedRangeOptions): ManagedRange;
}

/** A scenario's addition to the guest. */
export type GuestExtension = (builder: NtGuestBuilder) => void;

/** Scheduler mode: most threads, and each one's kernel stack. */
const MAX_THREADS = 16;
const THREAD_STACK_BYTES = 0x4000;

/** Where the page allocator hands out pages: after the kernel stacks, before the page tables. */
const POOL_GPA = STACKS_GPA + MAX_VCPUS * STACK_BYTES;
const POOL_GVA = STACKS_GVA + BigInt(MAX_VCPUS * STACK_BYTES);
const POOL_END = PAGE_TABLES_GPA;

interface PageRequest {
  readonly pages: GuestPages;
  readonly flags: bigint;
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
  /** Pages handed out by the allocator, by name. */
  readonly pools = new Map<string, GuestPages>();
  /** Ranges the guest's memory manager maps (`NtGuestBuilder.managedRange`), by name. */
  readonly ranges = new Map<string, ManagedRange>();
  /** Scheduler mode: threads that terminated (their index), and how many there are. */
  readonly finishedThreads = new Set<number>();
  readonly threadCount: number;
  private readonly hypercalls = new Map<bigint, { readonly name: string; readonly handler: GuestHypercall }>();

  constructor(options: NtGuestOptions) {
    const { vcpus, iterations } = options;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) throw new RangeError(`NT guest: vcpus must be 1..${MAX_VCPUS}, got ${vcpus}`);
    if (!Number.isInteger(iterations) || iterations < 0 || iterations > PerCpu.maxIterations) {
      throw new RangeError(`NT guest: iterations must be 0..${PerCpu.maxIterations}, got ${iterations}`);
    }
    this.vcpus = vcpus;
    this.iterations = iterations;
    const threads = options.threads ?? 0;
    if (!Number.isInteger(threads) || threads < 0 || threads > MAX_THREADS) throw new RangeError(`NT guest: threads must be 0..${MAX_THREADS}, got ${threads}`);
    this.threadCount = threads;
    const image = kernelImageBuilder();
    addThreadRecords(image, threads > 0 ? threads : vcpus);
    if (threads > 0) addSchedulerParts(image, { threads, ...(options.workerCallout !== undefined ? { callout: options.workerCallout } : {}) });
    const entries = new Array<string>(vcpus).fill('KiWorkerThread');
    const requests: PageRequest[] = [];
    const rangeMappings: { range: ManagedRange; mapped: number }[] = [];
    let poolNext = POOL_GPA;
    const builder: NtGuestBuilder = {
      vcpus,
      iterations,
      code: (section, name, build, codeOptions) => void image.code(section, name, build, codeOptions),
      data: (section, name, init, dataOptions) => void image.data(section, name, init, dataOptions),
      thread: (vcpu, entry) => {
        if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= vcpus) throw new RangeError(`thread(${vcpu}, ${entry}): the guest has vCPUs 0..${vcpus - 1}`);
        entries[vcpu] = entry;
      },
      pages: (name, count, pageOptions = {}) => {
        if (!Number.isInteger(count) || count < 1) throw new RangeError(`pages("${name}", ${count}): count must be a positive integer`);
        if (this.pools.has(name)) throw new Error(`pages("${name}"): a page range of that name exists`);
        const bytes = count * 0x1000;
        if (poolNext + bytes > POOL_END) throw new RangeError(`pages("${name}", ${count}): the guest's page pool has ${(POOL_END - poolNext) / 0x1000} pages left`);
        const pages: GuestPages = { name, gva: POOL_GVA + BigInt(poolNext - POOL_GPA), gpa: poolNext, bytes };
        poolNext += bytes;
        this.pools.set(name, pages);
        requests.push({ pages, flags: (pageOptions.writable === true ? Pte.writable : 0n) | (pageOptions.executable === true ? 0n : Pte.noExecute) });
        return pages;
      },
      managedRange: (name, rangeOptions) => {
        checkManagedRange(name, rangeOptions);
        if (this.ranges.has(name)) throw new Error(`managedRange("${name}"): a range of that name exists`);
        const clash = [...this.ranges.values()].find((r) => r.gva === rangeOptions.gva);
        if (clash !== undefined) throw new RangeError(`managedRange("${name}"): 0x${rangeOptions.gva.toString(16)} is taken by "${clash.name}"`);
        const leafFlags = leafFlagsOf(rangeOptions);
        const range: ManagedRange = {
          name,
          gva: rangeOptions.gva,
          directory: builder.pages(`${name} directory`, 1, { writable: true }),
          tables: builder.pages(`${name} tables`, rangeOptions.tables ?? 1, { writable: true }),
          frames: builder.pages(`${name} frames`, rangeOptions.frames, { writable: true }),
          leafFlags,
          tableFlags: Pte.present | Pte.writable | Pte.user,
        };
        this.ranges.set(name, range);
        rangeMappings.push({ range, mapped: rangeOptions.mapped ?? 0 });
        return range;
      },
      hypercall: (code, name, handler) => {
        const known = this.hypercalls.get(code);
        if (known !== undefined) throw new Error(`hypercall 0x${code.toString(16)} ("${name}") is taken by "${known.name}"`);
        this.hypercalls.set(code, { name, handler });
      },
    };
    builder.hypercall(Hypercall.threadDone, 'thread done', ({ vcpu, guest }) => {
      guest.finished.add(vcpu);
      return 'stop';
    });
    builder.hypercall(Hypercall.bugCheck, 'KeBugCheck', ({ vcpu, regs, guest }) => {
      guest.bugChecks.push({ vcpu, vector: Number(regs.gpr('rcx')), rip: regs.gpr('rdx'), errorCode: regs.gpr('r8') });
      return 'stop';
    });
    let threadStacks: GuestPages | null = null;
    if (threads > 0) {
      builder.hypercall(Hypercall.threadExit, 'thread exit', ({ regs, guest }) => {
        guest.finishedThreads.add(Number(regs.gpr('rcx')));
        return 'continue';
      });
      builder.hypercall(Hypercall.processorDone, 'processor done', ({ vcpu, guest }) => {
        guest.finished.add(vcpu);
        return 'stop';
      });
      threadStacks = builder.pages('thread stacks', threads * (THREAD_STACK_BYTES / 0x1000), { writable: true });
      for (let vcpu = 0; vcpu < vcpus; vcpu++) entries[vcpu] = 'KiStartDispatch';
    }
    for (const extend of options.extensions ?? []) extend(builder);
    this.machine = Machine.create({ ramBytes: RAM_BYTES, vcpus });
    const memory = this.machine.memory;
    this.tables = new PageTableBuilder(memory, PAGE_TABLES_GPA, RAM_BYTES, '4-level', true);
    this.kernel = writeKernelImage(memory, KERNEL_GPA, image);
    if (KERNEL_GPA + this.kernel.sizeOfImage > TABLES_GPA) throw new RangeError(`the kernel image (${this.kernel.sizeOfImage} bytes) runs into the descriptor tables`);
    this.mapKernel();
    for (let page = 0; page < 3; page++) this.tables.map(TABLES_GVA + BigInt(page * 0x1000), TABLES_GPA + page * 0x1000, Pte.writable | Pte.noExecute);
    this.tables.mapRange(STACKS_GVA, STACKS_GPA, MAX_VCPUS * STACK_BYTES, Pte.writable | Pte.noExecute);
    for (const { pages, flags } of requests) this.tables.mapRange(pages.gva, pages.gpa, pages.bytes, flags);
    for (const { range, mapped } of rangeMappings) linkManagedRange(this.tables, memory, range, mapped);
    this.writeDescriptorTables();
    for (let vcpu = 0; vcpu < vcpus; vcpu++) this.startThread(vcpu, this.symbol(entries[vcpu]));
    if (threadStacks !== null) this.startScheduler(threadStacks, options.threadEntry ?? 'KiThreadWorker');
    else this.recordVcpuThreads();
  }

  /** One thread per vCPU: its record says Running on that vCPU, on that vCPU's stack. */
  private recordVcpuThreads(): void {
    const write64 = (gva: bigint, value: bigint): void => this.machine.memory.write64(this.gpaOf(gva), value);
    const write32 = (gva: bigint, value: number): void => this.machine.memory.write32(this.gpaOf(gva), value);
    const records: bigint[] = [];
    for (let vcpu = 0; vcpu < this.vcpus; vcpu++) {
      const record = this.threadRecord(vcpu);
      const base = STACKS_GVA + BigInt((vcpu + 1) * STACK_BYTES);
      write64(record + BigInt(Kthread.stackBase), base);
      write64(record + BigInt(Kthread.stackLimit), base - BigInt(STACK_BYTES));
      write32(record + BigInt(Kthread.state), ThreadState.running);
      write32(record + BigInt(Kthread.index), vcpu);
      write32(record + BigInt(Kthread.vcpu), vcpu);
      write64(record + BigInt(Kthread.data), this.perCpu(vcpu));
      write64(this.perCpu(vcpu) + BigInt(PerCpu.currentThread), record);
      records.push(record);
    }
    linkThreadList(write64, write32, this.symbol('PsInitialSystemProcess'), records);
  }

  /** Scheduler mode: thread records, stacks and first frames, the process list, the clock vector. */
  private startScheduler(stacks: GuestPages, entry: string): void {
    const write64 = (gva: bigint, value: bigint): void => this.machine.memory.write64(this.gpaOf(gva), value);
    const write32 = (gva: bigint, value: number): void => this.machine.memory.write32(this.gpaOf(gva), value);
    const code = this.machine.vcpu(0).get32('cs');
    const data = this.machine.vcpu(0).get32('ss');
    const records: bigint[] = [];
    for (let t = 0; t < this.threadCount; t++) {
      const record = this.threadRecord(t);
      const stackLimit = stacks.gva + BigInt(t * THREAD_STACK_BYTES);
      writeThread(write64, write32, { record, data: this.threadData(t), stackLimit, stackBase: stackLimit + BigInt(THREAD_STACK_BYTES) }, {
        entry: this.symbol(entry), index: t, iterations: this.iterations, codeSelector: code, dataSelector: data,
      });
      records.push(record);
    }
    linkThreadList(write64, write32, this.symbol('PsInitialSystemProcess'), records);
    writeIdtGate(this.machine.memory, TABLES_GPA + IDT_OFFSET, CLOCK_VECTOR, this.symbol('KiSchedulerTick'));
    for (let vcpu = 0; vcpu < this.vcpus; vcpu++) write64(this.perCpu(vcpu) + BigInt(PerCpu.idleStack), this.machine.vcpu(vcpu).gpr('rsp'));
  }

  /** The GVA of thread `t`'s KTHREAD-like record (scheduler mode: thread t; otherwise vCPU t's thread). */
  threadRecord(t: number): bigint {
    return this.symbol('KiThreadTable') + BigInt(t * Kthread.bytes);
  }

  /** Scheduler mode: the GVA of thread `t`'s data block (results, completed… in the PerCpu layout). */
  threadData(t: number): bigint {
    return this.symbol('KiThreadData') + BigInt(t * PerCpu.bytes);
  }

  /** Scheduler mode: what thread `t` did (its results and completed count; API calls are counted per vCPU). */
  threadReport(t: number): Pick<ThreadReport, 'completed' | 'results'> {
    const base = this.threadData(t);
    return {
      completed: this.read32(base + BigInt(PerCpu.completed)),
      results: Array.from({ length: this.iterations }, (_, i) => this.read32(base + BigInt(PerCpu.results + 4 * i))),
    };
  }

  /** Where the engine finds the threads: the process list and the record offsets. */
  get threadLayout(): ThreadLayout {
    return { process: this.symbol('PsInitialSystemProcess'), eprocess: Eprocess, kthread: Kthread, currentThread: PerCpu.currentThread };
  }

  /** Image pages: code RX, data RW-NX, the rest R-NX (supervisor only; CR0.WP makes RO stick). */
  private mapKernel(): void {
    for (let rva = 0; rva < this.kernel.sizeOfImage; rva += 0x1000) {
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

  /** The address of an image symbol (a part name or a named label); throws for an unknown name. */
  symbol(name: string): bigint {
    const address = this.kernel.symbols.get(name);
    if (address === undefined) throw new Error(`the guest has no symbol "${name}"`);
    return address;
  }

  /** GVA of vCPU `vcpu`'s per-vCPU block (its GS base). */
  perCpu(vcpu: number): bigint {
    return this.symbol(PROCESSOR_BLOCK) + BigInt(vcpu * PerCpu.bytes);
  }

  private perCpuGpa(vcpu: number): number {
    return this.gpaOf(this.perCpu(vcpu));
  }

  /** The guest-physical address of a kernel GVA (image, stacks, allocated pages); throws when unmapped. */
  gpaOf(gva: bigint): number {
    const gpa = translateGva(this.machine.memory, this.tables.root, gva);
    if (gpa === null) throw new RangeError(`GVA 0x${gva.toString(16)} is not mapped in the guest`);
    return gpa;
  }

  /** Reads guest memory at a kernel GVA (no EPT: what the engine sees). */
  read(gva: bigint, length: number): Uint8Array {
    const bytes = tryReadGuestVirtual(this.machine.memory, this.tables.root, gva, length);
    if (bytes === null) throw new RangeError(`GVA 0x${gva.toString(16)} + ${length} is not mapped in the guest`);
    return bytes;
  }

  read32(gva: bigint): number {
    return this.machine.memory.read32(this.gpaOf(gva)) >>> 0;
  }

  read64(gva: bigint): bigint {
    return this.machine.memory.read64(this.gpaOf(gva));
  }

  private startThread(vcpu: number, entry: bigint): void {
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
    state.rip = entry;
    const memory = this.machine.memory;
    memory.write32(this.perCpuGpa(vcpu) + PerCpu.index, vcpu);
    memory.write32(this.perCpuGpa(vcpu) + PerCpu.iterations, this.iterations);
    memory.write64(this.perCpuGpa(vcpu) + PerCpu.processToken, this.symbol(SYSTEM_TOKEN));
  }

  /** The engine's view of the guest: image, SSDT, page-table root, APIs to hook, where its threads are. */
  get description(): GuestDescription {
    return {
      kernelBase: KERNEL_BASE,
      systemCr3: this.tables.root,
      ssdt: this.kernel.ssdt,
      ssdtEntries: 4,
      hookedApis: HOOKED_APIS.map((name) => ({ name, gva: this.kernel.symbols.get(name)! })),
      unwindSites: UNWIND_SITES.map((site) => ({ tag: site.tag, gva: this.symbol(site.label) })),
      systemToken: { gva: this.symbol(SYSTEM_TOKEN), presentOffset: Token.present, enabledOffset: Token.enabled, perCpuOffset: PerCpu.processToken },
      threads: this.threadLayout,
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
   * The guest's own hypercalls (thread completion, bug checks, and those a scenario added): what
   * the VMCALL does, or null when RAX is none of them.
   */
  guestCall(vcpu: number, regs: GuestRegisters): 'continue' | 'stop' | null {
    const call = this.hypercalls.get(regs.gpr('rax'));
    return call === undefined ? null : call.handler({ vcpu, regs, guest: this });
  }

  /** Forgets bug checks and completions (before a re-run from a snapshot); a subclass that observes more clears it too. */
  resetObservations(): void {
    this.bugChecks.length = 0;
    this.finished.clear();
    this.finishedThreads.clear();
  }
}
