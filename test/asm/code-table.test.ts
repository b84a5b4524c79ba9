import test from 'ava';
import iced from 'iced-x86';
import { Assembler, canonicalMnemonic, formsOf, knownMnemonics } from '../../src/asm/index.ts';

test('index holds only 64-bit legacy forms', (t) => {
  const names = formsOf('add').map((f) => f.name);
  t.true(names.includes('Add_rm64_imm8'));
  t.true(names.includes('Add_RAX_imm32'));
  t.false(names.includes('Add_rm8_imm8_82')); // invalid in 64-bit mode
  t.false(knownMnemonics().has('vaddps')); // VEX
  t.false(knownMnemonics().has('pfadd')); // 3DNow!
  t.false(formsOf('inc').some((f) => f.name === 'Inc_r32')); // 40+r is REX in 64-bit mode
  t.deepEqual(formsOf('ADD').map((f) => f.code), formsOf('add').map((f) => f.code));
});

test('the 32-bit index holds the forms of 32-bit mode: one-byte INC, no 64-bit operands', (t) => {
  t.true(formsOf('inc', 32).some((f) => f.name === 'Inc_r32'));
  t.false(formsOf('add', 32).some((f) => f.name === 'Add_rm64_imm8'));
  t.true(formsOf('pushad', 32).length > 0);
  t.false(knownMnemonics(64).has('pushad'));
});

test('aliases resolve to canonical mnemonics', (t) => {
  t.is(canonicalMnemonic('JZ'), 'je');
  t.is(canonicalMnemonic('cmovnae'), 'cmovb');
  t.is(canonicalMnemonic('setpo'), 'setnp');
  t.is(canonicalMnemonic('sal'), 'shl');
});

test('operand kinds come from OpCodeInfo', (t) => {
  const f = formsOf('mov').find((x) => x.name === 'Mov_r64_imm64');
  t.truthy(f);
  t.deepEqual(f?.kinds, [iced.OpCodeOperandKind.r64_opcode, iced.OpCodeOperandKind.imm64]);
  t.is(f?.signature, 'MOV r64, imm64');
});

test('every typed Assembler method has an indexed mnemonic', (t) => {
  const proto = Assembler.prototype as unknown as Record<string, unknown>;
  const methods = Object.getOwnPropertyNames(proto).filter((n) => typeof proto[n] === 'function');
  // Layout/data/prefix API and private helpers (TS-private methods still live on the prototype).
  const notMnemonics = new Set([
    'constructor', 'newLabel', 'bind', 'label', 'here', 'align', 'db', 'dw', 'dd', 'dq', 'dqLabel', 'ddLabel', 'ddLabelDelta', 'raw',
    'lock', 'rep', 'repe', 'repne', 'short', 'emit', 'assemble', 'jcc', 'cmovcc', 'setcc', 'jmpShort',
    'branchTo', 'setRep', 'checkNoPending', 'checkOwn', 'checkOperandLabels', 'pushInsn', 'pushBytes', 'data', 'labelData',
    'padding', 'sizeAt', 'encodeItem',
  ]);
  const known = knownMnemonics();
  const missing = methods.filter((m) => !notMnemonics.has(m) && !known.has(canonicalMnemonic(m)));
  t.deepEqual(missing, []);
  for (const m of ['mov', 'push', 'pushfq', 'jnz', 'cmovge', 'setnle', 'cmpxchg16b', 'sysretq']) t.true(methods.includes(m), m);
});
