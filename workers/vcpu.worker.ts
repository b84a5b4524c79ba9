/**
 * The vCPU worker: one emulated CPU in its own thread, driven only through the control words of
 * its state block (see machine/layout.ts `Control`) — no message per exit or pause. Messages are
 * used for nothing; start-up data comes in `workerData`, failures go to the shared host buffer.
 */
import { workerData } from 'node:worker_threads';
import { disassembleAround } from '../src/cpu/diagnostics.ts';
import { Machine } from '../src/machine/machine.ts';
import { CommandKind, Control, Header, VcpuHostState } from '../src/machine/layout.ts';
import { completeCommand, executeCommand, failCommand } from '../src/host/command.ts';
import { writeHostError } from '../src/host/host-buffer.ts';
import type { TsWorkerData } from '../src/host/spawn.ts';
import type { VcpuWorkerInput } from '../src/host/hosts.ts';

const input = (workerData as TsWorkerData<VcpuWorkerInput>).data;
const machine = Machine.attach(input.machine);
const cpu = machine.createCpu(input.vcpu);
const words = machine.vcpu(input.vcpu).words;
const header = machine.memory.header;

function waitForCommand(last: number): number {
  for (let k = 0; k < input.spin; k++) {
    const seq = Atomics.load(words, Control.commandSeq);
    if (seq !== last) return seq;
  }
  for (;;) {
    Atomics.wait(words, Control.commandSeq, last, input.idlePollMs);
    const seq = Atomics.load(words, Control.commandSeq);
    if (seq !== last) return seq;
    if (Atomics.load(header, Header.sessionState) !== 0) return -1;
  }
}

// Read the command counter before announcing readiness: a command the session writes the moment
// it sees us ready must count as new.
let last = Atomics.load(words, Control.commandSeq);
Atomics.store(words, Control.hostState, VcpuHostState.idle);
Atomics.notify(words, Control.hostState);
for (;;) {
  const seq = waitForCommand(last);
  if (seq < 0) break;
  last = seq;
  const kind = words[Control.commandKind];
  Atomics.store(words, Control.hostState, VcpuHostState.running);
  try {
    executeCommand(cpu, words, header);
  } catch (error) {
    // Report where the vCPU was and what it ran last, then die: the session fails the run.
    const text = `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n${disassembleAround(cpu)}`;
    writeHostError(input.hostBuffer, words, input.vcpu, text);
    failCommand(words);
    Atomics.store(words, Control.hostState, VcpuHostState.dead);
    completeCommand(words, header, seq);
    leave();
    throw error;
  }
  Atomics.store(words, Control.hostState, VcpuHostState.idle);
  completeCommand(words, header, seq);
  if (kind === CommandKind.stop) break;
}
leave();

/** The last word this thread writes to the machine (see VcpuHostState.gone). */
function leave(): void {
  Atomics.store(words, Control.hostState, VcpuHostState.gone);
  Atomics.notify(words, Control.hostState);
}
