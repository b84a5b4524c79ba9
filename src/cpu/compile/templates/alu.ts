import { Need } from '../../mmu.ts';
import { RmwOp as AtomicOp } from '../../ops/atomic.ts';
import { OperandKind } from '../../decode.ts';
import { Emitter, Lazy, norm, UnsupportedForm } from '../emitter.ts';

/**
 * The lazily-flagged integer ALU: ADD ADC SUB SBB CMP AND OR XOR TEST INC DEC NEG NOT.
 * Each computes into `s`/`sh` from `a`/`ah` (destination) and `b`/`bh` (source), records lazy
 * flags, and writes back unless it only compares. LOCKed memory forms go through the atomic
 * read-modify-write helper, then recompute the same result for the flags.
 */

type BinaryKind = 'add' | 'adc' | 'sub' | 'sbb' | 'and' | 'or' | 'xor';

/** Source computing s (and sh) from a, b (and ah, bh); `cin` is the carry-in expression. */
function binaryResult(kind: BinaryKind, size: number): string {
  if (size === 8) {
    switch (kind) {
      case 'add': return 't = (a >>> 0) + (b >>> 0); s = t | 0; sh = (ah + bh + (t > 4294967295 ? 1 : 0)) | 0;';
      case 'adc': return 't = (a >>> 0) + (b >>> 0) + cin; s = t | 0; sh = (ah + bh + (t > 4294967295 ? 1 : 0)) | 0;';
      case 'sub': return 't = (a >>> 0) - (b >>> 0); s = t | 0; sh = (ah - bh - (t < 0 ? 1 : 0)) | 0;';
      case 'sbb': return 't = (a >>> 0) - (b >>> 0) - cin; s = t | 0; sh = (ah - bh - (t < 0 ? 1 : 0)) | 0;';
      case 'and': return 's = a & b; sh = ah & bh;';
      case 'or': return 's = a | b; sh = ah | bh;';
      case 'xor': return 's = a ^ b; sh = ah ^ bh;';
    }
  }
  switch (kind) {
    case 'add': return `s = ${norm('a + b', size)};`;
    case 'adc': return `s = ${norm('a + b + cin', size)};`;
    case 'sub': return `s = ${norm('a - b', size)};`;
    case 'sbb': return `s = ${norm('a - b - cin', size)};`;
    case 'and': return 's = a & b;';
    case 'or': return 's = a | b;';
    case 'xor': return 's = a ^ b;';
  }
}

const LAZY_KIND: Record<BinaryKind, number> = {
  add: Lazy.add,
  adc: Lazy.adc,
  sub: Lazy.sub,
  sbb: Lazy.sbb,
  and: Lazy.logic,
  or: Lazy.logic,
  xor: Lazy.logic,
};


/** ADD/ADC/SUB/SBB/AND/OR/XOR r/m, r/m/imm — and CMP/TEST when `compareOnly`. */
export function binary(kind: BinaryKind, compareOnly = false) {
  return (e: Emitter): void => {
    const [dst, src] = e.operands(2);
    const size = dst.size;
    const usesCarry = kind === 'adc' || kind === 'sbb';
    if (dst.kind === OperandKind.memory) e.translateMemory(size, compareOnly ? Need.read : Need.readWrite);
    else if (src.kind === OperandKind.memory) e.translateMemory(size, Need.read);
    // Sign-extended immediates become the operand size; iced already extended them to 64 bits.
    // The carry-in is taken before the source read clobbers the previous instruction's locals.
    const cin = usesCarry ? e.carryIn() : '0';
    e.read(src, 'b', size);
    if (e.insn.lock) {
      if (dst.kind !== OperandKind.memory || compareOnly) throw new UnsupportedForm('LOCK needs a memory destination');
      e.line(`a = H.lockRmw(c, pa, ${size}, ${AtomicOp[kind]}, b, ${size === 8 ? 'bh' : '0'}, ${cin});${size === 8 ? ' ah = m.hi;' : ''}`);
    } else {
      e.read(dst, 'a', size);
    }
    e.line(binaryResult(kind, size).replaceAll('cin', cin));
    e.lazyFlags(LAZY_KIND[kind], size, usesCarry ? cin : undefined);
    if (!compareOnly && !e.insn.lock) e.write(dst, 's', 'sh', size);
  };
}

/** INC/DEC: like ADD/SUB 1 but CF survives (kept in the lazy carry-in). */
export function incDec(kind: 'inc' | 'dec') {
  return (e: Emitter): void => {
    const [dst] = e.operands(1);
    const size = dst.size;
    const cin = e.carryIn();
    e.prepare(dst, Need.readWrite);
    e.line(size === 8 ? 'b = 1; bh = 0;' : 'b = 1;');
    if (e.insn.lock) {
      e.line(`a = H.lockRmw(c, pa, ${size}, ${kind === 'inc' ? AtomicOp.add : AtomicOp.sub}, 1, 0, 0);${size === 8 ? ' ah = m.hi;' : ''}`);
    } else {
      e.read(dst, 'a', size);
    }
    e.line(binaryResult(kind === 'inc' ? 'add' : 'sub', size));
    e.lazyFlags(kind === 'inc' ? Lazy.inc : Lazy.dec, size, cin);
    if (!e.insn.lock) e.write(dst, 's', 'sh', size);
  };
}

/** NEG: 0 - x, flagged as a subtraction from zero. */
export function neg(e: Emitter): void {
  const [dst] = e.operands(1);
  const size = dst.size;
  e.prepare(dst, Need.readWrite);
  if (e.insn.lock) {
    e.line(`b = H.lockRmw(c, pa, ${size}, ${AtomicOp.neg}, 0, 0, 0);${size === 8 ? ' bh = m.hi;' : ''}`);
  } else {
    e.read(dst, 'b', size);
  }
  e.line(size === 8 ? 'a = 0; ah = 0;' : 'a = 0;');
  e.line(binaryResult('sub', size));
  e.lazyFlags(Lazy.sub, size);
  if (!e.insn.lock) e.write(dst, 's', 'sh', size);
}

/** NOT: no flags. */
export function not(e: Emitter): void {
  const [dst] = e.operands(1);
  const size = dst.size;
  e.prepare(dst, Need.readWrite);
  if (e.insn.lock) {
    e.line(`H.lockRmw(c, pa, ${size}, ${AtomicOp.xor}, -1, -1, 0);`);
    return;
  }
  e.read(dst, 'a', size);
  if (size === 8) e.write(dst, '~a', '~ah', 8);
  else e.write(dst, norm('~a', size), '0', size);
}
