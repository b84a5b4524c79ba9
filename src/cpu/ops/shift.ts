import { AF, ARITH, CF, OF, PARITY, SF, ZF, settleFlags, type LazyFlags } from '../flags.ts';

/**
 * Shifts and rotates (SDM Vol. 2B: SAL/SAR/SHL/SHR, RCL/RCR/ROL/ROR, SHLD, SHRD).
 *
 * Each helper takes the destination as lo/hi (hi only for 64-bit), returns the new low half and
 * leaves the new high half in `out.vh`. Flags are set eagerly. Where the SDM leaves a flag
 * undefined, the value produced here is whatever falls out of the formula; the differential
 * harness masks those flags (see undefined-flags.ts).
 */

export interface ShiftCpu extends LazyFlags {
  vh: number;
}

export const ShiftKind = { rol: 0, ror: 1, rcl: 2, rcr: 3, shl: 4, shr: 5, sal: 6, sar: 7 } as const;

const BITS = [0, 8, 16, 0, 32, 0, 0, 0, 64];

/** Value of size ≤ 4 as an unsigned number. */
function unsigned(value: number, size: number): number {
  return size === 4 ? value >>> 0 : value & (size === 1 ? 0xff : 0xffff);
}

function resultFlags(lo: number, hi: number, size: number): number {
  const zero = size === 8 ? (lo | hi) === 0 : unsigned(lo, size) === 0;
  const sign = size === 8 ? hi < 0 : ((lo >>> (BITS[size] - 1)) & 1) !== 0;
  return PARITY[lo & 0xff] | (zero ? ZF : 0) | (sign ? SF : 0);
}

function setFlags(cpu: LazyFlags, bits: number, mask: number): void {
  const current = settleFlags(cpu);
  cpu.fl = (current & ~mask) | (bits & mask);
}

/** 64-bit logical shift left of lo/hi by n (0..63). */
function shl64(lo: number, hi: number, n: number): [number, number] {
  if (n === 0) return [lo, hi];
  if (n < 32) return [lo << n, (hi << n) | (lo >>> (32 - n))];
  return [0, lo << (n - 32)];
}

function shr64(lo: number, hi: number, n: number): [number, number] {
  if (n === 0) return [lo, hi];
  if (n < 32) return [(lo >>> n) | (hi << (32 - n)), hi >>> n];
  return [hi >>> (n - 32), 0];
}

function sar64(lo: number, hi: number, n: number): [number, number] {
  if (n === 0) return [lo, hi];
  if (n < 32) return [(lo >>> n) | (hi << (32 - n)), hi >> n];
  return [hi >> (n - 32), hi >> 31];
}

function bit64(lo: number, hi: number, index: number): number {
  return index < 32 ? (lo >>> index) & 1 : (hi >>> (index - 32)) & 1;
}

/** SHL/SAL/SHR/SAR/ROL/ROR/RCL/RCR r/m, count. */
export function shift(cpu: ShiftCpu, kind: number, size: number, lo: number, hi: number, count: number): number {
  const masked = count & (size === 8 ? 63 : 31);
  if (masked === 0) {
    cpu.vh = hi;
    return lo;
  }
  if (kind >= ShiftKind.shl) return shiftLinear(cpu, kind, size, lo, hi, masked);
  if (kind <= ShiftKind.ror) return rotate(cpu, kind, size, lo, hi, masked);
  return rotateThroughCarry(cpu, kind, size, lo, hi, masked);
}

function shiftLinear(cpu: ShiftCpu, kind: number, size: number, lo: number, hi: number, n: number): number {
  const width = BITS[size];
  let rlo: number;
  let rhi = 0;
  let cf: number;
  let of: number;
  if (size === 8) {
    if (kind === ShiftKind.shr) {
      [rlo, rhi] = shr64(lo, hi, n);
      cf = bit64(lo, hi, n - 1);
      of = (hi >>> 31) & 1;
    } else if (kind === ShiftKind.sar) {
      [rlo, rhi] = sar64(lo, hi, n);
      cf = bit64(lo, hi, n - 1);
      of = 0;
    } else {
      [rlo, rhi] = shl64(lo, hi, n);
      cf = bit64(lo, hi, 64 - n);
      of = ((rhi >>> 31) & 1) ^ cf;
    }
  } else {
    const value = unsigned(lo, size);
    const mask = size === 4 ? 0xffffffff : (1 << width) - 1;
    if (kind === ShiftKind.shr) {
      rlo = n >= 32 ? 0 : value >>> n;
      cf = n > width ? 0 : (value >>> (n - 1)) & 1;
      of = (value >>> (width - 1)) & 1;
    } else if (kind === ShiftKind.sar) {
      const signed = size === 4 ? lo | 0 : (value << (32 - width)) >> (32 - width);
      rlo = (signed >> Math.min(n, 31)) & mask;
      cf = (signed >> Math.min(n - 1, 31)) & 1;
      of = 0;
    } else {
      rlo = n >= 32 ? 0 : (value << n) & mask;
      cf = n > width ? 0 : n === width ? value & 1 : (value >>> (width - n)) & 1;
      of = ((rlo >>> (width - 1)) & 1) ^ cf;
    }
    rlo = size === 4 ? rlo | 0 : rlo;
  }
  setFlags(cpu, (cf ? CF : 0) | (of ? OF : 0) | resultFlags(rlo, rhi, size), ARITH);
  cpu.vh = rhi;
  return rlo;
}

