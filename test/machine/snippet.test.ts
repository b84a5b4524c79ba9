/**
 * Goal: runSnippet is a usable front door to the CPU. Method: run small byte sequences and check
 * registers, flags, memory, step counts and each kind of stop it can report.
 */
import test from 'ava';
import { runSnippet, SnippetMachine, SNIPPET_CODE_ADDRESS } from '../../src/index.ts';
import { Assembler, qword, rax, rbx, rcx, rdx } from '../../src/asm/index.ts';

function assemble(build: (a: Assembler) => void, base = SNIPPET_CODE_ADDRESS): Uint8Array {
  const a = new Assembler(base);
  build(a);
  return a.assemble().bytes;
}

test('runSnippet: add rax, rbx gives the sum, the flags and one step', (t) => {
  const result = runSnippet({ code: new Uint8Array([0x48, 0x01, 0xd8]), regs: { rax: 1n, rbx: 2n } });
  t.is(result.regs.rax, 3n);
  t.is(result.rflags & 0x8d5n, 0x4n); // PF only (3 has two bits set)
  t.is(result.steps, 1);
  t.deepEqual(result.stop, { kind: 'end' });
});

test('runSnippet: 64-bit carry and overflow flags come out right', (t) => {
  const result = runSnippet({ code: new Uint8Array([0x48, 0x01, 0xd8]), regs: { rax: 0x8000000000000000n, rbx: 0x8000000000000000n } });
  t.is(result.regs.rax, 0n);
  t.is(result.rflags & 0x8c1n, 0x841n); // OF, ZF, CF
});

test('runSnippet: memory regions are identity-mapped, readable and writable', (t) => {
  const code = assemble((a) => {
    a.mov(rax, qword(rbx));
    a.add(rax, 5);
    a.mov(qword(rbx, 8), rax);
  });
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setBigUint64(0, 0x1122334455667788n, true);
  const result = runSnippet({ code, regs: { rbx: 0x500000n }, memory: [{ address: 0x500000n, bytes }] });
  t.deepEqual(result.stop, { kind: 'end' });
  t.is(new DataView(result.readMemory(0x500008n, 8).buffer).getBigUint64(0, true), 0x112233445566778dn);
});

test('runSnippet: a loop counts its steps and stops at maxSteps', (t) => {
  const code = assemble((a) => {
    const top = a.label();
    a.inc(rax);
    a.jmp(top);
  });
  const result = runSnippet({ code, maxSteps: 1001 });
  t.deepEqual(result.stop, { kind: 'maxSteps' });
  t.is(result.steps, 1001);
  t.is(result.regs.rax, 501n);
});

test('runSnippet: an exception stops the run with vector, error code and address', (t) => {
  const divide = runSnippet({ code: new Uint8Array([0x48, 0xf7, 0xf1]), regs: { rax: 1n, rcx: 0n } });
  t.is(divide.stop.kind, 'exception');
  if (divide.stop.kind === 'exception') {
    t.is(divide.stop.detail.vector, 0);
    t.is(divide.stop.detail.rip, SNIPPET_CODE_ADDRESS);
  }
  const unmapped = runSnippet({ code: assemble((a) => a.mov(rax, qword(rdx))), regs: { rdx: 0x30000000n } });
  t.is(unmapped.stop.kind, 'exception');
  if (unmapped.stop.kind === 'exception') {
    t.is(unmapped.stop.detail.vector, 14);
    t.is(unmapped.stop.detail.errorCode, 0);
    t.is(unmapped.stop.detail.address, 0x30000000n);
  }
  t.is(unmapped.regs.rax, 0n, 'the faulting load changed nothing');
});

test('runSnippet: VMCALL inside the code is an exit, not the end', (t) => {
  const result = runSnippet({ code: assemble((a) => { a.mov(rcx, 7); a.vmcall(); a.mov(rcx, 8); }) });
  t.is(result.stop.kind, 'exit');
  if (result.stop.kind === 'exit') t.is(result.stop.detail.reason, 'vmcall');
  t.is(result.regs.rcx, 7n);
});

test('runSnippet: an undefined opcode is #UD and a bad address is a clear error', (t) => {
  const result = runSnippet({ code: new Uint8Array([0x0f, 0x0b]) });
  t.is(result.stop.kind === 'exception' ? result.stop.detail.vector : -1, 6);
  t.throws(() => runSnippet({ code: new Uint8Array([0x90]), memory: [{ address: 0x7fff_0000_0000n, bytes: new Uint8Array(4) }] }), {
    message: /outside the identity-mappable range/,
  });
});

test('SnippetMachine runs 32-bit code in PAE protected mode and in compatibility mode', (t) => {
  // 48 90: DEC EAX; NOP in 32-bit code, a REX.W NOP in 64-bit code.
  const code = new Uint8Array([0x48, 0x90]);
  const regs = { rax: 0x1_0000_0005n };
  for (const mode of ['protected-pae', 'compat', 'long'] as const) {
    const result = new SnippetMachine({ ramBytes: 0x800000, mode }).run({ code, regs });
    t.is(result.stop.kind, 'end', mode);
    t.is(result.regs.rax, mode === 'long' ? 0x1_0000_0005n : 4n, `${mode}: RAX`);
  }
});
