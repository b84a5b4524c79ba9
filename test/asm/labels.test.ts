import test from 'ava';
import {
  Assembler, Label, dword, eax, ecx, labelAddr, mem, qword, rax, rcx, rdx, ripRel, hexBytes,
} from '../../src/asm/index.ts';
import { decodeAll } from './helpers.ts';

const KBASE = 0xfffff80000401000n;

function le32(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getInt32(off, true);
}

function le64(bytes: Uint8Array, off: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(off, true);
}

test('backward and forward rel32 branches resolve to label addresses', (t) => {
  const a = new Assembler(KBASE);
  const top = a.newLabel('top');
  const end = a.newLabel('end');
  a.bind(top);
  a.nop();
  a.jne(end);
  a.jmp(top);
  a.call(end);
  a.bind(end);
  a.ret();
  const out = a.assemble();
  t.is(hexBytes(out.bytes), '90 0f 85 0a 00 00 00 e9 f4 ff ff ff e8 00 00 00 00 c3');
  const d = decodeAll(out.bytes, KBASE);
  t.deepEqual(d.map((x) => x.code), ['Nopd', 'Jne_rel32_64', 'Jmp_rel32_64', 'Call_rel32_64', 'Retnq']);
  t.is(d[1].nearBranchTarget, out.addressOf(end));
  t.is(d[2].nearBranchTarget, out.addressOf(top));
  t.is(d[3].nearBranchTarget, out.addressOf('end'));
  t.is(out.addressOf(top), KBASE);
  t.is(out.addressOf(end), KBASE + 17n);
});

test('short branches use rel8 in both directions', (t) => {
  const a = new Assembler(0x1000n);
  const top = a.label('top');
  const end = a.newLabel('end');
  a.jmp(end, { short: true });
  a.short().je(top);
  a.jmpShort(top);
  a.loop(top);
  a.jrcxz(end);
  a.bind(end);
  const out = a.assemble();
  t.is(hexBytes(out.bytes), 'eb 08 74 fc eb fa e2 f8 e3 00');
  t.deepEqual(decodeAll(out.bytes, 0x1000n).map((x) => x.code), ['Jmp_rel8_64', 'Je_rel8_64', 'Jmp_rel8_64', 'Loop_rel8_64_RCX', 'Jrcxz_rel8_64']);
});

test('branches to absolute addresses', (t) => {
  const a = new Assembler(KBASE);
  a.call(KBASE - 0x1000n);
  a.jmp(KBASE);
  a.jmp(KBASE + 7n, { short: true });
  const out = a.assemble();
  const d = decodeAll(out.bytes, KBASE);
  t.deepEqual(d.map((x) => x.nearBranchTarget), [KBASE - 0x1000n, KBASE, KBASE + 7n]);
});

test('here() is the current address and works as a branch target', (t) => {
  const a = new Assembler(KBASE);
  a.nop(3);
  const spin = a.here();
  t.is(spin, KBASE + 3n);
  a.pause().jmp(spin);
  t.is(a.offset, 10);
  const out = a.assemble();
  t.is(hexBytes(out.bytes.subarray(3)), 'f3 90 e9 f9 ff ff ff');
  t.is(decodeAll(out.bytes, KBASE)[2].nearBranchTarget, spin);
});

test('rip-relative operands address labels at kernel addresses', (t) => {
  const a = new Assembler(KBASE);
  const data = a.newLabel('data');
  a.lea(rdx, ripRel(data));
  a.mov(rax, qword(ripRel(data, 8)));
  a.mov(dword(ripRel(data, 4)), ecx);
  a.lock().emit('inc', qword(ripRel(data)));
  a.ret();
  a.align(16, 0xcc);
  a.bind(data);
  a.dq(0x1111n, 0x2222n);
  const out = a.assemble();
  const d = decodeAll(out.bytes, KBASE);
  const addr = out.addressOf(data);
  t.is(addr % 16n, 0n);
  t.deepEqual(d.slice(0, 4).map((x) => x.ipRelAddress), [addr, addr + 8n, addr + 4n, addr]);
  t.deepEqual(d.slice(0, 4).map((x) => x.code), ['Lea_r64_m', 'Mov_r64_rm64', 'Mov_rm32_r32', 'Inc_rm64']);
});

test('ripRel to an absolute bigint target', (t) => {
  const a = new Assembler(KBASE);
  a.mov(rax, qword(ripRel(KBASE + 0x100000n)));
  const d = decodeAll(a.assemble().bytes, KBASE);
  t.is(d[0].ipRelAddress, KBASE + 0x100000n);
});

