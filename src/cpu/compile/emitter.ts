import { OperandKind, RegisterClass, Segment, type Insn, type MemoryOperand, type Operand } from '../decode.ts';
import { Lazy, sizeIndex } from '../flags.ts';
import { Need, TLB_ENTRIES } from '../mmu.ts';
import { STOPPED } from '../stop.ts';

/**
 * Builds the JavaScript source of one instruction inside a block function.
 *
 * Conventions of the generated code (see block-compiler.ts for the prologue):
 *  - `c` is the Cpu, `r` its GPR words (register n at r[2n] low, r[2n+1] high), `m` its Mmu,
 *    `H` the helper table; `tl th tp tg us` are the MMU's TLB arrays and user-permission shift,
 *    `u8 u16 i32 cm` guest RAM views and the code-mark table, so a TLB hit and an aligned access
 *    compile to plain array operations (a call per access would blow V8's inlining budget).
 *  - Locals `a ah b bh s sh t ea eah pa` are scratch, reused by every instruction.
 *  - A value of size 1 or 2 is held masked (non-negative); size 4 as int32; size 8 as two int32
 *    halves (lo in `x`, hi in `xh`). This matches the lazy-flags encoding.
 *  - Every instruction translates all its memory operands before it changes any state, so a
 *    fault leaves the instruction without architectural effect. A translation's fault or EPT
 *    violation returns `-1 - index` from the block (stopped at that instruction); a helper's
 *    fault throws STOP (or, for a helper's VM exit, returns `EXITED`: see `exitingCall`).
 */

/** Thrown by a template for an operand combination it does not implement. */
export class UnsupportedForm extends Error {}

export const MASKS = [0, 0xff, 0xffff, 0, 0xffffffff] as const;

/** Masks a size-1/2 expression or int32-normalises a size-4 one. */
export function norm(expr: string, size: number): string {
  if (size === 1) return `((${expr}) & 0xff)`;
  if (size === 2) return `((${expr}) & 0xffff)`;
  return `((${expr}) | 0)`;
}

/** Sign bit shift for a size. */
export function signShift(size: number): number {
  return size === 8 ? 31 : size * 8 - 1;
}

export class Emitter {
  private readonly out: string[] = [];
  /** Lazy-flag kind this instruction left in locals a/b/s, for fused conditions (-1: none). */
  flagsKind = -1;
  flagsSize = 0;
  /** True when this instruction ends the block (it emitted its own `return`). */
  ended = false;
  /** True when the instruction may write guest memory (the block checks for self-modifying code). */
  writesMemory = false;
  /** Set by templates whose effect needs a block boundary right after (e.g. MOV to CR). */
  endBlockAfter = false;
  /** Code that undoes what the instruction changed before a translation (run when that translation stops). */
  undoOnStop = '';

  constructor(
    readonly index: number,
    readonly insn: Insn,
    /** Lazy-flag state left by the previous instruction of the block, for fused conditions. */
    readonly previousFlags: { kind: number; size: number },
    /**
     * 32-bit code (legacy protected mode or compatibility mode): linear addresses, ESP and EIP
     * are 32 bits and wrap at 4 GiB, so every `eah` is 0. Segments are flat (see cpu.ts).
     */
    readonly mode32 = false,
  ) {}

  get source(): string {
    return this.out.join('\n');
  }

  /**
   * Calls a helper that may take a VM exit: one that did fills the exit record and returns
   * `EXITED`, and the block returns `-1 - index` (stopped at this instruction) instead of the
   * helper throwing STOP — an unwinding throw costs ~1 µs, most of an instruction exit's CPU side.
   */
  exitingCall(call: string): void {
    this.line(`if (${call} !== 0) return ${-1 - this.index};`);
  }

  line(code: string): void {
    this.out.push(code);
  }

  /** The instruction's operands, asserting how many there are. */
  operands(count?: number): readonly Operand[] {
    const ops = this.insn.operands;
    if (count !== undefined && ops.length !== count) throw new UnsupportedForm(`expected ${count} operands, got ${ops.length}`);
    return ops;
  }

  /** Ends the block here: sets RIP from `ripExpr` and returns the number retired. */
  end(ripExpr: string): void {
    this.line(`c.rip = ${ripExpr}; return ${this.index + 1};`);
    this.ended = true;
  }

  /** `if (cond) end at target` — used by conditional branches before the fall-through end. */
  endIf(condition: string, ripExpr: string): void {
    this.line(`if (${condition}) { c.rip = ${ripExpr}; return ${this.index + 1}; }`);
  }

