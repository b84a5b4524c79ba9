import iced from 'iced-x86';
import type { Prng } from '../../../src/explore/prng.ts';
import { GPR_NAMES, type GprName } from '../../../src/machine/vcpu-state.ts';
import type { Family } from '../../../src/cpu/opcode-table.ts';
import type { Bits, Form } from './forms.ts';

/**
 * Random instruction cases for the differential harness.
 *
 * A case is one instruction (plus, for branches, a 2-byte marker the branch may skip) at
 * CODE_ADDRESS, random registers and arithmetic flags, and a scratch window that straddles a
 * page boundary. Memory operands, the stack, string pointers and branch targets are aimed so
 * every access stays inside the window (the host would otherwise fault on unrelated memory);
 * everything else is random, biased toward edge values.
 */

export const CODE_ADDRESS = 0x200000n;
/** The scratch window: 1 KiB around the page boundary at 0x301000. */
export const SCRATCH_ADDRESS = 0x300e00n;
export const SCRATCH_BYTES = 0x400;
const PAGE_BOUNDARY = 0x301000n;

/** `mov al, 0x42`: the marker a taken branch skips. */
const MARKER = new Uint8Array([0xb0, 0x42]);

export interface DiffCase {
  readonly index: number;
  /** 64-bit or 32-bit code. */
  readonly bits: Bits;
  readonly form: Form;
  readonly code: Uint8Array;
  readonly regs: Record<GprName, bigint>;
  readonly rflags: bigint;
  readonly scratch: Uint8Array;
  /** Operand size in bytes (for the undefined-effects table). */
  readonly operandSize: number;
  /** Shift count as the instruction sees it, if it has one. */
  readonly count: number;
  /** Destination: a GPR number, 'memory', or null. */
  readonly destination: number | 'memory' | null;
}

const K = iced.OpCodeOperandKind;
const R = iced.Register;
const M = iced.Mnemonic;
const RSP = 4;
const RBP = 5;
const RSI = 6;
const RDI = 7;
const RCX = 1;
const RAX = 0;
const RDX = 2;
const RBX = 3;

const MASK64 = (1n << 64n) - 1n;

/**
 * The iced register for GPR `n` at `size` bytes. For byte registers 4..7 that is SPL..DIL in 64-bit
 * code but AH..BH in 32-bit code (which has no REX): `byteOwner` says which GPR those live in.
 */
function gprRegister(n: number, size: number, bits: Bits = 64): number {
  switch (size) {
    case 1: return n < 4 || bits === 32 ? R.AL + n : R.SPL + (n - 4);
    case 2: return R.AX + n;
    case 4: return R.EAX + n;
    default: return R.RAX + n;
  }
}

/** The GPR a register operand lives in: AH..BH (32-bit code's byte registers 4..7) are in 0..3. */
function byteOwner(n: number, size: number, bits: Bits): number {
  return size === 1 && bits === 32 ? n & 3 : n;
}

/** A 64-bit value biased toward the edges where carries, signs and overflows live. */
function interestingValue(prng: Prng): bigint {
  switch (prng.below(8)) {
    case 0: return BigInt(prng.below(256));
    case 1: return prng.pick([0n, 1n, MASK64, 0x7fn, 0x80n, 0xffn, 0x7fffn, 0x8000n, 0xffffn]);
    case 2: return prng.pick([0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n]);
    case 3: return (MASK64 - BigInt(prng.below(256))) & MASK64;
    case 4: return BigInt(prng.nextU32());
    default: return prng.nextU64();
  }
}

function operandSizeOf(kind: number): number {
  switch (kind) {
    case K.r8_or_mem: case K.r8_reg: case K.r8_opcode: case K.al: case K.cl: return 1;
    case K.r16_or_mem: case K.r16_reg: case K.r16_opcode: case K.ax: return 2;
    case K.r32_or_mem: case K.r32_reg: case K.r32_opcode: case K.eax: return 4;
    case K.r64_or_mem: case K.r64_reg: case K.r64_opcode: case K.rax: return 8;
    default: return 0;
  }
}

