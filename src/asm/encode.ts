/**
 * Operand matching and single-instruction encoding on top of the Code index.
 *
 * Selection happens once, when the instruction is added: every form whose
 * operand kinds accept the operands is encoded with placeholder targets and
 * the shortest wins. Target-dependent parts (rel8/rel32, rip disp32, imm64)
 * have a fixed width per form, so the size chosen here is final and
 * `buildInstruction` can be re-run later with the real addresses.
 */
import iced from 'iced-x86';
import type { Encoder, Instruction, MemoryOperand, OpCodeOperandKind, Register } from 'iced-x86';
import { formsOf, type Bitness, type CodeInfo } from './code-table.ts';
import { Label } from './label.ts';
import {
  fitsI32, fmtHex, formatOperand, isLabelAddress, isMemOperand, isRegOperand, operandKindName, toBig, toU64,
  type Mem, type Operand,
} from './operands.ts';
import type { AnyReg } from './registers.ts';
import type { RepKind } from './string-ops.ts';

/** Per-instruction prefixes/options set by `lock()`, `rep()`..., `short()`. */
export interface Modifiers {
  readonly lock: boolean;
  readonly rep: RepKind | null;
  /** Use the rel8 branch form. */
  readonly short: boolean;
}

export const NO_MODIFIERS: Modifiers = Object.freeze({ lock: false, rep: null, short: false });

/** Maps a label (or passes through an absolute address) to its final address. */
export type TargetResolver = (target: Label | bigint) => bigint;

/** The chosen form and its encoded length. */
export interface Selection {
  readonly info: CodeInfo;
  readonly size: number;
}

const K = iced.OpCodeOperandKind;
const R = iced.Register;

const GPR_KIND_SIZE: ReadonlyMap<OpCodeOperandKind, number> = new Map<OpCodeOperandKind, number>([
  [K.r8_reg, 1], [K.r8_opcode, 1], [K.r8_or_mem, 1],
  [K.r16_reg, 2], [K.r16_rm, 2], [K.r16_opcode, 2], [K.r16_or_mem, 2], [K.r16_reg_mem, 2],
  [K.r32_reg, 4], [K.r32_rm, 4], [K.r32_opcode, 4], [K.r32_or_mem, 4], [K.r32_or_mem_mpx, 4], [K.r32_reg_mem, 4],
  [K.r64_reg, 8], [K.r64_rm, 8], [K.r64_opcode, 8], [K.r64_or_mem, 8], [K.r64_or_mem_mpx, 8], [K.r64_reg_mem, 8],
]);

const FIXED_REG: ReadonlyMap<OpCodeOperandKind, Register> = new Map<OpCodeOperandKind, Register>([
  [K.al, R.AL], [K.cl, R.CL], [K.ax, R.AX], [K.dx, R.DX], [K.eax, R.EAX], [K.rax, R.RAX],
  [K.es, R.ES], [K.cs, R.CS], [K.ss, R.SS], [K.ds, R.DS], [K.fs, R.FS], [K.gs, R.GS],
]);

const MEM_KINDS: ReadonlySet<OpCodeOperandKind> = new Set<OpCodeOperandKind>([
  K.mem, K.mem_mpx, K.mem_mib, K.sibmem,
  K.r8_or_mem, K.r16_or_mem, K.r32_or_mem, K.r32_or_mem_mpx, K.r64_or_mem, K.r64_or_mem_mpx,
  K.xmm_or_mem, K.mm_or_mem, K.bnd_or_mem_mpx,
]);

const XMM_KINDS: ReadonlySet<OpCodeOperandKind> = new Set<OpCodeOperandKind>([K.xmm_reg, K.xmm_rm, K.xmm_or_mem]);

/** Branch operand kinds (of 64-bit code, and of 32-bit code), with their displacement width. */
const BRANCH_WIDTH: ReadonlyMap<OpCodeOperandKind, 1 | 4> = new Map<OpCodeOperandKind, 1 | 4>([
  [K.br64_1, 1], [K.br64_4, 4], [K.xbegin_4, 4], [K.br32_1, 1], [K.br32_4, 4],
]);

const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);

function inRange(v: bigint, lo: bigint, hi: bigint): boolean {
  return v >= lo && v <= hi;
}

