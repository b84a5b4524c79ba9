/**
 * Goal: a per-run snapshot restores the guest's state and never touches the live host-protocol
 * words, not even for a moment (an idle worker spinning on its command word would run a briefly
 * restored old command).
 * Method: change guest state and protocol words after the snapshot, restore; and restore many
 * times while another thread watches a command word and the doorbell for any other value.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { Control, Header } from '../../src/machine/layout.ts';
import { Machine } from '../../src/machine/machine.ts';
import { MachineSnapshot } from '../../src/machine/snapshot.ts';

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
