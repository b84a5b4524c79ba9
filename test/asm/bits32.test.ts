/**
 * Goal: the assembler emits 32-bit protected-mode code when asked (`{ bitness: 32 }`): the forms
 * of 32-bit mode (one-byte INC/DEC, 32-bit PUSH/POP, no REX), 32-bit addressing, labels and
 * branches; what 32-bit code cannot encode is refused with the instruction named; and the code
 * runs on the emulated CPU in 32-bit PAE protected mode.
 */
import test from 'ava';
import { Assembler, disassemble, dword, eax, ebp, ebx, ecx, edi, edx, esi, esp, rax, rbx } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason } from '../../src/cpu/state-block.ts';
import { CODE32, DATA32, PaeMachine } from '../support/pae-machine.ts';

test('32-bit forms: INC is one byte, PUSH/POP take 32-bit registers, addressing is 32-bit, and iced decodes it back in 32-bit mode', (t) => {
  const a = new Assembler(0x80401000n, { bitness: 32 });
  const done = a.newLabel('done');
  a.inc(eax);
  a.push(ebp);
  a.mov(ebp, esp);
  a.mov(dword(ebx, 4), ecx);
  a.lock().cmpxchg(dword(edi), ecx);
  a.mov(eax, dword(esi, edi, 4, 8));
  a.mov(dword(edi, 4), edx);
  a.jmp(done);
  a.pop(ebp);
  a.bind(done);
  a.ret();
  const code = a.assemble();
  const bytes = code.bytes;
  t.is(bytes[0], 0x40, 'inc eax is 0x40 (a REX prefix in 64-bit code)');
  t.is(bytes[1], 0x55);
  const text = disassemble(bytes, 0x80401000n, { bitness: 32 }).map((line) => line.text);
  t.deepEqual(text, [
    'inc eax',
    'push ebp',
    'mov ebp,esp',
    'mov [ebx+4],ecx',
    'lock cmpxchg [edi],ecx',
    'mov eax,[esi+edi*4+8]',
    'mov [edi+4],edx',
    `jmp 0x${code.addressOf('done').toString(16)}`,
    'pop ebp',
    'ret',
  ]);
});

test('what 32-bit code cannot encode is refused with the instruction named', (t) => {
  const a = new Assembler(0x1000n, { bitness: 32 });
  t.throws(() => a.mov(rax, 1), { message: /no encoding of 'mov' for \(r64 rax, imm 0x1\)/ });
  t.throws(() => a.mov(eax, dword(rbx)), { message: /mov eax, dword ptr \[rbx\]/ });
  t.throws(() => new Assembler(0x1_0000_0000n, { bitness: 32 }), { message: /base must be a bigint in 0\.\.2\^32-1/ });
});

test('assembled 32-bit code runs on the CPU in PAE protected mode', (t) => {
  const tm = new PaeMachine();
  const a = new Assembler(BigInt(CODE32), { bitness: 32 });
  const loop = a.newLabel('loop');
  a.mov(ebx, DATA32);
  a.xor(eax, eax);
  a.mov(ecx, 10);
  a.bind(loop);
  a.add(eax, ecx);
  a.mov(dword(ebx, 0), eax);
  a.dec(ecx);
  a.jne(loop);
  a.vmcall();
  tm.write(CODE32, a.assemble().bytes);
  const why = tm.run();
  t.is(why, RunStop.exit);
  t.is(tm.state().exit().reason, ExitReason.vmcall);
  t.is(tm.state().gpr('rax'), 55n);
  t.is(tm.machine.memory.read32(DATA32), 55);
});
