/**
 * Operand values accepted by the assembler: registers (see registers.ts),
 * memory references, immediates, branch targets and label addresses.
 */
import { Label } from './label.ts';
import type { AnyReg, Gpr32, Gpr64, SegReg } from './registers.ts';

/** Immediate value. Numbers must be safe integers; bigints may use the full 64-bit range (signed or unsigned). */
export type Imm = number | bigint;

/** Where a branch goes: a label, or an absolute virtual address. */
export type BranchTarget = Label | bigint | number;

/** Memory operand width in bytes; 0 means "unspecified" (`mem()`, for LEA/LGDT/INVLPG...). */
export type MemSize = 0 | 1 | 2 | 4 | 8 | 10 | 16;

/** Index scale factor. */
export type Scale = 1 | 2 | 4 | 8;

/** Displacement; must fit in a signed 32-bit integer. */
export type Disp = number | bigint;

/** How a memory operand forms its address. */
/** An address register: 64-bit (the default in 64-bit code) or 32-bit (32-bit code, or 0x67 in 64-bit code). */
export type AddressReg = Gpr64 | Gpr32;

export type Address =
  /** `[base + index*scale + disp]` (at least one of base/index present). */
  | { readonly mode: 'base'; readonly base: AddressReg | null; readonly index: AddressReg | null; readonly scale: Scale; readonly disp: bigint }
  /** `[rip + disp]` where the displacement is computed so the operand addresses `target + extra`. */
  | { readonly mode: 'rip'; readonly target: Label | bigint; readonly extra: bigint }
  /** `[address]` with no registers; 64-bit addresses only encode in the `mov al/ax/eax/rax, moffs` forms. */
  | { readonly mode: 'abs'; readonly address: bigint };

/** A memory reference. `S` is the access width in bytes (0 = unspecified). */
export interface Mem<S extends MemSize = MemSize> {
  readonly kind: 'mem';
  readonly size: S;
  readonly addr: Address;
  /** Segment override prefix, or null for the default segment. */
  readonly seg: SegReg | null;
}

/** An immediate whose value is the absolute address of a label (always encoded as imm64). */
export interface LabelAddress {
  readonly kind: 'labelAddr';
  readonly label: Label;
}

/** Anything that can appear as an instruction operand. */
export type Operand = AnyReg | Mem | Imm | Label | LabelAddress;

/** Object form of a memory address, e.g. `qword({ seg: gs, disp: 0x28 })`. */
export interface MemSpec {
  readonly base?: Gpr64 | null;
  readonly index?: Gpr64 | null;
  readonly scale?: Scale;
  readonly disp?: Disp;
  readonly seg?: SegReg | null;
}

/** Builds a memory operand of a fixed width. */
export interface MemBuilder<S extends MemSize> {
  /** `[base + disp]`, e.g. `qword(rsp, 8)` (or `dword(esp, 8)` in 32-bit code). */
  (base: AddressReg | null, disp?: Disp): Mem<S>;
  /** `[base + index*scale + disp]`, e.g. `dword(rdx, rax, 4, 0x4ea91c)`; base and index of one width. */
  (base: AddressReg | null, index: AddressReg | null, scale?: Scale, disp?: Disp): Mem<S>;
  /** Re-size an existing address (e.g. `qword(ripRel(table))`) or build one from a spec object. */
  (address: Mem | MemSpec): Mem<S>;
}

const I32_MIN = -(2n ** 31n);
const I32_MAX = 2n ** 31n - 1n;
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);

/** Converts a number|bigint to bigint, rejecting non-integers. */
export function toBig(v: number | bigint, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new Error(`${what} must be a safe integer or a bigint, got ${v}`);
  return BigInt(v);
}

/** Normalises a 64-bit value given signed or unsigned to its unsigned form. */
export function toU64(v: number | bigint, what: string): bigint {
  const b = toBig(v, what);
  if (b < I64_MIN || b > U64_MAX) throw new Error(`${what} ${fmtHex(b)} does not fit in 64 bits`);
  return BigInt.asUintN(64, b);
}

