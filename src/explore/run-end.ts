import type { Session } from '../../actors/session.ts';
import type { RunResult } from './deterministic.ts';
import { instructionAt as instructionIn } from './vcpu-report.ts';

/**
 * Why a run did not complete, in the words of the `run-completes` violation: the first line names
 * the vCPU and what it was doing (the campaign's tables show only that line), the next lines give
 * every vCPU's state, steps and instruction (the failure report adds the code around each RIP). A triple fault, a vCPU that spins with interrupts off until
 * the bound, and a machine where nothing can happen any more each get their own headline.
 */

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;
const count = (n: number): string => n.toLocaleString('en-US');

function instructionAt(session: Session, vcpu: number, rip: bigint): string {
  return instructionIn(session.machine, vcpu, rip);
}

function interruptsOf(session: Session, vcpu: number): string {
  return (session.machine.vcpu(vcpu).rflags & 0x200n) !== 0n ? 'interrupts on' : 'interrupts off';
}

function vcpuLines(session: Session): string[] {
  const lines: string[] = [];
  for (let vcpu = 0; vcpu < session.vcpuCount; vcpu++) {
    const state = session.machine.vcpu(vcpu);
    lines.push(`vCPU ${vcpu}: ${session.stateOf(vcpu)}, ${count(session.retiredBy(vcpu))} steps, at ${hex(state.rip)} (${instructionAt(session, vcpu, state.rip)}), ${interruptsOf(session, vcpu)}`);
  }
  return lines;
}

function headline(result: RunResult, session: Session): string {
  if (result.outcome === 'verdict' && result.verdict !== null) {
    const { vcpu, rip } = result.verdict;
    const state = session.machine.vcpu(vcpu);
    return `vCPU ${vcpu} triple-faulted at RIP ${hex(rip)} (${instructionAt(session, vcpu, rip)}): an exception while delivering a double fault; `
      + `RSP ${hex(state.gpr('rsp'))}, CR2 ${hex(state.get64('cr2'))}, IDTR ${hex(state.get64('idtrBase'))} limit ${hex(state.get32('idtrLimit'))}`;
  }
  const live = Array.from({ length: session.vcpuCount }, (_, vcpu) => vcpu).filter((vcpu) => session.stateOf(vcpu) !== 'stopped');
  if (result.outcome === 'idle') {
    const stuck = live.map((vcpu) => `vCPU ${vcpu} ${session.stateOf(vcpu)} at ${hex(session.machine.vcpu(vcpu).rip)} with ${interruptsOf(session, vcpu)}`);
    return `nothing could happen any more: ${stuck.join('; ') || 'every vCPU stopped without finishing'}`;
  }
  if (result.outcome === 'bound') {
    const busiest = live.reduce<number | null>((best, vcpu) => (best === null || session.retiredBy(vcpu) > session.retiredBy(best) ? vcpu : best), null);
    const bound = `the run reached its bound (${count(result.steps)} steps, ${count(result.choices)} choices)`;
    if (busiest === null) return `${bound} with every vCPU stopped`;
    const rip = session.machine.vcpu(busiest).rip;
    const share = result.steps > 0 ? Math.round((100 * session.retiredBy(busiest)) / result.steps) : 0;
    return `${bound}: vCPU ${busiest} never finished — it ran ${count(session.retiredBy(busiest))} steps (${share}% of all) and is at RIP ${hex(rip)} `
      + `(${instructionAt(session, busiest, rip)}) with ${interruptsOf(session, busiest)}`;
  }
  return `the run ended "${result.outcome}"`;
}

/** The `run-completes` detail for a run that ended `result.outcome` other than "done". */
export function explainRunEnd(result: RunResult, session: Session): string {
  return [headline(result, session), ...vcpuLines(session)].join('\n');
}
