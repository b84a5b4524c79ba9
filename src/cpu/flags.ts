/**
 * RFLAGS bits and lazy arithmetic flags.
 *
 * The hot ALU instructions (ADD/ADC/SUB/SBB/CMP/AND/OR/XOR/TEST/INC/DEC/NEG) do not compute flags:
 * they record the operation, its size and operands in `LazyFlags`, and the six arithmetic flags are
 * derived only when something reads them (blink, Bochs and v86 do the same). Everything else sets
 * flags eagerly through `setArith`, which stores materialised bits and clears the lazy op.
 *
 * Operand encoding in the lazy record: for sizes 1 and 2 the values are masked to the size
 * (non-negative); for size 4 they are int32 (any sign); size 8 keeps the low half in `a/b/r` and
 * the high half in `ah/bh/rh`.
 */

export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const TF = 0x100;
export const IF = 0x200;
export const DF = 0x400;
export const OF = 0x800;
export const IOPL = 0x3000;
export const NT = 0x4000;
export const RF = 0x10000;
export const VM = 0x20000;
export const AC = 0x40000;
export const VIF = 0x80000;
export const VIP = 0x100000;
export const ID = 0x200000;
/** Bit 1 of RFLAGS reads as 1. */
export const RFLAGS_FIXED1 = 0x2;
export const ARITH = CF | PF | AF | ZF | SF | OF;
/** Bits software may change with POPF at CPL 0 on this CPU (no VME/PVI, no v8086). */
export const POPF_WRITABLE = ARITH | TF | IF | DF | IOPL | NT | AC | ID;

/** Lazy operation kinds; the lazy `op` word is `kind << 2 | sizeIndex` (sizeIndex 0..3 = 1,2,4,8 bytes). */
export const Lazy = {
  none: 0,
  add: 1,
  adc: 2,
  sub: 3,
  sbb: 4,
  logic: 5,
  inc: 6,
  dec: 7,
} as const;

/** Operand size in bytes → size index used in lazy op words. */
export function sizeIndex(size: number): number {
  switch (size) {
    case 1: return 0;
    case 2: return 1;
    case 4: return 2;
    case 8: return 3;
    default: throw new RangeError(`operand size ${size} has no lazy-flag encoding`);
  }
}

/** Even-parity lookup for the low byte of a result (PF). */
export const PARITY = /* @__PURE__ */ (() => {
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    let bits = 0;
    for (let b = v; b !== 0; b >>>= 1) bits += b & 1;
    table[v] = bits % 2 === 0 ? PF : 0;
  }
  return table;
})();

/** The lazy-flags part of a CPU. Fields are plain numbers so V8 keeps them unboxed. */
export interface LazyFlags {
  /** Materialised RFLAGS; its arithmetic bits are stale while `fop !== 0`. */
  fl: number;
  fop: number;
  fa: number;
  fb: number;
  fr: number;
  fah: number;
  fbh: number;
  frh: number;
  /** Carry-in for ADC/SBB, or the CF that INC/DEC preserve. */
  fcin: number;
}

const SIGN_SHIFT = [7, 15, 31, 31];

/** Computes the six arithmetic flags of the recorded lazy operation. */
export function lazyArith(f: LazyFlags): number {
  const op = f.fop;
  const kind = op >>> 2;
  const si = op & 3;
  const a = f.fa;
  const b = f.fb;
  const r = f.fr;
  let cf: number;
  let of: number;
  let zf: boolean;
  let sf: number;
  if (si === 3) {
    const ah = f.fah;
    const bh = f.fbh;
    const rh = f.frh;
    zf = (r | rh) === 0;
    sf = (rh >>> 31) & 1;
    switch (kind) {
      case Lazy.add: cf = less64(r, rh, a, ah) ? 1 : 0; of = ((ah ^ rh) & (bh ^ rh)) >>> 31; break;
      case Lazy.adc: cf = less64(r, rh, a, ah) || (f.fcin !== 0 && r === a && rh === ah) ? 1 : 0; of = ((ah ^ rh) & (bh ^ rh)) >>> 31; break;
      case Lazy.sub: cf = less64(a, ah, b, bh) ? 1 : 0; of = ((ah ^ bh) & (ah ^ rh)) >>> 31; break;
      case Lazy.sbb: cf = less64(a, ah, b, bh) || (f.fcin !== 0 && a === b && ah === bh) ? 1 : 0; of = ((ah ^ bh) & (ah ^ rh)) >>> 31; break;
      case Lazy.logic: cf = 0; of = 0; break;
      case Lazy.inc: cf = f.fcin; of = ((ah ^ rh) & (bh ^ rh)) >>> 31; break;
      case Lazy.dec: cf = f.fcin; of = ((ah ^ bh) & (ah ^ rh)) >>> 31; break;
      default: throw new Error(`corrupt lazy flags op ${op}`);
    }
  } else {
    const shift = SIGN_SHIFT[si];
    zf = r === 0;
    sf = (r >>> shift) & 1;
    switch (kind) {
      case Lazy.add: cf = (r >>> 0) < (a >>> 0) ? 1 : 0; of = (((a ^ r) & (b ^ r)) >>> shift) & 1; break;
      case Lazy.adc: cf = (r >>> 0) < (a >>> 0) || (f.fcin !== 0 && r === a) ? 1 : 0; of = (((a ^ r) & (b ^ r)) >>> shift) & 1; break;
      case Lazy.sub: cf = (a >>> 0) < (b >>> 0) ? 1 : 0; of = (((a ^ b) & (a ^ r)) >>> shift) & 1; break;
      case Lazy.sbb: cf = (a >>> 0) < (b >>> 0) || (f.fcin !== 0 && a === b) ? 1 : 0; of = (((a ^ b) & (a ^ r)) >>> shift) & 1; break;
      case Lazy.logic: cf = 0; of = 0; break;
      case Lazy.inc: cf = f.fcin; of = (((a ^ r) & (b ^ r)) >>> shift) & 1; break;
      case Lazy.dec: cf = f.fcin; of = (((a ^ b) & (a ^ r)) >>> shift) & 1; break;
      default: throw new Error(`corrupt lazy flags op ${op}`);
    }
  }
  const af = kind === Lazy.logic ? 0 : (a ^ b ^ r) & AF;
  return cf | PARITY[r & 0xff] | af | (zf ? ZF : 0) | (sf !== 0 ? SF : 0) | (of !== 0 ? OF : 0);
}

