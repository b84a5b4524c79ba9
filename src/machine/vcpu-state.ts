import {
  EventInfo,
  ExitReason,
  Vcpu,
  type ControlLayout,
  type ExitReasonCode,
  type UdReasonCode,
} from './layout.ts';

/** General-purpose register names in x86 encoding order. */
export type GprName =
  | 'rax' | 'rcx' | 'rdx' | 'rbx' | 'rsp' | 'rbp' | 'rsi' | 'rdi'
  | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15';

export const GPR_NAMES: readonly GprName[] = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
];

/** 64-bit fields of the state block that are exposed by name. */
export type Field64 =
  | 'rip' | 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'efer' | 'xcr0' | 'star' | 'lstar' | 'cstar' | 'fmask' | 'fsBase'
  | 'gsBase' | 'kernelGsBase' | 'sysenterCs' | 'sysenterEsp' | 'sysenterEip' | 'pat' | 'tscAux' | 'apicBase'
  | 'tscOffset' | 'gdtrBase' | 'idtrBase' | 'trBase' | 'retired';

/** 32-bit (or narrower) fields of the state block that are exposed by name. */
export type Field32 =
  | 'rflags' | 'cr8' | 'cs' | 'csCompat' | 'ss' | 'ds' | 'es' | 'fs' | 'gs' | 'tr' | 'gdtrLimit' | 'idtrLimit' | 'trLimit'
  | 'activity' | 'interruptibility' | 'pendingInterrupt' | 'pendingEvent' | 'pendingEventError' | 'exitControls'
  | 'exceptionBitmap';

/** A VM exit as the hypervisor sees it. */
export interface ExitRecord {
  reason: ExitReasonCode;
  /** Reason-specific qualification (for EPT violations: ExitAccess bits | ExitEptFlags). */
  qualification: number;
  gpa: bigint;
  gla: bigint;
  /** Length of the instruction that exited (0 when there is none, e.g. a triple fault). */
  instructionLength: number;
  rip: bigint;
  /** CR number, MSR index, XCR index, exception vector or DTR kind. */
  info0: number;
  /** Value being written (MOV CR, WRMSR edx:eax, XSETBV edx:eax) or the exception error code. */
  value: bigint;
  /** Event whose delivery was interrupted by this exit, if any. */
  vectoring?: { vector: number; type: number; errorCode?: number };
}

/** The last #UD the CPU raised and why. */
export interface UdRecord {
  reason: UdReasonCode;
  /** iced-x86 `Code` of the instruction (0 = INVALID). */
  code: number;
  rip: bigint;
  count: number;
}

function pdpteIndex(index: number): number {
  if (!Number.isInteger(index) || index < 0 || index > 3) throw new RangeError(`PDPTE index ${index} is out of range 0..3`);
  return index;
}

const toU64 = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/**
 * Typed accessors over one vCPU's state block. Values are architectural: 64-bit fields are bigint,
 * selectors and limits are numbers. The CPU itself uses the raw word indexes from `layout.ts`.
 */
export class VcpuState {
  /** The block as int32 words; word indexes come from `Vcpu`. */
  readonly words: Int32Array;

  constructor(
    control: SharedArrayBuffer,
    layout: ControlLayout,
    readonly id: number,
  ) {
    if (!Number.isInteger(id) || id < 0 || id >= layout.vcpuCount) {
      throw new RangeError(`vCPU id ${id} is out of range 0..${layout.vcpuCount - 1}`);
    }
    this.words = new Int32Array(control, layout.vcpuBlocksBytes + id * Vcpu.words * 4, Vcpu.words);
  }

  private read64(index: number): bigint {
    return toU64(this.words[index], this.words[index + 1]);
  }

  private write64(index: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    this.words[index] = Number(v & 0xffffffffn) | 0;
    this.words[index + 1] = Number(v >> 32n) | 0;
  }

  gpr(name: GprName): bigint {
    return this.read64(Vcpu.gpr + 2 * GPR_NAMES.indexOf(name));
  }

  setGpr(name: GprName, value: bigint): void {
    this.write64(Vcpu.gpr + 2 * GPR_NAMES.indexOf(name), value);
  }

  /** All GPRs at once. */
  gprs(): Record<GprName, bigint> {
    const out = {} as Record<GprName, bigint>;
    GPR_NAMES.forEach((name, n) => (out[name] = this.read64(Vcpu.gpr + 2 * n)));
    return out;
  }

  get64(field: Field64): bigint {
    return this.read64(Vcpu[field]);
  }

  set64(field: Field64, value: bigint): void {
    this.write64(Vcpu[field], value);
  }

  get32(field: Field32): number {
    return this.words[Vcpu[field]];
  }

  set32(field: Field32, value: number): void {
    this.words[Vcpu[field]] = value | 0;
  }

  get rip(): bigint {
    return this.get64('rip');
  }

  set rip(value: bigint) {
    this.set64('rip', value);
  }

  get rflags(): bigint {
    return BigInt(this.words[Vcpu.rflags] >>> 0);
  }

  set rflags(value: bigint) {
    this.words[Vcpu.rflags] = Number(BigInt.asUintN(32, value)) | 0;
  }

  /** PAE PDPTE register `index` (0..3) as the CPU cached it (see `Vcpu.pdpte`). */
  pdpte(index: number): bigint {
    return this.read64(Vcpu.pdpte + 2 * pdpteIndex(index));
  }

  /** Sets PAE PDPTE register `index`, as a hypervisor sets the VMCS guest-PDPTE fields. */
  setPdpte(index: number, value: bigint): void {
    this.write64(Vcpu.pdpte + 2 * pdpteIndex(index), value);
  }

  /** Current privilege level (CS.RPL in 64-bit mode). */
  get cpl(): number {
    return this.words[Vcpu.cs] & 3;
  }

  /** The exit record of the last VM exit. */
  exit(): ExitRecord {
    const w = this.words;
    const vectoringInfo = w[Vcpu.exitVectoring];
    const record: ExitRecord = {
      reason: w[Vcpu.exitReason] as ExitReasonCode,
      qualification: w[Vcpu.exitQualification],
      gpa: this.read64(Vcpu.exitGpa),
      gla: this.read64(Vcpu.exitGla),
      instructionLength: w[Vcpu.exitInsnLength],
      rip: this.read64(Vcpu.exitRip),
      info0: w[Vcpu.exitInfo0],
      value: toU64(w[Vcpu.exitInfo1], w[Vcpu.exitInfo2]),
    };
    if ((vectoringInfo & EventInfo.valid) !== 0) {
      record.vectoring = {
        vector: vectoringInfo & 0xff,
        type: (vectoringInfo >> EventInfo.typeShift) & 7,
        ...((vectoringInfo & EventInfo.hasError) !== 0 ? { errorCode: w[Vcpu.exitVectoringError] >>> 0 } : {}),
      };
    }
    return record;
  }

  /** Clears the exit record (the hypervisor consumed it). */
  clearExit(): void {
    this.words[Vcpu.exitReason] = ExitReason.none;
  }

  /** The last #UD raised and why. */
  lastUd(): UdRecord {
    return {
      reason: this.words[Vcpu.udReason] as UdReasonCode,
      code: this.words[Vcpu.udCode],
      rip: this.read64(Vcpu.udRip),
      count: this.words[Vcpu.udCount],
    };
  }
}