/** Mutable state while one case is being built. */
class Builder {
  readonly regs: bigint[];
  readonly fixed = new Set<number>([RSP]);
  readonly scratch: Uint8Array;
  destination: number | 'memory' | null = null;
  memoryAddress = -1n;

  constructor(
    readonly prng: Prng,
    readonly bits: Bits,
  ) {
    this.regs = GPR_NAMES.map(() => interestingValue(prng));
    this.scratch = new Uint8Array(SCRATCH_BYTES);
    for (let i = 0; i < SCRATCH_BYTES; i++) this.scratch[i] = prng.below(256);
    // The stack lives in the middle of the window, usually aligned.
    const offset = BigInt(0x180 + prng.below(0x100)) & (prng.chance(0.9) ? ~7n : ~0n);
    this.regs[RSP] = SCRATCH_ADDRESS + offset;
  }

  fix(n: number, value: bigint): void {
    this.regs[n] = value & MASK64;
    this.fixed.add(n);
  }

  /** A register number not yet fixed by another role. */
  freeRegister(excluding: readonly number[] = []): number {
    const choices = [...Array(this.bits === 64 ? 16 : 8).keys()].filter((n) => !this.fixed.has(n) && !excluding.includes(n));
    return this.prng.pick(choices);
  }

  writeScratch64(address: bigint, value: bigint): void {
    const offset = Number(address - SCRATCH_ADDRESS);
    for (let k = 0; k < 8; k++) this.scratch[offset + k] = Number((value >> BigInt(8 * k)) & 0xffn);
  }

  /** A target address for a `size`-byte access; often straddling the page boundary. */
  target(size: number, align = 1): bigint {
    const span = Math.max(size, 1);
    let address: bigint;
    if (this.prng.chance(0.3)) address = PAGE_BOUNDARY - BigInt(this.prng.below(span + 8));
    else address = SCRATCH_ADDRESS + 0x20n + BigInt(this.prng.below(SCRATCH_BYTES - 0x40 - span));
    if (align > 1) address &= ~BigInt(align - 1);
    return address;
  }
}

/**
 * Sets the memory operand of `ins` so its effective address is `address`, using free registers
 * as base and index (sometimes RIP-relative, sometimes 32-bit addressing).
 */
function aimMemory(b: Builder, ins: iced.Instruction, operand: number, address: bigint): void {
  ins.setOpKind(operand, iced.OpKind.Memory);
  const prng = b.prng;
  const style = prng.below(10);
  if (b.bits === 32 && style <= 1) {
    aimMemory32(b, ins, style === 0 ? address : -1n);
    return;
  }
  if (style === 0) {
    // RIP-relative: iced wants the absolute target in the displacement.
    ins.memoryBase = R.RIP;
    ins.memoryIndex = R.None;
    ins.memoryIndexScale = 1;
    ins.memoryDisplacement = address;
    ins.memoryDisplSize = 8;
    return;
  }
  const addr32 = style === 1;
  const useIndex = prng.chance(0.5);
  const base = b.freeRegister();
  b.fixed.add(base);
  const index = useIndex ? b.freeRegister([RSP]) : -1;
  const scale = prng.pick([1, 2, 4, 8]);
  const disp = BigInt(prng.chance(0.3) ? 0 : prng.between(-200, 200));
  let rest = address - disp;
  if (index >= 0) {
    b.fixed.add(index);
    const indexValue = BigInt(prng.between(-16, 16));
    b.regs[index] = indexValue & (addr32 || b.bits === 32 ? 0xffffffffn : MASK64);
    if (addr32 && b.bits === 64) b.regs[index] |= b.prng.nextU64() & 0xffffffff00000000n; // upper bits ignored with 0x67
    rest -= indexValue * BigInt(scale);
  }
  // 32-bit code addresses with 32-bit registers, whose high halves it ignores.
  const wide = !addr32 && b.bits === 64;
  if (!wide && index >= 0) b.regs[index] |= b.prng.nextU64() & 0xffffffff00000000n;
  b.regs[base] = wide ? rest & MASK64 : (rest & 0xffffffffn) | (prng.nextU64() & 0xffffffff00000000n);
  ins.memoryBase = wide ? R.RAX + base : R.EAX + base;
  ins.memoryIndex = index < 0 ? R.None : wide ? R.RAX + index : R.EAX + index;
  ins.memoryIndexScale = scale;
  ins.memoryDisplacement = disp & MASK64;
  ins.memoryDisplSize = disp === 0n ? 0 : 1;
}

