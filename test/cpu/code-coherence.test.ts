/**
 * Goal: decoded code stays coherent the way x86 promises (SDM Vol. 3A "Self- and Cross-Modifying
 * Code"): a vCPU's own stores to upcoming instructions take effect at once; code written by the
 * hypervisor or another vCPU is seen at the next serialising point (VM entry, CPUID, IRET...).
 * Method: run code, change it in each of those ways, and check which bytes execute.
 */
import test from 'ava';
import { byte, eax, qword, rax, rbx, rcx, rsi } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

const SLOT = 0x300000n;

test('a store to the next instruction in the same block executes the new bytes', (t) => {
  const m = new TestMachine();
  const code = m.assemble(CODE, (a) => {
    const target = a.newLabel('target');
    a.mov(byte(rbx), 0x05); // patch the immediate of the instruction below: mov eax, 5
    a.bind(target);
    a.mov(eax, 1); // B8 01 00 00 00 — its imm8 byte is at target+1
    a.vmcall();
  });
  m.state().setGpr('rbx', code.addressOf('target') + 1n);
  t.is(m.run(), RunStop.exit);
  t.is(m.state().gpr('rax'), 5n);
});

test('a hypervisor write to code is seen after VM entry', (t) => {
  const m = new TestMachine();
  m.assemble(CODE, (a) => {
    a.mov(eax, 1);
    a.vmcall();
  });
  t.is(m.run(), RunStop.exit);
  t.is(m.state().gpr('rax'), 1n);
  // Patch the immediate while the vCPU is stopped, then re-enter at the start.
  m.machine.memory.write8(Number(CODE) + 1, 9);
  m.state().rip = CODE;
  t.is(m.run(), RunStop.exit);
  t.is(m.state().gpr('rax'), 9n);
});

test('code written by another vCPU is stale until a serialising instruction, then seen', (t) => {
  const m = new TestMachine({ vcpus: 2 });
  // vCPU 0 spins: load the value "produced" by the patched instruction into RAX, check a flag.
  const reader = m.assemble(CODE, (a) => {
    const top = a.newLabel('top');
    const patched = a.newLabel('patched');
    a.bind(top);
    a.bind(patched);
    a.mov(eax, 1); // the bytes vCPU 1 will rewrite
    a.mov(qword(rsi), rax);
    a.cmp(qword(rsi, 8), 0);
    a.je(top);
    a.cpuid(); // serialising: after this the new bytes must be seen (it clobbers RBX, not RSI)
    a.mov(eax, 1);
    a.jmp(patched);
  });
  m.state(0).setGpr('rsi', SLOT);
  // vCPU 1 rewrites the immediate of `mov eax, 1` at `patched` to 7 and raises the flag.
  const writerCode = CODE + 0x1000n;
  m.assemble(writerCode, (a) => {
    a.mov(byte(rcx), 7);
    a.mov(qword(rbx, 8), 1);
    a.vmcall();
  });
  m.state(1).setGpr('rcx', reader.addressOf('patched') + 1n);
  m.state(1).setGpr('rbx', SLOT);
  m.state(1).rip = writerCode;
  // Let vCPU 0 decode and run its loop, then vCPU 1 patch, then vCPU 0 go on without a VM entry.
  t.is(m.run(0, 40), RunStop.budget);
  t.is(m.read64(SLOT), 1n);
  t.is(m.run(1), RunStop.exit);
  t.is(m.state(1).exit().reason, ExitReason.vmcall);
  // Without serialising, the already-decoded block may (and here does) still run the old bytes…
  // (a budget of 4 runs that whole block; x86 allows either the old or the new bytes here).
  const cpu0 = m.cpu(0);
  t.is(cpu0.run(4), RunStop.budget);
  t.is(m.read64(SLOT), 1n, 'the stale decode of mov eax, 1 ran once more');
  // …until CPUID, after which the new immediate is executed.
  t.is(cpu0.run(20), RunStop.budget);
  t.is(m.read64(SLOT), 7n);
});

