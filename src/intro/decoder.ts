import iced from 'iced-x86';
import type { Decoder, Instruction, InstructionInfoFactory, Register } from 'iced-x86';
import { createFormatter } from '../asm/disasm.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import type { VcpuAccess } from './glue.ts';

/**
 * The engine's own instruction decoder (HVMI decodes with bddisasm, independently of the
 * hypervisor's emulator): iced-x86 → a plain, immutable record holding everything the exit
 * handlers ask of an instruction — operands, the explicit memory operand, and every memory
 * location it reads or writes (iced's usedMemory, HVMI's IntDecGetAccessedMem). Decoding
 * happens once per icache miss; the record is what the icache stores.
 */

/** A general-purpose register operand: which register, and how much of it. */
export interface GprOperand {
  readonly gpr: GprName;
  /** Bytes: 1, 2, 4 or 8. */
  readonly size: number;
  /** AH/CH/DH/BH. */
  readonly high8: boolean;
}

export type OperandKindName = 'register' | 'memory' | 'immediate' | 'branch' | 'other';

export interface DecodedOperand {
  readonly kind: OperandKindName;
  /** Bytes (for memory operands: the access size; 0 when unknown). */
  readonly size: number;
  /** For general-purpose register operands. */
  readonly register: GprOperand | null;
  /** For immediate operands: the value, extended to 64 bits as the form says (iced `immediate(i)`). */
  readonly immediate: bigint | null;
}

export type AccessKind = 'read' | 'write' | 'readWrite' | 'condRead' | 'condWrite' | 'readCondWrite';

/** One memory location an instruction touches (`[segment: base + index*scale + displacement]`). */
export interface MemoryAccess {
  readonly base: GprName | null;
  readonly index: GprName | null;
  readonly scale: number;
  /** Absolute for RIP-relative operands (iced folds RIP in). */
  readonly displacement: bigint;
  /** Bytes; 0 when the size depends on run-time state (REP string element counts, XSAVE). */
  readonly size: number;
  readonly access: AccessKind;
  readonly segment: 'fs' | 'gs' | null;
  /** 32-bit addressing (0x67 prefix): the offset wraps at 4 GiB. */
  readonly addr32: boolean;
}

export interface DecodedInstruction {
  readonly ip: bigint;
  readonly length: number;
  readonly bytes: Uint8Array;
  /** iced `Code` (exact form) and the lower-case mnemonic. */
  readonly code: number;
  readonly mnemonic: string;
  /** Intel syntax, as in every listing of the project. */
  readonly text: string;
  readonly operands: readonly DecodedOperand[];
  /** The explicit memory operand, or null. */
  readonly memory: MemoryAccess | null;
  /** Every memory location read or written, explicit or implicit (stack, string operands). */
  readonly accesses: readonly MemoryAccess[];
  /** JMP rel8/rel32 (HVMI's ND_INS_JMPNR). */
  readonly isJmpNearRelative: boolean;
  /** INT3 (CC) — HVMI treats INT 3 (CD 03) the same. */
  readonly isInt3: boolean;
  /** Vector of INT n (CD n), or -1. */
  readonly intVector: number;
  /** A string instruction with REP/REPE/REPNE (HVMI's IsRepeated): it may access RCX elements. */
  readonly isRepeated: boolean;
  /** Near branch target, or null. */
  readonly branchTarget: bigint | null;
  readonly nextIp: bigint;
}

const GPR64: readonly GprName[] = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const LEGACY8 = ['al', 'cl', 'dl', 'bl'];
const HIGH8 = ['ah', 'ch', 'dh', 'bh'];
const LOW8_EXTRA = ['spl', 'bpl', 'sil', 'dil'];
const LEGACY16 = ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di'];