function fitsI8(v: bigint): boolean {
  return v >= -128n && v <= 127n;
}

/** Whether immediate `v` is representable by an operand of kind `k`; values may be given signed or unsigned. */
function immFits(k: OpCodeOperandKind, v: bigint): boolean {
  switch (k) {
    case K.imm8: return inRange(v, -128n, 255n);
    case K.imm8_const_1: return v === 1n;
    case K.imm8sex16: return inRange(v, -(2n ** 15n), 2n ** 16n - 1n) && fitsI8(BigInt.asIntN(16, v));
    case K.imm8sex32: return inRange(v, -(2n ** 31n), 2n ** 32n - 1n) && fitsI8(BigInt.asIntN(32, v));
    case K.imm8sex64: return inRange(v, I64_MIN, U64_MAX) && fitsI8(BigInt.asIntN(64, v));
    case K.imm16: return inRange(v, -(2n ** 15n), 2n ** 16n - 1n);
    case K.imm32: return inRange(v, -(2n ** 31n), 2n ** 32n - 1n);
    case K.imm32sex64: return inRange(v, I64_MIN, U64_MAX) && fitsI32(BigInt.asIntN(64, v));
    case K.imm64: return inRange(v, I64_MIN, U64_MAX);
    default: return false;
  }
}

/** The value to hand to iced's `create*I32` factories (which range-check signed/unsigned themselves). */
function immForIced(k: OpCodeOperandKind, v: bigint): number {
  switch (k) {
    case K.imm8sex16: return Number(BigInt.asIntN(16, v));
    case K.imm8sex32: case K.imm32: return Number(BigInt.asIntN(32, v));
    case K.imm8sex64: case K.imm32sex64: return Number(BigInt.asIntN(64, v));
    default: return Number(v);
  }
}

function matchReg(r: AnyReg, k: OpCodeOperandKind): boolean {
  const fixed = FIXED_REG.get(k);
  if (fixed !== undefined) return r.reg === fixed;
  const gsize = GPR_KIND_SIZE.get(k);
  if (gsize !== undefined) return r.cls === 'gpr' && r.size === gsize;
  if (XMM_KINDS.has(k)) return r.cls === 'xmm';
  switch (k) {
    case K.seg_reg: return r.cls === 'seg';
    case K.cr_reg: return r.cls === 'cr';
    case K.dr_reg: return r.cls === 'dr';
    default: return false;
  }
}

function matchMem(m: Mem, k: OpCodeOperandKind, info: CodeInfo): boolean {
  if (k === K.mem_offs) return m.addr.mode === 'abs';
  if (!MEM_KINDS.has(k)) return false;
  // ModRM can only hold a sign-extended disp32; iced would also accept u32 values, which the CPU would sign-extend.
  if (m.addr.mode === 'abs' && !fitsI32(BigInt.asIntN(64, m.addr.address))) return false;
  return m.size === 0 || info.memSize === 0 || m.size === info.memSize;
}

function matchOperand(op: Operand, k: OpCodeOperandKind, info: CodeInfo): boolean {
  if (op instanceof Label) return BRANCH_WIDTH.has(k);
  if (typeof op === 'number' || typeof op === 'bigint') {
    if (typeof op === 'number' && !Number.isSafeInteger(op)) return false;
    const v = BigInt(op);
    if (BRANCH_WIDTH.has(k)) return inRange(v, I64_MIN, U64_MAX);
    return immFits(k, v);
  }
  if (isLabelAddress(op)) return k === K.imm64;
  if (isMemOperand(op)) return matchMem(op, k, info);
  if (isRegOperand(op)) return matchReg(op, k);
  return false;
}

/** `xchg eax, eax` in the 90+r form is NOP (no zero-extension); force the ModRM form for accumulator-with-itself. */
function excluded(info: CodeInfo, ops: readonly Operand[]): boolean {
  const [k0, k1] = info.kinds;
  if (info.kinds.length !== 2 || (k0 !== K.r16_opcode && k0 !== K.r32_opcode && k0 !== K.r64_opcode)) return false;
  const fixed = FIXED_REG.get(k1);
  const op0 = ops[0];
  return fixed !== undefined && isRegOperand(op0) && op0.reg === fixed;
}

