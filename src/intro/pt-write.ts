import * as Flag from '../cpu/flags.ts';
import type { GuestMemory } from '../machine/memory.ts';
import type { GprName } from '../machine/vcpu-state.ts';
import type { DecodedInstruction, DecodedOperand } from './decoder.ts';
import type { VcpuAccess } from './glue.ts';

/**
 * Page-table write emulation (IntDecEmulatePTWrite, hvmi-notes §8): the engine carries out the
 * guest's store to a page-table entry itself, with an atomic compare-exchange on guest memory, so
 * that the value it hands to its callbacks is the value memory really got. A CPU's page walk may
 * set the A or D bit of the same entry at any moment without an exit; a value computed at decode
 * time and written by the hypervisor later would be judged on memory that is no longer there.
 *
 * MOV, STOS, XCHG, AND, OR, XOR and BTS/BTR/BTC retry their compare-exchange until memory held
 * the value they computed from; CMPXCHG and CMPXCHG8B run once and take ZF and the accumulator
 * from the real outcome. `predictPtWrite` is the naive engine's decode-time judgement: the same
 * arithmetic on memory as it is at decode, nothing written, the instruction left to the
 * hypervisor.
 */

/** What an emulated (or predicted) page-table store did: the written operand, as HVMI's PtEmuBuffer.New. */
export interface PtWriteOutcome {
  /** Bytes the instruction writes (its memory operand's size). */
  readonly size: number;
  /** The value now in those bytes (for a failed compare-exchange: what was there). */
  readonly value: bigint;
  /** Compare-exchange attempts that found memory changed under them (0 when the first one held). */
  readonly retries: number;
}

/** Why a page-table store cannot be emulated: the form, a size over 8, or an access crossing its page or alignment. */
export class PtWriteUnsupported extends Error {}

type Kind = 'store' | 'xchg' | 'cmpxchg' | 'cmpxchg8b' | 'and' | 'or' | 'xor' | 'bts' | 'btr' | 'btc';

const KINDS: Readonly<Record<string, Kind>> = {
  mov: 'store', stosb: 'store', stosw: 'store', stosd: 'store', stosq: 'store', xchg: 'xchg', cmpxchg: 'cmpxchg', cmpxchg8b: 'cmpxchg8b',
  and: 'and', or: 'or', xor: 'xor', bts: 'bts', btr: 'btr', btc: 'btc',
};

const ACCUMULATOR: GprName = 'rax';
const [CF, PF, AF, ZF, SF, OF, DF, ARITH] = [Flag.CF, Flag.PF, Flag.AF, Flag.ZF, Flag.SF, Flag.OF, Flag.DF, Flag.ARITH].map(BigInt);

const maskOf = (size: number): bigint => (1n << BigInt(size * 8)) - 1n;

/** Atomic views of guest RAM per element size (the SharedArrayBuffer's own typed arrays). */
const views = new WeakMap<GuestMemory, { u16: Uint16Array; u32: Uint32Array }>();

function viewsOf(memory: GuestMemory): { u16: Uint16Array; u32: Uint32Array } {
  let found = views.get(memory);
  if (found === undefined) {
    const buffer = memory.u8.buffer;
    found = { u16: new Uint16Array(buffer, memory.u8.byteOffset, memory.u8.length >>> 1), u32: new Uint32Array(buffer, memory.u8.byteOffset, memory.u8.length >>> 2) };
    views.set(memory, found);
  }
  return found;
}

/** IntDecAtomicStore: writes `value` at `gpa` if it holds `expected`; returns what it held. */
function atomicCompareStore(memory: GuestMemory, gpa: number, size: number, value: bigint, expected: bigint): bigint {
  if (gpa % size !== 0) throw new PtWriteUnsupported(`a ${size}-byte store at GPA 0x${gpa.toString(16)} is not aligned`);
  const held = compareExchange(memory, gpa, size, value, expected);
  if (held === expected) memory.noteWrite(gpa, size);
  return held;
}

function compareExchange(memory: GuestMemory, gpa: number, size: number, value: bigint, expected: bigint): bigint {
  switch (size) {
    case 8: return BigInt.asUintN(64, Atomics.compareExchange(memory.i64, gpa / 8, BigInt.asIntN(64, expected), BigInt.asIntN(64, value)));
    case 4: return BigInt(Atomics.compareExchange(viewsOf(memory).u32, gpa / 4, Number(expected), Number(value)));
    case 2: return BigInt(Atomics.compareExchange(viewsOf(memory).u16, gpa / 2, Number(expected), Number(value)));
    default: return BigInt(Atomics.compareExchange(memory.u8, gpa, Number(expected), Number(value)));
  }
}