/** Unsigned 64-bit a < b on lo/hi halves. */
function less64(alo: number, ahi: number, blo: number, bhi: number): boolean {
  return ahi === bhi ? alo >>> 0 < blo >>> 0 : ahi >>> 0 < bhi >>> 0;
}

/** Full RFLAGS, materialising lazy bits (does not change the lazy state). */
export function readFlags(f: LazyFlags): number {
  return f.fop === 0 ? f.fl : (f.fl & ~ARITH) | lazyArith(f);
}

/** Materialises lazy flags into `fl` and clears the lazy op; returns RFLAGS. */
export function settleFlags(f: LazyFlags): number {
  if (f.fop !== 0) {
    f.fl = (f.fl & ~ARITH) | lazyArith(f);
    f.fop = 0;
  }
  return f.fl;
}

/** Replaces the arithmetic flags with `bits` (a subset of ARITH), keeping the others. */
export function setArith(f: LazyFlags, bits: number): void {
  f.fl = (f.fl & ~ARITH) | (bits & ARITH);
  f.fop = 0;
}

/**
 * Current CF as 0/1. INC/DEC and ADC/SBB ask for it on every execution, so it is computed on its
 * own rather than through `lazyArith`.
 */
export function carry(f: LazyFlags): number {
  const op = f.fop;
  if (op === 0) return f.fl & CF;
  const kind = op >>> 2;
  const a = f.fa;
  const b = f.fb;
  const r = f.fr;
  if ((op & 3) === 3) {
    switch (kind) {
      case Lazy.add: return less64(r, f.frh, a, f.fah) ? 1 : 0;
      case Lazy.adc: return less64(r, f.frh, a, f.fah) || (f.fcin !== 0 && r === a && f.frh === f.fah) ? 1 : 0;
      case Lazy.sub: return less64(a, f.fah, b, f.fbh) ? 1 : 0;
      case Lazy.sbb: return less64(a, f.fah, b, f.fbh) || (f.fcin !== 0 && a === b && f.fah === f.fbh) ? 1 : 0;
      case Lazy.logic: return 0;
      default: return f.fcin;
    }
  }
  switch (kind) {
    case Lazy.add: return (r >>> 0) < (a >>> 0) ? 1 : 0;
    case Lazy.adc: return (r >>> 0) < (a >>> 0) || (f.fcin !== 0 && r === a) ? 1 : 0;
    case Lazy.sub: return (a >>> 0) < (b >>> 0) ? 1 : 0;
    case Lazy.sbb: return (a >>> 0) < (b >>> 0) || (f.fcin !== 0 && a === b) ? 1 : 0;
    case Lazy.logic: return 0;
    default: return f.fcin;
  }
}

/**
 * Evaluates condition code `cc` (0..15, the low nibble of Jcc/SETcc/CMOVcc opcodes):
 * O NO B AE E NE BE A S NS P NP L GE LE G.
 */
export function condition(f: LazyFlags, cc: number): boolean {
  const fl = readFlags(f);
  let result: boolean;
  switch (cc >>> 1) {
    case 0: result = (fl & OF) !== 0; break;
    case 1: result = (fl & CF) !== 0; break;
    case 2: result = (fl & ZF) !== 0; break;
    case 3: result = (fl & (CF | ZF)) !== 0; break;
    case 4: result = (fl & SF) !== 0; break;
    case 5: result = (fl & PF) !== 0; break;
    case 6: result = ((fl & SF) !== 0) !== ((fl & OF) !== 0); break;
    default: result = (fl & ZF) !== 0 || ((fl & SF) !== 0) !== ((fl & OF) !== 0); break;
  }
  return (cc & 1) === 0 ? result : !result;
}
