import iced from 'iced-x86';

/**
 * iced-x86 → plain records.
 *
 * iced costs ~12 ns per field read and every object it returns lives in WASM memory until freed,
 * so each instruction is decoded exactly once, every field the compiler needs is copied into a
 * plain `Insn`, and the iced objects are reused (`decodeOut`) or freed. Nothing here runs while
 * guest code executes.
 */

/** What an operand is. */
export const OperandKind = {
  register: 0,
  memory: 1,
  immediate: 2,
  branch: 3,
  /** Implicit string source [rsi] (segment overridable). */
  stringSource: 4,
  /** Implicit string destination es:[rdi]. */
  stringDestination: 5,
  /** A far pointer (JMP/CALL ptr16:16/32): flat-segment vcpusim does not do far transfers. */
  farPointer: 6,
} as const;
export type OperandKindCode = (typeof OperandKind)[keyof typeof OperandKind];

/** Register classes an operand can name. */
export const RegisterClass = { gpr: 0, control: 1, segment: 2, other: 3 } as const;

/** Segment of a memory operand, as far as 64-bit mode cares. */
export const Segment = { none: 0, fs: 1, gs: 2 } as const;

/** One decoded operand. */
export interface Operand {
  readonly kind: OperandKindCode;
  /** Size in bytes (for memory operands: the size of the access). */
  readonly size: number;
  /** GPR number 0..15, CR number, or segment number (ES=0 CS SS DS FS GS), by `regClass`. */
  readonly reg: number;
  readonly regClass: number;
  /** AH/CH/DH/BH: bits 8..15 of GPR `reg`. */
  readonly high8: boolean;
}

/** The one explicit memory operand of an instruction. */
export interface MemoryOperand {
  /** Base GPR, or -1 (RIP-relative operands are folded into an absolute displacement). */
  readonly base: number;
  /** Index GPR, or -1. */
  readonly index: number;
  readonly scale: number;
  /** 64-bit displacement as int32 halves. */
  readonly dispLo: number;
  readonly dispHi: number;
  readonly segment: number;
  /** SS-relative (base RSP/RBP): a non-canonical address raises #SS instead of #GP. */
  readonly stack: boolean;
  /** Address size in bytes: 8 in 64-bit mode, 4 with 0x67 there or by default in 32-bit mode, 2
   *  with 0x67 in 32-bit mode. The effective address is truncated to it. */
  readonly addressSize: number;
}

/** A decoded instruction: everything the block compiler needs, as plain data. */
export interface Insn {
  /** iced `Code` (exact form) and `Mnemonic`. */
  readonly code: number;
  readonly mnemonic: number;
  readonly length: number;
  /** Linear address of the instruction as a 48-bit number (canonical addresses lose nothing). */
  readonly ip: number;
  /** Linear address of the next instruction (48-bit number). */
  readonly nextIp: number;
  readonly operands: readonly Operand[];
  readonly memory: MemoryOperand | null;
  /** First immediate operand (sign- or zero-extended to 64 bits as the form says), int32 halves. */
  readonly immLo: number;
  readonly immHi: number;
  /** Second immediate (ENTER's nesting level). */
  readonly imm2: number;
  /** Near branch target as a 48-bit number, or -1. */
  readonly target: number;
  readonly lock: boolean;
  readonly rep: boolean;
  readonly repne: boolean;
  /** iced FlowControl. */
  readonly flow: number;
  /** iced ConditionCode (0 = none; 1..16 = o no b ae e ne be a s ns p np l ge le g). */
  readonly condition: number;
  /** How the instruction moves RSP (e.g. -8 for PUSH r64, -2 for PUSH r16), 0 if it does not. */
  readonly stackIncrement: number;
  /** Segment override prefix (for string sources), as `Segment`. */
  readonly segmentOverride: number;
  /** The instruction's bytes, for reports. */
  readonly bytes: Uint8Array;
}

