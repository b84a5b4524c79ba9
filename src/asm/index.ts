/**
 * Typed x86-64 assembler over iced-x86's encoder, plus a disassembler helper.
 *
 *   const a = new Assembler(0xfffff80000401000n);
 *   const loop = a.newLabel('loop');
 *   a.xor(eax, eax).bind(loop).add(rax, 1).cmp(rax, 10).jne(loop).ret();
 *   const { bytes } = a.assemble();
 */
export * from './registers.ts';
export {
  absolute, byte, dword, fmtHex, formatMem, formatOperand, labelAddr, mem, qword, ripRel, tword, withSeg, word, xmmword,
  type Address, type AddressReg, type BranchTarget, type Disp, type Imm, type LabelAddress, type Mem, type MemBuilder, type MemSize,
  type MemSpec, type Operand, type Scale,
} from './operands.ts';
export { Label } from './label.ts';
export {
  Assembler,
  type AssembledCode, type BranchOptions, type Condition, type DataValue, type MnemonicName, type RM, type RMI,
} from './assembler.ts';
export { formsOf, knownMnemonics, canonicalMnemonic, type Bitness, type CodeInfo } from './code-table.ts';
export type { RepKind } from './string-ops.ts';
export { MAX_NOP_LENGTH, nopBytes } from './nops.ts';
export {
  createFormatter, disassemble, formatInstructionAt, formatListingLine, hexBytes, listing,
  type DisasmLine, type DisasmOptions,
} from './disasm.ts';
