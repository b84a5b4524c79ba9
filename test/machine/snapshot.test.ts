/**
 * Goal: a per-run snapshot restores the guest's state and never touches the live host-protocol
 * words, not even for a moment (an idle worker spinning on its command word would run a briefly
 * restored old command).
 * A restore copies only the pages written since the last one.
 * Method: change guest state and protocol words after the snapshot, restore; restore many times
 * while another thread watches a command word and the doorbell for any other value; count and
 * compare the RAM a restore brings back after seeded writes, with a second snapshot and a
 * checkpoint in between.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { MachineCheckpoint } from '../../src/machine/checkpoint.ts';
import { Control, Header, PAGE_BYTES } from '../../src/machine/layout.ts';
import { Machine } from '../../src/machine/machine.ts';
import { MachineSnapshot } from '../../src/machine/snapshot.ts';
import { Prng } from '../../src/explore/prng.ts';

const ramOf = (machine: Machine): Uint8Array => new Uint8Array(machine.descriptor.ram).slice();

test('restore brings back RAM and vCPU state and keeps every protocol word', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 2 });
  machine.memory.write64(0x2000, 0x1111n);
  machine.vcpu(1).setGpr('rbx', 7n);
  const snapshot = new MachineSnapshot(machine);
  machine.memory.write64(0x2000, 0x2222n);
  machine.vcpu(1).setGpr('rbx', 9n);
  const words = machine.vcpu(1).words;
  const header = machine.memory.header;
  for (let k = 0; k <= Control.codeSeen - Control.commandSeq; k++) words[Control.commandSeq + k] = 100 + k;
  for (const index of [Header.doorbell, Header.sessionState, Header.exitTickets]) header[index] = 50 + index;
  snapshot.restore(machine);
  t.is(machine.memory.read64(0x2000), 0x1111n);
  t.is(machine.vcpu(1).gpr('rbx'), 7n);
  for (let k = 0; k <= Control.codeSeen - Control.commandSeq; k++) t.is(words[Control.commandSeq + k], 100 + k);
  for (const index of [Header.doorbell, Header.sessionState, Header.exitTickets]) t.is(header[index], 50 + index);
});

// Plain JS: watches two words until told to stop and reports how often either held another value.
const WATCHER = `
const { parentPort, workerData } = require('node:worker_threads');
const control = new Int32Array(workerData.control);
const flags = new Int32Array(workerData.flags);
let seen = 0;
Atomics.store(flags, 1, 1);
while (Atomics.load(flags, 0) === 0) {
  if (Atomics.load(control, workerData.command) !== workerData.live || Atomics.load(control, workerData.doorbell) !== workerData.live) seen++;
}
parentPort.postMessage(seen);
`;

test('restore never writes a live protocol word, even briefly (watched from another thread)', async (t) => {
  const machine = Machine.create({ ramBytes: 4 << 20, vcpus: 4 });
  const snapshot = new MachineSnapshot(machine);
  const live = 0x5a5a;
  const words = machine.vcpu(3).words;
  Atomics.store(words, Control.commandSeq, live);
  Atomics.store(machine.memory.header, Header.doorbell, live);
  const flags = new SharedArrayBuffer(8);
  const command = words.byteOffset / 4 + Control.commandSeq;
  const worker = new Worker(WATCHER, {
    eval: true,
    workerData: { control: machine.descriptor.control, flags, command, doorbell: Header.doorbell, live },
  });
  const seen = new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  const flagWords = new Int32Array(flags);
  while (Atomics.load(flagWords, 1) === 0) Atomics.wait(flagWords, 1, 0, 5);
  for (let k = 0; k < 300; k++) snapshot.restore(machine);
  Atomics.store(flagWords, 0, 1);
  t.is(await seen, 0);
  await worker.terminate();
});

test('restore copies back exactly the pages written since the last restore', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 1 });
  const memory = machine.memory;
  for (let page = 0; page < memory.pages; page += 3) memory.write32(page * PAGE_BYTES + 8, page);
  const saved = ramOf(machine);
  const snapshot = new MachineSnapshot(machine);
  t.is(snapshot.restore(machine), 0, 'nothing written yet');
  const prng = new Prng(7);
  for (let round = 0; round < 5; round++) {
    const written = new Set<number>();
    for (let k = 0; k < 40; k++) {
      const gpa = prng.below(memory.bytes - 16);
      const bytes = 1 + prng.below(12);
      memory.fill(gpa, bytes, 0xa5);
      written.add(gpa >>> 12).add((gpa + bytes - 1) >>> 12);
    }
    t.false(Buffer.from(ramOf(machine)).equals(Buffer.from(saved)));
    t.is(snapshot.restore(machine), written.size, `round ${round}`);
    t.true(Buffer.from(ramOf(machine)).equals(Buffer.from(saved)), `round ${round}: RAM as saved`);
  }
});

test('a second snapshot of the machine, or a checkpoint between, keeps every restore exact', (t) => {
  const machine = Machine.create({ ramBytes: 1 << 20, vcpus: 1 });
  const memory = machine.memory;
  const first = new MachineSnapshot(machine);
  const atFirst = ramOf(machine);
  memory.write64(0x3000, 1n);
  const second = new MachineSnapshot(machine);
  const atSecond = ramOf(machine);
  memory.write64(0x5000, 2n);
  t.is(first.restore(machine), memory.pages, 'the other snapshot armed the watches last: all of RAM');
  t.true(Buffer.from(ramOf(machine)).equals(Buffer.from(atFirst)));
  memory.write64(0x7000, 3n);
  t.is(first.restore(machine), 1, 'armed by this one again: the one page');
  t.is(second.restore(machine), memory.pages);
  t.true(Buffer.from(ramOf(machine)).equals(Buffer.from(atSecond)));
  // A checkpoint mid-run: its restore brings the run watches back as they were at the checkpoint.
  memory.write64(0x9000, 4n);
  const checkpoint = new MachineCheckpoint(machine);
  memory.write64(0xb000, 5n);
  memory.write64(0x9000, 6n);
  t.is(checkpoint.restore().dirtyPages, 2);
  t.is(memory.read64(0x9000), 4n);
  memory.write64(0xd000, 7n);
  checkpoint.release();
  t.is(second.restore(machine), 2, 'the page written before the checkpoint and the one after its restore (it restored 0xb000 itself)');
  t.true(Buffer.from(ramOf(machine)).equals(Buffer.from(atSecond)));
});