/** Result of decoding one instruction from a byte window. */
export type DecodeResult =
  | { readonly status: 'ok'; readonly insn: Insn }
  | {
      readonly status: 'invalid';
      readonly length: number;
      readonly bytes: Uint8Array;
      /** Set when the only fault is a LOCK prefix the instruction cannot take: its iced `Code`. */
      readonly illegalLock?: number;
    }
  | { readonly status: 'truncated' };

const MASK48 = 0xffff_ffff_ffffn;
const R = iced.Register;

/** Maps an iced register to its GPR number and whether it is AH..BH. */
function gprOf(reg: number): { n: number; size: number; high8: boolean } | null {
  if (reg >= R.AL && reg <= R.R15L) {
    if (reg >= R.AH && reg <= R.BH) return { n: reg - R.AH, size: 1, high8: true };
    if (reg <= R.BL) return { n: reg - R.AL, size: 1, high8: false };
    return { n: reg - R.SPL + 4, size: 1, high8: false };
  }
  if (reg >= R.AX && reg <= R.R15W) return { n: reg - R.AX, size: 2, high8: false };
  if (reg >= R.EAX && reg <= R.R15D) return { n: reg - R.EAX, size: 4, high8: false };
  if (reg >= R.RAX && reg <= R.R15) return { n: reg - R.RAX, size: 8, high8: false };
  return null;
}

function gprNumber(reg: number): number {
  if (reg === R.None) return -1;
  const g = gprOf(reg);
  if (g === null) throw new Error(`unexpected address register ${R[reg]}`);
  return g.n;
}

function segmentOf(reg: number): number {
  if (reg === R.FS) return Segment.fs;
  if (reg === R.GS) return Segment.gs;
  return Segment.none;
}

/** Converts a canonical 64-bit address to the 48-bit number used everywhere in the CPU. */
export function lin48(address: bigint): number {
  return Number(address & MASK48);
}

/** Converts a 48-bit linear number back to the canonical 64-bit address (sign-extends bit 47). */
export function canonical(linear: number): bigint {
  return BigInt.asIntN(48, BigInt(linear)) & 0xffff_ffff_ffff_ffffn;
}

const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/**
 * Decoded code — instructions and the arrays of a compiled block — is shared by every CPU of a
 * thread and never changes once made: it is frozen, and a run's snapshot keeps it by identity
 * without walking into it (it was two thirds of a branch's saved objects).
 */
const decoded = new WeakSet<object>();

/** Freezes `value` (shallowly: the caller freezes its parts) and marks it as decoded code. */
export function markDecoded<T extends object>(value: T): Readonly<T> {
  decoded.add(value);
  return Object.freeze(value);
}

/** Whether `value` is decoded code (immutable, shared). */
export function isDecoded(value: object): boolean {
  return decoded.has(value);
}

/** True when the legacy prefixes before the opcode include 0x67 (address-size override). */
export function hasAddressSizePrefix(bytes: Uint8Array): boolean {
  for (const b of bytes) {
    if (b === 0x67) return true;
    if (!LEGACY_PREFIXES.has(b)) return false;
  }
  return false;
}

function splitHalves(value: bigint): [number, number] {
  const v = BigInt.asUintN(64, value);
  return [Number(v & 0xffffffffn) | 0, Number(v >> 32n) | 0];
}

/**
 * Decodes instructions from a copy of guest bytes. One instance per vCPU; `decodeAt` never keeps
 * references into iced objects.
 */
export class InstructionDecoder {
  private readonly scratch = new iced.Instruction();
  private bitness = 64;

