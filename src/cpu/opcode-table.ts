import iced from 'iced-x86';
import { DtrKind } from './state-block.ts';
import * as alu from './compile/templates/alu.ts';
import * as control from './compile/templates/control.ts';
import * as ops from './compile/templates/helper-ops.ts';
import * as move from './compile/templates/move.ts';
import * as stack from './compile/templates/stack.ts';
import * as sys from './compile/templates/system.ts';
import type { Emitter } from './compile/emitter.ts';
import { BitTestKind, ScanKind } from './ops/bits.ts';
import { ShiftKind } from './ops/shift.ts';
import { StringKind } from './ops/string.ts';

/**
 * The opcode table: every instruction vcpusim executes, keyed by iced `Mnemonic`.
 *
 * Legend:
 *  - `family`   groups instructions for coverage reports and the differential generator.
 *  - `emit`     the template that writes the instruction's code into its block (compile/templates).
 *  - `ends`     the block ends after this instruction: control flow, serialising or exiting
 *               instructions, and anything that changes CPL, paging or interrupt delivery.
 *  - `native`   the differential harness can run it on the host CPU at ring 3 and compare.
 *  - `lockable` a LOCK prefix is legal with a memory destination.
 *
 * Dispatch (compile/block-compiler.ts), the differential generator (test/cpu/diff) and coverage
 * all read this one table; an instruction missing here is #UD with reason "unsupported".
 */

export type Family =
  | 'move' | 'alu' | 'muldiv' | 'convert' | 'shift' | 'bits' | 'stack' | 'control' | 'string' | 'atomic'
  | 'flags' | 'nop' | 'system';

export interface OpcodeEntry {
  readonly family: Family;
  readonly emit: (e: Emitter) => void;
  readonly ends?: boolean;
  readonly native?: boolean;
  readonly lockable?: boolean;
}

const M = iced.Mnemonic;
const table = new Map<number, OpcodeEntry>();

function add(mnemonics: readonly number[], entry: OpcodeEntry): void {
  for (const mnemonic of mnemonics) {
    if (table.has(mnemonic)) throw new Error(`opcode table lists ${M[mnemonic]} twice`);
    table.set(mnemonic, entry);
  }
}

const CC = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;
/** The 16 condition-code forms of a mnemonic family: byName('cmov') → Cmovo … Cmovg. */
const byName = (prefix: string): number[] =>
  CC.map((cc) => {
    const name = prefix.charAt(0).toUpperCase() + prefix.slice(1) + cc;
    const value = (M as unknown as Record<string, number | undefined>)[name];
    if (value === undefined) throw new Error(`no iced mnemonic ${name}`);
    return value;
  });

// Data movement.
add([M.Mov], { family: 'move', emit: move.mov, native: true });
add([M.Movzx], { family: 'move', emit: move.movExtend(false), native: true });
add([M.Movsx, M.Movsxd], { family: 'move', emit: move.movExtend(true), native: true });
add([M.Lea], { family: 'move', emit: move.lea, native: true });
add([M.Xchg], { family: 'move', emit: move.xchg, native: true, lockable: true });
add([M.Bswap], { family: 'move', emit: move.bswap, native: true });
add(byName('cmov'), { family: 'move', emit: move.cmov, native: true });
add(byName('set'), { family: 'move', emit: move.setcc, native: true });

// Integer ALU (lazy flags).
add([M.Add], { family: 'alu', emit: alu.binary('add'), native: true, lockable: true });
add([M.Adc], { family: 'alu', emit: alu.binary('adc'), native: true, lockable: true });
add([M.Sub], { family: 'alu', emit: alu.binary('sub'), native: true, lockable: true });
add([M.Sbb], { family: 'alu', emit: alu.binary('sbb'), native: true, lockable: true });
add([M.And], { family: 'alu', emit: alu.binary('and'), native: true, lockable: true });
add([M.Or], { family: 'alu', emit: alu.binary('or'), native: true, lockable: true });
add([M.Xor], { family: 'alu', emit: alu.binary('xor'), native: true, lockable: true });
add([M.Cmp], { family: 'alu', emit: alu.binary('sub', true), native: true });
add([M.Test], { family: 'alu', emit: alu.binary('and', true), native: true });
add([M.Inc], { family: 'alu', emit: alu.incDec('inc'), native: true, lockable: true });
add([M.Dec], { family: 'alu', emit: alu.incDec('dec'), native: true, lockable: true });
add([M.Neg], { family: 'alu', emit: alu.neg, native: true, lockable: true });
add([M.Not], { family: 'alu', emit: alu.not, native: true, lockable: true });

