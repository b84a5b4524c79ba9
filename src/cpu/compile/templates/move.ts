import { OperandKind, RegisterClass } from '../../decode.ts';
import { Need } from '../../mmu.ts';
import { conditionSource } from '../conditions.ts';
import { Emitter, UnsupportedForm } from '../emitter.ts';

/** Data movement: MOV MOVZX MOVSX MOVSXD LEA XCHG CMOVcc SETcc BSWAP CBW/CWDE/CDQE CWD/CDQ/CQO. */

export function mov(e: Emitter): void {
  const [dst, src] = e.operands(2);
  if (dst.regClass === RegisterClass.control || src.regClass === RegisterClass.control) {
    movControl(e);
    return;
  }
  if (dst.regClass === RegisterClass.segment || src.regClass === RegisterClass.segment) {
    throw new UnsupportedForm('MOV to or from a segment register');
  }
  const size = dst.size;
  if (dst.kind === OperandKind.memory) e.translateMemory(size, Need.write);
  else if (src.kind === OperandKind.memory) e.translateMemory(size, Need.read);
  e.read(src, 'a', size);
  e.write(dst, 'a', 'ah', size);
}

/** MOV to/from CR0/2/3/4/8: privileged, serialising, may exit; done by the system helper. */
function movControl(e: Emitter): void {
  const [dst, src] = e.operands(2);
  e.endBlockAfter = true;
  e.requireCpl0();
  if (dst.regClass === RegisterClass.control) {
    // 32-bit code moves 32-bit registers: the high half of the source is not part of it.
    e.exitingCall(`H.writeCr(c, ${dst.reg}, r[${2 * src.reg}], ${e.mode32 ? 0 : `r[${2 * src.reg + 1}]`}, ${src.reg})`);
  } else {
    e.line(`H.readCr(c, ${src.reg}, ${dst.reg});`);
  }
}

export function movExtend(signed: boolean) {
  return (e: Emitter): void => {
    const [dst, src] = e.operands(2);
    e.prepare(src, Need.read);
    e.read(src, 'a', src.size);
    const from = src.size;
    const to = dst.size;
    if (!signed) {
      e.write(dst, 'a', '0', to);
      return;
    }
    const extended = from === 1 ? '((a << 24) >> 24)' : from === 2 ? '((a << 16) >> 16)' : 'a';
    e.line(`a = ${extended};`);
    if (to === 8) e.write(dst, 'a', '(a >> 31)', 8);
    else e.write(dst, 'a', '0', to);
  };
}

export function lea(e: Emitter): void {
  const [dst] = e.operands(2);
  e.effectiveAddress();
  e.write(dst, 'ea', 'eah', dst.size);
}

/** XCHG: with memory it is implicitly locked (atomic exchange). */
export function xchg(e: Emitter): void {
  const [x, y] = e.operands(2);
  const size = x.size;
  if (x.kind === OperandKind.memory || y.kind === OperandKind.memory) {
    const [mem, reg] = x.kind === OperandKind.memory ? [x, y] : [y, x];
    e.translateMemory(size, Need.readWrite);
    e.read(reg, 'b', size);
    e.line(`a = H.lockRmw(c, pa, ${size}, 7, b, ${size === 8 ? 'bh' : '0'}, 0);${size === 8 ? ' ah = m.hi;' : ''}`);
    void mem;
    e.write(reg, 'a', 'ah', size);
    return;
  }
  e.read(x, 'a', size);
  e.read(y, 'b', size);
  e.write(x, 'b', 'bh', size);
  e.write(y, 'a', 'ah', size);
}

export function cmov(e: Emitter): void {
  const [dst, src] = e.operands(2);
  const size = dst.size;
  // The source is read (and may fault) whether or not the condition holds (SDM: CMOVcc).
  e.prepare(src, Need.read);
  e.read(src, 'b', size);
  const cond = conditionSource(e.insn.condition - 1, e.previousFlags);
  if (size === 4) {
    // A 32-bit CMOV zero-extends the destination even when the condition is false.
    e.line(`if (${cond}) { r[${2 * dst.reg}] = b; } r[${2 * dst.reg + 1}] = 0;`);
    return;
  }
  e.line(`if (${cond}) {`);
  e.write(dst, 'b', 'bh', size);
  e.line('}');
}

export function setcc(e: Emitter): void {
  const [dst] = e.operands(1);
  e.prepare(dst, Need.write);
  e.line(`a = (${conditionSource(e.insn.condition - 1, e.previousFlags)}) ? 1 : 0;`);
  e.write(dst, 'a', '0', 1);
}

export function bswap(e: Emitter): void {
  const [dst] = e.operands(1);
  const swap32 = (x: string): string =>
    `((((${x}) & 0xff) << 24) | ((((${x}) >>> 8) & 0xff) << 16) | ((((${x}) >>> 16) & 0xff) << 8) | (((${x}) >>> 24) & 0xff))`;
  if (dst.size === 8) {
    e.read(dst, 'a', 8);
    e.write(dst, swap32('ah'), swap32('a'), 8);
  } else if (dst.size === 4) {
    e.read(dst, 'a', 4);
    e.write(dst, swap32('a'), '0', 4);
  } else {
    // BSWAP r16 is undefined; real CPUs zero the register's low word. Documented in the flags table.
    e.write(dst, '0', '0', 2);
  }
}

/** CBW/CWDE/CDQE: sign-extend the low half of rAX into the whole of it. */
export function signExtendAccumulator(toSize: 2 | 4 | 8) {
  return (e: Emitter): void => {
    if (toSize === 2) e.line('a = ((r[0] << 24) >> 24) & 0xffff; r[0] = (r[0] & -65536) | a;');
    else if (toSize === 4) e.line('r[0] = (r[0] << 16) >> 16; r[1] = 0;');
    else e.line('r[1] = r[0] >> 31;');
  };
}

/** CWD/CDQ/CQO: fill rDX with the sign of rAX. */
export function signToDx(size: 2 | 4 | 8) {
  return (e: Emitter): void => {
    if (size === 2) e.line('r[4] = (r[4] & -65536) | (((r[0] << 16) >> 31) & 0xffff);');
    else if (size === 4) e.line('r[4] = r[0] >> 31; r[5] = 0;');
    else e.line('r[4] = r[1] >> 31; r[5] = r[1] >> 31;');
  };
}

/** NOP (any length), PAUSE, and fences: no architectural effect on a single vCPU. */
export function nothing(_e: Emitter): void {}

/** MFENCE: orders memory across workers; Atomics operations are sequentially consistent fences. */
export function fence(e: Emitter): void {
  e.line('H.fence(c);');
}