/** iced Register → GPR operand (built once from register names). */
const GPR_BY_REGISTER: ReadonlyMap<number, GprOperand> = (() => {
  const map = new Map<number, GprOperand>();
  const put = (icedName: string, gpr: GprName, size: number, high8 = false): void => {
    const value = iced.Register[icedName as keyof typeof iced.Register];
    if (typeof value !== 'number') throw new Error(`internal: iced has no register ${icedName}`);
    map.set(value, { gpr, size, high8 });
  };
  GPR64.forEach((gpr, n) => {
    put(gpr.toUpperCase(), gpr, 8);
    if (n < 8) {
      put(`E${LEGACY16[n].toUpperCase()}`, gpr, 4);
      put(LEGACY16[n].toUpperCase(), gpr, 2);
      put(n < 4 ? LEGACY8[n].toUpperCase() : LOW8_EXTRA[n - 4].toUpperCase(), gpr, 1);
      if (n < 4) put(HIGH8[n].toUpperCase(), GPR64[n], 1, true);
    } else {
      put(`R${n}D`, gpr, 4);
      put(`R${n}W`, gpr, 2);
      put(`R${n}L`, gpr, 1);
    }
  });
  return map;
})();

function gprOf(register: Register): GprOperand | null {
  return GPR_BY_REGISTER.get(register) ?? null;
}

const ACCESS_KINDS = new Map<number, AccessKind>([
  [iced.OpAccess.Read, 'read'],
  [iced.OpAccess.Write, 'write'],
  [iced.OpAccess.ReadWrite, 'readWrite'],
  [iced.OpAccess.CondRead, 'condRead'],
  [iced.OpAccess.CondWrite, 'condWrite'],
  [iced.OpAccess.ReadCondWrite, 'readCondWrite'],
]);

/** Whether an access may read (R) and may write (W) memory. */
export function accessReads(kind: AccessKind): boolean {
  return kind === 'read' || kind === 'readWrite' || kind === 'condRead' || kind === 'readCondWrite';
}

export function accessWrites(kind: AccessKind): boolean {
  return kind === 'write' || kind === 'readWrite' || kind === 'condWrite' || kind === 'readCondWrite';
}

const MEMORY_KINDS = new Set<number>([
  iced.OpKind.Memory,
  iced.OpKind.MemorySegSI, iced.OpKind.MemorySegESI, iced.OpKind.MemorySegRSI,
  iced.OpKind.MemoryESDI, iced.OpKind.MemoryESEDI, iced.OpKind.MemoryESRDI,
]);
const IMMEDIATE_KINDS = new Set<number>([
  iced.OpKind.Immediate8, iced.OpKind.Immediate8_2nd, iced.OpKind.Immediate16, iced.OpKind.Immediate32, iced.OpKind.Immediate64,
  iced.OpKind.Immediate8to16, iced.OpKind.Immediate8to32, iced.OpKind.Immediate8to64, iced.OpKind.Immediate32to64,
]);
const BRANCH_KINDS = new Set<number>([iced.OpKind.NearBranch16, iced.OpKind.NearBranch32, iced.OpKind.NearBranch64]);

/**
 * Decodes instructions for the engine. Holds one iced decoder state (input is copied per call)
 * and one info factory; `free()` releases them.
 */
export class EngineDecoder {
  private readonly factory: InstructionInfoFactory = new iced.InstructionInfoFactory();
  private readonly formatter = createFormatter();
  private readonly instruction: Instruction = new iced.Instruction();

  /** `bitness`: the guest kernel's code, 64-bit or 32-bit (HVMI decodes by gGuest.Guest64). */
  constructor(readonly bitness: 32 | 64 = 64) {}

  /** Decodes the instruction at the start of `bytes` (fetched at `ip`), or null if it is invalid. */
  decode(bytes: Uint8Array, ip: bigint): DecodedInstruction | null {
    const decoder: Decoder = new iced.Decoder(this.bitness, bytes, iced.DecoderOptions.None);
    try {
      decoder.ip = ip;
      decoder.decodeOut(this.instruction);
      const ins = this.instruction;
      if (ins.isInvalid || ins.length > bytes.length) return null;
      return this.record(ins, bytes.slice(0, ins.length));
    } finally {
      decoder.free();
    }
  }

  free(): void {
    this.factory.free();
    this.formatter.free();
    this.instruction.free();
  }

