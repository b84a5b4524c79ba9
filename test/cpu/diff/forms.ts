import iced from 'iced-x86';
import { OPCODES, type Family } from '../../../src/cpu/opcode-table.ts';

/**
 * The instruction forms the differential harness covers: every iced `Code` valid in 64-bit mode
 * (or, for 32-bit cases, in 32-bit mode) with legacy encoding whose mnemonic the opcode table
 * marks `native`, minus forms vcpusim does not implement on purpose (each excluded group says why).
 */

/** Code size of the cases: 64-bit code, or 32-bit code (compatibility mode on the host). */
export type Bits = 32 | 64;

const K = iced.OpCodeOperandKind;

/** One encodable form and what the generator needs to know about it. */
export interface Form {
  readonly code: number;
  readonly name: string;
  readonly mnemonic: number;
  readonly family: Family;
  readonly kinds: readonly number[];
}

/** Operand kinds the generator can build. */
const SUPPORTED_KINDS = new Set<number>([
  K.r8_or_mem, K.r8_reg, K.r16_or_mem, K.r16_reg, K.r32_or_mem, K.r32_reg, K.r64_or_mem, K.r64_reg,
  K.al, K.ax, K.eax, K.rax, K.cl, K.imm8, K.imm16, K.imm32, K.imm64, K.imm8sex16, K.imm8sex32, K.imm8sex64,
  K.imm32sex64, K.imm8_const_1, K.r8_opcode, K.r16_opcode, K.r32_opcode, K.r64_opcode, K.br64_1, K.br64_4,
  K.br32_1, K.br32_4, K.mem, K.mem_offs, K.es_rDI, K.seg_rSI,
]);

/** Forms left out, with the reason (all are outside what the issue asks vcpusim to run). */
const EXCLUDED: ReadonlyArray<[RegExp, string]> = [
  [/^(Call|Jmp)_m16(16|32|64)$/, 'far indirect transfers'],
  [/^(Pushfw|Popfw|Enterw|Leavew|Retnw|Call_rm16|Jmp_rm16|Pushaw|Popaw)/, '16-bit stack frames and 16-bit near branches (Intel and AMD differ)'],
  [/_(rel16|rel8_16)$/, '16-bit branch operand size'],
  [/^(Loop|Loope|Loopne|Jrcxz|Jecxz|Jcxz)_rel8_16/, '16-bit branch operand size'],
  [/^(Loop|Loope|Loopne)_rel8_32_CX$|^Jcxz_/, 'CX as the counter (16-bit address size in 32-bit code; covered by tests)'],
  [/^Movsd_xmm|^Cmpsd_xmm/, 'SSE forms that share a string mnemonic'],
  [/^Lea_r16_m$/, 'LEA with 16-bit destination (rare; covered by tests)'],
  [/^Mov_.*Sreg|^Mov_Sreg/, 'segment registers'],
];

/** Forms left out of one code size only. */
const EXCLUDED_BY_BITS: Readonly<Record<Bits, ReadonlyArray<[RegExp, string]>>> = {
  64: [
    [/_rel32_32$/, '32-bit branch operand size in 64-bit code'],
    [/^(Loop|Loope|Loopne|Jrcxz|Jecxz)_rel8_32_/, '32-bit branch operand size in 64-bit code'],
  ],
  32: [],
};

const cache = new Map<Bits, readonly Form[]>();

/** Every form the generator covers for `bits`-bit code, in Code order. */
export function differentialForms(bits: Bits = 64): readonly Form[] {
  const known = cache.get(bits);
  if (known !== undefined) return known;
  const excluded = [...EXCLUDED, ...EXCLUDED_BY_BITS[bits]];
  const forms: Form[] = [];
  for (const [name, value] of Object.entries(iced.Code)) {
    if (typeof value !== 'number') continue;
    const info = iced.CodeExt.opCode(value);
    try {
      if (!(bits === 64 ? info.mode64 : info.mode32) || info.encoding !== iced.EncodingKind.Legacy) continue;
      const entry = OPCODES.get(info.mnemonic);
      if (entry === undefined || entry.native !== true) continue;
      if (excluded.some(([pattern]) => pattern.test(name))) continue;
      const kinds: number[] = [];
      for (let i = 0; i < info.opCount; i++) kinds.push(info.opKind(i));
      if (!kinds.every((k) => SUPPORTED_KINDS.has(k))) continue;
      forms.push({ code: value, name, mnemonic: info.mnemonic, family: entry.family, kinds });
    } finally {
      info.free();
    }
  }
  cache.set(bits, forms);
  return forms;
}

/** Why forms of native mnemonics were left out, for the coverage report. */
export function exclusionReasons(bits: Bits = 64): readonly string[] {
  return [...new Set([...EXCLUDED, ...EXCLUDED_BY_BITS[bits]].map(([, why]) => why))];
}
