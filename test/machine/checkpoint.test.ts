/**
 * Goal: a checkpoint restores the machine and copies back only the RAM pages written since — by
 * any writer: the hypervisor's writes and the CPU's stores (which note a write only on a page
 * whose mark byte is nonzero: the write watch makes every page so until its first write).
 */
import test from 'ava';
import { Session } from '../../actors/session.ts';
import { MachineCheckpoint } from '../../src/machine/checkpoint.ts';
import { PAGE_BYTES, PageMark } from '../../src/machine/layout.ts';
import { dword, eax, rbx } from '../../src/asm/index.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

test('only the pages written since are copied back, and the machine is as it was', (t) => {
  const { machine } = new TestMachine({ vcpus: 1 });
  const memory = machine.memory;
  memory.write32(3 * PAGE_BYTES, 0x1111);
  const before = new Uint8Array(machine.descriptor.ram).slice();
  const checkpoint = new MachineCheckpoint(machine);
  memory.write32(3 * PAGE_BYTES, 0x2222);
  memory.write8(7 * PAGE_BYTES + 5, 1);
  memory.write8(7 * PAGE_BYTES + 6, 2);
  t.is(memory.codeMark[3] & PageMark.writeWatch, 0, 'the first write clears the watch');
  t.is(memory.codeMark[4] & PageMark.writeWatch, PageMark.writeWatch);
  t.deepEqual(checkpoint.restore(), { dirtyPages: 2, ramPages: memory.pages });
  t.true(Buffer.from(machine.descriptor.ram).equals(before), 'RAM is byte for byte what it was');
  t.is(memory.codeMark[3] & PageMark.writeWatch, PageMark.writeWatch, 'a restore watches again');
  t.is(checkpoint.restore().dirtyPages, 0, 'nothing written since the last restore');
  checkpoint.release();
  t.is(memory.codeMark[3] & PageMark.writeWatch, 0);
});

test('a guest store marks its page dirty; code marks and generations keep working under a watch', (t) => {
  const test = new TestMachine({ vcpus: 1 });
  const data = Number(CODE) + 4 * PAGE_BYTES;
  test.assemble(CODE, (a) => {
    a.mov(rbx, BigInt(data));
    a.mov(eax, 0x55);
    a.mov(dword(rbx), eax);
    a.hlt();
  });
  const { machine } = test;
  const session = Session.open({ machine, hosts: 'inline', handler: () => ({ action: 'retry' }) });
  t.teardown(() => session.close());
  const checkpoint = new MachineCheckpoint(machine);
  const code = Number(CODE) / PAGE_BYTES;
  session.restart({});
  session.runSlice(0, 10);
  t.is(machine.memory.read32(data), 0x55);
  t.is(machine.memory.codeMark[data / PAGE_BYTES] & PageMark.writeWatch, 0, 'the store was noted');
  t.is(machine.memory.codeMark[code] & PageMark.code, PageMark.code, 'the code page is marked as code');
  const generation = machine.memory.generation(code);
  machine.memory.write8(Number(CODE) + 0x800, 0x90);
  t.is(machine.memory.generation(code), generation + 1, 'a write to code still bumps its generation');
  const restored = checkpoint.restore();
  t.true(restored.dirtyPages >= 2 && restored.dirtyPages < 10, `${restored.dirtyPages} pages`);
  t.is(machine.memory.read32(data), 0);
});
