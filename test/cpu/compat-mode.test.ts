/**
 * Goal: compatibility mode (EFER.LMA=1, CS a 32-bit code segment) runs 32-bit code, an event
 * from it goes through a 64-bit gate into 64-bit code, and IRETQ back to the 32-bit segment
 * returns to 32-bit code (SDM Vol. 3A §6.14, §5.2.1). Method: the long-mode test machine started
 * in compatibility mode on the 32-bit kernel segment; bytes that decode differently as 32-bit and
 * 64-bit code (0x48 is DEC EAX or REX.W) show which mode ran them.
 */
import test from 'ava';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason, UdReason } from '../../src/cpu/state-block.ts';
import { Vector } from '../../src/cpu/stop.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { CODE, TestMachine, stackTop } from '../support/test-machine.ts';

const HANDLER = 0x180000n;

function compatMachine(exceptionBitmap = 0): TestMachine {
  const tm = new TestMachine({ exceptionBitmap });
  tm.state().set32('cs', Selector.kernelCode32);
  tm.state().set32('csCompat', 1);
  return tm;
}

test('INT n from compatibility mode enters 64-bit code through a 64-bit gate, and IRETQ returns to 32-bit code', (t) => {
  const tm = compatMachine();
  tm.setGate(0x30, HANDLER);
  // 64-bit handler: inc rax (48 ff c0) ; vmcall ; iretq (48 cf)
  tm.machine.memory.write(Number(HANDLER), Uint8Array.from([0x48, 0xff, 0xc0, 0x0f, 0x01, 0xc1, 0x48, 0xcf]));
  // 32-bit code: inc eax ; int 0x30 ; dec eax (48) ; vmcall
  tm.machine.memory.write(Number(CODE), Uint8Array.from([0x40, 0xcd, 0x30, 0x48, 0x0f, 0x01, 0xc1]));
  const state = tm.state();
  state.setGpr('rax', 0x1_0000_0000n);
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().reason, ExitReason.vmcall);
  t.is(state.exit().rip, HANDLER + 3n, 'in the handler');
  t.is(state.gpr('rax'), 2n, 'INC EAX zero-extended, then the handler ran INC RAX as 64-bit code');
  t.is(state.get32('csCompat'), 0, '64-bit code now');
  const rsp = state.gpr('rsp');
  t.is(rsp, stackTop(0) - 40n, 'a 64-bit frame of five qwords');
  t.is(tm.read64(rsp), CODE + 3n, 'RIP');
  t.is(tm.read64(rsp + 8n), BigInt(Selector.kernelCode32), 'CS: the 32-bit segment');
  const cpu = tm.cpu();
  cpu.skipInstruction();
  t.is(cpu.run(100), RunStop.exit);
  t.is(state.exit().reason, ExitReason.vmcall);
  t.is(state.exit().rip, CODE + 4n, 'back in 32-bit code: 0x48 was DEC EAX, not a REX prefix of VMCALL');
  t.is(state.gpr('rax'), 1n);
  t.is(state.get32('csCompat'), 1);
  t.is(state.gpr('rsp'), stackTop(0));
});

test('IRETD in compatibility mode is #UD (unsupported), not a protected-mode IRETD', (t) => {
  const tm = compatMachine(1 << Vector.UD);
  tm.machine.memory.write(Number(CODE), Uint8Array.from([0xcf, 0x0f, 0x01, 0xc1]));
  t.is(tm.run(), RunStop.exit);
  const exit = tm.state().exit();
  t.is(exit.reason, ExitReason.exception);
  t.is(exit.info0, Vector.UD);
  t.is(exit.rip, CODE);
  t.is(tm.state().lastUd().reason, UdReason.unsupported);
});

test('32-bit addresses wrap at 4 GiB also under 4-level paging: BT with a negative bit offset below address 0x10', (t) => {
  const tm = compatMachine();
  tm.tables.map(0xfffff000n, 0x502000, Pte.writable);
  tm.machine.memory.write(0x502ffc, Uint8Array.from([0, 0, 0, 0x80]));
  // mov ebx, 0x10 ; mov edx, -0x81 ; bt [ebx], edx ; setc al ; vmcall — bit −0x81 of [0x10] is
  // bit 31 of the dword at 0x10 + floor(−0x81 / 32) × 4 = 0xfffffffc (not 0xffff_ffff_ffff_fffc).
  tm.machine.memory.write(Number(CODE), Uint8Array.from([0xbb, 0x10, 0, 0, 0, 0xba, 0x7f, 0xff, 0xff, 0xff, 0x0f, 0xa3, 0x13, 0x0f, 0x92, 0xc0, 0x0f, 0x01, 0xc1]));
  t.is(tm.run(), RunStop.exit);
  t.is(tm.state().exit().reason, ExitReason.vmcall, `stopped with reason ${tm.state().exit().reason} vector ${tm.state().exit().info0}`);
  t.is(tm.state().gpr('rax') & 0xffn, 1n);
});
