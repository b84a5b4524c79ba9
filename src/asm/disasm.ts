/**
 * Disassembly for listings and error reports. Output is Intel syntax from
 * iced's Formatter with lower-case hex numbers written `0x1f` (small values
 * in decimal), e.g. `mov rax,[rdx+rax*4+0x4ea91c]`.
 *
 * Never throws on bad input: undecodable bytes become one-byte `(bad)` lines,
 * so a report about a corrupted guest still prints.
 */
import iced from 'iced-x86';
import type { Decoder, Formatter, Instruction } from 'iced-x86';

/** One decoded instruction (or one undecodable byte). */
export interface DisasmLine {
  /** Address of the first byte. */
  readonly ip: bigint;
  /** Bytes consumed (1 for invalid bytes). */
  readonly length: number;
  /** Lower-case hex bytes separated by spaces, e.g. `48 8b 04 25`. */
  readonly bytesHex: string;
  /** Intel-syntax text, or `(bad)`. */
  readonly text: string;
  readonly invalid: boolean;
}

export interface DisasmOptions {
  /** Stop after this many lines (default: decode everything). */
  readonly maxInstructions?: number;
  /** Decode as 64-bit code (default) or as 32-bit code. */
  readonly bitness?: 32 | 64;
}

/** Width of the byte column in listings: fits 10 bytes, longer runs just push the text right. */
const BYTES_COLUMN = 29;

/** A Formatter configured the way all project listings look. The caller must free it. */
export function createFormatter(): Formatter {
  const f = new iced.Formatter(iced.FormatterSyntax.Intel);
  f.hexPrefix = '0x';
  f.hexSuffix = '';
  f.uppercaseHex = false;
  f.branchLeadingZeros = false;
  return f;
}

/** `48 8b 04 25` */
export function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** 16-digit lower-case address column. */
export function formatAddress(ip: bigint): string {
  return BigInt.asUintN(64, ip).toString(16).padStart(16, '0');
}

/** One listing line: `fffff80000401000  48 8b 04 25 00 10 00 00       mov rax,[0x1000]`. */
export function formatListingLine(ip: bigint, bytesHex: string, text: string): string {
  return `${formatAddress(ip)}  ${bytesHex.padEnd(BYTES_COLUMN)} ${text}`.trimEnd();
}

function badLine(bytes: Uint8Array, pos: number, ip: bigint): DisasmLine {
  return { ip, length: 1, bytesHex: hexBytes(bytes.subarray(pos, pos + 1)), text: '(bad)', invalid: true };
}

/** Decodes `bytes` as 64-bit code located at `ip`. */
export function disassemble(bytes: Uint8Array, ip: bigint, opts: DisasmOptions = {}): DisasmLine[] {
  const lines: DisasmLine[] = [];
  const max = opts.maxInstructions ?? Number.POSITIVE_INFINITY;
  const start = BigInt.asUintN(64, ip);
  const at = (pos: number): bigint => BigInt.asUintN(64, start + BigInt(pos));
  let pos = 0;
  let decoder: Decoder | null = null;
  let formatter: Formatter | null = null;
  let instr: Instruction | null = null;
  try {
    if (bytes.length === 0 || !(max > 0)) return lines;
    decoder = new iced.Decoder(opts.bitness ?? 64, bytes, iced.DecoderOptions.None);
    formatter = createFormatter();
    instr = new iced.Instruction();
    while (pos < bytes.length && lines.length < max) {
      // Re-seat every time: after an invalid byte we resume one byte later, not where iced stopped.
      decoder.position = pos;
      decoder.ip = at(pos);
      decoder.decodeOut(instr);
      if (instr.isInvalid || instr.length <= 0) {
        lines.push(badLine(bytes, pos, at(pos)));
        pos += 1;
        continue;
      }
      const len = instr.length;
      lines.push({ ip: at(pos), length: len, bytesHex: hexBytes(bytes.subarray(pos, pos + len)), text: formatter.format(instr), invalid: false });
      pos += len;
    }
  } catch {
    // Should not happen; keep the promise of never throwing by listing the rest as raw bytes.
    while (pos < bytes.length && lines.length < max) {
      lines.push(badLine(bytes, pos, at(pos)));
      pos += 1;
    }
  } finally {
    instr?.free();
    formatter?.free();
    decoder?.free();
  }
  return lines;
}

/**
 * The first instruction at `bytes[0]` as one listing line (address, bytes,
 * text), e.g. for "faulted at ..." messages. Empty input gives `(no bytes)`.
 */
export function formatInstructionAt(bytes: Uint8Array, ip: bigint): string {
  const [line] = disassemble(bytes, ip, { maxInstructions: 1 });
  return line ? formatListingLine(line.ip, line.bytesHex, line.text) : `${formatAddress(ip)}  (no bytes)`;
}

/** Multi-line listing of `disassemble()` output. */
export function listing(lines: readonly DisasmLine[]): string {
  return lines.map((l) => formatListingLine(l.ip, l.bytesHex, l.text)).join('\n');
}