  private record(ins: Instruction, bytes: Uint8Array): DecodedInstruction {
    const operands: DecodedOperand[] = [];
    for (let i = 0; i < ins.opCount; i++) {
      const kind = ins.opKind(i);
      if (kind === iced.OpKind.Register) {
        const register = gprOf(ins.opRegister(i));
        operands.push({ kind: 'register', size: register?.size ?? 0, register, immediate: null });
      } else if (MEMORY_KINDS.has(kind)) {
        operands.push({ kind: 'memory', size: iced.MemorySizeExt.size(ins.memorySize), register: null, immediate: null });
      } else if (IMMEDIATE_KINDS.has(kind)) {
        operands.push({ kind: 'immediate', size: 0, register: null, immediate: ins.immediate(i) });
      } else if (BRANCH_KINDS.has(kind)) {
        operands.push({ kind: 'branch', size: 0, register: null, immediate: null });
      } else {
        operands.push({ kind: 'other', size: 0, register: null, immediate: null });
      }
    }
    const accesses = this.accessesOf(ins);
    let hasExplicit = false;
    for (let i = 0; i < ins.opCount; i++) if (ins.opKind(i) === iced.OpKind.Memory) hasExplicit = true;
    const memory = hasExplicit ? this.explicitMemory(ins, accesses) : null;
    const mnemonicName = iced.Mnemonic[ins.mnemonic] ?? 'INVALID';
    const code = ins.code;
    const intVector = code === iced.Code.Int_imm8 ? ins.immediate8 : -1;
    const isBranch = ins.opCount > 0 && BRANCH_KINDS.has(ins.opKind(0));
    return Object.freeze({
      ip: ins.ip,
      length: ins.length,
      bytes,
      code,
      mnemonic: mnemonicName.toLowerCase(),
      text: this.formatter.format(ins),
      operands: Object.freeze(operands),
      memory,
      accesses: Object.freeze(accesses),
      isJmpNearRelative: code === iced.Code.Jmp_rel8_64 || code === iced.Code.Jmp_rel32_64,
      isInt3: code === iced.Code.Int3 || intVector === 3,
      intVector,
      isRepeated: ins.isStringInstruction && (ins.hasRepPrefix || ins.hasRepnePrefix),
      branchTarget: isBranch ? ins.nearBranchTarget : null,
      nextIp: ins.nextIP,
    });
  }

  private accessesOf(ins: Instruction): MemoryAccess[] {
    const info = this.factory.infoOptions(ins, iced.InstructionInfoOptions.NoRegisterUsage);
    const out: MemoryAccess[] = [];
    try {
      for (const used of info.usedMemory()) {
        try {
          const access = ACCESS_KINDS.get(used.access);
          if (access === undefined) continue;
          const segment = used.segment === iced.Register.FS ? 'fs' : used.segment === iced.Register.GS ? 'gs' : null;
          const base = gprOf(used.base);
          const index = gprOf(used.index);
          out.push({
            base: base?.gpr ?? null,
            index: index?.gpr ?? null,
            scale: used.scale,
            displacement: used.displacement,
            size: iced.MemorySizeExt.size(used.memorySize),
            access,
            segment,
            addr32: (base !== null && base.size === 4) || (index !== null && index.size === 4),
          });
        } finally {
          used.free();
        }
      }
    } finally {
      info.free();
    }
    return out;
  }

  /** The explicit operand's access: iced lists it among usedMemory with the operand's registers. */
  private explicitMemory(ins: Instruction, accesses: readonly MemoryAccess[]): MemoryAccess | null {
    const base = gprOf(ins.memoryBase)?.gpr ?? null;
    const index = gprOf(ins.memoryIndex)?.gpr ?? null;
    const scale = ins.memoryIndex === iced.Register.None ? 1 : ins.memoryIndexScale;
    // iced reports RIP-relative displacements signed here but absolute in usedMemory.
    const displacement = ins.isIpRelMemoryOperand ? ins.ipRelMemoryAddress : BigInt.asUintN(64, ins.memoryDisplacement);
    const found = accesses.find((a) => a.base === base && a.index === index && a.displacement === displacement && (index === null || a.scale === scale));
    return found ?? null;
  }
}

const U64 = (1n << 64n) - 1n;

/** The linear address of `access` with the registers of a stopped vCPU. */
export function linearAddress(access: MemoryAccess, regs: VcpuAccess): bigint {
  let offset = access.displacement;
  if (access.base !== null) offset += regs.gpr(access.base);
  if (access.index !== null) offset += regs.gpr(access.index) * BigInt(access.scale);
  offset = access.addr32 ? offset & 0xffffffffn : offset & U64;
  if (access.segment === 'fs') offset += regs.get64('fsBase');
  else if (access.segment === 'gs') offset += regs.get64('gsBase');
  return offset & U64;
}