function matches(info: CodeInfo, ops: readonly Operand[]): boolean {
  return info.kinds.length === ops.length && info.kinds.every((k, i) => matchOperand(ops[i], k, info)) && !excluded(info, ops);
}

/** Index of the branch operand and its width, if the form is a relative branch. */
export function branchOperand(info: CodeInfo): { index: number; width: 1 | 4 } | null {
  for (let i = 0; i < info.kinds.length; i++) {
    const w = BRANCH_WIDTH.get(info.kinds[i]);
    if (w !== undefined) return { index: i, width: w };
  }
  return null;
}

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `add eax, rbx` style text of an instruction request. */
export function describeInsn(mnemonic: string, ops: readonly Operand[], mods: Modifiers = NO_MODIFIERS): string {
  const pre = `${mods.lock ? 'lock ' : ''}${mods.rep ? mods.rep + ' ' : ''}`;
  const short = mods.short ? ' short' : '';
  return `${pre}${mnemonic}${short}${ops.length ? ' ' + ops.map(formatOperand).join(', ') : ''}`;
}

function noMatchError(mnemonic: string, ops: readonly Operand[], forms: readonly CodeInfo[]): Error {
  const given = ops.length ? ops.map((o) => `${operandKindName(o)} ${formatOperand(o)}`).join(', ') : 'no operands';
  const sameArity = forms.filter((f) => f.kinds.length === ops.length);
  let hint: string;
  if (sameArity.length === 0) {
    const arities = [...new Set(forms.map((f) => f.kinds.length))].sort();
    hint = `'${mnemonic}' takes ${arities.join(' or ')} operand(s)`;
  } else {
    const scored = sameArity
      .map((f) => ({ f, score: f.kinds.filter((k, i) => matchOperand(ops[i], k, f)).length }))
      .sort((a, b) => b.score - a.score);
    const sigs = [...new Set(scored.map((s) => s.f.signature))].slice(0, 6);
    hint = `closest forms: ${sigs.join(' | ')}`;
    const imm = ops.find((o) => typeof o === 'number' || typeof o === 'bigint');
    if (imm !== undefined) hint += ` (immediates are range-checked against the operand size; ${formatOperand(imm)} may not fit)`;
  }
  return new Error(`no encoding of '${mnemonic}' for (${given}); ${hint}`);
}

/**
 * Picks the shortest encodable form of `mnemonic` for `ops`. Throws when no
 * form matches, the choice is ambiguous (unsized memory), or a prefix is not
 * allowed. `ip` only matters for iced's validation; targets use placeholders.
 */
