import test from 'ava';
import { disassemble, formatInstructionAt, listing } from '../../src/asm/index.ts';

const KBASE = 0xfffff80000401000n;

test('decodes valid code with Intel syntax and 0x hex', (t) => {
  const bytes = new Uint8Array([0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00, 0x8b, 0x8c, 0x82, 0x1c, 0xa9, 0x4e, 0x00, 0xc3]);
  const lines = disassemble(bytes, KBASE);
  t.deepEqual(lines, [
    { ip: KBASE, length: 8, bytesHex: '48 8b 04 25 00 10 00 00', text: 'mov rax,[0x1000]', invalid: false },
    { ip: KBASE + 8n, length: 7, bytesHex: '8b 8c 82 1c a9 4e 00', text: 'mov ecx,[rdx+rax*4+0x4ea91c]', invalid: false },
    { ip: KBASE + 15n, length: 1, bytesHex: 'c3', text: 'ret', invalid: false },
  ]);
});

test('listing() aligns address, bytes and text', (t) => {
  const lines = disassemble(new Uint8Array([0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00, 0x90]), KBASE);
  t.is(
    listing(lines),
    'fffff80000401000  48 8b 04 25 00 10 00 00       mov rax,[0x1000]\n'
      + 'fffff80000401008  90                            nop',
  );
});

test('garbage bytes become one-byte (bad) lines and never throw', (t) => {
  // 06/27/d6 are invalid in 64-bit mode; 0f ff is ud0 without its modrm... decoded or not, nothing throws.
  const bytes = new Uint8Array([0x06, 0x27, 0xd6, 0x0f, 0x0b]);
  const lines = disassemble(bytes, 0x1000n);
  t.deepEqual(lines.slice(0, 3).map((l) => [l.text, l.length, l.invalid]), [['(bad)', 1, true], ['(bad)', 1, true], ['(bad)', 1, true]]);
  t.is(lines[3].text, 'ud2');
  t.is(lines.reduce((n, l) => n + l.length, 0), bytes.length);
});

test('truncated instruction at the end is listed as (bad) bytes', (t) => {
  const lines = disassemble(new Uint8Array([0x90, 0x48, 0x8b]), 0x1000n);
  t.deepEqual(lines.map((l) => l.text), ['nop', '(bad)', '(bad)']);
  t.deepEqual(lines.map((l) => l.ip), [0x1000n, 0x1001n, 0x1002n]);
});

test('random garbage: no throw, lengths cover the input exactly', (t) => {
  let seed = 0x12345678;
  const rnd = (): number => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) & 0xff;
  };
  for (let round = 0; round < 20; round++) {
    const bytes = Uint8Array.from({ length: 512 }, rnd);
    const lines = disassemble(bytes, KBASE);
    t.is(lines.reduce((n, l) => n + l.length, 0), bytes.length);
    for (const l of lines) t.true(l.length >= 1 && l.length <= 15);
  }
});

test('maxInstructions limits output; empty input gives nothing', (t) => {
  const bytes = new Uint8Array(10).fill(0x90);
  t.is(disassemble(bytes, 0n, { maxInstructions: 3 }).length, 3);
  t.is(disassemble(bytes, 0n, { maxInstructions: 0 }).length, 0);
  t.deepEqual(disassemble(new Uint8Array(0), 0n), []);
});

test('addresses wrap at 2^64 and negative ips are normalised', (t) => {
  const lines = disassemble(new Uint8Array([0x90, 0x90]), 0xffffffffffffffffn);
  t.deepEqual(lines.map((l) => l.ip), [0xffffffffffffffffn, 0n]);
  t.is(disassemble(new Uint8Array([0x90]), -1n)[0].ip, 0xffffffffffffffffn);
});

test('formatInstructionAt gives one listing line for the first instruction', (t) => {
  t.is(formatInstructionAt(new Uint8Array([0x0f, 0x01, 0xc1, 0x90]), KBASE), 'fffff80000401000  0f 01 c1                      vmcall');
  t.is(formatInstructionAt(new Uint8Array([0x06]), 0x10n), '0000000000000010  06                            (bad)');
  t.is(formatInstructionAt(new Uint8Array(0), 0x10n), '0000000000000010  (no bytes)');
});

test('branch targets are shown as absolute addresses', (t) => {
  const lines = disassemble(new Uint8Array([0xe9, 0xfb, 0xff, 0xff, 0xff, 0x48, 0x8d, 0x05, 0xf4, 0xff, 0xff, 0xff]), KBASE);
  t.is(lines[0].text, 'jmp 0xfffff80000401000');
  t.is(lines[1].text, 'lea rax,[0xfffff80000401000]');
});
