import test from 'ava';
import {
  Assembler, absolute, ah, al, ax, byte, dword, eax, mem, qword, r9, rax, rbx, rcx, rsp, sil, ripRel, word, cr3, xmm0, rdi,
} from '../../src/asm/index.ts';

test('unbound label is reported by name at assemble()', (t) => {
  const a = new Assembler(0x1000n);
  const missing = a.newLabel('missing_handler');
  a.jmp(missing);
  const e = t.throws(() => a.assemble());
  t.regex(e.message, /label 'missing_handler' is used by 'jmp missing_handler' but never bound/);
});

test('unbound label in data and rip-relative operands is reported too', (t) => {
  const a = new Assembler(0x1000n);
  const l = a.newLabel('tbl');
  a.lea(rax, ripRel(l));
  t.throws(() => a.assemble(), { message: /'tbl'.*never bound/ });
  const b = new Assembler(0x1000n);
  const base = b.label('base');
  b.ddLabelDelta(b.newLabel('case9'), base);
  t.throws(() => b.assemble(), { message: /'case9'.*never bound/ });
});

test('binding a label twice throws', (t) => {
  const a = new Assembler(0x1000n);
  const l = a.label('twice');
  t.throws(() => a.bind(l), { message: /label 'twice' is bound twice/ });
});

test('duplicate label names throw', (t) => {
  const a = new Assembler(0x1000n);
  a.newLabel('x');
  t.throws(() => a.newLabel('x'), { message: /duplicate label name 'x'/ });
});

test('labels cannot cross assemblers', (t) => {
  const a = new Assembler(0x1000n);
  const b = new Assembler(0x2000n);
  const foreign = b.newLabel('foreign');
  t.throws(() => a.jmp(foreign), { message: /'foreign' belongs to a different assembler/ });
  t.throws(() => a.bind(foreign), { message: /different assembler/ });
  t.throws(() => a.lea(rax, ripRel(foreign)), { message: /different assembler/ });
});

test('operand size mismatch names mnemonic, operand kinds and closest forms', (t) => {
  const a = new Assembler(0x1000n);
  const e = t.throws(() => a.mov(eax, rbx));
  t.regex(e.message, /no encoding of 'mov' for \(r32 eax, r64 rbx\)/);
  t.regex(e.message, /closest forms: .*MOV r\/m32, r32/);
});

test('wrong operand count and unknown mnemonics', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.emit('add', rax), { message: /'add' takes 2 operand\(s\)/ });
  t.throws(() => a.emit('frobnicate', rax), { message: /unknown mnemonic 'frobnicate'/ });
  t.throws(() => a.emit('vaddps'), { message: /unknown mnemonic 'vaddps'/ }); // VEX-only: not indexed
});

test('immediates out of range for the operand size are rejected, not widened', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.add(rax, 0x100000000), { message: /no encoding of 'add' for \(r64 rax, imm 0x100000000\)/ });
  t.throws(() => a.mov(al, 0x100), { message: /no encoding of 'mov'/ });
  t.throws(() => a.mov(eax, 0x100000000), { message: /no encoding of 'mov'/ });
  t.throws(() => a.mov(rax, 2n ** 64n), { message: /no encoding of 'mov'/ });
  t.throws(() => a.ret(0x10000), { message: /no encoding of 'ret'/ });
  t.throws(() => a.add(rax, 1.5), { message: /operand 1\.5 must be a safe integer or a bigint/ });
  t.throws(() => a.add(rax, 2 ** 60), { message: /operand .* must be a safe integer/ });
});

test('short branch out of range throws at assemble() with target and distance', (t) => {
  const a = new Assembler(0x1000n);
  const far = a.newLabel('far');
  a.jmp(far, { short: true });
  for (let i = 0; i < 10; i++) a.nop(15);
  a.bind(far);
  const e = t.throws(() => a.assemble());
  t.regex(e.message, /branch out of range: 'jmp short far' at 0x1000 targets label 'far' \(0x1098\), 150 bytes/);
  t.regex(e.message, /drop short/);
});

test('loop out of range mentions that only rel8 exists', (t) => {
  const a = new Assembler(0x1000n);
  const top = a.label('top');
  a.nop(15).nop(15).nop(15).nop(15).nop(15).nop(15).nop(15).nop(15).nop(15);
  a.loop(top);
  t.throws(() => a.assemble(), { message: /only has a rel8 form/ });
});

test('rel32 to an unreachable absolute address throws at assemble()', (t) => {
  const a = new Assembler(0xfffff80000401000n);
  a.call(0x1000n);
  t.throws(() => a.assemble(), { message: /branch out of range: 'call 0x1000'.*rel32/ });
});

test('short() on a non-branch or a branch without rel8 form', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.short().add(rax, 1), { message: /short\(\) needs a rel8 branch form/ });
  t.throws(() => a.short().call(0x1000n), { message: /short\(\)/ });
});

test('unsized memory operand is ambiguous unless the other operands fix the size', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.inc(mem(rax)), { message: /'inc \[rax\]': memory operand size is ambiguous \(8-bit, 32-bit, 64-bit\); use byte\(\)/ });
  t.throws(() => a.mov(mem(rax), 1), { message: /ambiguous/ });
  t.throws(() => a.jmp(mem(rax)), { message: /ambiguous/ }); // near m64 vs far m16:64
  t.throws(() => a.movzx(eax, mem(rax)), { message: /ambiguous/ });
  t.notThrows(() => a.mov(rax, mem(rbx)));
  // 16-bit forms are only chosen for explicit 16-bit operands, so push [mem] is the 64-bit push.
  a.push(mem(rax));
  t.deepEqual([...a.assemble().bytes.subarray(-2)], [0xff, 0x30]);
});

