/**
 * Index of every iced `Code` usable in 64-bit (or 32-bit) mode with legacy
 * encoding, grouped by mnemonic. Built lazily on first use: walking all OpCodeInfos
 * takes a few tens of milliseconds and most importers never assemble.
 */
import iced from 'iced-x86';
import type { Code, OpCodeOperandKind } from 'iced-x86';

/** What the matcher needs to know about one encodable form. */
export interface CodeInfo {
  readonly code: Code;
  /** iced `Code` name, e.g. `Add_rm64_imm8`. */
  readonly name: string;
  /** Lower-case mnemonic, e.g. `add`. */
  readonly mnemonic: string;
  /** Operand kinds in Intel order. */
  readonly kinds: readonly OpCodeOperandKind[];
  /** Operand size the form implies (16/32/64), or 0 if it has none. */
  readonly operandSize: number;
  /** Memory access width in bytes if the form has a memory operand, 0 if unsized/none. */
  readonly memSize: number;
  readonly canLock: boolean;
  readonly canRep: boolean;
  readonly canRepne: boolean;
  /** Manual-style signature, e.g. `ADD r/m64, imm8`. */
  readonly signature: string;
}

/**
 * Alternative spellings mapped onto the mnemonic iced uses. `sal` is mapped
 * because iced's own `Sal_*` codes are the undocumented `/6` encodings.
 */
const CC_ALIASES: Record<string, string> = {
  z: 'e', nz: 'ne', c: 'b', nc: 'ae', nae: 'b', nb: 'ae', na: 'be', nbe: 'a',
  pe: 'p', po: 'np', nge: 'l', nl: 'ge', ng: 'le', nle: 'g',
};
const ALIASES: ReadonlyMap<string, string> = new Map<string, string>([
  ['sal', 'shl'],
  ['retq', 'ret'],
  ['retn', 'ret'],
  ...Object.entries(CC_ALIASES).flatMap(([a, c]) => [
    [`j${a}`, `j${c}`] as [string, string],
    [`cmov${a}`, `cmov${c}`] as [string, string],
    [`set${a}`, `set${c}`] as [string, string],
  ]),
]);

/** Lower-cases and resolves aliases (`jz` → `je`, `sal` → `shl`). */
export function canonicalMnemonic(m: string): string {
  const l = m.toLowerCase();
  return ALIASES.get(l) ?? l;
}

/** Code width the assembler emits: 64-bit code, or 32-bit protected-mode code. */
export type Bitness = 32 | 64;

const tables = new Map<Bitness, Map<string, CodeInfo[]>>();

function build(bitness: Bitness): Map<string, CodeInfo[]> {
  const out = new Map<string, CodeInfo[]>();
  for (const [name, value] of Object.entries(iced.Code)) {
    if (typeof value !== 'number') continue; // reverse-mapping entries
    const op = iced.CodeExt.opCode(value);
    try {
      // decoderOption != 0: forms the default decoder doesn't produce (Cyrix, UMOV, MPX...).
      if (!op.isInstruction || op.encoding !== iced.EncodingKind.Legacy || !(bitness === 64 ? op.mode64 : op.mode32) || op.decoderOption !== 0 || op.isReservedNop) continue;
      const kinds: OpCodeOperandKind[] = [];
      for (let i = 0; i < op.opCount; i++) kinds.push(op.opKind(i));
      const mnemonic = (iced.Mnemonic[op.mnemonic] as string).toLowerCase();
      const info: CodeInfo = Object.freeze({
        code: value,
        name,
        mnemonic,
        kinds: Object.freeze(kinds),
        operandSize: op.operandSize,
        memSize: iced.MemorySizeExt.size(op.memorySize),
        canLock: op.canUseLockPrefix,
        canRep: op.canUseRepPrefix,
        canRepne: op.canUseRepnePrefix,
        signature: op.instructionString,
      });
      const list = out.get(mnemonic);
      if (list) list.push(info);
      else out.set(mnemonic, [info]);
    } finally {
      op.free();
    }
  }
  return out;
}

function getTable(bitness: Bitness): Map<string, CodeInfo[]> {
  let table = tables.get(bitness);
  if (table === undefined) {
    table = build(bitness);
    tables.set(bitness, table);
  }
  return table;
}

/** All legacy forms of a mnemonic in `bitness`-bit code (case-insensitive, aliases resolved); empty if unknown. */
export function formsOf(mnemonic: string, bitness: Bitness = 64): readonly CodeInfo[] {
  return getTable(bitness).get(canonicalMnemonic(mnemonic)) ?? [];
}

/** Every mnemonic in the index (lower-case). */
export function knownMnemonics(bitness: Bitness = 64): ReadonlySet<string> {
  return new Set(getTable(bitness).keys());
}