export function selectEncoding(mnemonic: string, ops: readonly Operand[], mods: Modifiers, ip: bigint, bitness: Bitness = 64): Selection {
  const forms = formsOf(mnemonic, bitness);
  const what = describeInsn(mnemonic, ops, mods);
  if (forms.length === 0) throw new Error(`unknown mnemonic '${mnemonic}' (no ${bitness}-bit legacy-encoded form in iced-x86)`);
  let cands = forms.filter((f) => matches(f, ops));
  if (cands.length === 0) throw noMatchError(mnemonic, ops, forms);

  const isShort = (f: CodeInfo): boolean => branchOperand(f)?.width === 1;
  const isNear = (f: CodeInfo): boolean => branchOperand(f)?.width === 4;
  if (mods.short) {
    cands = cands.filter(isShort);
    if (cands.length === 0) throw new Error(`'${what}': short() needs a rel8 branch form, and '${mnemonic}' has none for these operands`);
  } else if (cands.some(isNear)) {
    cands = cands.filter((f) => !isShort(f));
  }

  // Immediate-only or operand-less forms (push imm, ret imm16, enter, leave) exist with a 66 prefix too,
  // which can even be shorter (push imm16); only use them when a 16-bit operand asks for it.
  const explicit16 = ops.some((o) => (isRegOperand(o) && o.cls === 'gpr' && o.size === 2) || (isMemOperand(o) && o.size === 2));
  if (!explicit16 && cands.some((f) => f.operandSize !== 16)) cands = cands.filter((f) => f.operandSize !== 16);

  if (ops.some((o) => isMemOperand(o) && o.size === 0)) {
    const sizes = new Set(cands.map((f) => f.memSize).filter((s) => s !== 0));
    if (sizes.size > 1) {
      const list = [...sizes].sort((a, b) => a - b).map((s) => `${s * 8}-bit`).join(', ');
      throw new Error(`'${what}': memory operand size is ambiguous (${list}); use byte()/word()/dword()/qword()`);
    }
  }

  if (mods.lock) {
    if (!ops.some(isMemOperand)) throw new Error(`'${what}': lock() needs a memory destination`);
    cands = cands.filter((f) => f.canLock);
    if (cands.length === 0) throw new Error(`'${what}': lock prefix is not allowed on '${mnemonic}'`);
  }
  if (mods.rep) {
    const rep = mods.rep;
    cands = cands.filter((f) => (rep === 'repne' ? f.canRepne : f.canRep));
    if (cands.length === 0) throw new Error(`'${what}': ${rep} prefix is not allowed on '${mnemonic}'`);
  }

  const placeholder: TargetResolver = () => ip;
  let best: Selection | null = null;
  const failures: string[] = [];
  const encoder = new iced.Encoder(bitness);
  try {
    for (const f of cands) {
      let instr: Instruction | null = null;
      try {
        instr = buildInstruction(f, ops, mods, placeholder);
        const len = encoder.encode(instr, ip);
        encoder.takeBuffer();
        if (best === null || len < best.size) best = { info: f, size: len };
      } catch (e) {
        failures.push(`${f.signature}: ${errMsg(e)}`);
      } finally {
        instr?.free();
      }
    }
  } finally {
    encoder.free();
  }
  if (best === null) throw new Error(`cannot encode '${what}': ${failures.join('; ')}`);
  return best;
}

type Slot =
  | { readonly t: 'r'; readonly reg: Register }
  | { readonly t: 'm'; readonly mem: Mem }
  | { readonly t: 'i'; readonly value: number }
  | { readonly t: 'q'; readonly value: bigint }
  | { readonly t: 'b'; readonly target: bigint };

function toSlot(op: Operand, k: OpCodeOperandKind, resolve: TargetResolver): Slot {
  if (op instanceof Label) return { t: 'b', target: resolve(op) };
  if (typeof op === 'number' || typeof op === 'bigint') {
    if (BRANCH_WIDTH.has(k)) return { t: 'b', target: resolve(toU64(op, 'branch target')) };
    const v = toBig(op, 'immediate');
    return k === K.imm64 ? { t: 'q', value: BigInt.asUintN(64, v) } : { t: 'i', value: immForIced(k, v) };
  }
  if (isLabelAddress(op)) return { t: 'q', value: resolve(op.label) };
  if (isMemOperand(op)) return { t: 'm', mem: op };
  return { t: 'r', reg: op.reg };
}

function toMemoryOperand(m: Mem, resolve: TargetResolver): MemoryOperand {
  const seg = m.seg?.reg ?? R.None;
  const a = m.addr;
  switch (a.mode) {
    case 'base':
      return new iced.MemoryOperand(a.base?.reg ?? R.None, a.index?.reg ?? R.None, a.scale, a.disp, a.disp === 0n ? 0 : 1, false, seg);
    case 'rip': {
      // iced wants the absolute target in the displacement of a RIP-based operand.
      const target = BigInt.asUintN(64, resolve(a.target) + a.extra);
      return new iced.MemoryOperand(R.RIP, R.None, 1, target, 8, false, seg);
    }
    case 'abs':
      // displSize 8 lets the moffs forms use a full 64-bit address; ModRM forms still emit disp32.
      return new iced.MemoryOperand(R.None, R.None, 1, a.address, 8, false, seg);
  }
}

/**
 * Calls the iced factory for the operand shape. iced factories take
 * ownership of the MemoryOperand, so `takeMem` is called last, after all
 * other arguments are computed, and marks it as consumed.
 */
