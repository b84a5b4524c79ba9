import { OperandKind } from '../../decode.ts';
import { Need } from '../../mmu.ts';
import { conditionSource } from '../conditions.ts';
import { Emitter, memoryRead, UnsupportedForm } from '../emitter.ts';

/** Near control flow: JMP Jcc CALL RET LOOP/LOOPE/LOOPNE JRCXZ/JECXZ. Every one ends its block. */

/** Low and high int32 halves of the canonical 64-bit form of a 48-bit linear address. */
export function canonicalHalves(linear: number): [number, number] {
  const lo = linear % 4294967296 | 0;
  const hi = ((Math.floor(linear / 4294967296) & 0xffff) << 16) >> 16;
  return [lo, hi];
}

/** Source turning a 64-bit target in a/ah into a RIP, raising #GP(0) if it is not canonical. */
const TARGET_FROM_A = 'if ((((ah >> 15) + 1) >>> 1) !== 0) H.fault(c, 13, 0);';
const RIP_FROM_A = '(ah & 0xffff) * 4294967296 + (a >>> 0)';

function hasAddressSizePrefix(e: Emitter): boolean {
  for (const byte of e.insn.bytes) {
    if (byte === 0x67) return true;
    if (![0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0xf0, 0xf2, 0xf3].includes(byte)) return false;
  }
  return false;
}

export function jmp(e: Emitter): void {
  const [target] = e.operands(1);
  if (target.kind === OperandKind.branch) {
    e.end(String(e.insn.target));
    return;
  }
  if (target.size !== 8) throw new UnsupportedForm('far or 16/32-bit indirect JMP');
  e.prepare(target, Need.read);
  e.read(target, 'a', 8);
  e.line(TARGET_FROM_A);
  e.end(RIP_FROM_A);
}

export function jcc(e: Emitter): void {
  e.endIf(conditionSource(e.insn.condition - 1, e.previousFlags), String(e.insn.target));
  e.end(String(e.next));
}

export function call(e: Emitter): void {
  const [target] = e.operands(1);
  const [retLo, retHi] = canonicalHalves(e.next);
  if (target.kind === OperandKind.branch) {
    e.push(String(retLo), String(retHi), 8);
    e.end(String(e.insn.target));
    return;
  }
  if (target.size !== 8) throw new UnsupportedForm('far or 16/32-bit indirect CALL');
  e.prepare(target, Need.read);
  e.read(target, 'a', 8);
  e.line(TARGET_FROM_A);
  e.push(String(retLo), String(retHi), 8);
  e.end(RIP_FROM_A);
}

export function ret(e: Emitter): void {
  const release = e.insn.operands.length === 1 ? e.insn.immLo & 0xffff : 0;
  e.line('ea = r[8]; eah = r[9];');
  e.translateAddress('ea', 'eah', Need.read | Need.stack, 8, 'pa');
  e.line(memoryRead('pa', 'a', 8));
  e.line(TARGET_FROM_A);
  e.line(`t = (r[8] >>> 0) + ${8 + release}; r[8] = t | 0; r[9] = (r[9] + (t > 4294967295 ? 1 : 0)) | 0;`);
  e.end(RIP_FROM_A);
}

/** LOOP/LOOPE/LOOPNE: decrement rCX without touching flags, branch while non-zero (and ZF test). */
export function loop(kind: 'loop' | 'loope' | 'loopne') {
  return (e: Emitter): void => {
    let nonZero: string;
    if (hasAddressSizePrefix(e)) {
      e.line('r[2] = (r[2] - 1) | 0; r[3] = 0;');
      nonZero = 'r[2] !== 0';
    } else {
      e.line('t = (r[2] >>> 0) - 1; r[2] = t | 0; r[3] = (r[3] - (t < 0 ? 1 : 0)) | 0;');
      nonZero = '(r[2] | r[3]) !== 0';
    }
    const zf = kind === 'loope' ? ' && H.cond(c, 4)' : kind === 'loopne' ? ' && H.cond(c, 5)' : '';
    e.endIf(`${nonZero}${zf}`, String(e.insn.target));
    e.end(String(e.next));
  };
}

export function jrcxz(e: Emitter): void {
  e.endIf(hasAddressSizePrefix(e) ? 'r[2] === 0' : '(r[2] | r[3]) === 0', String(e.insn.target));
  e.end(String(e.next));
}
