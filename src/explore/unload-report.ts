import type { UnloadReport } from '../../actors/introspection.ts';
import type { Machine } from '../machine/machine.ts';
import { instructionAt } from './vcpu-report.ts';

/**
 * Why the engine could not unload, in the words of the `engine-unloads` violation: the thread
 * that held it back (its index and record, the vCPU it runs on or that it waits), where (its live
 * RIP, or the stack slot and the value in it), and the handler the value points into, with the
 * instruction there.
 */

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

export function describeFailedUnload(report: UnloadReport, machine: Machine): string {
  const attempts = `${report.tries} attempt(s)`;
  const unsafe = report.scan?.unsafe ?? null;
  if (unsafe === null) {
    if (report.refusedChecks > 0) {
      return `the engine did not unload after ${attempts}: the thread-safeness check was refused ${report.refusedChecks} time(s) because the vCPUs were running when it was asked (something resumed them under the unload's pause)`;
    }
    return `the engine did not unload after ${attempts} (state ${report.state})`;
  }
  const who = unsafe.thread === null ? 'a thread' : `thread ${unsafe.thread.index} (KTHREAD ${hex(unsafe.thread.record)})`;
  const where = unsafe.vcpu === null ? 'waiting (preempted)' : `running on vCPU ${unsafe.vcpu}`;
  const what = unsafe.where === 'rip'
    ? `its RIP ${hex(unsafe.pointer)}`
    : `stack slot ${hex(unsafe.slot ?? 0n)} holds ${hex(unsafe.pointer)}`;
  const offset = unsafe.pointer - unsafe.region.start;
  const code = instructionAt(machine, unsafe.vcpu ?? 0, unsafe.pointer);
  return [
    `the engine did not unload after ${attempts}: ${who}, ${where}, is in the way — ${what}, inside the ${unsafe.region.owner} [${hex(unsafe.region.start)}, +${unsafe.region.size}) at +${hex(offset)}`,
    `    ${hex(unsafe.pointer)}  ${code}`,
  ].join('\n');
}
