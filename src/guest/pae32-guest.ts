import { Assembler, eax } from '../asm/index.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import { tryReadGuestVirtual } from '../machine/guest-virtual.ts';
import { Machine } from '../machine/machine.ts';
import { PageTableBuilder, Pte } from '../machine/page-tables.ts';
import { enterProtectedModePae, writeGdt32 } from '../machine/protected-mode.ts';
import type { GuestDescription } from './description.ts';
import { Scn } from './pe-format.ts';
import { writeImage } from './pe-image.ts';

/**
 * A small 32-bit kernel on PAE paging — the kind of guest HVMI handles with gGuest.PaeEnabled and
 * !Guest64, where a page-table entry is 8 bytes written as two 4-byte halves. A PE image at
 * 0x80400000 holds the code a scenario assembles (`{ bitness: 32 }`) and its data; each vCPU runs a
 * thread from its own stack; a range of the user half (from 0x40000000) is the guest's own to map:
 * its page directory and page tables are pages the kernel reaches at fixed addresses. Exceptions
 * are not handled (there is no IDT): a fault in the guest ends the run as a triple fault.
 */

export const PAE32_KERNEL_BASE = 0x80400000n;
/** The 32-bit guest's own hypercall (EAX): this vCPU's thread is done. */
export const PAE32_THREAD_DONE = 0x7663_0001;
const KERNEL_GPA = 0x400000;
const IMAGE_BYTES = 0x40000;
const TEXT_RVA = 0x1000;
const DATA_RVA = 0x20000;
const GDT_GPA = 0x3000;
const STACKS_GPA = 0x100000;
const STACK_BYTES = 0x4000;
/** Where the kernel sees the managed range's directory and tables. */
const WINDOWS_GVA = 0x80800000n;
const POOL_GPA = 0x800000;
const RAM_BYTES = 0x1000000;
const TABLES_GPA = RAM_BYTES - 0x100000;

/** The user-half range the guest maps itself: PDPTE 1, one page directory, its tables and frames. */
export interface Pae32Range {
  /** The range's first linear address (0x40000000: PDPTE 1). */
  readonly gva: bigint;
  /** Where the kernel reaches the page directory, and page table k (at `tables + k·0x1000`). */
  readonly directoryGva: bigint;
  readonly tablesGva: bigint;
  readonly directoryGpa: number;
  readonly tablesGpa: number;
  readonly tableCount: number;
  /** Physical frames the guest may map (frame k at `framesGpa + k·0x1000`). */
  readonly framesGpa: number;
  readonly frameCount: number;
}

export interface Pae32Builder {
  readonly vcpus: number;
  /** The kernel's code: one assembler for all of it (32-bit), at the image's .text. */
  readonly a: Assembler;
  /** Reserves `bytes` of zeroed kernel data; returns its address. */
  data(name: string, bytes: number): bigint;
  /** vCPU `vcpu` starts at `label` (a label bound in `a`). */
  thread(vcpu: number, label: string): void;
  readonly range: Pae32Range;
}

export interface Pae32GuestOptions {
  readonly vcpus: number;
  /** Page tables of the managed range (table 0 linked at directory entry 0), and frames. */
  readonly tables?: number;
  readonly frames?: number;
  readonly build: (guest: Pae32Builder) => void;
}

export class Pae32Guest {
  readonly machine: Machine;
  readonly description: GuestDescription;
  readonly vcpus: number;
  readonly range: Pae32Range;
  readonly finished = new Set<number>();
  private readonly symbols = new Map<string, bigint>();
  private readonly root: number;

