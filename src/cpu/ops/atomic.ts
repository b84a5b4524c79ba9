import { PAGE_SHIFT } from '../state-block.ts';
import type { Mmu } from '../mmu.ts';

/**
 * LOCKed read-modify-write on guest memory, atomic across worker threads.
 *
 * - Accesses inside one aligned 4-byte word use an Atomics.compareExchange loop on that word
 *   (bytes and words are shifted into place).
 * - Accesses inside one aligned 8-byte word use the same loop on a BigInt64Array view.
 * - Accesses that cross an 8-byte boundary ("split locks", which real CPUs also treat as a slow
 *   bus lock) take a global spinlock in the control buffer and then read and write normally.
 *   Documented limitation: a split-locked access is atomic with respect to other split-locked
 *   accesses, not with respect to an aligned LOCKed access by another worker touching the same
 *   bytes at the same moment. CMPXCHG16B is always done this way (JavaScript has no 128-bit CAS).
 *
 * In deterministic mode only one vCPU runs at a time, so all of this is trivially atomic; the
 * code path is the same.
 */

/** Operations: op(old, b). `neg` ignores b and stores 0 - old. */
export const RmwOp = { add: 0, adc: 1, sub: 2, sbb: 3, and: 4, or: 5, xor: 6, xchg: 7, neg: 8 } as const;

/** Result of `compute`, kept in module variables so the hot CAS loop allocates nothing. */
let outLo = 0;
let outHi = 0;

function compute(op: number, alo: number, ahi: number, blo: number, bhi: number, cin: number, size: number): void {
  if (size === 8) {
    let t: number;
    switch (op) {
      case RmwOp.add: t = (alo >>> 0) + (blo >>> 0); outLo = t | 0; outHi = (ahi + bhi + (t > 4294967295 ? 1 : 0)) | 0; return;
      case RmwOp.adc: t = (alo >>> 0) + (blo >>> 0) + cin; outLo = t | 0; outHi = (ahi + bhi + (t > 4294967295 ? 1 : 0)) | 0; return;
      case RmwOp.sub: t = (alo >>> 0) - (blo >>> 0); outLo = t | 0; outHi = (ahi - bhi - (t < 0 ? 1 : 0)) | 0; return;
      case RmwOp.sbb: t = (alo >>> 0) - (blo >>> 0) - cin; outLo = t | 0; outHi = (ahi - bhi - (t < 0 ? 1 : 0)) | 0; return;
      case RmwOp.and: outLo = alo & blo; outHi = ahi & bhi; return;
      case RmwOp.or: outLo = alo | blo; outHi = ahi | bhi; return;
      case RmwOp.xor: outLo = alo ^ blo; outHi = ahi ^ bhi; return;
      case RmwOp.neg: t = 0 - (alo >>> 0); outLo = t | 0; outHi = (0 - ahi - (t < 0 ? 1 : 0)) | 0; return;
      default: outLo = blo; outHi = bhi; return;
    }
  }
  let v: number;
  switch (op) {
    case RmwOp.add: v = alo + blo; break;
    case RmwOp.adc: v = alo + blo + cin; break;
    case RmwOp.sub: v = alo - blo; break;
    case RmwOp.sbb: v = alo - blo - cin; break;
    case RmwOp.and: v = alo & blo; break;
    case RmwOp.or: v = alo | blo; break;
    case RmwOp.xor: v = alo ^ blo; break;
    case RmwOp.neg: v = -alo; break;
    default: v = blo;
  }
  outLo = size === 4 ? v | 0 : v & (size === 1 ? 0xff : 0xffff);
  outHi = 0;
}

const SPIN_LIMIT = 50_000_000;

function splitLock(mmu: Mmu): Mmu {
  const { splitLockWords: words, splitLockIndex: index } = mmu.memory;
  for (let spins = 0; Atomics.compareExchange(words, index, 0, 1) !== 0; spins++) {
    if (spins > SPIN_LIMIT) throw new Error('split-lock word held for too long: a worker died holding it?');
  }
  return mmu;
}

function splitUnlock(mmu: Mmu): void {
  Atomics.store(mmu.memory.splitLockWords, mmu.memory.splitLockIndex, 0);
}

let i64View: BigInt64Array | null = null;
function int64(mmu: Mmu): BigInt64Array {
  if (i64View === null || i64View.buffer !== mmu.memory.i64.buffer) i64View = mmu.memory.i64;
  return i64View;
}

