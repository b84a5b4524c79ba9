import { ARITH, CF, OF, PARITY, SF, ZF, setArith, type LazyFlags } from '../flags.ts';

/**
 * MUL, IMUL (one, two and three operands), DIV, IDIV (SDM Vol. 2A/2B).
 *
 * Products and quotients go through BigInt: these instructions are rare next to loads, ALU ops
 * and branches, and exact 128-bit arithmetic in BigInt is simpler to get right than in halves.
 * MUL/IMUL define only CF and OF; SF/ZF/PF/AF are undefined (masked by the harness). DIV/IDIV
 * leave every flag undefined; this implementation leaves them unchanged.
 */

export interface MulDivCpu extends LazyFlags {
  readonly r: Int32Array;
  vh: number;
  fault(vector: number, error?: number): never;
}

const toU = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

function value(size: number, lo: number, hi: number, signed: boolean): bigint {
  const bits = size * 8;
  const raw = size === 8 ? toU(lo, hi) : BigInt(size === 4 ? lo >>> 0 : lo & ((1 << bits) - 1));
  return signed ? BigInt.asIntN(bits, raw) : raw;
}

function readAccumulator(cpu: MulDivCpu, size: number, signed: boolean): bigint {
  const r = cpu.r;
  return value(size, r[0], r[1], signed);
}

/** Writes the low `size` bytes of rAX (and rDX) as the architecture does for that size. */
function writeRegister(cpu: MulDivCpu, n: number, size: number, v: bigint): void {
  const r = cpu.r;
  const u = BigInt.asUintN(64, v);
  const lo = Number(u & 0xffffffffn) | 0;
  switch (size) {
    case 1: r[2 * n] = (r[2 * n] & -256) | (lo & 0xff); break;
    case 2: r[2 * n] = (r[2 * n] & -65536) | (lo & 0xffff); break;
    case 4: r[2 * n] = lo; r[2 * n + 1] = 0; break;
    default: r[2 * n] = lo; r[2 * n + 1] = Number(u >> 32n) | 0;
  }
}

/** Flags after a multiply: CF = OF = overflow; SF/ZF/PF follow the (signed) low half. */
function productFlags(overflow: boolean, lowSigned: bigint): number {
  const lowByte = Number(BigInt.asUintN(8, lowSigned));
  return (overflow ? CF | OF : 0) | PARITY[lowByte] | (lowSigned === 0n ? ZF : 0) | (lowSigned < 0n ? SF : 0);
}

/** One-operand MUL/IMUL: rDX:rAX (or AX for bytes) = rAX × source. */
export function multiplyAccumulator(cpu: MulDivCpu, size: number, lo: number, hi: number, signed: boolean): void {
  const bits = BigInt(size * 8);
  const product = readAccumulator(cpu, size, signed) * value(size, lo, hi, signed);
  const low = BigInt.asUintN(Number(bits), product);
  const high = BigInt.asUintN(Number(bits), product >> bits);
  const overflow = signed ? BigInt.asIntN(Number(bits), low) !== product : high !== 0n;
  if (size === 1) {
    writeRegister(cpu, 0, 2, BigInt.asUintN(16, product));
  } else {
    writeRegister(cpu, 0, size, low);
    writeRegister(cpu, 2, size, high);
  }
  setArith(cpu, productFlags(overflow, BigInt.asIntN(Number(bits), low)) & ARITH);
}

/** Two/three-operand IMUL: returns the truncated product (low half; high half in `vh`). */
export function multiplyTruncated(cpu: MulDivCpu, size: number, alo: number, ahi: number, blo: number, bhi: number): number {
  const bits = size * 8;
  const product = value(size, alo, ahi, true) * value(size, blo, bhi, true);
  const low = BigInt.asIntN(bits, product);
  setArith(cpu, productFlags(low !== product, low));
  const u = BigInt.asUintN(64, low);
  cpu.vh = size === 8 ? Number(u >> 32n) | 0 : 0;
  const out = Number(u & 0xffffffffn);
  return size === 4 || size === 8 ? out | 0 : out & ((1 << bits) - 1);
}

/** DIV/IDIV: rDX:rAX (AX for bytes) ÷ source; #DE on a zero divisor or a quotient that overflows. */
export function divide(cpu: MulDivCpu, size: number, lo: number, hi: number, signed: boolean): void {
  const bits = BigInt(size * 8);
  const divisor = value(size, lo, hi, signed);
  if (divisor === 0n) cpu.fault(0);
  const r = cpu.r;
  let dividend: bigint;
  if (size === 1) {
    dividend = BigInt(r[0] & 0xffff);
    if (signed) dividend = BigInt.asIntN(16, dividend);
  } else {
    const low = value(size, r[0], r[1], false);
    const high = value(size, r[4], r[5], false);
    dividend = (high << bits) | low;
    if (signed) dividend = BigInt.asIntN(Number(bits) * 2, dividend);
  }
  // BigInt division truncates toward zero, as IDIV does.
  const quotient = dividend / divisor;
  const remainder = dividend % divisor;
  const fits = signed
    ? quotient >= -(1n << (bits - 1n)) && quotient < 1n << (bits - 1n)
    : quotient < 1n << bits;
  if (!fits) cpu.fault(0);
  if (size === 1) {
    const ax = (Number(BigInt.asUintN(8, remainder)) << 8) | Number(BigInt.asUintN(8, quotient));
    r[0] = (r[0] & -65536) | ax;
  } else {
    writeRegister(cpu, 0, size, quotient);
    writeRegister(cpu, 2, size, remainder);
  }
}
