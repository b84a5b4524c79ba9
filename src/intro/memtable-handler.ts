import { Assembler, GPR64_BY_NUMBER, dword, nopBytes, qword, rsp } from '../asm/index.ts';

/**
 * The code a mem-table relocation puts in slack, byte for byte in HVMI's layout (memtables.c,
 * memtables.h): a 47-byte header that turns the index register into the address of block k, then
 * one 11-byte block per table entry — `MOV dst32, table[k]` (always with a REX byte) and a
 * `JMP rel32` back to the instruction after the relocated one. The values are those of the table
 * at patch time; the base register is not consulted at run time.
 */

export const MEM_TABLE_HEADER_SIZE = 0x2f;
export const MEM_TABLE_ENTRY_SIZE = 11;
export const MAX_MEM_TABLE_SIZE = 256;

export interface MemtableHandlerSpec {
  /** Where the handler will live (slack). */
  readonly address: bigint;
  /** Destination register number (0..15) of the relocated MOV. */
  readonly dst: number;
  /** Index register number of its memory operand. */
  readonly index: number;
  /** The table's dwords. */
  readonly values: readonly number[];
  /** Address of the instruction after the relocated one. */
  readonly returnTo: bigint;
  /**
   * Zero the stack slot below RSP before leaving (the memtableZeroStackSlot fix); false keeps the
   * header size with a 9-byte NOP there, and the dead pointer into slack stays on the stack.
   */
  readonly zeroStackSlot?: boolean;
}

const rex = (w: boolean, r: number, b: number): number => 0x40 | (w ? 8 : 0) | (r >= 8 ? 4 : 0) | (b >= 8 ? 1 : 0);

/**
 * Handlers built, by everything that decides their bytes: every run from a snapshot patches the
 * same instructions again, and assembling a handler was ~8 % of a branched mem-table run.
 */
const built = new Map<string, Uint8Array>();
const BUILT_MAX = 1024;

export function buildMemtableHandler(spec: MemtableHandlerSpec): Uint8Array {
  const key = `${spec.address}:${spec.dst}:${spec.index}:${spec.returnTo}:${spec.zeroStackSlot !== false}:${spec.values.join(',')}`;
  const known = built.get(key);
  if (known !== undefined) return known.slice();
  const bytes = assembleMemtableHandler(spec);
  if (built.size >= BUILT_MAX) built.clear();
  built.set(key, bytes.slice());
  return bytes;
}

function assembleMemtableHandler(spec: MemtableHandlerSpec): Uint8Array {
  const { dst, index } = spec;
  if (!(dst >= 0 && dst < 16 && index >= 0 && index < 16)) throw new RangeError(`memtable handler: registers ${dst}/${index} must be 0..15`);
  const idx = GPR64_BY_NUMBER[index];
  const blocks = spec.address + BigInt(MEM_TABLE_HEADER_SIZE);
  const a = new Assembler(spec.address);
  a.pushfq();
  // HVMI always emits the REX prefix on these (PUSH/POP/JMP reg, MOV r32,imm32), so every
  // relocation has the same header size whatever the registers.
  a.raw([rex(true, 0, dst), 0x50 | (dst & 7)]); //                        push dst
  a.raw([rex(true, 0, index), 0x50 | (index & 7)]); //                    push idx
  a.mov(dword(rsp, 8), Number(blocks & 0xffffffffn) | 0); //             saved dst := blocks (low)
  a.mov(dword(rsp, 0xc), Number(blocks >> 32n) | 0); //                  … (high)
  a.imul(idx, idx, MEM_TABLE_ENTRY_SIZE);
  a.add(qword(rsp, 8), idx);
  a.raw([rex(true, 0, index), 0x58 | (index & 7)]); //                    pop idx
  a.raw([rex(true, 0, dst), 0x58 | (dst & 7)]); //                        pop dst (= address of block k)
  if (spec.zeroStackSlot !== false) a.mov(qword(rsp, -8), 0); //         no dead pointer into slack (thread safeness)
  else a.raw(nopBytes(9));
  a.popfq();
  a.raw([rex(false, 0, dst), 0xff, 0xe0 | (dst & 7)]); //                 jmp dst
  if (a.offset !== MEM_TABLE_HEADER_SIZE) throw new Error(`internal: memtable header is ${a.offset} bytes, not ${MEM_TABLE_HEADER_SIZE}`);
  for (const value of spec.values) {
    const imm = value >>> 0;
    a.raw([rex(false, 0, dst), 0xb8 + (dst & 7), imm & 0xff, (imm >>> 8) & 0xff, (imm >>> 16) & 0xff, imm >>> 24]); // mov dst32, imm32
    a.jmp(spec.returnTo);
  }
  const code = a.assemble();
  const expected = MEM_TABLE_HEADER_SIZE + MEM_TABLE_ENTRY_SIZE * spec.values.length;
  if (code.bytes.length !== expected) throw new Error(`internal: memtable handler is ${code.bytes.length} bytes, expected ${expected}`);
  return code.bytes;
}

/** `JMP rel32` to `target` followed by NOPs up to `length` (the patch over the relocated MOV). */
export function jumpPatch(at: bigint, target: bigint, length: number): Uint8Array {
  if (length < 5) throw new RangeError(`a JMP rel32 patch needs 5 bytes, the instruction has ${length}`);
  const rel = target - (at + 5n);
  if (rel < -(1n << 31n) || rel >= 1n << 31n) throw new RangeError(`JMP from 0x${at.toString(16)} to 0x${target.toString(16)} is out of rel32 range`);
  const bytes = new Uint8Array(length).fill(0x90);
  bytes[0] = 0xe9;
  new DataView(bytes.buffer).setInt32(1, Number(rel), true);
  return bytes;
}
