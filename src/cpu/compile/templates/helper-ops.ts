import { OperandKind } from '../../decode.ts';
import { Need } from '../../mmu.ts';
import { RmwOp } from '../../ops/atomic.ts';
import { BitTestKind, ScanKind } from '../../ops/bits.ts';
import { Emitter, UnsupportedForm } from '../emitter.ts';

/**
 * Instructions whose semantics live in runtime helpers (ops/*.ts): shifts and rotates, double
 * shifts, multiply and divide, bit tests and scans. The template only moves operands in and out;
 * the helper computes the value and sets the flags eagerly.
 */

const hiOf = (size: number, x: string): string => (size === 8 ? `${x}h` : '0');

/** SHL/SHR/SAR/ROL/ROR/RCL/RCR r/m, 1|CL|imm8. */
export function shift(kind: number) {
  return (e: Emitter): void => {
    const [dst, count] = e.operands(2);
    const size = dst.size;
    e.prepare(dst, Need.readWrite);
    e.read(count, 'b', 1);
    e.read(dst, 'a', size);
    e.line(`s = H.shift(c, ${kind}, ${size}, a, ${hiOf(size, 'a')}, b); sh = c.vh;`);
    e.write(dst, 's', 'sh', size);
  };
}

/** SHLD/SHRD r/m, r, CL|imm8. */
export function doubleShift(left: boolean) {
  return (e: Emitter): void => {
    const [dst, src, count] = e.operands(3);
    const size = dst.size;
    e.prepare(dst, Need.readWrite);
    e.read(src, 'b', size);
    e.read(count, 't', 1);
    e.read(dst, 'a', size);
    e.line(`s = H.doubleShift(c, ${left}, ${size}, a, ${hiOf(size, 'a')}, b, ${hiOf(size, 'b')}, t); sh = c.vh;`);
    e.write(dst, 's', 'sh', size);
  };
}

/** MUL/IMUL/DIV/IDIV with one operand: the accumulator pair is implicit. */
export function accumulatorOp(helper: 'multiplyAccumulator' | 'divide', signed: boolean) {
  return (e: Emitter): void => {
    const [src] = e.operands(1);
    const size = src.size;
    e.prepare(src, Need.read);
    e.read(src, 'b', size);
    e.line(`H.${helper}(c, ${size}, b, ${hiOf(size, 'b')}, ${signed});`);
  };
}

/** IMUL: one operand (accumulator), two (r, r/m) or three (r, r/m, imm) operands. */
export function imul(e: Emitter): void {
  const ops = e.insn.operands;
  if (ops.length === 1) {
    accumulatorOp('multiplyAccumulator', true)(e);
    return;
  }
  const [dst, src] = ops;
  const size = dst.size;
  e.prepare(src, Need.read);
  if (ops.length === 3) {
    e.read(src, 'a', size);
    e.read(ops[2], 'b', size);
  } else {
    e.read(dst, 'a', size);
    e.read(src, 'b', size);
  }
  e.line(`s = H.multiplyTruncated(c, ${size}, a, ${hiOf(size, 'a')}, b, ${hiOf(size, 'b')}); sh = c.vh;`);
  e.write(dst, 's', 'sh', size);
}

/**
 * BT/BTS/BTR/BTC r/m, r|imm8. With a memory operand and a register bit offset the offset is a
 * signed bit-string index: the address moves by (offset >> log2(bits)) operands (SDM: BT).
 */
export function bitTest(kind: number) {
  return (e: Emitter): void => {
    const [dst, offset] = e.operands(2);
    const size = dst.size;
    const bits = size * 8;
    const need = kind === BitTestKind.bt ? Need.read : Need.readWrite;
    if (offset.kind === OperandKind.register) {
      e.read(offset, 'b', size);
    } else {
      e.line(`b = ${e.insn.immLo & 0xff}; bh = 0;`);
    }
    if (dst.kind === OperandKind.memory) {
      e.effectiveAddress();
      if (offset.kind === OperandKind.register) {
        if (size === 8) e.line('t = ((b >>> 3) | (bh << 29)) & -8; a = bh >> 3;');
        else if (size === 4) e.line('t = (b >> 5) * 4; a = t < 0 ? -1 : 0;');
        else e.line('t = (((b << 16) >> 16) >> 4) * 2; a = t < 0 ? -1 : 0;');
        // 32-bit code: the bit's byte address wraps at 4 GiB like any address there.
        if (e.mode32) e.line('ea = (ea + t) | 0; eah = 0;');
        else e.line('t = (ea >>> 0) + (t >>> 0); ea = t | 0; eah = (eah + a + ((t / 4294967296) | 0)) | 0;');
      }
      e.translateAddress('ea', 'eah', need | (e.memory().stack ? Need.stack : 0), size, 'pa');
      if (need !== Need.read) e.writesMemory = true;
    }
    e.line(`t = b & ${bits - 1};`);
    if (e.insn.lock) {
      if (dst.kind !== OperandKind.memory || kind === BitTestKind.bt) throw new UnsupportedForm('LOCK BT needs memory and a modifying form');
      const op = kind === BitTestKind.bts ? RmwOp.or : kind === BitTestKind.btr ? RmwOp.and : RmwOp.xor;
      const invert = kind === BitTestKind.btr ? '~' : '';
      e.line(`b = t < 32 ? ${invert}(1 << t) : ${kind === BitTestKind.btr ? '-1' : '0'}; bh = t >= 32 ? ${invert}(1 << (t - 32)) : ${kind === BitTestKind.btr ? '-1' : '0'};`);
      e.line(`a = H.lockRmw(c, pa, ${size}, ${op}, b, bh, 0); ah = m.hi;`);
      e.line(`H.bitTest(c, ${BitTestKind.bt}, ${size}, a, ah, t);`);
      return;
    }
    e.read(dst, 'a', size);
    e.line(`s = H.bitTest(c, ${kind}, ${size}, a, ${hiOf(size, 'a')}, t); sh = c.vh;`);
    if (kind !== BitTestKind.bt) e.write(dst, 's', 'sh', size);
  };
}

/** BSF/BSR/POPCNT/LZCNT/TZCNT r, r/m. */
export function scan(kind: number) {
  return (e: Emitter): void => {
    const [dst, src] = e.operands(2);
    const size = dst.size;
    e.prepare(src, Need.read);
    e.read(src, 'b', size);
    e.read(dst, 'a', size);
    e.line(`s = H.scan(c, ${kind}, ${size}, a, ${hiOf(size, 'a')}, b, ${hiOf(size, 'b')}); sh = c.vh;`);
    if (kind === ScanKind.bsf || kind === ScanKind.bsr) {
      // A zero source leaves the whole destination untouched, even a 32-bit one (no zero-extension).
      e.line(`if (${size === 8 ? '(b | bh)' : 'b'} !== 0) {`);
      e.write(dst, 's', 'sh', size);
      e.line('}');
    } else {
      e.write(dst, 's', 'sh', size);
    }
  };
}