  // --- effective addresses -------------------------------------------------------------------------

  /** Emits the effective (linear) address of the memory operand into ea/eah. */
  effectiveAddress(mem: MemoryOperand = this.memory()): void {
    const { base, index, scale, dispLo, dispHi } = mem;
    if (mem.addressSize !== 8) {
      const parts: string[] = [];
      if (base >= 0) parts.push(`r[${2 * base}]`);
      if (index >= 0) parts.push(scale === 1 ? `r[${2 * index}]` : `r[${2 * index}] * ${scale}`);
      if (dispLo !== 0 || parts.length === 0) parts.push(String(dispLo));
      this.line(`ea = (${parts.join(' + ')}) ${mem.addressSize === 2 ? '& 0xffff' : '| 0'}; eah = 0;`);
    } else if (base < 0 && index < 0) {
      this.line(`ea = ${dispLo}; eah = ${dispHi};`);
    } else if (index < 0 && dispLo === 0 && dispHi === 0) {
      this.line(`ea = r[${2 * base}]; eah = r[${2 * base + 1}];`);
    } else {
      const lows: string[] = [];
      const highs: string[] = [];
      if (base >= 0) {
        lows.push(`(r[${2 * base}] >>> 0)`);
        highs.push(`r[${2 * base + 1}]`);
      }
      if (index >= 0) {
        lows.push(scale === 1 ? `(r[${2 * index}] >>> 0)` : `(r[${2 * index}] >>> 0) * ${scale}`);
        highs.push(scale === 1 ? `r[${2 * index + 1}]` : `r[${2 * index + 1}] * ${scale}`);
      }
      if (dispLo !== 0) lows.push(String(dispLo >>> 0));
      if (dispHi !== 0) highs.push(String(dispHi));
      this.line(`t = ${lows.join(' + ')}; ea = t | 0; eah = (${highs.join(' + ')} + ((t / 4294967296) | 0)) | 0;`);
    }
    if (mem.segment !== Segment.none) {
      const s = mem.segment === Segment.fs ? 'fs' : 'gs';
      // 32-bit code: the base's low half, and the sum wraps at 4 GiB like the address itself.
      if (this.mode32) this.line(`ea = (ea + c.${s}Lo) | 0;`);
      else this.line(`t = (ea >>> 0) + (c.${s}Lo >>> 0); ea = t | 0; eah = (eah + c.${s}Hi + (t > 4294967295 ? 1 : 0)) | 0;`);
    }
  }

  memory(): MemoryOperand {
    const mem = this.insn.memory;
    if (mem === null) throw new UnsupportedForm('instruction has no memory operand');
    return mem;
  }

  /** Computes the address of the memory operand and translates it; the result is in `pa`. */
  translateMemory(size: number, need: number, into = 'pa'): void {
    const mem = this.memory();
    this.effectiveAddress(mem);
    this.translateAddress('ea', 'eah', need | (mem.stack ? Need.stack : 0), size, into);
    if ((need & Need.write) !== 0) this.writesMemory = true;
  }

  /**
   * Emits `into = physical address of the size-byte access at lo/hi`: the TLB hit test inline,
   * the MMU's slow path (walk, faults, page crossing) otherwise. `lo`/`hi` must be plain locals
   * or register words (they are read more than once).
   */
  translateAddress(lo: string, hi: string, need: number, size: number, into: string): void {
    const rights = need & 7;
    const fits = size === 1 ? '' : ` && (${lo} & 4095) <= ${4096 - size}`;
    this.line(`t = ((${lo} >>> 12) ^ (${lo} >>> 22) ^ ${hi}) & ${TLB_ENTRIES - 1};`);
    // A fault or an EPT violation on the slow path returns from the block at this instruction.
    this.line(
      `if (tl[t] === (${lo} & -4096) && th[t] === ${hi} && ((tp[t] >> us) & ${rights}) === ${rights}${fits}) ${into} = tg[t] + (${lo} & 4095); ` +
        `else if ((${into} = m.translateSlow(${lo}, ${hi}, ${need}, ${size})) === ${STOPPED}) { ${this.undoOnStop}return ${-1 - this.index}; }`,
    );
  }

  /** Translates the operand if it is in memory (no-op for registers and immediates). */
  prepare(op: Operand, need: number): void {
    if (op.kind === OperandKind.memory) this.translateMemory(op.size, need);
  }