/**
 * 32-bit code's other two addressing styles: a bare disp32 (ModRM 00/101 — absolute there, not
 * RIP-relative) at `address`, or (`address` < 0) 16-bit addressing with 0x67 — BX/BP plus SI/DI
 * plus disp16 — which lands below 64 KiB, where nothing is mapped on either side: those cases
 * check the 16-bit address arithmetic through the #PF address (and LEA through its result).
 */
function aimMemory32(b: Builder, ins: iced.Instruction, address: bigint): void {
  ins.memoryIndexScale = 1;
  if (address >= 0n) {
    ins.memoryBase = R.None;
    ins.memoryIndex = R.None;
    ins.memoryDisplacement = address;
    ins.memoryDisplSize = 4;
    return;
  }
  const prng = b.prng;
  const base = prng.pick([R.BX, R.BP, R.None]);
  const index = prng.pick([R.SI, R.DI, R.None]);
  for (const reg of [base, index]) {
    if (reg === R.None) continue;
    const n = reg - R.AX;
    if (!b.fixed.has(n)) b.regs[n] = interestingValue(prng);
    b.fixed.add(n);
  }
  ins.memoryBase = base;
  ins.memoryIndex = index;
  ins.memoryDisplacement = BigInt(prng.below(0x10000));
  ins.memoryDisplSize = 2;
}

/** Size in bytes of the memory access of a form, from its register-or-memory operand kind. */
function memorySize(form: Form): number {
  for (const kind of form.kinds) {
    const size = operandSizeOf(kind);
    if (size > 0 && (kind === K.r8_or_mem || kind === K.r16_or_mem || kind === K.r32_or_mem || kind === K.r64_or_mem)) return size;
  }
  return 8;
}

/** Builds one random `bits`-bit case for `form`, or null if the random operands cannot be encoded. */
export function buildCase(prng: Prng, form: Form, index: number, bits: Bits = 64): DiffCase | null {
  const b = new Builder(prng, bits);
  const ins = iced.Instruction.create(form.code);
  try {
    return fill(b, ins, form, index);
  } finally {
    ins.free();
  }
}