  constructor(options: Pae32GuestOptions) {
    const { vcpus } = options;
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 8) throw new RangeError(`Pae32Guest: vcpus must be 1..8, got ${vcpus}`);
    this.vcpus = vcpus;
    const tableCount = options.tables ?? 1;
    const frameCount = options.frames ?? 8;
    if (tableCount < 1 || tableCount > 16 || frameCount < 1 || frameCount > 256) throw new RangeError('Pae32Guest: tables must be 1..16 and frames 1..256');
    this.range = {
      gva: 0x40000000n, directoryGva: WINDOWS_GVA, tablesGva: WINDOWS_GVA + 0x1000n, directoryGpa: POOL_GPA, tablesGpa: POOL_GPA + 0x1000,
      tableCount, framesGpa: POOL_GPA + 0x1000 * (1 + tableCount), frameCount,
    };
    const a = new Assembler(PAE32_KERNEL_BASE + BigInt(TEXT_RVA), { bitness: 32 });
    const entries = new Array<string | null>(vcpus).fill(null);
    let dataNext = DATA_RVA;
    this.build(options, a, entries, () => dataNext, (n) => (dataNext = n));
    const code = a.assemble();
    if (code.bytes.length > DATA_RVA - TEXT_RVA) throw new RangeError(`Pae32Guest: ${code.bytes.length} bytes of code do not fit before the data`);
    this.machine = Machine.create({ ramBytes: RAM_BYTES, vcpus });
    const memory = this.machine.memory;
    writeImage(memory, KERNEL_GPA, {
      base: PAE32_KERNEL_BASE,
      sizeOfImage: IMAGE_BYTES,
      entryRva: TEXT_RVA,
      sections: [
        { name: '.text', virtualAddress: TEXT_RVA, virtualSize: code.bytes.length, characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged, bytes: code.bytes },
        { name: '.data', virtualAddress: DATA_RVA, virtualSize: IMAGE_BYTES - DATA_RVA, characteristics: Scn.initializedData | Scn.read | Scn.write | Scn.notPaged, bytes: new Uint8Array(0) },
      ],
    });
    const tables = new PageTableBuilder(memory, TABLES_GPA, RAM_BYTES, 'pae');
    this.root = tables.root;
    tables.mapRange(PAE32_KERNEL_BASE, KERNEL_GPA, IMAGE_BYTES, Pte.writable);
    tables.mapRange(0x80100000n, STACKS_GPA, vcpus * STACK_BYTES, Pte.writable);
    const windows = 1 + tableCount;
    tables.mapRange(WINDOWS_GVA, POOL_GPA, windows * 0x1000, Pte.writable);
    // The managed range: PDPTE 1 → its directory (a pool page) → table 0 at entry 0.
    memory.fill(POOL_GPA, (windows + frameCount) * 0x1000, 0);
    memory.write64(tables.root + 8, BigInt(POOL_GPA) | Pte.present);
    memory.write64(POOL_GPA, BigInt(this.range.tablesGpa) | Pte.present | Pte.writable | Pte.user);
    const gdtLimit = writeGdt32(memory, GDT_GPA);
    for (let vcpu = 0; vcpu < vcpus; vcpu++) {
      const state = this.machine.vcpu(vcpu);
      enterProtectedModePae(state, memory, { cr3: tables.root, gdtBase: GDT_GPA, gdtLimit });
      state.setGpr('rsp', 0x80100000n + BigInt((vcpu + 1) * STACK_BYTES - 16));
      const entry = entries[vcpu];
      state.rip = code.addressOf(entry ?? 'Pae32Idle');
    }
    this.description = { kernelBase: PAE32_KERNEL_BASE, systemCr3: tables.root, paging: 'pae', bits: 32, ssdt: 0n, ssdtEntries: 0, hookedApis: [], threads: null };
  }

  private build(options: Pae32GuestOptions, a: Assembler, entries: (string | null)[], next: () => number, setNext: (n: number) => void): void {
    const builder: Pae32Builder = {
      vcpus: options.vcpus,
      a,
      range: this.range,
      data: (name, bytes) => {
        if (this.symbols.has(name)) throw new Error(`Pae32Guest: data "${name}" exists`);
        const at = Math.ceil(next() / 8) * 8;
        if (at + bytes > IMAGE_BYTES) throw new RangeError(`Pae32Guest: data "${name}" (${bytes} bytes) does not fit`);
        setNext(at + bytes);
        const gva = PAE32_KERNEL_BASE + BigInt(at);
        this.symbols.set(name, gva);
        return gva;
      },
      thread: (vcpu, label) => {
        if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= options.vcpus) throw new RangeError(`Pae32Guest: thread(${vcpu}): the guest has vCPUs 0..${options.vcpus - 1}`);
        entries[vcpu] = label;
      },
    };
    options.build(builder);
    // A vCPU without a thread of its own says it is done at once.
    a.bind(a.newLabel('Pae32Idle'));
    a.mov(eax, PAE32_THREAD_DONE);
    a.vmcall();
  }

  /** A data symbol's address. */
  symbol(name: string): bigint {
    const gva = this.symbols.get(name);
    if (gva === undefined) throw new Error(`Pae32Guest: no symbol "${name}"`);
    return gva;
  }

  /** Reads kernel memory through the guest's PAE tables. */
  read(gva: bigint, length: number): Uint8Array {
    const bytes = tryReadGuestVirtual(this.machine.memory, this.root, gva, length, 'pae');
    if (bytes === null) throw new RangeError(`Pae32Guest: 0x${gva.toString(16)} + ${length} is not mapped`);
    return bytes;
  }

  /** VMCALL with EAX = PAE32_THREAD_DONE: this vCPU is done. */
  guestCall(vcpu: number, regs: { gpr(name: GprName): bigint }): 'stop' | 'continue' | null {
    if ((regs.gpr('rax') & 0xffffffffn) !== BigInt(PAE32_THREAD_DONE)) return null;
    this.finished.add(vcpu);
    return 'stop';
  }

  resetObservations(): void {
    this.finished.clear();
  }
}
