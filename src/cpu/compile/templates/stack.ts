import { OperandKind } from '../../decode.ts';
import { Need } from '../../mmu.ts';
import { Emitter, memoryRead, UnsupportedForm } from '../emitter.ts';

/** Stack: PUSH POP (register, immediate, memory), ENTER, LEAVE. PUSHF/POPF live in system helpers. */

export function push(e: Emitter): void {
  const [src] = e.operands(1);
  const size = -e.insn.stackIncrement;
  if (size !== 8 && size !== 2) throw new UnsupportedForm(`PUSH of ${size} bytes`);
  if (src.kind === OperandKind.memory) e.translateMemory(size, Need.read, 'pa');
  // The value is read before RSP moves (PUSH RSP pushes the old RSP).
  e.read(src, 'b', size);
  e.push('b', 'bh', size);
}

export function pop(e: Emitter): void {
  const [dst] = e.operands(1);
  const size = dst.size;
  if (size !== 8 && size !== 2) throw new UnsupportedForm(`POP of ${size} bytes`);
  e.line('ea = r[8]; eah = r[9];');
  e.translateAddress('ea', 'eah', Need.read | Need.stack, size, 'b');
  if (dst.kind === OperandKind.memory) {
    // A memory destination is addressed with RSP already incremented (SDM: POP).
    e.line(`t = (r[8] >>> 0) + ${size}; a = r[8]; ah = r[9]; r[8] = t | 0; r[9] = (r[9] + (t > 4294967295 ? 1 : 0)) | 0;`);
    e.line('try {');
    e.translateMemory(size, Need.write);
    e.line('} catch (x) { r[8] = a; r[9] = ah; throw x; }');
    e.line(memoryRead('b', 's', size));
    e.write(dst, 's', 'sh', size);
    return;
  }
  e.line(memoryRead('b', 's', size));
  e.line(`t = (r[8] >>> 0) + ${size}; r[8] = t | 0; r[9] = (r[9] + (t > 4294967295 ? 1 : 0)) | 0;`);
  e.write(dst, 's', 'sh', size);
}

/** LEAVE: RSP = RBP, then POP RBP. */
export function leave(e: Emitter): void {
  if (e.insn.operands.length !== 0 || e.insn.bytes[0] === 0x66) throw new UnsupportedForm('16-bit LEAVE');
  e.line('ea = r[10]; eah = r[11];');
  e.translateAddress('ea', 'eah', Need.read | Need.stack, 8, 'b');
  e.line(memoryRead('b', 's', 8));
  e.line('t = (r[10] >>> 0) + 8; r[8] = t | 0; r[9] = (r[11] + (t > 4294967295 ? 1 : 0)) | 0;');
  e.line('r[10] = s; r[11] = sh;');
}

/** ENTER imm16, imm8: builds a stack frame; nesting levels copy frame pointers (helper). */
export function enter(e: Emitter): void {
  e.line(`H.enter(c, ${e.insn.immLo & 0xffff}, ${e.insn.imm2 & 31});`);
  e.writesMemory = true;
}