function fill(b: Builder, ins: iced.Instruction, form: Form, index: number): DiffCase | null {
  const prng = b.prng;
  const m = form.mnemonic;
  let operandSize = 0;
  let count = 0;
  let flags = BigInt(prng.nextU32() & 0x8d5) | 0x202n;
  if (!prng.chance(0.3)) flags &= ~0x400n; // DF mostly clear
  const isBranch = form.kinds.some(isBranchKind);
  const isString = form.kinds.some((k) => k === K.es_rDI || k === K.seg_rSI);
  const memSize = memorySize(form);
  const wantsMemory = prng.chance(0.5);

  // Roles that pin registers before operands are chosen.
  if (isString) prepareString(b, ins, form);
  if (m === M.Loop || m === M.Loope || m === M.Loopne || m === M.Jrcxz || m === M.Jecxz) b.fix(RCX, BigInt(prng.pick([0, 1, 2, 3, 0x100000000])));
  if (m === M.Leave || m === M.Enter) b.fix(RBP, b.target(8, 8) + 0x40n);
  if (m === M.Div || m === M.Idiv) prepareDivide(b, form);
  if (m === M.Cmpxchg8b || m === M.Cmpxchg16b) prepareWideExchange(b);

  let usedMemory = false;
  let sourceRegister = -1;
  // A BT bit offset in a register moves the address: pin that register to a small offset first,
  // so it cannot also serve as the base or index of the memory operand.
  const bitOffset = [M.Bt, M.Bts, M.Btr, M.Btc].includes(m) && wantsMemory && form.kinds[1] !== K.imm8 ? b.freeRegister() : -1;
  if (bitOffset >= 0) b.fix(bitOffset, BigInt(prng.between(-200, 200)));
  for (let i = 0; i < form.kinds.length; i++) {
    const kind = form.kinds[i];
    const size = operandSizeOf(kind);
    if (size > 0 && operandSize === 0) operandSize = size;
    switch (kind) {
      case K.r8_or_mem: case K.r16_or_mem: case K.r32_or_mem: case K.r64_or_mem:
      case K.r8_reg: case K.r16_reg: case K.r32_reg: case K.r64_reg:
      case K.r8_opcode: case K.r16_opcode: case K.r32_opcode: case K.r64_opcode: {
        const canBeMemory = kind === K.r8_or_mem || kind === K.r16_or_mem || kind === K.r32_or_mem || kind === K.r64_or_mem;
        if (canBeMemory && wantsMemory) {
          const address = pickMemoryTarget(b, form, size);
          aimMemory(b, ins, i, address);
          b.memoryAddress = address;
          usedMemory = true;
          if (i === 0) b.destination = 'memory';
          break;
        }
        const n = i === 1 && bitOffset >= 0 ? bitOffset : chooseRegister(b, form, i, size);
        ins.setOpKind(i, iced.OpKind.Register);
        ins.setOpRegister(i, gprRegister(n, size, b.bits));
        if (i === 0) b.destination = byteOwner(n, size, b.bits);
        if (i === 1) sourceRegister = byteOwner(n, size, b.bits);
        break;
      }
      case K.al: case K.ax: case K.eax: case K.rax:
        ins.setOpKind(i, iced.OpKind.Register);
        ins.setOpRegister(i, gprRegister(0, size));
        if (i === 0) b.destination = 0;
        break;
      case K.cl:
        ins.setOpKind(i, iced.OpKind.Register);
        ins.setOpRegister(i, R.CL);
        if (!b.fixed.has(RCX) && prng.chance(0.7)) b.regs[RCX] = (b.regs[RCX] & ~0xffn) | BigInt(prng.below(80));
        break;
      case K.imm8_const_1:
        ins.setOpKind(i, iced.OpKind.Immediate8);
        ins.setImmediateU32(i, 1);
        count = 1;
        break;
      case K.imm8: {
        ins.setOpKind(i, iced.OpKind.Immediate8);
        const value = isShift(m) && prng.chance(0.7) ? prng.below(80) : prng.below(256);
        ins.setImmediateU32(i, value);
        count = value;
        break;
      }
      case K.imm16:
        ins.setOpKind(i, iced.OpKind.Immediate16);
        ins.setImmediateU32(i, m === M.Ret || m === M.Enter ? prng.below(9) * 8 + prng.below(2) * prng.below(8) : prng.below(65536));
        break;
      case K.imm32:
        ins.setOpKind(i, iced.OpKind.Immediate32);
        ins.setImmediateU32(i, Number(interestingValue(prng) & 0xffffffffn));
        break;
      case K.imm64:
        ins.setOpKind(i, iced.OpKind.Immediate64);
        ins.setImmediateU64(i, interestingValue(prng));
        break;
      case K.imm8sex16:
        ins.setOpKind(i, iced.OpKind.Immediate8to16);
        ins.setImmediateI32(i, prng.between(-128, 127));
        break;
      case K.imm8sex32:
        ins.setOpKind(i, iced.OpKind.Immediate8to32);
        ins.setImmediateI32(i, prng.between(-128, 127));
        break;
      case K.imm8sex64:
        ins.setOpKind(i, iced.OpKind.Immediate8to64);
        ins.setImmediateI64(i, BigInt(prng.between(-128, 127)));
        break;
      case K.imm32sex64:
        ins.setOpKind(i, iced.OpKind.Immediate32to64);
        ins.setImmediateI64(i, BigInt.asIntN(32, interestingValue(prng)));
        break;
      case K.br64_1:
      case K.br64_4:
        ins.setOpKind(i, iced.OpKind.NearBranch64);
        ins.nearBranch64 = CODE_ADDRESS + 0x40n;
        break;
      case K.br32_1:
      case K.br32_4:
        ins.setOpKind(i, iced.OpKind.NearBranch32);
        ins.nearBranch32 = Number(CODE_ADDRESS) + 0x40;
        break;
      case K.mem: {
        if (m === M.Lea) {
          // LEA computes an address without touching memory: any address will do.
          aimMemory(b, ins, i, b.target(1) + BigInt(prng.between(-0x1000, 0x1000)));
          break;
        }
        const address = pickMemoryTarget(b, form, m === M.Cmpxchg16b ? 16 : 8);
        aimMemory(b, ins, i, address);
        b.memoryAddress = address;
        b.destination = 'memory';
        usedMemory = true;
        if (m === M.Cmpxchg8b || m === M.Cmpxchg16b) matchWideExchange(b, address, m === M.Cmpxchg16b ? 16 : 8);
        break;
      }
      case K.mem_offs: {
        const address = b.target(operandSizeOf(form.kinds[0]) || 8);
        ins.setOpKind(i, iced.OpKind.Memory);
        ins.memoryBase = R.None;
        ins.memoryIndex = R.None;
        ins.memoryDisplacement = address;
        ins.memoryDisplSize = b.bits === 64 ? 8 : 4;
        if (i === 0) b.destination = 'memory';
        usedMemory = true;
        break;
      }
      case K.es_rDI:
        ins.setOpKind(i, b.bits === 64 ? iced.OpKind.MemoryESRDI : iced.OpKind.MemoryESEDI);
        if (i === 0) b.destination = 'memory';
        break;
      case K.seg_rSI:
        ins.setOpKind(i, b.bits === 64 ? iced.OpKind.MemorySegRSI : iced.OpKind.MemorySegESI);
        break;
      default:
        return null;
    }
  }
  if (usedMemory && prng.chance(0.3) && isLockable(m)) ins.hasLockPrefix = true;
  if (operandSize === 0) operandSize = memSize;
  if (form.kinds.includes(K.cl)) count = Number(b.regs[RCX] & 0xffn);
  if ((m === M.Bsf || m === M.Bsr || m === M.Tzcnt || m === M.Lzcnt || m === M.Popcnt) && prng.chance(0.2)) {
    zeroSource(b, usedMemory && form.kinds.length === 2, sourceRegister);
  }

  let bytes: Uint8Array;
  try {
    bytes = encode(ins, b.bits);
    if (isBranch) {
      const target = CODE_ADDRESS + BigInt(bytes.length + MARKER.length);
      if (b.bits === 64) ins.nearBranch64 = target;
      else ins.nearBranch32 = Number(target);
      bytes = encode(ins, b.bits);
    }
  } catch {
    return null;
  }
  let code = bytes;
  const end = CODE_ADDRESS + BigInt(bytes.length + (isBranch || isIndirect(form) ? MARKER.length : 0));
  if (isBranch || isIndirect(form)) code = concat(bytes, MARKER);
  if (isIndirect(form)) aimIndirect(b, ins, end);
  if (m === M.Ret) b.writeScratch64(b.regs[RSP], end);
  if (m === M.Popfq || m === M.Popfd) {
    // Single-step (TF) is not emulated, and AC would turn later misaligned accesses into #AC.
    const offset = Number(b.regs[RSP] - SCRATCH_ADDRESS);
    b.scratch[offset + 1] &= ~0x01;
    b.scratch[offset + 2] &= ~0x04;
  }
  return {
    index,
    bits: b.bits,
    form,
    code,
    regs: Object.fromEntries(GPR_NAMES.map((name, n) => [name, b.regs[n]])) as Record<GprName, bigint>,
    rflags: flags,
    scratch: b.scratch,
    operandSize,
    count,
    destination: b.destination,
  };
}

