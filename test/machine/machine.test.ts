/**
 * Goal: the shared-memory machine is laid out as documented and refuses bad input clearly.
 * Method: create machines, attach to their descriptors, and poke every accessor and error path.
 */
import test from 'ava';
import { EptBits, Header, Vcpu, controlLayout } from '../../src/machine/layout.ts';
import { Machine } from '../../src/machine/machine.ts';

test('layout: vCPU blocks are cache-line aligned and the buffer size matches', (t) => {
  const layout = controlLayout(16 << 20, 4);
  t.is(layout.vcpuBlocksBytes % 64, 0);
  t.is(layout.totalBytes, layout.vcpuBlocksBytes + 4 * Vcpu.words * 4);
  t.is(layout.ramPages, 4096);
});

test('layout: bad sizes are refused with the allowed range in the message', (t) => {
  t.throws(() => controlLayout(12345, 1), { message: /multiple of 4096 bytes between/ });
  t.throws(() => controlLayout(16 << 20, 0), { message: /vCPU count must be an integer from 1 to 16/ });
  t.throws(() => controlLayout(16 << 20, 17), { message: /from 1 to 16/ });
});

test('a machine attached from its descriptor sees the same memory, EPT and vCPU state', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 2 });
  const other = Machine.attach(machine.descriptor);
  machine.memory.write64(0x1000, 0x1122334455667788n);
  machine.vcpu(1).setGpr('r13', 0xdeadbeefcafef00dn);
  machine.ept.setRights(0x2000, EptBits.read);
  t.is(other.memory.read64(0x1000), 0x1122334455667788n);
  t.is(other.vcpu(1).gpr('r13'), 0xdeadbeefcafef00dn);
  t.is(other.ept.rightsAt(0x2abc), EptBits.read);
  t.throws(() => Machine.attach({ ...machine.descriptor, control: new SharedArrayBuffer(64) }), { message: /control buffer is 64 bytes/ });
});

test('EPT: write without read is refused; changes bump the epoch; out-of-range is refused', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 1 });
  const before = machine.ept.epoch();
  t.throws(() => machine.ept.setRights(0, EptBits.write), { message: /write without read is an EPT misconfiguration/ });
  machine.ept.setRights(0x3000, EptBits.read | EptBits.execute, 2);
  t.is(machine.ept.epoch(), before + 1);
  machine.ept.setRights(0x3000, EptBits.read | EptBits.execute); // no change, no new epoch
  t.is(machine.ept.epoch(), before + 1);
  t.is(machine.ept.rightsAt(0x4fff), EptBits.read | EptBits.execute);
  t.is(machine.ept.rightsAt(0x5000), EptBits.all);
  t.is(machine.ept.rightsAt(1 << 20), 0, 'GPAs outside RAM have no rights');
  t.throws(() => machine.ept.setRights(1 << 20, EptBits.all), { message: /outside guest RAM/ });
});

test('memory: hypervisor writes to a page holding decoded code bump its generation and the code epoch', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 1 });
  const memory = machine.memory;
  memory.write8(0x5000, 1);
  t.is(memory.generation(5), 0, 'no code there yet');
  const generation = memory.markCode(5);
  const epoch = memory.codeEpoch();
  memory.write8(0x5010, 2);
  t.is(memory.generation(5), generation + 1);
  t.is(memory.codeEpoch(), epoch + 1);
  t.is(memory.header[Header.codeEpoch], epoch + 1);
  t.throws(() => memory.read(0xffff0, 0x100), { message: /outside guest RAM/ });
});

test('vCPU state: 64-bit fields round-trip, and an unknown vCPU is a clear error', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 1 });
  const state = machine.vcpu(0);
  state.set64('lstar', 0xfffff80000401000n);
  state.rip = 0xffff800000001234n;
  state.rflags = 0x246n;
  t.is(state.get64('lstar'), 0xfffff80000401000n);
  t.is(state.rip, 0xffff800000001234n);
  t.is(state.rflags, 0x246n);
  t.is(state.words[Vcpu.rip + 1] >>> 0, 0xffff8000);
  t.throws(() => machine.vcpu(3), { message: /vCPU 3 does not exist/ });
});