function create(info: CodeInfo, s: readonly Slot[], takeMem: () => MemoryOperand): Instruction {
  const I = iced.Instruction;
  const c = info.code;
  const reg = (i: number): Register => { const x = s[i]; if (x.t !== 'r') throw new Error('internal: slot'); return x.reg; };
  const imm = (i: number): number => { const x = s[i]; if (x.t !== 'i') throw new Error('internal: slot'); return x.value; };
  const shape = s.map((x) => x.t).join('');
  switch (shape) {
    case '': return I.create(c);
    case 'r': return I.createReg(c, reg(0));
    case 'm': return I.createMem(c, takeMem());
    case 'i': return I.createI32(c, imm(0));
    case 'b': {
      const x = s[0];
      if (x.t !== 'b') throw new Error('internal: slot');
      return info.kinds[0] === K.xbegin_4 ? I.createXbegin(64, x.target) : I.createBranch(c, x.target);
    }
    case 'rr': return I.createRegReg(c, reg(0), reg(1));
    case 'ri': return I.createRegI32(c, reg(0), imm(1));
    case 'rq': { const x = s[1]; if (x.t !== 'q') throw new Error('internal: slot'); return I.createRegU64(c, reg(0), x.value); }
    case 'rm': { const r0 = reg(0); return I.createRegMem(c, r0, takeMem()); }
    case 'mr': { const r1 = reg(1); return I.createMemReg(c, takeMem(), r1); }
    case 'mi': { const i1 = imm(1); return I.createMemI32(c, takeMem(), i1); }
    case 'ii': return I.createI32I32(c, imm(0), imm(1));
    case 'ir': return I.createI32Reg(c, imm(0), reg(1));
    case 'rrr': return I.createRegRegReg(c, reg(0), reg(1), reg(2));
    case 'rri': return I.createRegRegI32(c, reg(0), reg(1), imm(2));
    case 'rmi': { const r0 = reg(0), i2 = imm(2); return I.createRegMemI32(c, r0, takeMem(), i2); }
    case 'rmr': { const r0 = reg(0), r2 = reg(2); return I.createRegMemReg(c, r0, takeMem(), r2); }
    case 'rrm': { const r0 = reg(0), r1 = reg(1); return I.createRegRegMem(c, r0, r1, takeMem()); }
    case 'mrr': { const r1 = reg(1), r2 = reg(2); return I.createMemRegReg(c, takeMem(), r1, r2); }
    case 'mri': { const r1 = reg(1), i2 = imm(2); return I.createMemRegI32(c, takeMem(), r1, i2); }
    case 'rii': return I.createRegI32I32(c, reg(0), imm(1), imm(2));
    default: throw new Error(`operand combination '${shape}' of ${info.name} is not supported by the assembler`);
  }
}

/** Applies lock/rep prefixes to a freshly created instruction. */
export function applyPrefixes(instr: Instruction, mods: Modifiers): void {
  if (mods.lock) instr.hasLockPrefix = true;
  if (mods.rep === 'rep') instr.hasRepPrefix = true;
  else if (mods.rep === 'repe') instr.hasRepePrefix = true;
  else if (mods.rep === 'repne') instr.hasRepnePrefix = true;
}

/** Creates the iced instruction for a selected form; the caller owns (and must free) the result. */
export function buildInstruction(info: CodeInfo, ops: readonly Operand[], mods: Modifiers, resolve: TargetResolver): Instruction {
  const slots = ops.map((op, i) => toSlot(op, info.kinds[i], resolve));
  const memSlot = slots.find((x) => x.t === 'm');
  const mo = memSlot && memSlot.t === 'm' ? toMemoryOperand(memSlot.mem, resolve) : null;
  let consumed = false;
  const takeMem = (): MemoryOperand => {
    if (!mo) throw new Error('internal: no memory operand');
    consumed = true;
    return mo;
  };
  let instr: Instruction;
  try {
    instr = create(info, slots, takeMem);
  } finally {
    if (mo && !consumed) mo.free();
  }
  try {
    applyPrefixes(instr, mods);
  } catch (e) {
    instr.free();
    throw e;
  }
  return instr;
}

/** Encodes one instruction at `ip`, wrapping iced's error with `what`. */
export function encodeAt(encoder: Encoder, instr: Instruction, ip: bigint, what: string): Uint8Array {
  try {
    encoder.encode(instr, ip);
    return encoder.takeBuffer();
  } catch (e) {
    encoder.takeBuffer();
    throw new Error(`cannot encode '${what}' at ${fmtHex(ip)}: ${errMsg(e)}`);
  }
}