function rotate(cpu: ShiftCpu, kind: number, size: number, lo: number, hi: number, masked: number): number {
  const width = BITS[size];
  const n = masked % width;
  let rlo: number;
  let rhi = 0;
  if (size === 8) {
    const [aLo, aHi] = kind === ShiftKind.rol ? shl64(lo, hi, n) : shr64(lo, hi, n);
    const [bLo, bHi] = n === 0 ? [0, 0] : kind === ShiftKind.rol ? shr64(lo, hi, 64 - n) : shl64(lo, hi, 64 - n);
    rlo = aLo | bLo;
    rhi = aHi | bHi;
  } else {
    const value = unsigned(lo, size);
    const mask = size === 4 ? 0xffffffff : (1 << width) - 1;
    rlo = n === 0 ? value : kind === ShiftKind.rol ? ((value << n) | (value >>> (width - n))) & mask : ((value >>> n) | (value << (width - n))) & mask;
    rlo = size === 4 ? rlo | 0 : rlo;
  }
  const msb = size === 8 ? (rhi >>> 31) & 1 : (rlo >>> (width - 1)) & 1;
  let cf: number;
  let of: number;
  if (kind === ShiftKind.rol) {
    cf = rlo & 1;
    of = msb ^ cf;
  } else {
    cf = msb;
    const next = size === 8 ? (rhi >>> 30) & 1 : (rlo >>> (width - 2)) & 1;
    of = msb ^ next;
  }
  setFlags(cpu, (cf ? CF : 0) | (of ? OF : 0), CF | OF);
  cpu.vh = rhi;
  return rlo;
}

function toBig(lo: number, hi: number, size: number): bigint {
  if (size === 8) return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  return BigInt(unsigned(lo, size));
}

function fromBig(cpu: ShiftCpu, value: bigint, size: number): number {
  if (size === 8) {
    cpu.vh = Number(BigInt.asIntN(32, value >> 32n));
    return Number(BigInt.asIntN(32, value));
  }
  cpu.vh = 0;
  const v = Number(value & ((1n << BigInt(BITS[size])) - 1n));
  return size === 4 ? v | 0 : v;
}

/** RCL/RCR: a (width+1)-bit rotation through CF, as the SDM pseudo-code does it. */
function rotateThroughCarry(cpu: ShiftCpu, kind: number, size: number, lo: number, hi: number, masked: number): number {
  const width = BigInt(BITS[size]);
  const count = size === 1 ? masked % 9 : size === 2 ? masked % 17 : masked;
  const flags = settleFlags(cpu);
  let cf = BigInt(flags & CF);
  let value = toBig(lo, hi, size);
  const top = width - 1n;
  const mask = (1n << width) - 1n;
  let of: bigint;
  if (kind === ShiftKind.rcl) {
    for (let i = 0; i < count; i++) {
      const out = (value >> top) & 1n;
      value = ((value << 1n) | cf) & mask;
      cf = out;
    }
    of = ((value >> top) & 1n) ^ cf;
  } else {
    of = ((value >> top) & 1n) ^ cf;
    for (let i = 0; i < count; i++) {
      const out = value & 1n;
      value = (value >> 1n) | (cf << top);
      cf = out;
    }
  }
  cpu.fl = (flags & ~(CF | OF)) | (cf !== 0n ? CF : 0) | (of !== 0n ? OF : 0);
  return fromBig(cpu, value, size);
}

/** SHLD/SHRD dst, src, count. */
export function doubleShift(
  cpu: ShiftCpu,
  left: boolean,
  size: number,
  dlo: number,
  dhi: number,
  slo: number,
  shi: number,
  count: number,
): number {
  const n = count & (size === 8 ? 63 : 31);
  if (n === 0) {
    cpu.vh = dhi;
    return dlo;
  }
  const width = BigInt(BITS[size]);
  const dest = toBig(dlo, dhi, size);
  const source = toBig(slo, shi, size);
  const big = BigInt(n);
  const mask = (1n << width) - 1n;
  let result: bigint;
  let cf: bigint;
  if (left) {
    // For 16-bit operands a count above 16 shifts bits of the source back in (undefined result).
    const joined = (dest << width) | source;
    const doubled = (joined << width) | dest;
    result = n <= BITS[size] ? ((joined << big) >> width) & mask : ((doubled << big) >> (2n * width)) & mask;
    cf = n <= BITS[size] ? (dest >> (width - big)) & 1n : (source >> (2n * width - big)) & 1n;
  } else {
    const joined = (source << width) | dest;
    const doubled = (dest << (2n * width)) | joined;
    result = n <= BITS[size] ? (joined >> big) & mask : (doubled >> big) & mask;
    cf = n <= BITS[size] ? (dest >> (big - 1n)) & 1n : (doubled >> (big - 1n)) & 1n;
  }
  const top = width - 1n;
  const of = ((result >> top) & 1n) ^ ((dest >> top) & 1n);
  const rlo = fromBig(cpu, result, size);
  setFlags(cpu, (cf !== 0n ? CF : 0) | (of !== 0n ? OF : 0) | resultFlags(rlo, cpu.vh, size), ARITH & ~AF);
  return rlo;
}