function isShift(m: number): boolean {
  return [M.Shl, M.Sal, M.Shr, M.Sar, M.Rol, M.Ror, M.Rcl, M.Rcr, M.Shld, M.Shrd].includes(m);
}

function isLockable(m: number): boolean {
  return [M.Add, M.Adc, M.Sub, M.Sbb, M.And, M.Or, M.Xor, M.Inc, M.Dec, M.Neg, M.Not, M.Bts, M.Btr, M.Btc, M.Xadd, M.Cmpxchg, M.Xchg, M.Cmpxchg8b, M.Cmpxchg16b].includes(m);
}

function isBranchKind(kind: number): boolean {
  return kind === K.br64_1 || kind === K.br64_4 || kind === K.br32_1 || kind === K.br32_4;
}

/** JMP/CALL through a register or memory. */
function isIndirect(form: Form): boolean {
  return (form.mnemonic === M.Jmp || form.mnemonic === M.Call) && !form.kinds.some(isBranchKind);
}

/** Points an indirect JMP/CALL at the code end (past the marker). */
function aimIndirect(b: Builder, ins: iced.Instruction, end: bigint): void {
  if (ins.op0Kind === iced.OpKind.Register) b.regs[ins.op0Register - (b.bits === 64 ? R.RAX : R.EAX)] = end;
  else b.writeScratch64(b.memoryAddress, end);
}

