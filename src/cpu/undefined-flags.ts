import iced from 'iced-x86';
import { AF, CF, OF, PF, SF, ZF } from './flags.ts';

/**
 * What the architecture leaves undefined, per instruction (Intel SDM Vol. 2, "Flags Affected").
 *
 * This is the one table the differential harness uses as its mask: flags listed here are not
 * compared with the host CPU, and when `result` is true the destination is not compared either.
 * vcpusim still produces *some* value for them (whatever its formulas give); guests must not
 * depend on it, exactly as on hardware, where Intel and AMD already differ.
 */

export interface UndefinedEffects {
  /** RFLAGS bits whose value after the instruction is undefined. */
  readonly flags: number;
  /** The destination value is undefined. */
  readonly result: boolean;
}

const ALL = CF | PF | AF | ZF | SF | OF;
const NONE: UndefinedEffects = Object.freeze({ flags: 0, result: false });
const M = iced.Mnemonic;

type Rule = number | ((size: number, count: number) => UndefinedEffects);

/** Shift count after masking (5 bits, 6 for 64-bit operands). */
function masked(size: number, count: number): number {
  return count & (size === 8 ? 63 : 31);
}

/** SHL/SHR/SAR: nothing if count is 0; AF always; OF unless count is 1; CF once count ≥ width (8/16-bit). */
function linearShift(size: number, count: number): UndefinedEffects {
  const n = masked(size, count);
  if (n === 0) return NONE;
  let flags = AF;
  if (n !== 1) flags |= OF;
  if (n >= size * 8) flags |= CF;
  return { flags, result: false };
}

/** ROL/ROR/RCL/RCR: OF only defined for a masked count of 1. */
function rotate(size: number, count: number): UndefinedEffects {
  const n = masked(size, count);
  return n === 0 || n === 1 ? NONE : { flags: OF, result: false };
}

/** SHLD/SHRD: AF always, OF unless 1; a count above the operand width leaves result and flags undefined. */
function doubleShift(size: number, count: number): UndefinedEffects {
  const n = masked(size, count);
  if (n === 0) return NONE;
  if (n > size * 8) return { flags: ALL, result: true };
  return { flags: AF | (n === 1 ? 0 : OF), result: false };
}

const RULES: ReadonlyMap<number, Rule> = new Map<number, Rule>([
  [M.And, AF], [M.Or, AF], [M.Xor, AF], [M.Test, AF],
  [M.Mul, SF | ZF | AF | PF], [M.Imul, SF | ZF | AF | PF],
  [M.Div, ALL], [M.Idiv, ALL],
  [M.Shl, linearShift], [M.Sal, linearShift], [M.Shr, linearShift], [M.Sar, linearShift],
  [M.Rol, rotate], [M.Ror, rotate], [M.Rcl, rotate], [M.Rcr, rotate],
  [M.Shld, doubleShift], [M.Shrd, doubleShift],
  [M.Bt, OF | SF | AF | PF], [M.Bts, OF | SF | AF | PF], [M.Btr, OF | SF | AF | PF], [M.Btc, OF | SF | AF | PF],
  [M.Bsf, CF | OF | SF | AF | PF], [M.Bsr, CF | OF | SF | AF | PF],
  [M.Lzcnt, OF | SF | AF | PF], [M.Tzcnt, OF | SF | AF | PF],
  [M.Bswap, (size) => (size === 2 ? { flags: 0, result: true } : NONE)],
]);

/**
 * Undefined effects of one execution: `size` is the operand size in bytes, `count` the shift or
 * rotate count as the instruction saw it (immediate or CL; ignored by other instructions).
 */
export function undefinedEffects(mnemonic: number, size: number, count = 0): UndefinedEffects {
  const rule = RULES.get(mnemonic);
  if (rule === undefined) return NONE;
  if (typeof rule === 'number') return { flags: rule, result: false };
  return rule(size, count);
}

