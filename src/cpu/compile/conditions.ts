import { Lazy } from '../flags.ts';
import { signShift } from './emitter.ts';

/**
 * Source for "condition cc holds" (cc = 0..15: o no b ae e ne be a s ns p np l ge le g).
 *
 * When the instruction just before in the same block was a CMP/SUB/TEST/AND/… whose operands are
 * still in the locals a/b/s, most conditions compile to one comparison on those locals instead of
 * materialising RFLAGS — the fused compare-and-branch that makes loops cheap. Otherwise the
 * generic helper evaluates the lazy flags.
 */
export function conditionSource(cc: number, previous: { kind: number; size: number }): string {
  const fused = fusedCondition(cc >>> 1, previous.kind, previous.size);
  if (fused === null) return `H.cond(c, ${cc})`;
  return (cc & 1) === 0 ? fused : `!(${fused})`;
}

function fusedCondition(pair: number, kind: number, size: number): string | null {
  if (kind === Lazy.sub) return subCondition(pair, size);
  if (kind === Lazy.logic) return logicCondition(pair, size);
  if (kind === Lazy.add || kind === Lazy.inc || kind === Lazy.dec) return zeroSignCondition(pair, size);
  return null;
}

function zero(size: number): string {
  return size === 8 ? '(s | sh) === 0' : 's === 0';
}

function sign(size: number): string {
  return size === 8 ? 'sh < 0' : `((s >>> ${signShift(size)}) & 1) !== 0`;
}

function signed(x: string, size: number): string {
  if (size === 1) return `((${x} << 24) >> 24)`;
  if (size === 2) return `((${x} << 16) >> 16)`;
  return x;
}

function subCondition(pair: number, size: number): string | null {
  if (size === 8) {
    switch (pair) {
      case 1: return '(ah === bh ? (a >>> 0) < (b >>> 0) : (ah >>> 0) < (bh >>> 0))';
      case 2: return zero(8);
      case 3: return '(ah === bh ? (a >>> 0) <= (b >>> 0) : (ah >>> 0) < (bh >>> 0))';
      case 4: return sign(8);
      case 6: return '(ah === bh ? (a >>> 0) < (b >>> 0) : ah < bh)';
      case 7: return '(ah === bh ? (a >>> 0) <= (b >>> 0) : ah < bh)';
      default: return null;
    }
  }
  switch (pair) {
    case 1: return '(a >>> 0) < (b >>> 0)';
    case 2: return zero(size);
    case 3: return '(a >>> 0) <= (b >>> 0)';
    case 4: return sign(size);
    case 6: return `${signed('a', size)} < ${signed('b', size)}`;
    case 7: return `${signed('a', size)} <= ${signed('b', size)}`;
    default: return null;
  }
}

/** After AND/OR/XOR/TEST: CF = OF = 0, so B is never, L is "sign", LE is "zero or sign". */
function logicCondition(pair: number, size: number): string | null {
  switch (pair) {
    case 0: return 'false';
    case 1: return 'false';
    case 2: return zero(size);
    case 3: return zero(size);
    case 4: return sign(size);
    case 6: return sign(size);
    case 7: return `(${zero(size)} || ${sign(size)})`;
    default: return null;
  }
}

function zeroSignCondition(pair: number, size: number): string | null {
  if (pair === 2) return zero(size);
  if (pair === 4) return sign(size);
  return null;
}