export function fitsI32(v: bigint): boolean {
  return v >= I32_MIN && v <= I32_MAX;
}

/** `0x1f` / `-0x8` style hex used in all messages. */
export function fmtHex(v: bigint | number): string {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) return String(v);
  const b = typeof v === 'bigint' ? v : BigInt(v);
  return b < 0n ? `-0x${(-b).toString(16)}` : `0x${b.toString(16)}`;
}

function checkDisp(d: Disp): bigint {
  const b = toBig(d, 'displacement');
  if (!fitsI32(b)) throw new Error(`displacement ${fmtHex(b)} is outside the signed 32-bit range; use absolute()/ripRel() for far addresses`);
  return b;
}

function isReg(x: unknown): x is AnyReg {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'reg';
}

function isMemObj(x: unknown): x is Mem {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'mem';
}

function checkAddrReg(r: unknown, role: string): AddressReg | null {
  if (r === null || r === undefined) return null;
  if (!isReg(r) || r.cls !== 'gpr' || (r.size !== 8 && r.size !== 4)) {
    throw new Error(`memory ${role} must be a 64-bit (or, for 32-bit addressing, 32-bit) general-purpose register, got ${isReg(r) ? r.name : String(r)}`);
  }
  return r as AddressReg;
}

function checkScale(s: unknown): Scale {
  if (s !== 1 && s !== 2 && s !== 4 && s !== 8) throw new Error(`memory scale must be 1, 2, 4 or 8, got ${String(s)}`);
  return s;
}

function checkSeg(s: unknown): SegReg | null {
  if (s === null || s === undefined) return null;
  if (!isReg(s) || s.cls !== 'seg') throw new Error(`segment override must be a segment register, got ${String(s)}`);
  return s as SegReg;
}

function fromParts(base: unknown, index: unknown, scale: unknown, disp: Disp | undefined, seg: unknown): { addr: Address; seg: SegReg | null } {
  const b = checkAddrReg(base, 'base');
  const i = checkAddrReg(index, 'index');
  if (b !== null && i !== null && b.size !== i.size) throw new Error(`memory base ${b.name} and index ${i.name} must be the same width`);
  const s = checkScale(scale ?? 1);
  const d = checkDisp(disp ?? 0);
  const sg = checkSeg(seg);
  if (b === null && i === null) return { addr: { mode: 'abs', address: BigInt.asUintN(64, d) }, seg: sg };
  return { addr: { mode: 'base', base: b, index: i, scale: s, disp: d }, seg: sg };
}

function builder<S extends MemSize>(size: S): MemBuilder<S> {
  function build(a?: unknown, b?: unknown, c?: unknown, d?: unknown): Mem<S> {
    if (isMemObj(a)) {
      if (b !== undefined) throw new Error('extra arguments after a memory operand');
      return Object.freeze({ kind: 'mem', size, addr: a.addr, seg: a.seg });
    }
    if (a !== null && typeof a === 'object' && !isReg(a)) {
      const spec = a as MemSpec;
      const p = fromParts(spec.base, spec.index, spec.scale, spec.disp, spec.seg);
      return Object.freeze({ kind: 'mem', size, ...p });
    }
    // (base, disp) vs (base, index, scale, disp): the second argument's type decides.
    const p = typeof b === 'number' || typeof b === 'bigint'
      ? fromParts(a, null, 1, b, null)
      : fromParts(a, b, c, d as Disp | undefined, null);
    return Object.freeze({ kind: 'mem', size, ...p });
  }
  return build as MemBuilder<S>;
}

/** Memory operand of unspecified width: for LEA, LGDT/LIDT, INVLPG, CMPXCHG16B, or wherever the other operands fix the size. */
export const mem: MemBuilder<0> = builder(0);
export const byte: MemBuilder<1> = builder(1);
export const word: MemBuilder<2> = builder(2);
export const dword: MemBuilder<4> = builder(4);
export const qword: MemBuilder<8> = builder(8);
/** 10-byte operand (e.g. the m16&64 of LGDT, or 80-bit x87). */
export const tword: MemBuilder<10> = builder(10);
export const xmmword: MemBuilder<16> = builder(16);

