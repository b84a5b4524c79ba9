import { disassemble } from '../asm/index.ts';
import { formatAddress } from '../asm/disasm.ts';
import type { ExitFacts } from '../../actors/events.ts';
import type { ExitCapture } from '../explore/recorder.ts';
import type { CodeLine } from './timeline-model.ts';

/**
 * The parts of an exit's detail that come from the recording: its registers as hex in the order a
 * debugger shows them, the code at RIP disassembled (iced's Intel formatter, as every listing of
 * the project), and the EPT facts in words.
 */

/** Instructions shown from RIP on: the one that exited and what follows it. */
const CODE_LINES = 4;

/** Registers first in this order; anything else the capture has follows, alphabetically. */
const REGISTER_ORDER = [
  'rip', 'rflags', 'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
  'cr0', 'cr2', 'cr3', 'cr4', 'fsBase', 'gsBase', 'exitQualification', 'exitGpa', 'exitGla', 'exitInstructionLength',
];

const hex = (value: bigint): string => `0x${BigInt.asUintN(64, value).toString(16)}`;

export function registerList(capture: ExitCapture | undefined): (readonly [string, string])[] {
  if (capture === undefined) return [];
  const known = REGISTER_ORDER.filter((name) => name in capture.registers);
  const rest = Object.keys(capture.registers).filter((name) => !REGISTER_ORDER.includes(name)).sort();
  return [...known, ...rest].map((name) => [name, hex(capture.registers[name])] as const);
}

export function codeLines(capture: ExitCapture | undefined, rip: bigint): CodeLine[] {
  if (capture === undefined || capture.code.length === 0) return [{ address: formatAddress(rip), bytes: '', text: '(RIP is not mapped)' }];
  return disassemble(capture.code, rip, { maxInstructions: CODE_LINES, bitness: capture.bitness }).map((line) => ({ address: formatAddress(line.ip), bytes: line.bytesHex, text: line.text }));
}

const ACCESS = ['read', 'write', 'execute'] as const;

/** GPA, GLA and access of an EPT violation; nothing for other exits. */
export function exitFacts(facts: ExitFacts | null): Record<string, string> {
  if (facts === null || facts.access === 0) return {};
  return { gpa: hex(facts.gpa), gla: hex(facts.gla), access: ACCESS.filter((_, bit) => (facts.access & (1 << bit)) !== 0).join('+') };
}