function chooseRegister(b: Builder, form: Form, operand: number, size: number): number {
  // Writing RSP would send the stack (and the host's exit) anywhere; only read it as a source.
  const readsOnly = operand > 0 && form.mnemonic !== M.Xchg && form.mnemonic !== M.Xadd && form.mnemonic !== M.Cmpxchg;
  const candidates = [...Array(b.bits === 64 ? 16 : 8).keys()].filter((n) => {
    const owner = byteOwner(n, size, b.bits);
    if (owner === RSP) return readsOnly && size === b.bits / 8 && b.prng.chance(0.1);
    // AH/CH/DH/BH cannot be encoded with REX; 64-bit cases use the REX forms (SPL..DIL) for 4..7,
    // 32-bit cases (no REX) AH..BH.
    return !b.fixed.has(owner) || (operand > 0 && b.prng.chance(0.3));
  });
  return b.prng.pick(candidates.length > 0 ? candidates : [RAX]);
}

function pickMemoryTarget(b: Builder, form: Form, size: number): bigint {
  const m = form.mnemonic;
  if (m === M.Cmpxchg16b) return b.target(16, b.prng.chance(0.9) ? 16 : 1);
  if (m === M.Bt || m === M.Bts || m === M.Btr || m === M.Btc) return SCRATCH_ADDRESS + 0x180n + BigInt(b.prng.below(0x40));
  return b.target(size);
}