test('memory operand size must match the instruction', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.mov(rax, dword(rbx)), { message: /no encoding of 'mov' for \(r64 rax, m32 dword ptr \[rbx\]\)/ });
  t.throws(() => a.lgdt(qword(rax)), { message: /no encoding of 'lgdt'.*LGDT m16&64/ });
});

test('lock and rep prefixes are validated', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.lock().add(rax, 1), { message: /lock\(\) needs a memory destination/ });
  t.throws(() => a.lock().mov(qword(rax), rcx), { message: /lock prefix is not allowed on 'mov'/ });
  t.throws(() => a.repne().movsb(), { message: /repne\(\) is only valid on cmps\*\/scas\*/ });
  t.throws(() => a.lock().stosb(), { message: /do not apply to string instructions/ });
  t.throws(() => a.rep().repne(), { message: /already pending/ });
});

test('a failed instruction does not leave its prefix pending', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.lock().add(rax, 1));
  a.add(rax, 1);
  t.is(a.assemble().bytes[0], 0x48);
});

test('prefix followed by a non-instruction throws', (t) => {
  const a = new Assembler(0x1000n);
  const l = a.newLabel('l');
  t.throws(() => a.lock().bind(l), { message: /lock\(\) must be followed by an instruction, not bind/ });
  const b = new Assembler(0x1000n);
  b.rep();
  t.throws(() => b.assemble(), { message: /rep\(\) must be followed by an instruction/ });
  const c = new Assembler(0x1000n);
  t.throws(() => c.short().dd(1), { message: /short\(\) must be followed/ });
});

test('memory operand construction checks displacement, scale and registers', (t) => {
  t.throws(() => qword(rax, 0x80000000), { message: /displacement 0x80000000 is outside the signed 32-bit range/ });
  t.throws(() => qword(rax, -0x80000001), { message: /outside the signed 32-bit range/ });
  t.notThrows(() => qword(rax, -0x80000000));
  t.notThrows(() => qword(rax, 0x7fffffffn));
  t.throws(() => qword(rax, rbx, 3 as 1), { message: /scale must be 1, 2, 4 or 8/ });
  t.notThrows(() => qword(eax), '32-bit addressing (32-bit code, or 0x67)');
  t.throws(() => qword(ax as unknown as typeof rax), { message: /base must be a 64-bit \(or, for 32-bit addressing, 32-bit\) general-purpose register, got ax/ });
  t.throws(() => qword(rax, eax, 1), { message: /base rax and index eax must be the same width/ });
  t.throws(() => qword(rax, 1.5), { message: /safe integer/ });
  t.throws(() => word({ base: rax, seg: rax as never }), { message: /segment override/ });
});

test('encoder-level failures are reported with the instruction text', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.mov(ah, sil), { message: /cannot encode 'mov ah, sil'.*REX/ });
  t.throws(() => a.mov(rax, qword(rax, rsp)), { message: /cannot encode 'mov rax, qword ptr \[rax\+rsp\]'/ });
});

test('64-bit absolute addresses only encode via moffs with the accumulator', (t) => {
  const a = new Assembler(0x1000n);
  t.throws(() => a.mov(rcx, qword(absolute(0xfffff80000401000n))), { message: /no encoding of 'mov'/ });
  // 0x80000000 would be sign-extended by a ModRM disp32, so it must use moffs too.
  a.mov(rax, qword(absolute(0x80000000)));
  a.mov(qword(absolute(0xfffff80000401000n)), rax);
  const bytes = a.assemble().bytes;
  t.deepEqual([...bytes.subarray(0, 10)], [0x48, 0xa1, 0, 0, 0, 0x80, 0, 0, 0, 0]);
  t.deepEqual([...bytes.subarray(10, 12)], [0x48, 0xa3]);
});

test('rip-relative target beyond ±2 GiB fails at assemble()', (t) => {
  const a = new Assembler(0xfffff80000401000n);
  a.lea(rax, ripRel(0x1000n));
  t.throws(() => a.assemble(), { message: /cannot encode 'lea rax, \[rip\+0x1000\]'/ });
});

test('ddLabelDelta out of 32-bit range', (t) => {
  const a = new Assembler(0x1000n);
  const x = a.label('x');
  a.align(1);
  const y = a.newLabel('y');
  a.ddLabelDelta(y, x);
  a.db(new Uint8Array(16));
  // Fine in range; out of range needs > 2 GiB of output, so check the data-size guard instead.
  a.bind(y);
  t.notThrows(() => a.assemble());
  t.throws(() => a.db(0x100), { message: /db value 0x100 does not fit in 8 bits/ });
  t.throws(() => a.dw(-0x8001), { message: /does not fit in 16 bits/ });
  t.throws(() => a.dd('x'), { message: /strings are only accepted by db/ });
});

test('misc argument validation', (t) => {
  t.throws(() => new Assembler(-1n), { message: /base must be a bigint/ });
  const a = new Assembler(0x1000n);
  t.throws(() => a.align(3), { message: /power of two/ });
  t.throws(() => a.nop(16), { message: /nop length must be an integer in 1\.\.15/ });
  t.throws(() => a.nop(0), { message: /1\.\.15/ });
  t.throws(() => a.mov(cr3, eax as never), { message: /no encoding of 'mov'/ });
  t.throws(() => a.mov(xmm0, rax), { message: /no encoding of 'mov'/ });
  t.throws(() => a.xadd(qword(r9), byte(rdi) as never), { message: /no encoding of 'xadd'/ });
  t.throws(() => a.test(rax, al), { message: /no encoding of 'test'/ });
});