function atomicLoad(memory: GuestMemory, gpa: number, size: number): bigint {
  switch (size) {
    case 8: return BigInt.asUintN(64, Atomics.load(memory.i64, gpa / 8));
    case 4: return BigInt(Atomics.load(viewsOf(memory).u32, gpa / 4));
    case 2: return BigInt(Atomics.load(viewsOf(memory).u16, gpa / 2));
    default: return BigInt(Atomics.load(memory.u8, gpa));
  }
}

/** The value of a source operand (a register or an immediate), trimmed to `size` bytes. */
function sourceValue(operand: DecodedOperand | undefined, self: VcpuAccess, size: number): bigint {
  if (operand?.immediate !== null && operand?.immediate !== undefined) return operand.immediate & maskOf(size);
  const register = operand?.register;
  if (register === null || register === undefined) throw new PtWriteUnsupported('the source is neither a register nor an immediate');
  const full = self.gpr(register.gpr);
  return (register.high8 ? full >> 8n : full) & maskOf(register.size);
}

/** Writes `value` to a register operand the way a `size`-byte result does in 64-bit mode. */
function setRegister(self: VcpuAccess, gpr: GprName, size: number, value: bigint, high8 = false): void {
  const old = self.gpr(gpr);
  if (size === 8) self.setGpr(gpr, value);
  else if (size === 4) self.setGpr(gpr, value & 0xffffffffn);
  else if (high8) self.setGpr(gpr, (old & ~0xff00n) | ((value & 0xffn) << 8n));
  else self.setGpr(gpr, (old & ~maskOf(size)) | (value & maskOf(size)));
}

function parity(value: bigint): boolean {
  let byte = Number(value & 0xffn);
  byte ^= byte >> 4;
  byte ^= byte >> 2;
  byte ^= byte >> 1;
  return (byte & 1) === 0;
}

/** ZF, SF, PF of a `size`-byte result. */
function resultFlags(result: bigint, size: number): bigint {
  return (result === 0n ? ZF : 0n) | ((result >> BigInt(size * 8 - 1)) & 1n ? SF : 0n) | (parity(result) ? PF : 0n);
}

/** Flags of `left - right` (CMP), as CMPXCHG sets them. */
function subtractFlags(left: bigint, right: bigint, size: number): bigint {
  const mask = maskOf(size);
  const result = (left - right) & mask;
  const sign = BigInt(size * 8 - 1);
  const overflow = (((left ^ right) & (left ^ result)) >> sign) & 1n;
  return resultFlags(result, size) | (left < right ? CF : 0n) | ((left ^ right ^ result) & 0x10n ? AF : 0n) | (overflow ? OF : 0n);
}

function setArithmetic(self: VcpuAccess, bits: bigint, affected: bigint = ARITH): void {
  self.setRflags((self.rflags() & ~affected) | (bits & affected));
}

interface Form {
  readonly kind: Kind;
  readonly size: number;
}

function formOf(ins: DecodedInstruction): Form {
  const kind = KINDS[ins.mnemonic];
  // STOS writes [rdi] implicitly: no explicit memory operand, one accessed location.
  const memory = ins.memory ?? (kind === 'store' && ins.mnemonic !== 'mov' ? ins.accesses[0] ?? null : null);
  if (kind === undefined || memory === null) throw new PtWriteUnsupported(`${ins.text}: not a page-table store the engine emulates`);
  if (ins.isRepeated) throw new PtWriteUnsupported(`${ins.text}: a repeated string store`);
  const size = kind === 'cmpxchg8b' ? 8 : memory.size;
  if (![1, 2, 4, 8].includes(size)) throw new PtWriteUnsupported(`${ins.text}: a ${size}-byte access`);
  if (ins.operands[0]?.kind !== 'memory') throw new PtWriteUnsupported(`${ins.text}: the first operand is not memory`);
  return { kind, size };
}

