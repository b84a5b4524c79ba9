import { Assembler, type AssembledCode } from '../../src/asm/index.ts';
import type { Cpu, RunStopCode } from '../../src/cpu/cpu.ts';
import { writeGdt, writeIdtGate, enterLongMode, TSS_BYTES, type GateOptions } from '../../src/machine/long-mode.ts';
import { Machine } from '../../src/machine/machine.ts';
import { PageTableBuilder, Pte } from '../../src/machine/page-tables.ts';
import type { VcpuState } from '../../src/machine/vcpu-state.ts';

/**
 * A small long-mode machine for CPU tests: identity-mapped low memory with 4 KiB pages, a GDT,
 * a TSS, an IDT, and helpers to assemble code in place and install interrupt gates.
 *
 * Memory map (GPA = linear unless a test remaps):
 *   0x001000 IDT (256 gates)      0x003000 GDT        0x004000 TSS
 *   0x010000.. kernel stacks (one 16 KiB stack per vCPU, top at 0x20000 + 0x4000·id)
 *   0x100000.. code and data the test assembles        IDENTITY_BYTES mapped
 *   top of RAM: page tables
 */
export const IDT = 0x1000n;
export const GDT = 0x3000n;
export const TSS = 0x4000n;
export const CODE = 0x100000n;
export const IDENTITY_BYTES = 0x800000;
export const RSP0 = 0x9000n; // ring-0 stack used when interrupts arrive from ring 3
export const IST1 = 0xa000n;

export function stackTop(id: number): bigint {
  return 0x20000n + 0x4000n * BigInt(id);
}

export interface TestMachineOptions {
  vcpus?: number;
  ramBytes?: number;
  /** Map the identity range user-accessible (default true, so ring-3 tests can run). */
  user?: boolean;
  exitControls?: number;
  exceptionBitmap?: number;
}

export class TestMachine {
  readonly machine: Machine;
  readonly tables: PageTableBuilder;
  private readonly cpus = new Map<number, Cpu>();

  constructor(options: TestMachineOptions = {}) {
    const ramBytes = options.ramBytes ?? 0x1000000;
    const vcpus = options.vcpus ?? 1;
    this.machine = Machine.create({ ramBytes, vcpus });
    const memory = this.machine.memory;
    this.tables = new PageTableBuilder(memory, ramBytes - 0x100000, ramBytes);
    const flags = Pte.writable | (options.user === false ? 0n : Pte.user);
    this.tables.mapRange(0n, 0, IDENTITY_BYTES, flags);
    const gdtLimit = writeGdt(memory, Number(GDT), { linear: TSS });
    memory.fill(Number(TSS), TSS_BYTES, 0);
    memory.write64(Number(TSS) + 4, RSP0); // RSP0
    memory.write64(Number(TSS) + 0x24, IST1); // IST1
    for (let id = 0; id < vcpus; id++) {
      const state = this.machine.vcpu(id);
      enterLongMode(state, {
        cr3: this.tables.root,
        ring: 0,
        gdtBase: GDT,
        gdtLimit,
        idtBase: IDT,
        idtLimit: 256 * 16 - 1,
        tss: { linear: TSS },
        exitControls: options.exitControls ?? 0,
        exceptionBitmap: options.exceptionBitmap ?? 0,
      });
      state.setGpr('rsp', stackTop(id));
      state.rip = CODE;
    }
  }

  state(id = 0): VcpuState {
    return this.machine.vcpu(id);
  }

  /** The CPU of vCPU `id` (created on first use, after the state is set up). */
  cpu(id = 0): Cpu {
    let cpu = this.cpus.get(id);
    if (cpu === undefined) {
      cpu = this.machine.createCpu(id);
      this.cpus.set(id, cpu);
    }
    return cpu;
  }

  /**
   * Assembles code for linear address `address` and writes it at guest-physical `gpa` (by default
   * the same number: the identity-mapped range).
   */
  assemble(address: bigint, build: (a: Assembler) => void, gpa = Number(address)): AssembledCode {
    const a = new Assembler(address);
    build(a);
    const code = a.assemble();
    this.machine.memory.write(gpa, code.bytes);
    return code;
  }

  /** Installs a 64-bit interrupt (or trap) gate for `vector`. */
  setGate(vector: number, handler: bigint, options: GateOptions = {}): void {
    writeIdtGate(this.machine.memory, Number(IDT), vector, handler, options);
  }

  /** VM entry (after the test changed state) and run. */
  run(id = 0, budget = 100_000): RunStopCode {
    const cpu = this.cpu(id);
    cpu.enter();
    return cpu.run(budget);
  }

  read64(address: bigint): bigint {
    return this.machine.memory.read64(Number(address));
  }

  write64(address: bigint, value: bigint): void {
    this.machine.memory.write64(Number(address), value);
  }
}