  // --- reading and writing operands --------------------------------------------------------------

  /** Loads an operand of `size` into local `x` (and `xh` for size 8). Memory must be translated. */
  read(op: Operand, x: string, size = op.size): void {
    switch (op.kind) {
      case OperandKind.register:
        this.line(`${x} = ${registerRead(op, size)};` + (size === 8 ? ` ${x}h = r[${2 * op.reg + 1}];` : ''));
        return;
      case OperandKind.memory:
        this.line(memoryRead('pa', x, size));
        return;
      case OperandKind.immediate: {
        const { immLo, immHi } = this.insn;
        if (size === 8) this.line(`${x} = ${immLo}; ${x}h = ${immHi};`);
        else this.line(`${x} = ${size === 4 ? immLo : immLo & MASKS[size]};`);
        return;
      }
      default:
        throw new UnsupportedForm(`cannot read operand kind ${op.kind}`);
    }
  }

  /** Stores `lo` (and `hi` for size 8) to an operand. Memory must be translated. */
  write(op: Operand, lo: string, hi = '0', size = op.size): void {
    switch (op.kind) {
      case OperandKind.register:
        this.line(registerWrite(op, lo, hi, size));
        return;
      case OperandKind.memory:
        this.line(memoryWrite('pa', lo, hi, size));
        this.writesMemory = true;
        return;
      default:
        throw new UnsupportedForm(`cannot write operand kind ${op.kind}`);
    }
  }

  /** Records lazy flags for `kind` from locals a/b/s (and ah/bh/sh for size 8). */
  lazyFlags(kind: number, size: number, carryIn?: string): void {
    const op = (kind << 2) | sizeIndex(size);
    const extra = size === 8 ? ' c.fah = ah; c.fbh = bh; c.frh = sh;' : '';
    const cin = carryIn !== undefined ? ` c.fcin = ${carryIn};` : '';
    this.line(`c.fop = ${op}; c.fa = a; c.fb = b; c.fr = s;${extra}${cin}`);
    this.flagsKind = kind;
    this.flagsSize = size;
  }

  /**
   * Puts the current CF (0/1) in the block-level local `cf` and returns its name. When the previous
   * instruction of the block left its operands in the locals, CF is computed from them (or, after
   * INC/DEC, is already in `cf`) instead of asking the lazy-flags helper.
   */
  carryIn(): string {
    const { kind, size } = this.previousFlags;
    const less = (x: string, xh: string, y: string, yh: string): string =>
      size === 8 ? `(${xh} === ${yh} ? (${x} >>> 0) < (${y} >>> 0) : (${xh} >>> 0) < (${yh} >>> 0))` : `(${x} >>> 0) < (${y} >>> 0)`;
    if (kind === Lazy.inc || kind === Lazy.dec) return 'cf';
    if (kind === Lazy.logic) this.line('cf = 0;');
    else if (kind === Lazy.add) this.line(`cf = ${less('s', 'sh', 'a', 'ah')} ? 1 : 0;`);
    else if (kind === Lazy.sub) this.line(`cf = ${less('a', 'ah', 'b', 'bh')} ? 1 : 0;`);
    else this.line('cf = H.carry(c);');
    return 'cf';
  }

  /** Emits a privilege check: #GP(0) unless CPL is 0. */
  requireCpl0(): void {
    this.line('if (c.cpl !== 0) H.fault(c, 13, 0);');
  }

  /** Pushes lo/hi (size 8) or lo (size 2/4) on the stack; precise: translate, write, then move RSP. */
  push(lo: string, hi: string, size: number): void {
    this.line(this.stackBelow(size));
    this.translateAddress('ea', 'eah', Need.write | Need.stack, size, 'pa');
    this.line(memoryWrite('pa', lo, hi, size));
    this.line('r[8] = ea; r[9] = eah;');
    this.writesMemory = true;
  }

  /** Source setting ea/eah to RSP − `bytes` (ESP − `bytes`, wrapping at 4 GiB, in 32-bit code). */
  stackBelow(bytes: number): string {
    if (this.mode32) return `ea = (r[8] - ${bytes}) | 0; eah = 0;`;
    return `t = (r[8] >>> 0) - ${bytes}; ea = t | 0; eah = (r[9] - (t < 0 ? 1 : 0)) | 0;`;
  }

