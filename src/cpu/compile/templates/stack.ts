import { OperandKind } from '../../decode.ts';
import { Need } from '../../mmu.ts';
import { Emitter, memoryRead, memoryWrite, UnsupportedForm } from '../emitter.ts';

/**
 * Stack: PUSH POP (register, immediate, memory), ENTER, LEAVE, and in 32-bit code PUSHAD/POPAD.
 * PUSHF/POPF live in system helpers. In 32-bit code the stack is SS.B=1 (ESP, wrapping at 4 GiB):
 * vcpusim's flat segments have no 16-bit stacks.
 */

/** Operand sizes a PUSH or POP may have: 8 or 2 in 64-bit code, 4 or 2 in 32-bit code. */
function stackOperand(e: Emitter, size: number): void {
  if (size !== e.stackWidth && size !== 2) throw new UnsupportedForm(`PUSH/POP of ${size} bytes`);
}

export function push(e: Emitter): void {
  const [src] = e.operands(1);
  const size = -e.insn.stackIncrement;
  stackOperand(e, size);
  if (src.kind === OperandKind.memory) e.translateMemory(size, Need.read, 'pa');
  // The value is read before RSP moves (PUSH RSP pushes the old RSP).
  e.read(src, 'b', size);
  e.push('b', 'bh', size);
}

export function pop(e: Emitter): void {
  const [dst] = e.operands(1);
  const size = dst.size;
  stackOperand(e, size);
  e.line(e.stackTop());
  e.translateAddress('ea', 'eah', Need.read | Need.stack, size, 'b');
  if (dst.kind === OperandKind.memory) {
    // A memory destination is addressed with RSP already incremented (SDM: POP).
    e.line(`a = r[8]; ah = r[9]; ${e.stackAbove(size)}`);
    e.undoOnStop = 'r[8] = a; r[9] = ah; ';
    e.translateMemory(size, Need.write);
    e.undoOnStop = '';
    e.line(memoryRead('b', 's', size));
    e.write(dst, 's', 'sh', size);
    return;
  }
  e.line(memoryRead('b', 's', size));
  e.line(e.stackAbove(size));
  e.write(dst, 's', 'sh', size);
}

/** LEAVE: RSP = RBP, then POP RBP. */
export function leave(e: Emitter): void {
  if (e.insn.operands.length !== 0 || e.insn.bytes[0] === 0x66) throw new UnsupportedForm('16-bit LEAVE');
  const width = e.stackWidth;
  e.line(e.stackTop(5));
  e.translateAddress('ea', 'eah', Need.read | Need.stack, width, 'b');
  e.line(memoryRead('b', 's', width));
  e.line(e.stackAbove(width, 5));
  e.line(width === 8 ? 'r[10] = s; r[11] = sh;' : 'r[10] = s; r[11] = 0;');
}

/** ENTER imm16, imm8: builds a stack frame; nesting levels copy frame pointers (helper). */
export function enter(e: Emitter): void {
  if (e.insn.bytes[0] === 0x66) throw new UnsupportedForm('16-bit ENTER');
  e.line(`H.enter(c, ${e.insn.immLo & 0xffff}, ${e.insn.imm2 & 31}, ${e.stackWidth});`);
  e.writesMemory = true;
}

/** Block-scoped locals for the physical addresses of PUSHAD/POPAD's eight slots. */
const SLOTS = 'let p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0;';

/**
 * PUSHAD (32-bit code only): EAX ECX EDX EBX, the ESP from before, EBP ESI EDI, in that order
 * (SDM Vol. 2B "PUSHA/PUSHAD"). All eight slots are translated before the first is written.
 */
export function pushad(e: Emitter): void {
  if (!e.mode32 || e.insn.stackIncrement !== -32) throw new UnsupportedForm('PUSHA with a 16-bit operand');
  e.line(SLOTS);
  for (let k = 0; k < 8; k++) {
    e.line(e.stackBelow(4 * (k + 1)));
    e.translateAddress('ea', 'eah', Need.write | Need.stack, 4, `p${k}`);
  }
  for (let k = 0; k < 8; k++) e.line(memoryWrite(`p${k}`, `r[${2 * k}]`, '0', 4));
  e.line('r[8] = ea; r[9] = 0;');
  e.writesMemory = true;
}

/**
 * POPAD (32-bit code only): EDI ESI EBP, a skipped slot (ESP is not loaded), EBX EDX ECX EAX;
 * then ESP moves up by 32. Every slot is read before any register changes.
 */
export function popad(e: Emitter): void {
  if (!e.mode32 || e.insn.stackIncrement !== 32) throw new UnsupportedForm('POPA with a 16-bit operand');
  e.line(SLOTS);
  for (let k = 0; k < 8; k++) {
    e.line(`ea = (r[8] + ${4 * k}) | 0; eah = 0;`);
    e.translateAddress('ea', 'eah', Need.read | Need.stack, 4, `p${k}`);
  }
  for (let k = 0; k < 8; k++) {
    if (k === 3) continue;
    e.line(`${memoryRead(`p${k}`, 'a', 4)} r[${2 * (7 - k)}] = a; r[${2 * (7 - k) + 1}] = 0;`);
  }
  e.line(e.stackAbove(32));
}
