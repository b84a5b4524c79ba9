import { RunStop, type Cpu } from '../cpu/cpu.ts';
import { StringEmulation } from '../cpu/ops/string.ts';
import { isMainThread } from 'node:worker_threads';
import { CommandFlag, CommandKind, Control, Header, Outcome } from '../machine/layout.ts';

const isWorkerThread = (): boolean => !isMainThread;

/**
 * Executes the command in a vCPU's control words and writes its outcome — everything except the
 * completion signal. The inline host calls this in the hypervisor's thread, the worker in its
 * own; both run exactly this code, which is why a seed gives the same trace either way.
 */
export function executeCommand(cpu: Cpu, words: Int32Array, header: Int32Array): void {
  const kind = words[Control.commandKind];
  switch (kind) {
    case CommandKind.run: {
      const budget = words[Control.commandBudget];
      const flags = words[Control.commandFlags];
      const before = cpu.retired;
      if ((flags & CommandFlag.entry) !== 0) cpu.enter();
      else if ((flags & CommandFlag.seeCode) !== 0) cpu.serialize();
      let stop: number = RunStop.budget;
      if ((flags & CommandFlag.emulateFirst) !== 0) {
        const exits = (flags & CommandFlag.firstWithoutExits) !== 0 ? 'suppressed' : 'taken';
        stop = cpu.stepIgnoringEpt(exits, (flags & CommandFlag.firstOneIteration) !== 0 ? StringEmulation.oneIteration : StringEmulation.toPageEnd);
      }
      const used = cpu.retired - before;
      if (stop === RunStop.budget && used < budget) stop = cpu.run(budget - used);
      words[Control.outcome] = stop;
      words[Control.retired] = cpu.retired - before;
      words[Control.ticket] = stop === RunStop.budget ? 0 : Atomics.add(header, Header.exitTickets, 1) + 1;
      words[Control.codeSeen] = cpu.codeEpochChecked;
      return;
    }
    case CommandKind.reset:
      cpu.reset();
      words[Control.codeSeen] = cpu.codeEpochChecked;
      words[Control.outcome] = RunStop.budget;
      words[Control.retired] = 0;
      return;
    case CommandKind.stop:
      words[Control.outcome] = RunStop.shutdown;
      words[Control.retired] = 0;
      return;
    case CommandKind.crash:
      throw new Error(`vCPU ${cpu.id}: crash requested (fault injection)`);
    case CommandKind.hang:
      // Blocks until the thread is terminated; in the hypervisor's own thread it would deadlock.
      if (isWorkerThread()) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      }
      throw new Error(`vCPU ${cpu.id}: hang requested (fault injection) in a host that cannot hang`);
    default:
      throw new Error(`vCPU ${cpu.id}: unknown host command ${kind}`);
  }
}

/** Publishes that command `seq` is complete: outcome words first, then doneSeq, then the doorbell. */
export function completeCommand(words: Int32Array, header: Int32Array, seq: number): void {
  completeInThread(words, header, seq);
  Atomics.notify(words, Control.doneSeq);
  Atomics.notify(header, Header.doorbell);
}

/** The same for a host in the hypervisor's own thread: no other thread waits on it, so no wake. */
export function completeInThread(words: Int32Array, header: Int32Array, seq: number): void {
  Atomics.store(words, Control.doneSeq, seq);
  Atomics.add(header, Header.doorbell, 1);
}

/** Records an outcome of `error` (the text goes to the host buffer separately). */
export function failCommand(words: Int32Array): void {
  words[Control.outcome] = Outcome.error;
  words[Control.retired] = 0;
}