  /**
   * Source adding `bytes` to the stack pointer `from` (a register number: RSP, or RBP for LEAVE)
   * and storing it in RSP. A 32-bit stack pointer is written zero-extended, as a 32-bit result is.
   */
  stackAbove(bytes: number, from = 4): string {
    if (this.mode32) return `r[8] = (r[${2 * from}] + ${bytes}) | 0; r[9] = 0;`;
    return `t = (r[${2 * from}] >>> 0) + ${bytes}; r[8] = t | 0; r[9] = (r[${2 * from + 1}] + (t > 4294967295 ? 1 : 0)) | 0;`;
  }

  /** Source loading the stack pointer into ea/eah (its high half is 0 in 32-bit code). */
  stackTop(from = 4): string {
    return this.mode32 ? `ea = r[${2 * from}]; eah = 0;` : `ea = r[${2 * from}]; eah = r[${2 * from + 1}];`;
  }

  /** Bytes a near return address or pushed frame slot takes: 4 in 32-bit code, 8 in 64-bit code. */
  get stackWidth(): number {
    return this.mode32 ? 4 : 8;
  }

  /** The fall-through address of this instruction. */
  get next(): number {
    return this.insn.nextIp;
  }
}

/** Lazy kinds re-exported for templates. */
export { Lazy };

export function registerRead(op: Operand, size = op.size): string {
  if (op.regClass !== RegisterClass.gpr) throw new UnsupportedForm('non-GPR register operand');
  const lo = `r[${2 * op.reg}]`;
  switch (size) {
    case 1: return op.high8 ? `((${lo} >>> 8) & 0xff)` : `(${lo} & 0xff)`;
    case 2: return `(${lo} & 0xffff)`;
    case 4:
    case 8: return lo;
    default: throw new UnsupportedForm(`register size ${size}`);
  }
}

export function registerWrite(op: Operand, lo: string, hi: string, size = op.size): string {
  if (op.regClass !== RegisterClass.gpr) throw new UnsupportedForm('non-GPR register operand');
  const w = `r[${2 * op.reg}]`;
  switch (size) {
    case 1:
      return op.high8 ? `${w} = (${w} & -65281) | (((${lo}) & 0xff) << 8);` : `${w} = (${w} & -256) | ((${lo}) & 0xff);`;
    case 2: return `${w} = (${w} & -65536) | ((${lo}) & 0xffff);`;
    case 4: return `${w} = ${lo}; r[${2 * op.reg + 1}] = 0;`;
    case 8: return `${w} = ${lo}; r[${2 * op.reg + 1}] = ${hi};`;
    default: throw new UnsupportedForm(`register size ${size}`);
  }
}

/**
 * Reads `size` bytes at physical address (or split handle) `pa` into `x` (and `xh`). Aligned
 * accesses are plain array loads; split handles are ≡ 3 (mod 4), so they take the MMU path.
 */
export function memoryRead(pa: string, x: string, size: number): string {
  switch (size) {
    case 1: return `${x} = u8[${pa}];`;
    case 2: return `${x} = (${pa} & 1) === 0 ? u16[${pa} >> 1] : m.read16(${pa});`;
    case 4: return `${x} = (${pa} & 3) === 0 ? i32[${pa} >> 2] : m.read32(${pa});`;
    case 8: return `if ((${pa} & 3) === 0) { ${x} = i32[${pa} >> 2]; ${x}h = i32[(${pa} >> 2) + 1]; } else { ${x} = m.read64(${pa}); ${x}h = m.hi; }`;
    default: throw new UnsupportedForm(`memory size ${size}`);
  }
}

/** Writes `size` bytes at `pa`; a store to a page holding decoded code tells the MMU. */
export function memoryWrite(pa: string, lo: string, hi: string, size: number): string {
  const note = `if (cm[${pa} >>> 12] !== 0) m.noteWrite(${pa}, ${size});`;
  switch (size) {
    case 1: return `u8[${pa}] = ${lo}; ${note}`;
    case 2: return `if ((${pa} & 1) === 0) { u16[${pa} >> 1] = ${lo}; ${note} } else m.write16(${pa}, ${lo});`;
    case 4: return `if ((${pa} & 3) === 0) { i32[${pa} >> 2] = ${lo}; ${note} } else m.write32(${pa}, ${lo});`;
    case 8: return `if ((${pa} & 3) === 0) { i32[${pa} >> 2] = ${lo}; i32[(${pa} >> 2) + 1] = ${hi}; ${note} } else m.write64(${pa}, ${lo}, ${hi});`;
    default: throw new UnsupportedForm(`memory size ${size}`);
  }
}
