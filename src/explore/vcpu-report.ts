import { disassemble } from '../asm/index.ts';
import { cr3Root, tryReadGuestVirtual } from '../intro/kernvm.ts';
import type { Machine } from '../machine/machine.ts';

/**
 * Where every vCPU is, with the code at its RIP disassembled from guest memory (what the CPU
 * executes, patches included) — the part of a failure report that says what the guest was doing.
 */
export function describeVcpusWithCode(machine: Machine, instructions = 3): string {
  const lines: string[] = [];
  for (let vcpu = 0; vcpu < machine.vcpuCount; vcpu++) {
    const state = machine.vcpu(vcpu);
    const rip = state.rip;
    const activity = ['active', 'halted', 'shutdown'][state.get32('activity')] ?? `activity ${state.get32('activity')}`;
    lines.push(`vCPU ${vcpu}: RIP 0x${rip.toString(16)} (${activity}), RSP 0x${state.gpr('rsp').toString(16)}`);
    const bytes = tryReadGuestVirtual(machine.memory, cr3Root(state.get64('cr3')), rip, 16 * instructions);
    if (bytes === null) {
      lines.push('    (RIP is not mapped)');
      continue;
    }
    for (const line of disassemble(bytes, rip, { maxInstructions: instructions })) lines.push(`    ${line.ip.toString(16)}  ${line.bytesHex.padEnd(24)} ${line.text}`);
  }
  return lines.join('\n');
}