/** The value a read-modify-write form stores over `old`, and the flags it sets. */
function compute(kind: Kind, ins: DecodedInstruction, self: VcpuAccess, size: number, old: bigint): { value: bigint; flags: bigint | null } {
  const mask = maskOf(size);
  if (kind === 'store') return { value: ins.mnemonic === 'mov' ? sourceValue(ins.operands[1], self, size) : self.gpr(ACCUMULATOR) & mask, flags: null };
  if (kind === 'xchg') return { value: sourceValue(ins.operands[1], self, size), flags: null };
  if (kind === 'and' || kind === 'or' || kind === 'xor') {
    const source = sourceValue(ins.operands[1], self, size);
    const value = kind === 'and' ? old & source : kind === 'or' ? old | source : old ^ source;
    return { value, flags: resultFlags(value, size) };
  }
  // BTS/BTR/BTC with the bit inside the accessed operand (HVMI refuses bit-base addressing elsewhere).
  const bit = sourceValue(ins.operands[1], self, 8) & BigInt(size * 8 - 1);
  const selected = 1n << bit;
  const value = kind === 'bts' ? old | selected : kind === 'btr' ? old & ~selected : old ^ selected;
  return { value: value & mask, flags: old & selected ? CF : 0n };
}

/**
 * IntDecEmulatePTWrite: carries the store of `ins` at `gpa` out on guest memory, atomically, and
 * updates the registers and flags it changes (not RIP: the reply that completes the exit skips
 * the instruction). Throws PtWriteUnsupported for a form it does not know.
 */
export function emulatePtWrite(memory: GuestMemory, ins: DecodedInstruction, self: VcpuAccess, gpa: number): PtWriteOutcome {
  const { kind, size } = formOf(ins);
  if (kind === 'cmpxchg' || kind === 'cmpxchg8b') {
    const expected = kind === 'cmpxchg' ? self.gpr(ACCUMULATOR) & maskOf(size) : ((self.gpr('rdx') & 0xffffffffn) << 32n) | (self.gpr('rax') & 0xffffffffn);
    const value = kind === 'cmpxchg' ? sourceValue(ins.operands[1], self, size) : ((self.gpr('rcx') & 0xffffffffn) << 32n) | (self.gpr('rbx') & 0xffffffffn);
    const actual = atomicCompareStore(memory, gpa, size, value, expected);
    if (kind === 'cmpxchg') {
      setArithmetic(self, subtractFlags(expected, actual, size));
      if (actual !== expected) setRegister(self, ACCUMULATOR, size, actual);
    } else {
      setArithmetic(self, actual === expected ? ZF : 0n, ZF);
      if (actual !== expected) {
        self.setGpr('rdx', actual >> 32n);
        self.setGpr('rax', actual & 0xffffffffn);
      }
    }
    return { size, value: actual === expected ? value : actual, retries: 0 };
  }
  for (let retries = 0; ; retries++) {
    const old = atomicLoad(memory, gpa, size);
    const { value, flags } = compute(kind, ins, self, size, old);
    if (atomicCompareStore(memory, gpa, size, value, old) !== old) continue;
    if (flags !== null) setArithmetic(self, flags, kind.startsWith('bt') ? CF : ARITH);
    if (kind === 'xchg') {
      const register = ins.operands[1].register;
      if (register !== null) setRegister(self, register.gpr, size, old, register.high8);
    }
    if (kind === 'store' && ins.mnemonic !== 'mov') self.setGpr('rdi', (self.gpr('rdi') + ((self.rflags() & DF) !== 0n ? -BigInt(size) : BigInt(size))) & maskOf(8));
    return { size, value, retries };
  }
}

/**
 * The naive engine's judgement at decode time: what the store would write, computed on memory as
 * it is now (a compare-exchange judged to succeed or fail now). Nothing is written and no register
 * changes; the hypervisor carries the instruction out later, on memory as it is then.
 */
export function predictPtWrite(memory: GuestMemory, ins: DecodedInstruction, self: VcpuAccess, gpa: number): PtWriteOutcome {
  const { kind, size } = formOf(ins);
  const now = atomicLoad(memory, gpa, size);
  if (kind === 'cmpxchg') {
    const expected = self.gpr(ACCUMULATOR) & maskOf(size);
    return { size, value: now === expected ? sourceValue(ins.operands[1], self, size) : now, retries: 0 };
  }
  if (kind === 'cmpxchg8b') {
    const expected = ((self.gpr('rdx') & 0xffffffffn) << 32n) | (self.gpr('rax') & 0xffffffffn);
    return { size, value: now === expected ? ((self.gpr('rcx') & 0xffffffffn) << 32n) | (self.gpr('rbx') & 0xffffffffn) : now, retries: 0 };
  }
  return { size, value: compute(kind, ins, self, size, now).value, retries: 0 };
}
