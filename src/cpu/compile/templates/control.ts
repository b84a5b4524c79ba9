import { OperandKind, hasAddressSizePrefix } from '../../decode.ts';
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

/** 32-bit code's EIP from a target in `a`: no canonical check (EIP cannot be non-canonical). */
const EIP_FROM_A = '(a >>> 0)';

/** Width of rCX that LOOP and JrCXZ use: the address size (0x67 switches 64↔32 and 32↔16). */
function counterWidth(e: Emitter): number {
  const override = hasAddressSizePrefix(e.insn.bytes);
  if (e.mode32) return override ? 2 : 4;
  return override ? 4 : 8;
}

/** Reads an indirect branch target (register or memory, of the mode's width) into `a`/`ah`. */
function indirectTarget(e: Emitter, what: string): string {
  const [target] = e.operands(1);
  if (target.size !== e.stackWidth) throw new UnsupportedForm(`far or 16-bit indirect ${what}`);
  e.prepare(target, Need.read);
  e.read(target, 'a', target.size);
  if (e.mode32) return EIP_FROM_A;
  e.line(TARGET_FROM_A);
  return RIP_FROM_A;
}

export function jmp(e: Emitter): void {
  const [target] = e.operands(1);
  if (target.kind === OperandKind.branch) {
    e.end(String(e.insn.target));
    return;
  }
  e.end(indirectTarget(e, 'JMP'));
}

export function jcc(e: Emitter): void {
  e.endIf(conditionSource(e.insn.condition - 1, e.previousFlags), String(e.insn.target));
  e.end(String(e.next));
}

export function call(e: Emitter): void {
  const [target] = e.operands(1);
  const [retLo, retHi] = canonicalHalves(e.next);
  const width = e.stackWidth;
  if (target.kind === OperandKind.branch) {
    if (e.insn.stackIncrement !== -width) throw new UnsupportedForm('CALL with a 16-bit operand');
    e.push(String(retLo), String(retHi), width);
    e.end(String(e.insn.target));
    return;
  }
  const rip = indirectTarget(e, 'CALL');
  e.push(String(retLo), String(retHi), width);
  e.end(rip);
}

export function ret(e: Emitter): void {
  const release = e.insn.operands.length === 1 ? e.insn.immLo & 0xffff : 0;
  const width = e.stackWidth;
  if (e.insn.stackIncrement !== width + release) throw new UnsupportedForm('RET with a 16-bit operand');
  e.line(e.stackTop());
  e.translateAddress('ea', 'eah', Need.read | Need.stack, width, 'pa');
  e.line(memoryRead('pa', 'a', width));
  if (!e.mode32) e.line(TARGET_FROM_A);
  e.line(e.stackAbove(width + release));
  e.end(e.mode32 ? EIP_FROM_A : RIP_FROM_A);
}

/** LOOP/LOOPE/LOOPNE: decrement rCX without touching flags, branch while non-zero (and ZF test). */
export function loop(kind: 'loop' | 'loope' | 'loopne') {
  return (e: Emitter): void => {
    let nonZero: string;
    const width = counterWidth(e);
    if (width === 2) {
      e.line('r[2] = (r[2] & -65536) | ((r[2] - 1) & 0xffff);');
      nonZero = '(r[2] & 0xffff) !== 0';
    } else if (width === 4) {
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
  const width = counterWidth(e);
  e.endIf(width === 2 ? '(r[2] & 0xffff) === 0' : width === 4 ? 'r[2] === 0' : '(r[2] | r[3]) === 0', String(e.insn.target));
  e.end(String(e.next));
}
