import iced from 'iced-x86';
import type { Cpu } from './cpu.ts';
import { walkPaePageTables, walkPageTables } from './page-walk.ts';

/**
 * Human-readable descriptions of a vCPU for error reports: where it is, what it ran last and the
 * instructions at RIP, read without side effects (no A/D bits, no faults).
 */

const hex = (value: number): string => `0x${value.toString(16)}`;

/** Bytes at a linear address (48-bit number), or null when unmapped. */
function peek(cpu: Cpu, linear: number, length: number): Uint8Array | null {
  const out = new Uint8Array(length);
  for (let k = 0; k < length; k++) {
    const address = linear + k;
    const lo = address % 4294967296 | 0;
    const hi = ((Math.floor(address / 4294967296) & 0xffff) << 16) >> 16;
    const where = cpu.mmu.pae
      ? walkPaePageTables(cpu.memory, cpu.mmu.cr3Page, lo, cpu.mmu.pdptes)
      : walkPageTables(cpu.memory, cpu.mmu.cr3Page, lo, hi);
    if (where === null) return k === 0 ? null : out.subarray(0, k);
    out[k] = cpu.memory.u8[where.gpa];
  }
  return out;
}

/** Disassembles up to `count` instructions starting at a linear address. */
export function disassembleAt(cpu: Cpu, linear: number, count = 4): string[] {
  const bytes = peek(cpu, linear, 15 * count);
  if (bytes === null) return [`${hex(linear)}: <not mapped>`];
  const decoder = new iced.Decoder(cpu.mode32 ? 32 : 64, bytes, iced.DecoderOptions.None);
  const formatter = new iced.Formatter(iced.FormatterSyntax.Intel);
  const instruction = new iced.Instruction();
  const lines: string[] = [];
  try {
    decoder.ip = BigInt.asUintN(64, BigInt.asIntN(48, BigInt(linear)));
    for (let k = 0; k < count && decoder.canDecode; k++) {
      decoder.decodeOut(instruction);
      lines.push(`${instruction.ip.toString(16)}: ${instruction.isInvalid ? '(bad)' : formatter.format(instruction)}`);
    }
  } finally {
    instruction.free();
    formatter.free();
    decoder.free();
  }
  return lines;
}

/** One paragraph about the vCPU: id, RIP, CPL, recent blocks, and the code at RIP. */
export function disassembleAround(cpu: Cpu): string {
  const recent = cpu.recentBlocks().map(hex).join(' → ');
  return [
    `vCPU ${cpu.id} at RIP ${hex(cpu.rip)} (CPL ${cpu.cpl}), ${cpu.retired} steps retired`,
    `recent blocks: ${recent || '(none)'}`,
    ...disassembleAt(cpu, cpu.rip).map((line) => `  ${line}`),
  ].join('\n');
}
