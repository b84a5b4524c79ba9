/**
 * String instructions (movs/stos/lods/cmps/scas/ins/outs). They go through
 * iced's dedicated factories because their implicit [rsi]/[rdi] operands
 * cannot be expressed with the generic operand matcher.
 */
import iced from 'iced-x86';
import type { Instruction, RepPrefixKind } from 'iced-x86';

/** Repeat prefix requested by `rep()`, `repe()` or `repne()`. */
export type RepKind = 'rep' | 'repe' | 'repne';

type Factory = (rep: RepPrefixKind) => Instruction;

const I = iced.Instruction;
const NONE = iced.Register.None;
const A = 64; // address size: always rsi/rdi/rcx

const FACTORIES: ReadonlyMap<string, Factory> = new Map<string, Factory>([
  ['movsb', (r) => I.createMovsb(A, NONE, r)],
  ['movsw', (r) => I.createMovsw(A, NONE, r)],
  ['movsd', (r) => I.createMovsd(A, NONE, r)],
  ['movsq', (r) => I.createMovsq(A, NONE, r)],
  ['stosb', (r) => I.createStosb(A, r)],
  ['stosw', (r) => I.createStosw(A, r)],
  ['stosd', (r) => I.createStosd(A, r)],
  ['stosq', (r) => I.createStosq(A, r)],
  ['lodsb', (r) => I.createLodsb(A, NONE, r)],
  ['lodsw', (r) => I.createLodsw(A, NONE, r)],
  ['lodsd', (r) => I.createLodsd(A, NONE, r)],
  ['lodsq', (r) => I.createLodsq(A, NONE, r)],
  ['cmpsb', (r) => I.createCmpsb(A, NONE, r)],
  ['cmpsw', (r) => I.createCmpsw(A, NONE, r)],
  ['cmpsd', (r) => I.createCmpsd(A, NONE, r)],
  ['cmpsq', (r) => I.createCmpsq(A, NONE, r)],
  ['scasb', (r) => I.createScasb(A, r)],
  ['scasw', (r) => I.createScasw(A, r)],
  ['scasd', (r) => I.createScasd(A, r)],
  ['scasq', (r) => I.createScasq(A, r)],
  ['insb', (r) => I.createInsb(A, r)],
  ['insw', (r) => I.createInsw(A, r)],
  ['insd', (r) => I.createInsd(A, r)],
  ['outsb', (r) => I.createOutsb(A, NONE, r)],
  ['outsw', (r) => I.createOutsw(A, NONE, r)],
  ['outsd', (r) => I.createOutsd(A, NONE, r)],
]);

/** True for the operand-less string mnemonics (lower-case). */
export function isStringOp(mnemonic: string): boolean {
  return FACTORIES.has(mnemonic);
}

/** Only cmps/scas test ZF, so only they accept repne. */
function allowsRepne(mnemonic: string): boolean {
  return mnemonic.startsWith('cmps') || mnemonic.startsWith('scas');
}

/** Throws if `rep` cannot prefix this string instruction. */
export function checkStringRep(mnemonic: string, rep: RepKind | null): void {
  if (rep === 'repne' && !allowsRepne(mnemonic)) throw new Error(`repne() is only valid on cmps*/scas*, not '${mnemonic}'`);
}

/** Creates the instruction; the caller owns (and must free) it. */
export function buildStringOp(mnemonic: string, rep: RepKind | null): Instruction {
  const f = FACTORIES.get(mnemonic);
  if (!f) throw new Error(`internal: '${mnemonic}' is not a string instruction`);
  checkStringRep(mnemonic, rep);
  const kind = rep === null ? iced.RepPrefixKind.None : rep === 'repne' ? iced.RepPrefixKind.Repne : iced.RepPrefixKind.Repe;
  return f(kind);
}