/**
 * `[rip + disp32]` addressing `target + extra`. Size unspecified: wrap in
 * `qword(...)` etc. where the instruction needs it.
 */
export function ripRel(target: Label | bigint | number, extra: Disp = 0): Mem<0> {
  const t = target instanceof Label ? target : toU64(target, 'rip-relative target');
  const addr: Address = { mode: 'rip', target: t, extra: toBig(extra, 'rip-relative offset') };
  return Object.freeze({ kind: 'mem', size: 0, addr, seg: null });
}

/** `[address]` without registers. Addresses outside ±2 GiB only encode as `mov rax, [moffs64]`-style. */
export function absolute(address: bigint | number, seg: SegReg | null = null): Mem<0> {
  const addr: Address = { mode: 'abs', address: toU64(address, 'absolute address') };
  return Object.freeze({ kind: 'mem', size: 0, addr, seg: checkSeg(seg) });
}

/** Same memory operand with a segment override (typically fs/gs for per-CPU data). */
export function withSeg<S extends MemSize>(seg: SegReg, m: Mem<S>): Mem<S> {
  return Object.freeze({ ...m, seg: checkSeg(seg) });
}

/** Immediate operand holding a label's absolute address: `mov(rax, labelAddr(handler))`. */
export function labelAddr(label: Label): LabelAddress {
  return Object.freeze({ kind: 'labelAddr', label });
}

export function isRegOperand(op: Operand): op is AnyReg {
  return isReg(op);
}

export function isMemOperand(op: Operand): op is Mem {
  return isMemObj(op);
}

export function isLabelAddress(op: Operand): op is LabelAddress {
  return typeof op === 'object' && op !== null && !(op instanceof Label) && (op as { kind?: unknown }).kind === 'labelAddr';
}

const SIZE_WORD: Record<MemSize, string> = { 0: '', 1: 'byte ptr ', 2: 'word ptr ', 4: 'dword ptr ', 8: 'qword ptr ', 10: 'tbyte ptr ', 16: 'xmmword ptr ' };

/** Intel-syntax text of a memory operand, for messages and listings. */
export function formatMem(m: Mem): string {
  const seg = m.seg ? `${m.seg.name}:` : '';
  const a = m.addr;
  let inner: string;
  if (a.mode === 'abs') inner = fmtHex(a.address);
  else if (a.mode === 'rip') {
    const t = a.target instanceof Label ? a.target.name : fmtHex(a.target);
    inner = `rip+${t}${a.extra === 0n ? '' : a.extra < 0n ? fmtHex(a.extra) : '+' + fmtHex(a.extra)}`;
  } else {
    const parts: string[] = [];
    if (a.base) parts.push(a.base.name);
    if (a.index) parts.push(a.scale === 1 ? a.index.name : `${a.index.name}*${a.scale}`);
    let s = parts.join('+');
    if (a.disp !== 0n) s += a.disp < 0n ? fmtHex(a.disp) : `+${fmtHex(a.disp)}`;
    inner = s;
  }
  return `${SIZE_WORD[m.size]}${seg}[${inner}]`;
}

/** Short text of any operand, for messages. */
export function formatOperand(op: Operand): string {
  if (op instanceof Label) return op.name;
  if (typeof op === 'number' || typeof op === 'bigint') return fmtHex(op);
  if (isLabelAddress(op)) return `offset ${op.label.name}`;
  if (isMemObj(op)) return formatMem(op);
  return op.name;
}

/** Operand class as shown in "no encoding" errors, e.g. `r64`, `m32`, `m?`, `imm`, `label`. */
export function operandKindName(op: Operand): string {
  if (op instanceof Label) return 'label';
  if (typeof op === 'number' || typeof op === 'bigint') return 'imm';
  if (isLabelAddress(op)) return 'imm64(label)';
  if (isMemObj(op)) return op.size === 0 ? 'm?' : `m${op.size * 8}`;
  switch (op.cls) {
    case 'gpr': return `r${op.size * 8}`;
    case 'seg': return 'sreg';
    default: return op.cls;
  }
}
