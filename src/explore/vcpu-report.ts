import iced from 'iced-x86';
import { disassemble } from '../asm/index.ts';
import { tryReadGuestVirtual, vcpuView } from '../machine/guest-virtual.ts';
import { UdReason } from '../machine/layout.ts';
import type { Machine } from '../machine/machine.ts';

/**
 * Where every vCPU is, with the code at its RIP disassembled from guest memory (what the CPU
 * executes, patches included) — the part of a failure report that says what the guest was doing.
 */

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

/** The instructions at `rip` as vCPU `vcpu` sees memory, one line each (address, bytes, text), or a note that RIP is unmapped. */
export function codeAt(machine: Machine, vcpu: number, rip: bigint, instructions = 3): string[] {
  const view = vcpuView(machine.vcpu(vcpu));
  const bytes = tryReadGuestVirtual(machine.memory, view.root, rip, 16 * instructions, view.format);
  if (bytes === null) return ['(RIP is not mapped)'];
  return disassemble(bytes, rip, { maxInstructions: instructions, bitness: view.bitness }).map((line) => `${line.ip.toString(16)}  ${line.bytesHex.padEnd(24)} ${line.text}`);
}

/** The one instruction at `rip` as text ("jmp 0x…"), or "unmapped". */
export function instructionAt(machine: Machine, vcpu: number, rip: bigint): string {
  const view = vcpuView(machine.vcpu(vcpu));
  const bytes = tryReadGuestVirtual(machine.memory, view.root, rip, 16, view.format);
  if (bytes === null) return 'unmapped';
  return disassemble(bytes, rip, { maxInstructions: 1, bitness: view.bitness })[0]?.text ?? 'undecodable';
}

const UD_WHY: Readonly<Record<number, string>> = {
  [UdReason.invalidEncoding]: 'the bytes are not a valid x86-64 instruction (the guest is wrong)',
  [UdReason.unsupported]: 'vcpusim lacks this instruction (a real CPU would run it)',
  [UdReason.illegalUse]: 'a valid instruction used illegally (LOCK where not allowed, a bad register…)',
};

/** The last #UD vCPU `vcpu` raised, with the instruction and why, or null if it raised none. */
export function describeLastUd(machine: Machine, vcpu: number): string | null {
  const ud = machine.vcpu(vcpu).lastUd();
  if (ud.count === 0 || ud.reason === UdReason.none) return null;
  const name = ud.code !== 0 ? ` (${iced.Code[ud.code] ?? `code ${ud.code}`})` : '';
  return `#UD at RIP ${hex(ud.rip)}: ${instructionAt(machine, vcpu, ud.rip)}${name} — ${UD_WHY[ud.reason] ?? `reason ${ud.reason}`}`;
}

/** True when vCPU `vcpu` raised #UD because vcpusim does not emulate an instruction. */
export function hitUnsupportedInstruction(machine: Machine, vcpu: number): boolean {
  const ud = machine.vcpu(vcpu).lastUd();
  return ud.count > 0 && ud.reason === UdReason.unsupported;
}

export function describeVcpusWithCode(machine: Machine, instructions = 3): string {
  const lines: string[] = [];
  for (let vcpu = 0; vcpu < machine.vcpuCount; vcpu++) {
    const state = machine.vcpu(vcpu);
    const activity = ['active', 'halted', 'shutdown'][state.get32('activity')] ?? `activity ${state.get32('activity')}`;
    const interrupts = (state.rflags & 0x200n) !== 0n ? 'interrupts on' : 'interrupts off';
    lines.push(`vCPU ${vcpu}: RIP ${hex(state.rip)} (${activity}, ${interrupts}), RSP ${hex(state.gpr('rsp'))}`);
    for (const line of codeAt(machine, vcpu, state.rip, instructions)) lines.push(`    ${line}`);
    const ud = describeLastUd(machine, vcpu);
    if (ud !== null) lines.push(`    last ${ud}`);
  }
  return lines.join('\n');
}