function prepareString(b: Builder, ins: iced.Instruction, form: Form): void {
  const prng = b.prng;
  const rep = prng.below(3);
  const compares = [M.Cmpsb, M.Cmpsw, M.Cmpsd, M.Cmpsq, M.Scasb, M.Scasw, M.Scasd, M.Scasq].includes(form.mnemonic);
  if (rep === 1) ins.hasRepPrefix = true;
  else if (rep === 2 && compares) ins.hasRepnePrefix = true;
  b.fix(RCX, BigInt(prng.below(7)));
  // Room for up to 6 elements of 8 bytes either way.
  b.fix(RSI, SCRATCH_ADDRESS + 0x80n + BigInt(prng.below(0x340)));
  b.fix(RDI, SCRATCH_ADDRESS + 0x80n + BigInt(prng.below(0x340)));
  if (compares && prng.chance(0.5)) {
    // Make some elements equal so REPE/REPNE stop for both reasons.
    const rsi = Number(b.regs[RSI] - SCRATCH_ADDRESS);
    const rdi = Number(b.regs[RDI] - SCRATCH_ADDRESS);
    for (let k = -16; k < 16; k++) b.scratch[rdi + k] = b.scratch[rsi + k];
    for (let k = 0; k < 8; k++) b.scratch[rdi + k] = Number((b.regs[RAX] >> BigInt(8 * k)) & 0xffn) & (prng.chance(0.5) ? 0xff : 0);
  }
}

function prepareDivide(b: Builder, form: Form): void {
  const prng = b.prng;
  if (!prng.chance(0.7)) return;
  // Make the quotient fit most of the time: a high half that is the sign (IDIV) or zero (DIV).
  const signed = form.mnemonic === M.Idiv;
  const sign = signed && (b.regs[RAX] >> 63n) !== 0n ? MASK64 : 0n;
  if (form.kinds.includes(K.r8_or_mem)) {
    b.regs[RAX] = (b.regs[RAX] & ~0xff00n) | (signed && (b.regs[RAX] & 0x80n) !== 0n ? 0xff00n : 0n);
  } else {
    b.regs[RDX] = sign;
  }
}

function prepareWideExchange(b: Builder): void {
  b.fixed.add(RAX);
  b.fixed.add(RDX);
  b.fixed.add(RBX);
  b.fixed.add(RCX);
}

/** Half the time, makes memory equal to RDX:RAX so the exchange succeeds. */
function matchWideExchange(b: Builder, address: bigint, size: 8 | 16): void {
  if (!b.prng.chance(0.5)) return;
  if (size === 8) {
    b.writeScratch64(address, ((b.regs[RDX] & 0xffffffffn) << 32n) | (b.regs[RAX] & 0xffffffffn));
  } else {
    b.writeScratch64(address, b.regs[RAX]);
    b.writeScratch64(address + 8n, b.regs[RDX]);
  }
}

/** Makes the scan source zero (BSF/BSR/LZCNT/TZCNT/POPCNT edge case). */
function zeroSource(b: Builder, sourceInMemory: boolean, sourceRegister: number): void {
  if (sourceInMemory) {
    const offset = Number(b.memoryAddress - SCRATCH_ADDRESS);
    for (let k = 0; k < 8; k++) if (offset + k < SCRATCH_BYTES) b.scratch[offset + k] = 0;
  } else if (sourceRegister >= 0 && sourceRegister !== RSP && !b.fixed.has(sourceRegister)) {
    b.regs[sourceRegister] = 0n;
  }
}

function encode(ins: iced.Instruction, bits: Bits): Uint8Array {
  const encoder = new iced.Encoder(bits);
  try {
    encoder.encode(ins, CODE_ADDRESS);
    return encoder.takeBuffer();
  } finally {
    encoder.free();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Draws a form, spreading cases evenly over families, then over forms within a family. */
export function formPicker(forms: readonly Form[]): (prng: Prng) => Form {
  const byFamily = new Map<Family, Form[]>();
  for (const form of forms) {
    const list = byFamily.get(form.family) ?? [];
    list.push(form);
    byFamily.set(form.family, list);
  }
  const families = [...byFamily.keys()];
  return (prng) => prng.pick(byFamily.get(prng.pick(families))!);
}