// Multiply and divide.
add([M.Mul], { family: 'muldiv', emit: ops.accumulatorOp('multiplyAccumulator', false), native: true });
add([M.Imul], { family: 'muldiv', emit: ops.imul, native: true });
add([M.Div], { family: 'muldiv', emit: ops.accumulatorOp('divide', false), native: true });
add([M.Idiv], { family: 'muldiv', emit: ops.accumulatorOp('divide', true), native: true });

// Sign extension of the accumulator.
add([M.Cbw], { family: 'convert', emit: move.signExtendAccumulator(2), native: true });
add([M.Cwde], { family: 'convert', emit: move.signExtendAccumulator(4), native: true });
add([M.Cdqe], { family: 'convert', emit: move.signExtendAccumulator(8), native: true });
add([M.Cwd], { family: 'convert', emit: move.signToDx(2), native: true });
add([M.Cdq], { family: 'convert', emit: move.signToDx(4), native: true });
add([M.Cqo], { family: 'convert', emit: move.signToDx(8), native: true });

// Shifts and rotates.
add([M.Shl, M.Sal], { family: 'shift', emit: ops.shift(ShiftKind.shl), native: true });
add([M.Shr], { family: 'shift', emit: ops.shift(ShiftKind.shr), native: true });
add([M.Sar], { family: 'shift', emit: ops.shift(ShiftKind.sar), native: true });
add([M.Rol], { family: 'shift', emit: ops.shift(ShiftKind.rol), native: true });
add([M.Ror], { family: 'shift', emit: ops.shift(ShiftKind.ror), native: true });
add([M.Rcl], { family: 'shift', emit: ops.shift(ShiftKind.rcl), native: true });
add([M.Rcr], { family: 'shift', emit: ops.shift(ShiftKind.rcr), native: true });
add([M.Shld], { family: 'shift', emit: ops.doubleShift(true), native: true });
add([M.Shrd], { family: 'shift', emit: ops.doubleShift(false), native: true });

// Bit tests and scans.
add([M.Bt], { family: 'bits', emit: ops.bitTest(BitTestKind.bt), native: true });
add([M.Bts], { family: 'bits', emit: ops.bitTest(BitTestKind.bts), native: true, lockable: true });
add([M.Btr], { family: 'bits', emit: ops.bitTest(BitTestKind.btr), native: true, lockable: true });
add([M.Btc], { family: 'bits', emit: ops.bitTest(BitTestKind.btc), native: true, lockable: true });
add([M.Bsf], { family: 'bits', emit: ops.scan(ScanKind.bsf), native: true });
add([M.Bsr], { family: 'bits', emit: ops.scan(ScanKind.bsr), native: true });
add([M.Popcnt], { family: 'bits', emit: ops.scan(ScanKind.popcnt), native: true });
add([M.Lzcnt], { family: 'bits', emit: ops.scan(ScanKind.lzcnt), native: true });
add([M.Tzcnt], { family: 'bits', emit: ops.scan(ScanKind.tzcnt), native: true });

// Stack.
add([M.Push], { family: 'stack', emit: stack.push, native: true });
add([M.Pop], { family: 'stack', emit: stack.pop, native: true });
add([M.Pushfq, M.Pushfd], { family: 'stack', emit: sys.pushf, native: true });
add([M.Popfq, M.Popfd], { family: 'stack', emit: sys.popf, native: true, ends: true });
// 32-bit code only (iced decodes 60/61 as nothing else there and as invalid in 64-bit code).
add([M.Pushad], { family: 'stack', emit: stack.pushad, native: true });
add([M.Popad], { family: 'stack', emit: stack.popad, native: true });
add([M.Enter], { family: 'stack', emit: stack.enter, native: true });
add([M.Leave], { family: 'stack', emit: stack.leave, native: true });

// Control flow (all end their block).
add([M.Jmp], { family: 'control', emit: control.jmp, native: true, ends: true });
add(byName('j'), { family: 'control', emit: control.jcc, native: true, ends: true });
add([M.Call], { family: 'control', emit: control.call, native: true, ends: true });
add([M.Ret], { family: 'control', emit: control.ret, native: true, ends: true });
add([M.Loop], { family: 'control', emit: control.loop('loop'), native: true, ends: true });
add([M.Loope], { family: 'control', emit: control.loop('loope'), native: true, ends: true });
add([M.Loopne], { family: 'control', emit: control.loop('loopne'), native: true, ends: true });
add([M.Jrcxz, M.Jecxz], { family: 'control', emit: control.jrcxz, native: true, ends: true });