test('compiler-style jump table with ddLabelDelta', (t) => {
  const a = new Assembler(KBASE);
  const table = a.newLabel('table');
  const cases = [a.newLabel('case0'), a.newLabel('case1'), a.newLabel('case2')];
  const done = a.newLabel('done');
  a.lea(rdx, ripRel(table));
  a.movsxd(rax, dword(rdx, rcx, 4));
  a.add(rax, rdx);
  a.jmp(rax);
  a.align(4, 0xcc);
  a.bind(table);
  for (const c of cases) a.ddLabelDelta(c, table);
  cases.forEach((c, i) => {
    a.bind(c);
    a.mov(eax, i * 10);
    if (i < cases.length - 1) a.jmp(done);
  });
  a.bind(done);
  a.ret();
  const out = a.assemble();
  const tableAddr = out.addressOf(table);
  const off = Number(tableAddr - KBASE);
  cases.forEach((c, i) => {
    t.is(tableAddr + BigInt(le32(out.bytes, off + 4 * i)), out.addressOf(c), `entry ${i}`);
  });
  // a case before the table gives a negative delta
  const b = new Assembler(0x1000n);
  const early = b.label('early');
  b.ret();
  const base = b.label('base');
  b.ddLabelDelta(early, base);
  t.is(le32(b.assemble().bytes, 1), -1);
});

test('dqLabel, ddLabel and labelAddr store absolute addresses', (t) => {
  const a = new Assembler(KBASE);
  const handler = a.newLabel('handler');
  a.mov(rax, labelAddr(handler));
  a.dqLabel(handler);
  a.ddLabel(handler);
  a.bind(handler);
  a.ret();
  const out = a.assemble();
  const h = out.addressOf(handler);
  t.is(h, KBASE + 10n + 8n + 4n);
  t.is(out.bytes[0], 0x48);
  t.is(out.bytes[1], 0xb8);
  t.is(le64(out.bytes, 2), h);
  t.is(le64(out.bytes, 10), h);
  t.is(le32(out.bytes, 18) >>> 0, Number(h & 0xffffffffn));
});

test('data directives accept scalars, arrays, bigints and strings', (t) => {
  const a = new Assembler(0n);
  a.db(1, -1, [2, 3], new Uint8Array([4]), 'AB');
  a.dw(0x1234, -2);
  a.dd(0xdeadbeef, -1);
  a.dq(0xfffff80000401000n, -1n);
  t.is(
    hexBytes(a.assemble().bytes),
    '01 ff 02 03 04 41 42 34 12 fe ff ef be ad de ff ff ff ff 00 10 40 00 00 f8 ff ff ff ff ff ff ff ff ff ff',
  );
});

test('align pads with the fill byte relative to the absolute address', (t) => {
  const a = new Assembler(0x1003n);
  a.align(8, 0xcc);
  const l = a.label('aligned');
  a.align(8);
  a.nop();
  a.align(4);
  const out = a.assemble();
  t.is(out.addressOf(l), 0x1008n);
  t.is(hexBytes(out.bytes), 'cc cc cc cc cc 90 90 90 90');
});

test('labels map lists named labels; anonymous labels still resolve', (t) => {
  const a = new Assembler(0x2000n);
  const anon = a.newLabel();
  const named = a.newLabel('named');
  a.nop();
  a.bind(anon);
  a.nop();
  a.bind(named);
  a.jmp(anon);
  const out = a.assemble();
  t.deepEqual([...out.labels], [['named', 0x2002n]]);
  t.is(out.addressOf(anon), 0x2001n);
  t.true(anon instanceof Label);
  t.regex(anon.name, /^\.L\d+$/);
});

test('assemble() is repeatable and can continue after more code is added', (t) => {
  const a = new Assembler(0x1000n);
  const end = a.newLabel('end');
  a.jmp(end);
  a.bind(end);
  const first = a.assemble();
  t.deepEqual(a.assemble().bytes, first.bytes);
  a.ret();
  t.is(hexBytes(a.assemble().bytes), 'e9 00 00 00 00 c3');
});

test('listing shows addresses, bytes, labels, disassembly and data', (t) => {
  const a = new Assembler(KBASE);
  const loop = a.newLabel('loop');
  const table = a.newLabel('table');
  a.xor(eax, eax);
  a.bind(loop);
  a.add(rax, 1);
  a.jne(loop);
  a.lea(rdx, mem(rax, rcx, 8));
  a.int3();
  a.align(16, 0xcc);
  a.bind(table);
  a.ddLabelDelta(loop, table);
  a.dq(1n, 2n);
  const text = a.assemble().listing();
  const lines = text.split('\n');
  t.is(lines[0], 'fffff80000401000  31 c0                         xor eax,eax');
  t.is(lines[1], 'fffff80000401002                                loop:');
  t.regex(text, /fffff80000401006 {2}0f 85 f6 ff ff ff +jne 0xfffff80000401002/);
  t.regex(text, /table:\n.*dd loop-table/);
  t.regex(text, /fffff80000401011  cc cc cc cc cc cc cc cc +align 16\nfffff80000401019  cc cc cc cc cc cc cc\n/);
  t.regex(text, /01 00 00 00 00 00 00 00 +dq 0x1,0x2\n.*02 00 00 00 00 00 00 00$/);
});
