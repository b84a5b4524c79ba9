/**
 * The Assembler: collects instructions, data and labels, then lays them out
 * at a fixed base address.
 *
 * Every instruction's form (and therefore size) is chosen when it is added,
 * with placeholder targets; branches use fixed-width forms (rel32 unless
 * short is asked for). `assemble()` then runs pass 1 (addresses, label
 * values) and pass 2 (encode with real targets, asserting each size matches).
 * Instructions are encoded one by one with iced's Encoder rather than
 * BlockEncoder, which cannot report where labels ended up.
 */
import iced from 'iced-x86';
import type { Encoder, Instruction } from 'iced-x86';
import { canonicalMnemonic, type Bitness } from './code-table.ts';
import { disassemble, formatListingLine, hexBytes } from './disasm.ts';
import {
  branchOperand, buildInstruction, describeInsn, encodeAt, selectEncoding,
  type Modifiers, type TargetResolver,
} from './encode.ts';
import { Label } from './label.ts';
import { nopBytes } from './nops.ts';
import {
  fmtHex, isLabelAddress, isMemOperand, isRegOperand, toBig, toU64,
  type BranchTarget, type Imm, type Mem, type Operand,
} from './operands.ts';
import type { AnyReg, Gpr, Gpr16, Gpr32, Gpr64, Gpr8, SegReg } from './registers.ts';
import { buildStringOp, checkStringRep, isStringOp, type RepKind } from './string-ops.ts';

/** Result of `Assembler.assemble()`. */
export interface AssembledCode {
  /** Address of `bytes[0]`. */
  readonly base: bigint;
  readonly bytes: Uint8Array;
  /** Addresses of all bound, named labels. */
  readonly labels: ReadonlyMap<string, bigint>;
  /** Address of a bound label (object or name). */
  addressOf(label: Label | string): bigint;
  /** Human-readable listing: address, bytes, disassembly/data, label lines. */
  listing(): string;
}

/** Options for jmp/jcc/call. */
export interface BranchOptions {
  /** Use the 2-byte rel8 form; assembling fails if the target is out of range. */
  readonly short?: boolean;
}

/** Values accepted by db/dw/dd/dq: scalars, arrays, byte arrays (db only uses them as-is), strings (db: UTF-8). */
export type DataValue = Imm | readonly Imm[] | Uint8Array | string;

/** Register or memory. */
export type RM = Gpr | Mem;
/** Register, memory or immediate. */
export type RMI = Gpr | Mem | Imm;

/** Mnemonic accepted by `emit`: any iced mnemonic name, case-insensitive, plus aliases such as `jz`. */
export type MnemonicName = keyof typeof iced.Mnemonic | Lowercase<keyof typeof iced.Mnemonic> | (string & {});

type InsnItem = {
  readonly kind: 'insn';
  readonly what: string;
  readonly size: number;
  readonly build: (resolve: TargetResolver) => Instruction;
  readonly branch: { readonly target: Label | bigint; readonly width: 1 | 4; readonly rel8Only: boolean } | null;
};
type Item =
  | InsnItem
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array; readonly code: boolean; readonly text: string }
  | { readonly kind: 'align'; readonly n: number; readonly fill: number }
  | { readonly kind: 'bind'; readonly label: Label }
  | { readonly kind: 'labelData'; readonly width: 4 | 8; readonly label: Label; readonly base: Label | null; readonly text: string };

/** Where pass 2 put each item, for listings. */
type Placed = { readonly addr: bigint; readonly offset: number; readonly length: number; readonly item: Item };

const CONDITIONS = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;
const CONDITION_ALIASES = ['z', 'nz', 'c', 'nc', 'nae', 'nb', 'na', 'nbe', 'pe', 'po', 'nge', 'nl', 'ng', 'nle'] as const;
/** Condition-code suffix, e.g. `ne` in `jne`/`cmovne`/`setne`. */
export type Condition = (typeof CONDITIONS)[number] | (typeof CONDITION_ALIASES)[number];

const U64_LIMIT = 2n ** 64n;