// Strings (end their block: a REP may need to resume at the same instruction).
const strings: Array<[readonly number[], number, boolean]> = [
  [[M.Movsb, M.Movsw, M.Movsd, M.Movsq], StringKind.movs, false],
  [[M.Stosb, M.Stosw, M.Stosd, M.Stosq], StringKind.stos, false],
  [[M.Lodsb, M.Lodsw, M.Lodsd, M.Lodsq], StringKind.lods, false],
  [[M.Cmpsb, M.Cmpsw, M.Cmpsd, M.Cmpsq], StringKind.cmps, true],
  [[M.Scasb, M.Scasw, M.Scasd, M.Scasq], StringKind.scas, true],
];
for (const [mnemonics, kind, compares] of strings) add(mnemonics, { family: 'string', emit: sys.string(kind, compares), native: true, ends: true });

// Atomics.
add([M.Xadd], { family: 'atomic', emit: sys.xadd, native: true, lockable: true });
add([M.Cmpxchg], { family: 'atomic', emit: sys.cmpxchg, native: true, lockable: true });
add([M.Cmpxchg8b, M.Cmpxchg16b], { family: 'atomic', emit: sys.cmpxchgWide, native: true, lockable: true });

// No-ops and fences.
add([M.Nop, M.Pause, M.Lfence, M.Sfence], { family: 'nop', emit: move.nothing, native: true });
add([M.Mfence], { family: 'nop', emit: move.fence, native: true });

// Direct flag edits.
add([M.Clc], { family: 'flags', emit: sys.clc, native: true });
add([M.Stc], { family: 'flags', emit: sys.stc, native: true });
add([M.Cmc], { family: 'flags', emit: sys.cmc, native: true });
add([M.Cld], { family: 'flags', emit: sys.cld, native: true });
add([M.Std], { family: 'flags', emit: sys.std, native: true });

// System: privileged, serialising or exiting — never run natively by the harness.
add([M.Cli], { family: 'system', emit: sys.call('cli') });
add([M.Sti], { family: 'system', emit: sys.call('sti'), ends: true });
add([M.Hlt], { family: 'system', emit: sys.hlt, ends: true });
add([M.Int3], { family: 'system', emit: sys.int3, ends: true });
add([M.Int], { family: 'system', emit: sys.intN, ends: true });
add([M.Iretq, M.Iretd], { family: 'system', emit: sys.iret, ends: true });
add([M.Cpuid], { family: 'system', emit: sys.call('cpuid'), ends: true });
add([M.Rdtsc], { family: 'system', emit: sys.call('rdtsc') });
add([M.Rdmsr], { family: 'system', emit: sys.call('rdmsr'), ends: true });
add([M.Wrmsr], { family: 'system', emit: sys.exitingCall('wrmsr'), ends: true });
add([M.Xsetbv], { family: 'system', emit: sys.exitingCall('xsetbv'), ends: true });
add([M.Lgdt], { family: 'system', emit: sys.descriptorTable(DtrKind.lgdt), ends: true });
add([M.Lidt], { family: 'system', emit: sys.descriptorTable(DtrKind.lidt), ends: true });
add([M.Sgdt], { family: 'system', emit: sys.descriptorTable(DtrKind.sgdt), ends: true });
add([M.Sidt], { family: 'system', emit: sys.descriptorTable(DtrKind.sidt), ends: true });
add([M.Ltr], { family: 'system', emit: sys.ltr, ends: true });
add([M.Invlpg], { family: 'system', emit: sys.invlpg, ends: true });
add([M.Vmcall], { family: 'system', emit: sys.exitingCall('vmcall'), ends: true });
add([M.Swapgs], { family: 'system', emit: sys.call('swapgs'), ends: true });
add([M.Syscall], { family: 'system', emit: sys.syscall, ends: true });
add([M.Sysretq], { family: 'system', emit: sys.sysret, ends: true });
// UD0 and UD1 are defined to raise #UD just like UD2 (SDM Vol. 2B "UD"): the guest asked for it,
// vcpusim lacks nothing; left out of the table they were reported as "unsupported".
add([M.Ud0, M.Ud1, M.Ud2], { family: 'system', emit: sys.ud2, ends: true });

/** The opcode table, keyed by iced Mnemonic. */
export const OPCODES: ReadonlyMap<number, OpcodeEntry> = table;

/** Mnemonic name for messages. */
export function mnemonicName(mnemonic: number): string {
  return M[mnemonic] ?? `mnemonic#${mnemonic}`;
}
