/**
 * Recommended multi-byte NOP encodings (Intel SDM "Recommended Multi-Byte
 * Sequence of NOP Instruction"), extended past 9 bytes with redundant
 * 66/2E prefixes the way GNU as pads. Each is a single instruction, so
 * padding never splits into something a racing vCPU could land inside of.
 */
const BASE: readonly (readonly number[])[] = [
  [],
  [0x90],
  [0x66, 0x90],
  [0x0f, 0x1f, 0x00],
  [0x0f, 0x1f, 0x40, 0x00],
  [0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
  [0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
  [0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
  [0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

/** Longest single NOP instruction (the architectural instruction-length limit). */
export const MAX_NOP_LENGTH = 15;

/** Bytes of one NOP instruction exactly `n` (1..15) bytes long. */
export function nopBytes(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NOP_LENGTH) throw new Error(`nop length must be an integer in 1..${MAX_NOP_LENGTH}, got ${n}`);
  if (n < BASE.length) return Uint8Array.from(BASE[n]);
  // 10 bytes: 66 2E 0F 1F 84 00 00000000; longer ones add more 66 prefixes.
  return Uint8Array.from([...new Array<number>(n - 10).fill(0x66), 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0]);
}