function bytesOfValue(v: Imm, width: 1 | 2 | 4 | 8, what: string): Uint8Array {
  const b = toBig(v, what);
  const bits = BigInt(width * 8);
  if (b < -(1n << (bits - 1n)) || b >= 1n << bits) throw new Error(`${what} value ${fmtHex(b)} does not fit in ${width * 8} bits`);
  const out = new Uint8Array(width);
  let u = BigInt.asUintN(width * 8, b);
  for (let i = 0; i < width; i++) {
    out[i] = Number(u & 0xffn);
    u >>= 8n;
  }
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export class Assembler {
  /** Address the first emitted byte will have. */
  readonly base: bigint;
  private readonly items: Item[] = [];
  private readonly allLabels: Label[] = [];
  private readonly names = new Set<string>();
  private readonly bound = new Set<number>();
  /** Current address; exact because every item's size is known when it is added. */
  private cursor: bigint;
  private mods: { lock: boolean; rep: RepKind | null; short: boolean } = { lock: false, rep: null, short: false };

  /** 64-bit code (the default) or 32-bit protected-mode code. */
  readonly bitness: Bitness;

  constructor(base: bigint = 0n, options: { readonly bitness?: Bitness } = {}) {
    const bitness = options.bitness ?? 64;
    if (bitness !== 32 && bitness !== 64) throw new Error(`assembler bitness must be 32 or 64, got ${String(bitness)}`);
    const limit = bitness === 64 ? U64_LIMIT : 1n << 32n;
    if (typeof base !== 'bigint' || base < 0n || base >= limit) throw new Error(`assembler base must be a bigint in 0..2^${bitness}-1, got ${String(base)}`);
    this.bitness = bitness;
    this.base = base;
    this.cursor = base;
  }

  // ---- labels and layout -------------------------------------------------

  /** A new, unbound label. Names must be unique within this assembler. */
  newLabel(name?: string): Label {
    const id = this.allLabels.length;
    if (name !== undefined) {
      if (name === '' || this.names.has(name)) throw new Error(name === '' ? 'label name must not be empty' : `duplicate label name '${name}'`);
      this.names.add(name);
    }
    const label = new Label(this, id, name ?? `.L${id}`, name === undefined);
    this.allLabels.push(label);
    return label;
  }

  /** Binds `label` to the current address. */
  bind(label: Label): this {
    this.checkNoPending('bind');
    this.checkOwn(label);
    if (this.bound.has(label.id)) throw new Error(`label '${label.name}' is bound twice`);
    this.bound.add(label.id);
    this.items.push({ kind: 'bind', label });
    return this;
  }

  /** Shorthand for `bind(newLabel(name))`. */
  label(name?: string): Label {
    const l = this.newLabel(name);
    this.bind(l);
    return l;
  }

  /** Current address (usable as an absolute branch target or in data). */
  here(): bigint {
    return this.cursor;
  }

  /** Number of bytes emitted so far. */
  get offset(): number {
    return Number(this.cursor - this.base);
  }

  /** Pads with `fill` until the address is a multiple of `n` (a power of two). */
  align(n: number, fill = 0x90): this {
    this.checkNoPending('align');
    if (!Number.isInteger(n) || n < 1 || (n & (n - 1)) !== 0) throw new Error(`align(${n}): alignment must be a power of two`);
    if (!Number.isInteger(fill) || fill < 0 || fill > 0xff) throw new Error(`align fill must be a byte, got ${fill}`);
    this.items.push({ kind: 'align', n, fill });
    this.cursor += this.padding(this.cursor, n);
    return this;
  }

  // ---- data ---------------------------------------------------------------

  /** Bytes; accepts numbers in -128..255, arrays, Uint8Array and strings (UTF-8). */
  db(...values: DataValue[]): this {
    return this.data(1, 'db', values);
  }

  dw(...values: DataValue[]): this {
    return this.data(2, 'dw', values);
  }

  dd(...values: DataValue[]): this {
    return this.data(4, 'dd', values);
  }

  dq(...values: DataValue[]): this {
    return this.data(8, 'dq', values);
  }

  /** 64-bit absolute address of `label`. */
  dqLabel(label: Label): this {
    return this.labelData(8, label, null, `dq ${label.name}`);
  }

  /** Low 32 bits of the absolute address of `label`. */
  ddLabel(label: Label): this {
    return this.labelData(4, label, null, `dd ${label.name}`);
  }

  /** Signed 32-bit `address(label) - address(base)`, as in compiler-generated jump tables. */
  ddLabelDelta(label: Label, base: Label): this {
    this.checkOwn(base);
    return this.labelData(4, label, base, `dd ${label.name}-${base.name}`);
  }

  /** Hand-written bytes, listed as code. */
  raw(bytes: Uint8Array | readonly number[]): this {
    this.checkNoPending('raw');
    const b = bytes instanceof Uint8Array ? Uint8Array.from(bytes) : concat(bytes.map((v) => bytesOfValue(v, 1, 'raw byte')));
    return this.pushBytes(b, true, '');
  }

  // ---- prefixes -----------------------------------------------------------

  /** LOCK prefix on the next instruction. */
  lock(): this {
    this.mods.lock = true;
    return this;
  }

  /** REP (F3) prefix on the next instruction. */
  rep(): this {
    return this.setRep('rep');
  }

  /** REPE/REPZ (F3) prefix on the next instruction. */
  repe(): this {
    return this.setRep('repe');
  }

  /** REPNE/REPNZ (F2) prefix on the next instruction. */
  repne(): this {
    return this.setRep('repne');
  }

  /** Use the rel8 form for the next branch. */
  short(): this {
    this.mods.short = true;
    return this;
  }

  // ---- generic ------------------------------------------------------------

  /**
   * Any 64-bit legacy-encoded instruction by mnemonic, e.g.
   * `emit('cmpxchg', qword(rdi), rcx)`. The shortest matching form is used.
   */
  emit(mnemonic: MnemonicName, ...operands: Operand[]): this {
    const mods: Modifiers = { ...this.mods };
    this.mods = { lock: false, rep: null, short: false };
    const m = canonicalMnemonic(mnemonic);
    for (const op of operands) {
      if (typeof op === 'number' && !Number.isSafeInteger(op)) throw new Error(`'${m}': operand ${op} must be a safe integer or a bigint`);
      this.checkOperandLabels(op);
    }

    if (operands.length === 0 && isStringOp(m)) {
      if (mods.lock || mods.short) throw new Error(`'${describeInsn(m, [], mods)}': lock()/short() do not apply to string instructions`);
      checkStringRep(m, mods.rep);
      const rep = mods.rep;
      const what = describeInsn(m, [], mods);
      return this.pushInsn(what, () => buildStringOp(m, rep), null);
    }

    let ops = [...operands];
    let sel = selectEncoding(m, ops, mods, this.cursor, this.bitness);
    if (m === 'xchg' && ops.length === 2 && ops.every(isRegOperand)) {
      // xchg is symmetric; the short 90+r form needs the accumulator second.
      const swapped = [ops[1], ops[0]];
      const alt = selectEncoding(m, swapped, mods, this.cursor, this.bitness);
      if (alt.size < sel.size) {
        sel = alt;
        ops = swapped;
      }
    }
    const what = describeInsn(m, ops, mods);
    const br = branchOperand(sel.info);
    let branch: InsnItem['branch'] = null;
    if (br) {
      const t = ops[br.index];
      const target = t instanceof Label ? t : toU64(t as Imm, 'branch target');
      // rel8-only instructions (loop, jrcxz) get a different hint when out of range.
      const rel8Only = br.width === 1 && !mods.short;
      branch = { target, width: br.width, rel8Only };
    }
    const item: InsnItem = { kind: 'insn', what, size: sel.size, build: (resolve) => buildInstruction(sel.info, ops, mods, resolve), branch };
    this.items.push(item);
    this.cursor += BigInt(sel.size);
    return this;
  }

  // ---- output -------------------------------------------------------------

  /** Lays out and encodes everything added so far. May be called repeatedly. */
  assemble(): AssembledCode {
    this.checkNoPending('assemble');
    // Pass 1: addresses.
    const addrs = new Map<number, bigint>();
    const itemAddr: bigint[] = [];
    let addr = this.base;
    for (const item of this.items) {
      itemAddr.push(addr);
      if (item.kind === 'bind') addrs.set(item.label.id, addr);
      addr += BigInt(this.sizeAt(item, addr));
    }
    if (addr > (this.bitness === 64 ? U64_LIMIT : 1n << 32n)) throw new Error(`image at ${fmtHex(this.base)} runs past the end of the ${this.bitness}-bit address space`);
    const total = Number(addr - this.base);

    const labelAddr = (l: Label, user: string): bigint => {
      this.checkOwn(l);
      const a = addrs.get(l.id);
      if (a === undefined) throw new Error(`label '${l.name}' is used by '${user}' but never bound`);
      return a;
    };

    // Pass 2: bytes.
    const out = new Uint8Array(total);
    const placed: Placed[] = [];
    const encoder: Encoder = new iced.Encoder(this.bitness);
    try {
      this.items.forEach((item, idx) => {
        const ip = itemAddr[idx];
        const offset = Number(ip - this.base);
        const bytes = this.encodeItem(item, ip, encoder, labelAddr);
        out.set(bytes, offset);
        placed.push({ addr: ip, offset, length: bytes.length, item });
      });
    } finally {
      encoder.free();
    }

    const named = new Map<string, bigint>();
    for (const l of this.allLabels) {
      const a = addrs.get(l.id);
      if (!l.anonymous && a !== undefined) named.set(l.name, a);
    }
    const base = this.base;
    const owner: object = this;
    const byName = new Map(this.allLabels.map((l) => [l.name, l] as const));
    return {
      base,
      bytes: out,
      labels: named,
      addressOf(label: Label | string): bigint {
        const l = typeof label === 'string' ? byName.get(label) : label;
        if (!l) throw new Error(`no label named '${String(label)}'`);
        const a = addrs.get(l.id);
        if (a === undefined || l.owner !== owner) throw new Error(`label '${l.name}' is not bound in this image`);
        return a;
      },
      listing: () => renderListing(placed, out),
    };
  }

  // ---- typed mnemonics ----------------------------------------------------
  // Thin wrappers over emit(): they exist for discoverability and argument
  // counts; operand sizes are still checked by the matcher.

  /** Includes moves to/from segment, control (`mov(cr3, rax)`) and debug registers. */
  mov(dst: AnyReg | Mem, src: Operand): this { return this.emit('mov', dst, src); }
  movzx(dst: Gpr16 | Gpr32 | Gpr64, src: Gpr8 | Gpr16 | Mem): this { return this.emit('movzx', dst, src); }
  movsx(dst: Gpr16 | Gpr32 | Gpr64, src: Gpr8 | Gpr16 | Mem): this { return this.emit('movsx', dst, src); }
  movsxd(dst: Gpr64, src: Gpr32 | Mem): this { return this.emit('movsxd', dst, src); }
  lea(dst: Gpr16 | Gpr32 | Gpr64, src: Mem): this { return this.emit('lea', dst, src); }
  xchg(a: RM, b: RM): this { return this.emit('xchg', a, b); }
  bswap(r: Gpr32 | Gpr64): this { return this.emit('bswap', r); }

  add(dst: RM, src: RMI): this { return this.emit('add', dst, src); }
  adc(dst: RM, src: RMI): this { return this.emit('adc', dst, src); }
  sub(dst: RM, src: RMI): this { return this.emit('sub', dst, src); }
  sbb(dst: RM, src: RMI): this { return this.emit('sbb', dst, src); }
  cmp(a: RM, b: RMI): this { return this.emit('cmp', a, b); }
  and(dst: RM, src: RMI): this { return this.emit('and', dst, src); }
  or(dst: RM, src: RMI): this { return this.emit('or', dst, src); }
  xor(dst: RM, src: RMI): this { return this.emit('xor', dst, src); }
  test(a: RM, b: Gpr | Imm): this { return this.emit('test', a, b); }
  inc(x: RM): this { return this.emit('inc', x); }
  dec(x: RM): this { return this.emit('dec', x); }
  neg(x: RM): this { return this.emit('neg', x); }
  not(x: RM): this { return this.emit('not', x); }
  mul(src: RM): this { return this.emit('mul', src); }
  /** `imul r/m` (rdx:rax), `imul r, r/m`, or `imul r, r/m, imm`. */
  imul(a: RM, b?: RM, c?: Imm): this {
    return b === undefined ? this.emit('imul', a) : c === undefined ? this.emit('imul', a, b) : this.emit('imul', a, b, c);
  }
  div(src: RM): this { return this.emit('div', src); }
  idiv(src: RM): this { return this.emit('idiv', src); }
  cbw(): this { return this.emit('cbw'); }
  cwde(): this { return this.emit('cwde'); }
  cdqe(): this { return this.emit('cdqe'); }
  cwd(): this { return this.emit('cwd'); }
  cdq(): this { return this.emit('cdq'); }
  cqo(): this { return this.emit('cqo'); }

  shl(dst: RM, count: Gpr8 | Imm): this { return this.emit('shl', dst, count); }
  sal(dst: RM, count: Gpr8 | Imm): this { return this.emit('shl', dst, count); }
  shr(dst: RM, count: Gpr8 | Imm): this { return this.emit('shr', dst, count); }
  sar(dst: RM, count: Gpr8 | Imm): this { return this.emit('sar', dst, count); }
  rol(dst: RM, count: Gpr8 | Imm): this { return this.emit('rol', dst, count); }
  ror(dst: RM, count: Gpr8 | Imm): this { return this.emit('ror', dst, count); }
  rcl(dst: RM, count: Gpr8 | Imm): this { return this.emit('rcl', dst, count); }
  rcr(dst: RM, count: Gpr8 | Imm): this { return this.emit('rcr', dst, count); }
  shld(dst: RM, src: Gpr, count: Gpr8 | Imm): this { return this.emit('shld', dst, src, count); }
  shrd(dst: RM, src: Gpr, count: Gpr8 | Imm): this { return this.emit('shrd', dst, src, count); }

  bt(a: RM, bit: Gpr | Imm): this { return this.emit('bt', a, bit); }
  bts(a: RM, bit: Gpr | Imm): this { return this.emit('bts', a, bit); }
  btr(a: RM, bit: Gpr | Imm): this { return this.emit('btr', a, bit); }
  btc(a: RM, bit: Gpr | Imm): this { return this.emit('btc', a, bit); }
  bsf(dst: Gpr, src: RM): this { return this.emit('bsf', dst, src); }
  bsr(dst: Gpr, src: RM): this { return this.emit('bsr', dst, src); }
  popcnt(dst: Gpr, src: RM): this { return this.emit('popcnt', dst, src); }
  lzcnt(dst: Gpr, src: RM): this { return this.emit('lzcnt', dst, src); }
  tzcnt(dst: Gpr, src: RM): this { return this.emit('tzcnt', dst, src); }

  /** `jcc(cond, target)`; the `jne(...)`-style methods are shorthands. */
  jcc(cond: Condition, target: BranchTarget, opts?: BranchOptions): this { return this.branchTo(`j${cond}`, target, opts); }
  /** `cmovcc(cond, dst, src)`; `cmovne(...)` etc. are shorthands. */
  cmovcc(cond: Condition, dst: Gpr16 | Gpr32 | Gpr64, src: RM): this { return this.emit(`cmov${cond}`, dst, src); }
  /** `setcc(cond, dst)`; `setne(...)` etc. are shorthands. */
  setcc(cond: Condition, dst: Gpr8 | Mem): this { return this.emit(`set${cond}`, dst); }

  push(src: Gpr64 | Gpr32 | Gpr16 | Mem | Imm | SegReg): this { return this.emit('push', src); }
  pop(dst: Gpr64 | Gpr32 | Gpr16 | Mem | SegReg): this { return this.emit('pop', dst); }
  pushfq(): this { return this.emit('pushfq'); }
  popfq(): this { return this.emit('popfq'); }
  enter(frameSize: number, nesting = 0): this { return this.emit('enter', frameSize, nesting); }
  leave(): this { return this.emit('leave'); }

  /** Direct (label/address, rel32 unless short) or indirect (register/memory) jump. */
  jmp(target: BranchTarget | Gpr64 | Mem, opts?: BranchOptions): this { return this.branchTo('jmp', target, opts); }
  /** `jmp short target` (rel8). */
  jmpShort(target: BranchTarget): this { return this.branchTo('jmp', target, { short: true }); }
  call(target: BranchTarget | Gpr64 | Mem): this { return this.emit('call', target); }
  /** Near return, optionally popping `imm16` extra bytes. */
  ret(popBytes?: number): this { return popBytes === undefined ? this.emit('ret') : this.emit('ret', popBytes); }
  /** rel8 only: out-of-range targets fail at assemble(). */
  loop(target: BranchTarget): this { return this.emit('loop', target); }
  loope(target: BranchTarget): this { return this.emit('loope', target); }
  loopne(target: BranchTarget): this { return this.emit('loopne', target); }
  jrcxz(target: BranchTarget): this { return this.emit('jrcxz', target); }

  // String instructions: operand-less, combine with rep()/repe()/repne().
  movsb(): this { return this.emit('movsb'); }
  movsw(): this { return this.emit('movsw'); }
  /** String `movsd` with no operands; with operands this is the SSE2 scalar move. */
  movsd(...ops: Operand[]): this { return this.emit('movsd', ...ops); }
  movsq(): this { return this.emit('movsq'); }
  stosb(): this { return this.emit('stosb'); }
  stosw(): this { return this.emit('stosw'); }
  stosd(): this { return this.emit('stosd'); }
  stosq(): this { return this.emit('stosq'); }
  lodsb(): this { return this.emit('lodsb'); }
  lodsw(): this { return this.emit('lodsw'); }
  lodsd(): this { return this.emit('lodsd'); }
  lodsq(): this { return this.emit('lodsq'); }
  cmpsb(): this { return this.emit('cmpsb'); }
  cmpsw(): this { return this.emit('cmpsw'); }
  /** String `cmpsd` with no operands; with operands this is the SSE2 compare. */
  cmpsd(...ops: Operand[]): this { return this.emit('cmpsd', ...ops); }
  cmpsq(): this { return this.emit('cmpsq'); }
  scasb(): this { return this.emit('scasb'); }
  scasw(): this { return this.emit('scasw'); }
  scasd(): this { return this.emit('scasd'); }
  scasq(): this { return this.emit('scasq'); }

  cmpxchg(dst: RM, src: Gpr): this { return this.emit('cmpxchg', dst, src); }
  cmpxchg8b(dst: Mem): this { return this.emit('cmpxchg8b', dst); }
  cmpxchg16b(dst: Mem): this { return this.emit('cmpxchg16b', dst); }
  xadd(dst: RM, src: Gpr): this { return this.emit('xadd', dst, src); }

  /**
   * `nop()` is the 1-byte 0x90; `nop(n)` emits one recommended n-byte NOP
   * (n = 1..15); `nop(r/m)` is the `0F 1F /0` form.
   */
  nop(arg?: number | RM): this {
    if (arg === undefined) return this.emit('nop');
    if (typeof arg === 'number') {
      this.checkNoPending('nop(n)');
      return this.pushBytes(nopBytes(arg), true, '');
    }
    return this.emit('nop', arg);
  }
  pause(): this { return this.emit('pause'); }
  mfence(): this { return this.emit('mfence'); }
  lfence(): this { return this.emit('lfence'); }
  sfence(): this { return this.emit('sfence'); }
  clc(): this { return this.emit('clc'); }
  stc(): this { return this.emit('stc'); }
  cmc(): this { return this.emit('cmc'); }
  cld(): this { return this.emit('cld'); }
  std(): this { return this.emit('std'); }
  cli(): this { return this.emit('cli'); }
  sti(): this { return this.emit('sti'); }
  hlt(): this { return this.emit('hlt'); }
  int3(): this { return this.emit('int3'); }
  /** `int imm8` (CD ib) — `int(3)` is not the one-byte int3. */
  int(vector: number): this { return this.emit('int', vector); }
  iretq(): this { return this.emit('iretq'); }
  cpuid(): this { return this.emit('cpuid'); }
  rdtsc(): this { return this.emit('rdtsc'); }
  rdtscp(): this { return this.emit('rdtscp'); }
  rdmsr(): this { return this.emit('rdmsr'); }
  wrmsr(): this { return this.emit('wrmsr'); }
  xgetbv(): this { return this.emit('xgetbv'); }
  xsetbv(): this { return this.emit('xsetbv'); }
  lgdt(src: Mem): this { return this.emit('lgdt', src); }
  lidt(src: Mem): this { return this.emit('lidt', src); }
  sgdt(dst: Mem): this { return this.emit('sgdt', dst); }
  sidt(dst: Mem): this { return this.emit('sidt', dst); }
  ltr(src: Gpr16 | Gpr32 | Gpr64 | Mem): this { return this.emit('ltr', src); }
  invlpg(addr: Mem): this { return this.emit('invlpg', addr); }
  wbinvd(): this { return this.emit('wbinvd'); }
  clflush(addr: Mem): this { return this.emit('clflush', addr); }
  vmcall(): this { return this.emit('vmcall'); }
  swapgs(): this { return this.emit('swapgs'); }
  syscall(): this { return this.emit('syscall'); }
  sysretq(): this { return this.emit('sysretq'); }
  ud2(): this { return this.emit('ud2'); }

  // ---- internals ----------------------------------------------------------

  private branchTo(mnemonic: string, target: Operand, opts: BranchOptions | undefined): this {
    if (opts?.short) this.mods.short = true;
    return this.emit(mnemonic, target);
  }

  private setRep(kind: RepKind): this {
    if (this.mods.rep !== null) throw new Error(`${this.mods.rep}() is already pending; cannot add ${kind}()`);
    this.mods.rep = kind;
    return this;
  }

  private checkNoPending(where: string): void {
    const m = this.mods;
    if (m.lock || m.rep !== null || m.short) {
      const names = [m.lock ? 'lock()' : '', m.rep ? `${m.rep}()` : '', m.short ? 'short()' : ''].filter(Boolean).join(', ');
      throw new Error(`${names} must be followed by an instruction, not ${where}`);
    }
  }

  private checkOwn(label: Label): void {
    if (!(label instanceof Label) || label.owner !== this) {
      throw new Error(`label '${label instanceof Label ? label.name : String(label)}' belongs to a different assembler`);
    }
  }

  private checkOperandLabels(op: Operand): void {
    if (op instanceof Label) this.checkOwn(op);
    else if (isLabelAddress(op)) this.checkOwn(op.label);
    else if (isMemOperand(op) && op.addr.mode === 'rip' && op.addr.target instanceof Label) this.checkOwn(op.addr.target);
  }

  private pushInsn(what: string, build: () => Instruction, branch: InsnItem['branch']): this {
    // Size by encoding once now; string instructions have no targets, so this is final.
    const encoder = new iced.Encoder(this.bitness);
    let instr: Instruction | null = null;
    let size: number;
    try {
      instr = build();
      size = encodeAt(encoder, instr, this.cursor, what).length;
    } finally {
      instr?.free();
      encoder.free();
    }
    this.items.push({ kind: 'insn', what, size, build, branch });
    this.cursor += BigInt(size);
    return this;
  }

  private pushBytes(bytes: Uint8Array, code: boolean, text: string): this {
    this.items.push({ kind: 'bytes', bytes, code, text });
    this.cursor += BigInt(bytes.length);
    return this;
  }

  private data(width: 1 | 2 | 4 | 8, directive: string, values: readonly DataValue[]): this {
    this.checkNoPending(directive);
    const parts: Uint8Array[] = [];
    const shown: string[] = [];
    const one = (v: Imm): void => {
      parts.push(bytesOfValue(v, width, directive));
      shown.push(fmtHex(v));
    };
    for (const v of values) {
      if (typeof v === 'string') {
        if (width !== 1) throw new Error(`${directive}: strings are only accepted by db`);
        parts.push(new TextEncoder().encode(v));
        shown.push(JSON.stringify(v));
      } else if (v instanceof Uint8Array) {
        if (width === 1) {
          parts.push(Uint8Array.from(v));
          shown.push(`<${v.length} bytes>`);
        } else v.forEach((x) => one(x));
      } else if (Array.isArray(v)) {
        (v as readonly Imm[]).forEach(one);
      } else one(v as Imm);
    }
    return this.pushBytes(concat(parts), false, `${directive} ${shown.join(',')}`);
  }

  private labelData(width: 4 | 8, label: Label, base: Label | null, text: string): this {
    this.checkNoPending(text);
    this.checkOwn(label);
    this.items.push({ kind: 'labelData', width, label, base, text });
    this.cursor += BigInt(width);
    return this;
  }

  private padding(addr: bigint, n: number): bigint {
    const r = addr % BigInt(n);
    return r === 0n ? 0n : BigInt(n) - r;
  }

  private sizeAt(item: Item, addr: bigint): number {
    switch (item.kind) {
      case 'insn': return item.size;
      case 'bytes': return item.bytes.length;
      case 'align': return Number(this.padding(addr, item.n));
      case 'bind': return 0;
      case 'labelData': return item.width;
    }
  }

  private encodeItem(item: Item, ip: bigint, encoder: Encoder, labelAddr: (l: Label, user: string) => bigint): Uint8Array {
    switch (item.kind) {
      case 'bind': return new Uint8Array(0);
      case 'bytes': return item.bytes;
      case 'align': return new Uint8Array(Number(this.padding(ip, item.n))).fill(item.fill);
      case 'labelData': {
        const a = labelAddr(item.label, item.text);
        if (item.base === null) return bytesOfValue(item.width === 8 ? a : BigInt.asUintN(32, a), item.width, item.text);
        const delta = a - labelAddr(item.base, item.text);
        if (delta < -(2n ** 31n) || delta >= 2n ** 31n) throw new Error(`'${item.text}': delta ${fmtHex(delta)} does not fit in 32 bits`);
        return bytesOfValue(delta, 4, item.text);
      }
      case 'insn': {
        const resolve: TargetResolver = (t) => (t instanceof Label ? labelAddr(t, item.what) : t);
        if (item.branch) checkBranchRange(item, ip, resolve);
        const instr = item.build(resolve);
        try {
          const bytes = encodeAt(encoder, instr, ip, item.what);
          if (bytes.length !== item.size) {
            throw new Error(`internal: '${item.what}' at ${fmtHex(ip)} encoded to ${bytes.length} bytes in pass 2 but ${item.size} in pass 1`);
          }
          return bytes;
        } finally {
          instr.free();
        }
      }
    }
  }
}

function checkBranchRange(item: InsnItem, ip: bigint, resolve: TargetResolver): void {
  const br = item.branch;
  if (!br) return;
  const target = resolve(br.target);
  const dist = BigInt.asIntN(64, target - (ip + BigInt(item.size)));
  const lim = br.width === 1 ? 128n : 2n ** 31n;
  if (dist >= -lim && dist < lim) return;
  const name = br.target instanceof Label ? `label '${br.target.name}' (${fmtHex(target)})` : fmtHex(target);
  const fix = br.width === 4 ? 'rel32 reaches ±2 GiB' : br.rel8Only ? 'this instruction only has a rel8 form' : 'drop short to use rel32';
  throw new Error(`branch out of range: '${item.what}' at ${fmtHex(ip)} targets ${name}, ${dist} bytes from the next instruction; rel${br.width * 8} reaches ${-lim}..${lim - 1n} (${fix})`);
}

function renderListing(placed: readonly Placed[], out: Uint8Array): string {
  const lines: string[] = [];
  for (const p of placed) {
    const bytes = out.subarray(p.offset, p.offset + p.length);
    const it = p.item;
    if (it.kind === 'bind') {
      lines.push(formatListingLine(p.addr, '', `${it.label.name}:`));
    } else if (it.kind === 'insn' || (it.kind === 'bytes' && it.code)) {
      for (const d of disassemble(bytes, p.addr)) lines.push(formatListingLine(d.ip, d.bytesHex, d.text));
    } else if (p.length > 0) {
      const text = it.kind === 'align' ? `align ${it.n}` : it.text;
      for (let o = 0; o < p.length; o += 8) {
        lines.push(formatListingLine(p.addr + BigInt(o), hexBytes(bytes.subarray(o, o + 8)), o === 0 ? text : ''));
      }
    }
  }
  return lines.join('\n');
}

type CcMethods =
  & { [C in Condition as `j${C}`]: (target: BranchTarget, opts?: BranchOptions) => Assembler }
  & { [C in Condition as `cmov${C}`]: (dst: Gpr16 | Gpr32 | Gpr64, src: RM) => Assembler }
  & { [C in Condition as `set${C}`]: (dst: Gpr8 | Mem) => Assembler };

// Declaration merging gives every jcc/cmovcc/setcc spelling a typed method
// without 90 hand-written one-liners; the loop below supplies the bodies.
// eslint-disable-next-line @typescript-eslint/no-empty-interface, @typescript-eslint/no-unsafe-declaration-merging
export interface Assembler extends CcMethods {}

{
  const proto = Assembler.prototype as unknown as Record<string, unknown>;
  for (const cc of [...CONDITIONS, ...CONDITION_ALIASES]) {
    proto[`j${cc}`] = function (this: Assembler, target: BranchTarget, opts?: BranchOptions): Assembler { return this.jcc(cc, target, opts); };
    proto[`cmov${cc}`] = function (this: Assembler, dst: Gpr16 | Gpr32 | Gpr64, src: RM): Assembler { return this.cmovcc(cc, dst, src); };
    proto[`set${cc}`] = function (this: Assembler, dst: Gpr8 | Mem): Assembler { return this.setcc(cc, dst); };
  }
}