/**
 * The operation the CAS loops below apply, set by the two entry points. Kept in module variables
 * (one vCPU per thread at a time) so the loops take no closure and allocate nothing.
 *  - exchange mode off: new value = op(old, b) (LOCK ADD/XADD/XCHG/…)
 *  - exchange mode on: new value = b when old equals `expected`, else no store (CMPXCHG)
 */
let exchangeMode = false;
let operation = 0;
let operandLo = 0;
let operandHi = 0;
let carryIn = 0;
let expectedLo = 0;
let expectedHi = 0;

/** Decides the new value for `old` into outLo/outHi; false means "leave memory as it is". */
function decide(oldLo: number, oldHi: number, size: number): boolean {
  if (!exchangeMode) {
    compute(operation, oldLo, oldHi, operandLo, operandHi, carryIn, size);
    return true;
  }
  if (oldLo !== expectedLo || oldHi !== expectedHi) return false;
  outLo = operandLo;
  outHi = operandHi;
  return true;
}

/**
 * Atomically replaces the `size`-byte value at `pa` (or the split access `pa` < 0) with
 * op(old, b). Returns the old low half; the old high half is left in `mmu.hi`.
 */
export function lockedRmw(mmu: Mmu, pa: number, size: number, op: number, blo: number, bhi: number, cin: number): number {
  exchangeMode = false;
  operation = op;
  operandLo = blo;
  operandHi = bhi;
  carryIn = cin;
  if (pa >= 0 && size === 8 && (pa & 7) === 0) {
    const old = rmwAligned64LowWord(mmu, pa);
    if (old !== null) return old;
  }
  return casField(mmu, pa, size);
}

/**
 * CMPXCHG on memory: if the value at pa equals expected, store the replacement. Returns the old
 * value (high half in `mmu.hi`). When the comparison fails the old value is left in place, which
 * is what the architectural write-back of the old value amounts to. Without LOCK real CPUs are
 * not atomic here; atomic is a valid outcome.
 */
export function compareExchange(mmu: Mmu, pa: number, size: number, expLo: number, expHi: number, newLo: number, newHi: number): number {
  exchangeMode = true;
  expectedLo = expLo;
  expectedHi = expHi;
  operandLo = newLo;
  operandHi = newHi;
  return casField(mmu, pa, size);
}

/** Picks the narrowest atomic path for the access. */
function casField(mmu: Mmu, pa: number, size: number): number {
  if (pa >= 0 && (pa & 3) + size <= 4) return casInWord32(mmu, pa, size);
  if (pa >= 0 && (pa & 7) + size <= 8) return casInWord64(mmu, pa, size);
  return casUnderSplitLock(mmu, pa, size);
}

/**
 * A 64-bit RMW whose result leaves the high word unchanged (no carry or borrow out of the low
 * word, logic ops that keep the high half): a 32-bit CAS on the low word is then the whole atomic
 * update, with no BigInt. Returns null when the high word would change (the caller takes the
 * 64-bit CAS path). The high half reported for the flags is re-read after the CAS; only a
 * concurrent write to the high half alone, between those reads, could make the flags (never the
 * memory) reflect a slightly different instant.
 */
function rmwAligned64LowWord(mmu: Mmu, pa: number): number | null {
  const i32 = mmu.i32;
  const index = pa >>> 2;
  for (;;) {
    const hi = Atomics.load(i32, index + 1);
    const lo = Atomics.load(i32, index);
    compute(operation, lo, hi, operandLo, operandHi, carryIn, 8);
    if (outHi !== hi) return null;
    if (Atomics.compareExchange(i32, index, lo, outLo) === lo) {
      if (mmu.codeMark[pa >>> PAGE_SHIFT] !== 0) mmu.noteWrite(pa, 8);
      mmu.hi = Atomics.load(i32, index + 1);
      return lo;
    }
  }
}

/** A 1/2/4-byte field inside one aligned int32: CAS on that word. */
function casInWord32(mmu: Mmu, pa: number, size: number): number {
  const i32 = mmu.i32;
  const index = pa >>> 2;
  const shift = (pa & 3) * 8;
  const mask = size === 4 ? -1 : size === 2 ? 0xffff << shift : 0xff << shift;
  mmu.hi = 0;
  for (;;) {
    const word = Atomics.load(i32, index);
    const old = size === 4 ? word : (word >>> shift) & (size === 2 ? 0xffff : 0xff);
    if (!decide(old, 0, size)) return old;
    const next = size === 4 ? outLo : (word & ~mask) | ((outLo << shift) & mask);
    if (Atomics.compareExchange(i32, index, word, next) === word) {
      if (mmu.codeMark[pa >>> PAGE_SHIFT] !== 0) mmu.noteWrite(pa, size);
      return old;
    }
  }
}

