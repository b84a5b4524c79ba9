import { CF, ZF, settleFlags, setArith, type LazyFlags } from '../flags.ts';

/**
 * Bit tests and scans: BT/BTS/BTR/BTC, BSF/BSR, POPCNT, LZCNT, TZCNT (SDM Vol. 2A/2B).
 * Values arrive as lo/hi halves; results return the low half and leave the high half in `vh`.
 */

export interface BitsCpu extends LazyFlags {
  vh: number;
}

export const BitTestKind = { bt: 0, bts: 1, btr: 2, btc: 3 } as const;
export const ScanKind = { bsf: 0, bsr: 1, popcnt: 2, lzcnt: 3, tzcnt: 4 } as const;

/**
 * BT family on a value: CF = selected bit; returns the updated value (for BT, unchanged).
 * `index` is already reduced modulo the operand width. ZF is unchanged (Intel and AMD agree);
 * OF/SF/AF/PF are undefined and left unchanged here.
 */
export function bitTest(cpu: BitsCpu, kind: number, size: number, lo: number, hi: number, index: number): number {
  const inHigh = index >= 32;
  const word = inHigh ? hi : lo;
  const mask = 1 << (index & 31);
  const bit = (word & mask) !== 0;
  const flags = settleFlags(cpu);
  cpu.fl = (flags & ~CF) | (bit ? CF : 0);
  let updated = word;
  if (kind === BitTestKind.bts) updated = word | mask;
  else if (kind === BitTestKind.btr) updated = word & ~mask;
  else if (kind === BitTestKind.btc) updated = word ^ mask;
  if (inHigh) {
    cpu.vh = updated;
    return lo;
  }
  cpu.vh = hi;
  return size === 1 ? updated & 0xff : size === 2 ? updated & 0xffff : updated | 0;
}

function popcount32(x: number): number {
  let v = x >>> 0;
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

function trailingZeros32(x: number): number {
  return x === 0 ? 32 : 31 - Math.clz32(x & -x);
}

/** Source value normalised for the scan (sizes 1/2 masked, 4 as uint32). */
function low(lo: number, size: number): number {
  return size === 2 ? lo & 0xffff : size === 1 ? lo & 0xff : lo >>> 0;
}

/**
 * BSF/BSR/POPCNT/LZCNT/TZCNT. `dlo/dhi` is the old destination (BSF/BSR leave it unchanged for a
 * zero source, as AMD documents and Intel CPUs do).
 */
export function scan(cpu: BitsCpu, kind: number, size: number, dlo: number, dhi: number, slo: number, shi: number): number {
  const width = size * 8;
  const s = low(slo, size);
  const sh = size === 8 ? shi >>> 0 : 0;
  const isZero = s === 0 && sh === 0;
  let result: number;
  switch (kind) {
    case ScanKind.bsf:
    case ScanKind.bsr: {
      if (isZero) {
        const flags = settleFlags(cpu);
        cpu.fl = flags | ZF;
        cpu.vh = dhi;
        return dlo;
      }
      if (kind === ScanKind.bsf) result = s !== 0 ? trailingZeros32(s) : 32 + trailingZeros32(sh);
      else result = sh !== 0 ? 63 - Math.clz32(sh) : 31 - Math.clz32(s);
      const flags = settleFlags(cpu);
      cpu.fl = flags & ~ZF;
      break;
    }
    case ScanKind.popcnt:
      result = popcount32(s) + popcount32(sh);
      setArith(cpu, result === 0 ? ZF : 0);
      break;
    case ScanKind.lzcnt: {
      const leading = size === 8 ? (sh !== 0 ? Math.clz32(sh) : 32 + Math.clz32(s)) : Math.clz32(s) - (32 - width);
      result = leading;
      const flags = settleFlags(cpu);
      cpu.fl = (flags & ~(CF | ZF)) | (isZero ? CF : 0) | (result === 0 ? ZF : 0);
      break;
    }
    default: {
      result = isZero ? width : s !== 0 ? trailingZeros32(s) : 32 + trailingZeros32(sh);
      const flags = settleFlags(cpu);
      cpu.fl = (flags & ~(CF | ZF)) | (isZero ? CF : 0) | (result === 0 ? ZF : 0);
    }
  }
  cpu.vh = 0;
  return result;
}
