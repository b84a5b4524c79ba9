/**
 * Goal: the hypervisor can carry out an instruction that exited on its own exit control (an
 * allowed WRMSR, MOV CR, XSETBV, LGDT…): `stepIgnoringEpt('suppressed')` executes it once with
 * its instruction exits off, with the instruction's architectural effect and faults unchanged, and
 * the next such instruction exits again; `'taken'` (the EPT-only emulation) still exits. Method:
 * WRMSR with ExitControl.msrWrite on the CPU directly.
 */
import test from 'ava';
import { eax, ecx, edx, type Assembler } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { MSR } from '../../src/cpu/ops/msr.ts';
import { ExitControl, ExitReason } from '../../src/cpu/state-block.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';
import { haltingGate, handlerAt } from './helpers.ts';

const LSTAR = 0xffff_8000_1234_5678n;

const wrmsr = (a: Assembler, index: number, value: bigint): Assembler =>
  a.mov(ecx, index).mov(eax, Number(value & 0xffffffffn)).mov(edx, Number(value >> 32n)).wrmsr();

/** Runs to the first WRMSR exit, at the WRMSR itself. */
function atWrmsrExit(build: (a: Assembler) => void): TestMachine {
  const tm = new TestMachine({ exitControls: ExitControl.msrWrite });
  haltingGate(tm, 13);
  tm.assemble(CODE, build);
  const stop = tm.run();
  if (stop !== RunStop.exit || tm.state().exit().reason !== ExitReason.msrWrite) throw new Error(`expected a WRMSR exit, got stop ${stop}`);
  return tm;
}

test('re-run with its exits taken, an intercepted WRMSR exits again and writes nothing', (t) => {
  const tm = atWrmsrExit((a) => wrmsr(a, MSR.LSTAR, LSTAR));
  const cpu = tm.cpu();
  cpu.enter();
  t.is(cpu.stepIgnoringEpt('taken'), RunStop.exit);
  t.is(tm.state().get64('lstar'), 0n);
});

test('carried out with its exits suppressed, the WRMSR writes once; the next WRMSR exits again', (t) => {
  const tm = atWrmsrExit((a) => {
    wrmsr(a, MSR.LSTAR, LSTAR);
    wrmsr(a, MSR.CSTAR, LSTAR);
  });
  const cpu = tm.cpu();
  cpu.enter();
  t.is(cpu.stepIgnoringEpt('suppressed'), RunStop.budget);
  t.is(tm.state().get64('lstar'), LSTAR);
  t.false(cpu.instructionExitsSuppressed, 'only for that one instruction');
  t.is(cpu.run(100), RunStop.exit);
  t.is(tm.state().exit().info0 >>> 0, MSR.CSTAR);
});

test('carried out, a WRMSR the CPU refuses still faults (#GP for a non-canonical LSTAR)', (t) => {
  const tm = atWrmsrExit((a) => wrmsr(a, MSR.LSTAR, 0x0000_8000_0000_0000n));
  const cpu = tm.cpu();
  cpu.enter();
  cpu.stepIgnoringEpt('suppressed');
  cpu.run(100);
  t.is(tm.state().rip, handlerAt(13) + 1n, 'the #GP handler ran and halted');
  t.is(tm.state().get64('lstar'), 0n);
});