/** A field inside one aligned 8-byte word: CAS on that word through a BigInt64Array. */
function casInWord64(mmu: Mmu, pa: number, size: number): number {
  const i64 = int64(mmu);
  const index = pa >>> 3;
  const shift = BigInt((pa & 7) * 8);
  const fieldMask = ((1n << BigInt(size * 8)) - 1n) << shift;
  for (;;) {
    const word = Atomics.load(i64, index);
    const field = BigInt.asUintN(64, word & fieldMask) >> shift;
    const oldLo = size >= 4 ? Number(field & 0xffffffffn) | 0 : Number(field);
    const oldHi = size === 8 ? Number(field >> 32n) | 0 : 0;
    mmu.hi = oldHi;
    if (!decide(oldLo, oldHi, size)) return oldLo;
    const value = size === 8 ? (BigInt(outHi >>> 0) << 32n) | BigInt(outLo >>> 0) : BigInt(outLo >>> 0);
    const next = BigInt.asIntN(64, (word & ~fieldMask) | ((value << shift) & fieldMask));
    if (Atomics.compareExchange(i64, index, word, next) === word) {
      if (mmu.codeMark[pa >>> PAGE_SHIFT] !== 0) mmu.noteWrite(pa, size);
      return oldLo;
    }
  }
}

/** Anything crossing an 8-byte boundary: plain read and write under the global split lock. */
function casUnderSplitLock(mmu: Mmu, pa: number, size: number): number {
  splitLock(mmu);
  try {
    const oldLo = size === 8 ? mmu.read64(pa) : size === 4 ? mmu.read32(pa) : size === 2 ? mmu.read16(pa) : mmu.read8(pa);
    const oldHi = size === 8 ? mmu.hi : 0;
    if (decide(oldLo, oldHi, size)) {
      if (size === 8) mmu.write64(pa, outLo, outHi);
      else if (size === 4) mmu.write32(pa, outLo);
      else if (size === 2) mmu.write16(pa, outLo);
      else mmu.write8(pa, outLo);
    }
    mmu.hi = oldHi;
    return oldLo;
  } finally {
    splitUnlock(mmu);
  }
}

/**
 * CMPXCHG8B/CMPXCHG16B: compares `size` bytes at pa with `expected` (int32 words, low first); on a
 * match stores `replacement`. `current` receives what memory held. Returns true on a match.
 * An aligned 8-byte operand uses a real 64-bit CAS; everything else takes the split lock.
 */
export function compareExchangeWide(mmu: Mmu, pa: number, size: 8 | 16, expected: Int32Array, replacement: Int32Array, current: Int32Array): boolean {
  if (size === 8 && pa >= 0 && (pa & 7) === 0) {
    const want = (BigInt(expected[1] >>> 0) << 32n) | BigInt(expected[0] >>> 0);
    const next = (BigInt(replacement[1] >>> 0) << 32n) | BigInt(replacement[0] >>> 0);
    const old = Atomics.compareExchange(int64(mmu), pa >>> 3, BigInt.asIntN(64, want), BigInt.asIntN(64, next));
    current[0] = Number(BigInt.asIntN(32, old));
    current[1] = Number(BigInt.asIntN(32, old >> 32n));
    const equal = BigInt.asUintN(64, old) === want;
    if (equal && mmu.codeMark[pa >>> PAGE_SHIFT] !== 0) mmu.noteWrite(pa, 8);
    return equal;
  }
  const words = size / 4;
  const address = (k: number): number => (pa < 0 ? mmu.splitAddress(pa, k) : pa + k);
  splitLock(mmu);
  try {
    let equal = true;
    for (let w = 0; w < words; w++) {
      let value = 0;
      for (let k = 3; k >= 0; k--) value = (value << 8) | mmu.u8[address(4 * w + k)];
      current[w] = value | 0;
      if (current[w] !== expected[w]) equal = false;
    }
    const source = equal ? replacement : current;
    for (let w = 0; w < words; w++) {
      for (let k = 0; k < 4; k++) {
        const at = address(4 * w + k);
        mmu.u8[at] = (source[w] >>> (8 * k)) & 0xff;
        if (mmu.codeMark[at >>> PAGE_SHIFT] !== 0) mmu.noteWrite(at, 1);
      }
    }
    return equal;
  } finally {
    splitUnlock(mmu);
  }
}
