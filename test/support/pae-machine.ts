import type { Cpu, RunStopCode } from '../../src/cpu/cpu.ts';
import { Machine } from '../../src/machine/machine.ts';
import { PageTableBuilder, Pte } from '../../src/machine/page-tables.ts';
import { enterProtectedModePae, writeGdt32, writeIdtGate32, type ProtectedModeOptions } from '../../src/machine/protected-mode.ts';
import type { VcpuState } from '../../src/machine/vcpu-state.ts';

/**
 * A small 32-bit protected-mode machine with PAE paging for CPU tests: the first 8 MiB
 * identity-mapped with 4 KiB pages, a flat GDT, a 32-bit IDT, one vCPU at ring 0 on its stack.
 *
 * Memory map (GPA = linear unless a test maps more):
 *   0x001000 IDT (256 eight-byte gates)   0x003000 GDT    0x010000..0x020000 stack
 *   0x100000.. code the test writes        0x300000.. data
 *   15 MiB..16 MiB page tables (outside the identity map: guest code cannot reach them)
 */
export const IDT32 = 0x1000;
export const GDT32 = 0x3000;
export const CODE32 = 0x100000;
export const DATA32 = 0x300000;
export const STACK32_TOP = 0x20000;
const IDENTITY_BYTES = 0x800000;

export interface PaeMachineOptions {
  /** Map the identity range user-accessible (default false). */
  user?: boolean;
  exceptionBitmap?: number;
  noExecute?: boolean;
  writeProtect?: boolean;
}

export class PaeMachine {
  readonly machine: Machine;
  readonly tables: PageTableBuilder;
  private cpuInstance: Cpu | undefined;

  constructor(options: PaeMachineOptions = {}) {
    const ramBytes = 0x1000000;
    this.machine = Machine.create({ ramBytes, vcpus: 1 });
    const memory = this.machine.memory;
    this.tables = new PageTableBuilder(memory, ramBytes - 0x100000, ramBytes, 'pae');
    this.tables.mapRange(0n, 0, IDENTITY_BYTES, Pte.writable | (options.user === true ? Pte.user : 0n));
    const gdtLimit = writeGdt32(memory, GDT32);
    const mode: ProtectedModeOptions = {
      cr3: this.tables.root,
      gdtBase: GDT32,
      gdtLimit,
      idtBase: IDT32,
      exceptionBitmap: options.exceptionBitmap ?? 0,
      ...(options.noExecute !== undefined ? { noExecute: options.noExecute } : {}),
      ...(options.writeProtect !== undefined ? { writeProtect: options.writeProtect } : {}),
    };
    enterProtectedModePae(this.state(), memory, mode);
    this.state().setGpr('rsp', BigInt(STACK32_TOP));
    this.state().rip = BigInt(CODE32);
  }

  state(): VcpuState {
    return this.machine.vcpu(0);
  }

  /** The vCPU's CPU, created on first use (after the test set the state up). */
  cpu(): Cpu {
    this.cpuInstance ??= this.machine.createCpu(0);
    return this.cpuInstance;
  }

  /** Writes 32-bit machine code (see `code32`) at `address` (identity-mapped by default). */
  write(address: number, bytes: Uint8Array): void {
    this.machine.memory.write(address, bytes);
  }

  /** Installs a 32-bit interrupt (or trap) gate for `vector`. */
  setGate(vector: number, handler: number, options: { trap?: boolean; dpl?: number } = {}): void {
    writeIdtGate32(this.machine.memory, IDT32, vector, handler, options);
  }

  /** VM entry (after the test changed state) and run. */
  run(budget = 100_000): RunStopCode {
    const cpu = this.cpu();
    cpu.enter();
    return cpu.run(budget);
  }

  /** Resumes after a VMCALL exit without a VM entry (nothing reloaded, nothing flushed). */
  resume(budget = 100_000): RunStopCode {
    const cpu = this.cpu();
    cpu.skipInstruction();
    return cpu.run(budget);
  }

  read32(gpa: number): number {
    return this.machine.memory.read32(gpa);
  }

  read64(gpa: number): bigint {
    return this.machine.memory.read64(gpa);
  }

  write64(gpa: number, value: bigint): void {
    this.machine.memory.write64(gpa, value);
  }

  /** GPAs of the PD and PT entries that translate `linear` (PDE first; the PDPTE is a register). */
  entries(linear: number): number[] {
    const pdpte = this.read64(this.tables.root + 8 * (linear >>> 30));
    const pde = Number(pdpte & 0xfffff000n) + 8 * ((linear >>> 21) & 511);
    const pdeValue = this.read64(pde);
    if ((pdeValue & Pte.large) !== 0n) return [pde];
    return [pde, Number(pdeValue & 0xfffff000n) + 8 * ((linear >>> 12) & 511)];
  }
}

/** Little-endian bytes of a 32-bit immediate. */
export function imm32(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

/** Concatenates hand-encoded 32-bit instructions (each a byte list, with a comment at the call). */
export function code32(...instructions: ReadonlyArray<readonly number[]>): Uint8Array {
  return new Uint8Array(instructions.flat());
}

/** Common 32-bit encodings used by the tests. */
export const I32 = {
  movEaxImm: (v: number): number[] => [0xb8, ...imm32(v)],
  movEbxImm: (v: number): number[] => [0xbb, ...imm32(v)],
  movEcxImm: (v: number): number[] => [0xb9, ...imm32(v)],
  /** mov eax, [ebx] */
  loadEaxEbx: [0x8b, 0x03],
  /** mov [ebx], eax */
  storeEbxEax: [0x89, 0x03],
  /** mov ecx, cr3 ; mov cr3, ecx — reloads CR3 and the PDPTEs */
  reloadCr3: [0x0f, 0x20, 0xd9, 0x0f, 0x22, 0xd9],
  /** mov cr3, eax */
  movCr3Eax: [0x0f, 0x22, 0xd8],
  /** invlpg [ebx] */
  invlpgEbx: [0x0f, 0x01, 0x3b],
  /** jmp ebx */
  jmpEbx: [0xff, 0xe3],
  vmcall: [0x0f, 0x01, 0xc1],
  hlt: [0xf4],
  iretd: [0xcf],
  ret: [0xc3],
} as const;