  /**
   * Decodes the instruction at `bytes[offset]`, whose linear address is `ip` (canonical 64-bit),
   * as 64-bit code or (`bitness` 32: legacy protected mode, compatibility mode) 32-bit code.
   * 'truncated' means the window ended inside the instruction: fetch the next page and retry.
   */
  decodeAt(bytes: Uint8Array, offset: number, ip: bigint, bitness: 32 | 64 = 64): DecodeResult {
    const window = bytes.subarray(offset, Math.min(bytes.length, offset + 15));
    this.bitness = bitness;
    const decoder = new iced.Decoder(bitness, window, iced.DecoderOptions.None);
    try {
      decoder.ip = ip;
      const ins = this.scratch;
      decoder.decodeOut(ins);
      if (ins.isInvalid) {
        if (decoder.lastError === iced.DecoderError.NoMoreBytes && window.length < 15) return { status: 'truncated' };
        const length = Math.max(1, ins.length);
        const illegalLock = lockMisuse(window, ip, bitness);
        return { status: 'invalid', length, bytes: window.slice(0, length), ...(illegalLock !== undefined ? { illegalLock } : {}) };
      }
      return { status: 'ok', insn: this.copy(ins, window.slice(0, ins.length)) };
    } finally {
      decoder.free();
    }
  }

  private copy(ins: iced.Instruction, bytes: Uint8Array): Insn {
    const operands: Operand[] = [];
    let memory: MemoryOperand | null = null;
    let immLo = 0;
    let immHi = 0;
    let imm2 = 0;
    let target = -1;
    let immSeen = false;
    const opCount = ins.opCount;
    for (let i = 0; i < opCount; i++) {
      const kind = ins.opKind(i);
      switch (kind) {
        case iced.OpKind.Register: {
          const reg = ins.opRegister(i);
          const g = gprOf(reg);
          if (g !== null) {
            operands.push({ kind: OperandKind.register, size: g.size, reg: g.n, regClass: RegisterClass.gpr, high8: g.high8 });
          } else if (reg >= R.CR0 && reg <= R.CR15) {
            operands.push({ kind: OperandKind.register, size: 8, reg: reg - R.CR0, regClass: RegisterClass.control, high8: false });
          } else if (reg >= R.ES && reg <= R.GS) {
            operands.push({ kind: OperandKind.register, size: 2, reg: reg - R.ES, regClass: RegisterClass.segment, high8: false });
          } else {
            operands.push({ kind: OperandKind.register, size: 0, reg, regClass: RegisterClass.other, high8: false });
          }
          break;
        }
        case iced.OpKind.Memory: {
          const base = ins.memoryBase;
          const index = ins.memoryIndex;
          // For RIP-relative operands iced already gives the absolute target here.
          const [dispLo, dispHi] = splitHalves(ins.memoryDisplacement);
          const isRipRelative = base === R.RIP || base === R.EIP;
          memory = {
            base: isRipRelative ? -1 : gprNumber(base),
            index: gprNumber(index),
            scale: ins.memoryIndexScale,
            dispLo,
            dispHi,
            segment: segmentOf(ins.memorySegment),
            stack: ins.memorySegment === R.SS,
            addressSize: this.addressSize(bytes, isRipRelative),
          };
          operands.push({
            kind: OperandKind.memory,
            size: iced.MemorySizeExt.size(ins.memorySize),
            reg: -1,
            regClass: RegisterClass.other,
            high8: false,
          });
          break;
        }
        case iced.OpKind.FarBranch16:
        case iced.OpKind.FarBranch32:
          operands.push({ kind: OperandKind.farPointer, size: 0, reg: -1, regClass: RegisterClass.other, high8: false });
          break;
        case iced.OpKind.NearBranch16:
        case iced.OpKind.NearBranch32:
        case iced.OpKind.NearBranch64:
          target = lin48(ins.nearBranchTarget);
          operands.push({ kind: OperandKind.branch, size: 8, reg: -1, regClass: RegisterClass.other, high8: false });
          break;
        case iced.OpKind.MemorySegSI:
        case iced.OpKind.MemorySegESI:
        case iced.OpKind.MemorySegRSI:
          operands.push({
            kind: OperandKind.stringSource,
            size: iced.MemorySizeExt.size(ins.memorySize),
            reg: kind === iced.OpKind.MemorySegRSI ? 8 : kind === iced.OpKind.MemorySegESI ? 4 : 2,
            regClass: RegisterClass.other,
            high8: false,
          });
          break;
        case iced.OpKind.MemorySegDI:
        case iced.OpKind.MemorySegEDI:
        case iced.OpKind.MemorySegRDI:
        case iced.OpKind.MemoryESDI:
        case iced.OpKind.MemoryESEDI:
        case iced.OpKind.MemoryESRDI: {
          const width =
            kind === iced.OpKind.MemoryESRDI || kind === iced.OpKind.MemorySegRDI
              ? 8
              : kind === iced.OpKind.MemoryESEDI || kind === iced.OpKind.MemorySegEDI
                ? 4
                : 2;
          operands.push({
            kind: OperandKind.stringDestination,
            size: iced.MemorySizeExt.size(ins.memorySize),
            reg: width,
            regClass: RegisterClass.other,
            high8: false,
          });
          break;
        }
        default: {
          // Immediate kinds. immediate(i) already applies the form's sign/zero extension.
          if (!immSeen) {
            [immLo, immHi] = splitHalves(ins.immediate(i));
            immSeen = true;
          } else {
            imm2 = Number(ins.immediate(i) & 0xffffffffn);
          }
          operands.push({ kind: OperandKind.immediate, size: immediateSize(kind), reg: -1, regClass: RegisterClass.other, high8: false });
        }
      }
    }
    for (const operand of operands) Object.freeze(operand);
    if (memory !== null) Object.freeze(memory);
    return markDecoded({
      code: ins.code,
      mnemonic: ins.mnemonic,
      length: ins.length,
      ip: lin48(ins.ip),
      nextIp: lin48(ins.nextIP),
      operands: Object.freeze(operands),
      memory,
      immLo,
      immHi,
      imm2,
      target,
      lock: ins.hasLockPrefix,
      rep: ins.hasRepPrefix,
      repne: ins.hasRepnePrefix,
      flow: ins.flowControl,
      condition: ins.conditionCode,
      stackIncrement: ins.stackPointerIncrement,
      segmentOverride: segmentOf(ins.segmentPrefix),
      bytes,
    });
  }

  private addressSize(bytes: Uint8Array, isRipRelative: boolean): number {
    const override = hasAddressSizePrefix(bytes) && !isRipRelative;
    if (this.bitness === 64) return override ? 4 : 8;
    return override ? 2 : 4;
  }
}

/**
 * iced rejects LOCK on an instruction that cannot take it (LOCK NOP, LOCK ADD reg, reg...) as an
 * invalid encoding, but it is a valid instruction used illegally (UdReason.illegalUse). Decoding
 * again without iced's validity checks tells the two apart: returns the instruction's Code when
 * that decode succeeds and carries a LOCK prefix.
 */
function lockMisuse(window: Uint8Array, ip: bigint, bitness: 32 | 64): number | undefined {
  if (!window.includes(0xf0)) return undefined;
  const decoder = new iced.Decoder(bitness, window, iced.DecoderOptions.NoInvalidCheck);
  try {
    decoder.ip = ip;
    const ins = decoder.decode();
    try {
      return !ins.isInvalid && ins.hasLockPrefix ? ins.code : undefined;
    } finally {
      ins.free();
    }
  } finally {
    decoder.free();
  }
}

function immediateSize(kind: number): number {
  switch (kind) {
    case iced.OpKind.Immediate8:
    case iced.OpKind.Immediate8_2nd:
      return 1;
    case iced.OpKind.Immediate16:
    case iced.OpKind.Immediate8to16:
      return 2;
    case iced.OpKind.Immediate32:
    case iced.OpKind.Immediate8to32:
      return 4;
    default:
      return 8;
  }
}
