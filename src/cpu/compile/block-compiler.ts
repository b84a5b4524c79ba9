import { PAGE_BYTES, UdReason } from '../state-block.ts';
import { BLOCK_INSTRUCTIONS_MAX, Block, type BlockPages } from '../block.ts';
import type { Cpu } from '../cpu.ts';
import { InstructionDecoder, canonical, markDecoded, type Insn } from '../decode.ts';
import { Need } from '../mmu.ts';
import { OPCODES } from '../opcode-table.ts';
import { helpers } from '../ops/helpers.ts';
import { STOP } from '../stop.ts';
import { Emitter, UnsupportedForm } from './emitter.ts';

/**
 * Decodes a block at a linear address and compiles it to one JavaScript function.
 *
 * Decoding reads a private copy of the guest bytes. The page is marked as holding code *before*
 * its generation is read and the bytes are copied, and the generation is read again afterwards:
 * if a writer got in between, the decode is simply retried (a seqlock), so a block never mixes
 * old and new bytes.
 */

const decoder = new InstructionDecoder();

type Factory = (h: typeof helpers) => BlockFunction;
type BlockFunction = (cpu: unknown) => number;

/**
 * Compiled block functions by source text: identical blocks (same code, same addresses) share one.
 * One function, not one closure per block made: a closure's type feedback is its own, so every
 * block made again after a snapshot's restore would start cold in the interpreter.
 */
const functions = new Map<string, BlockFunction>();
const FUNCTIONS_MAX = 20_000;

/**
 * What compiling a block produced that depends only on its address and its bytes — everything but
 * the per-CPU bookkeeping. Kept per thread across CPU resets (every run from a snapshot resets the
 * vCPUs) and shared by the CPUs of a thread, so unchanged code is never decoded or emitted twice:
 * a lookup compares the cached bytes with memory and reuses the function when they match.
 */
interface CompiledCode {
  /** The bytes the block's instructions span (all on one page: page-crossing blocks are not kept). */
  readonly bytes: Uint8Array;
  readonly fn: BlockFunction;
  readonly ips: readonly number[];
  readonly lengths: readonly number[];
  readonly insns: readonly Insn[];
}
/** Per address, the last few byte versions: patched code alternates with the original across runs from one snapshot. */
const compiledCode = new Map<string, CompiledCode[]>();
const COMPILED_CODE_MAX = 20_000;
const VERSIONS_MAX = 4;

/** First non-canonical address above the lower half (2^47), as a 48-bit linear number. */
const LOWER_HALF_END = 0x800000000000;

const PROLOGUE =
  'const r = c.r, m = c.mmu, tl = m.tlbLo, th = m.tlbHi, tp = m.tlbPerm, tg = m.tlbPage, us = m.userShift, u8 = m.u8, u16 = m.u16, i32 = m.i32, cm = m.codeMark;\n' +
  'let a = 0, ah = 0, b = 0, bh = 0, s = 0, sh = 0, t = 0, ea = 0, eah = 0, pa = 0, cf = 0;';

/** A decoded instruction, or the #UD that stands in for bytes that are not one. */
type Slot = { kind: 'insn'; insn: Insn } | { kind: 'ud'; ip: number; length: number; bytes: Uint8Array; reason: number; code: number };

export function compileBlock(cpu: Cpu, rip: number, single: boolean): Block {
  for (let attempt = 0; attempt < 16; attempt++) {
    const block = tryCompile(cpu, rip, single);
    if (block !== null) return block;
  }
  throw new Error(`code at 0x${rip.toString(16)} kept changing while it was being decoded (16 attempts)`);
}

function halves(linear: number): [number, number] {
  return [linear % 4294967296 | 0, ((Math.floor(linear / 4294967296) & 0xffff) << 16) >> 16];
}

function tryCompile(cpu: Cpu, rip: number, single: boolean): Block | null {
  const memory = cpu.memory;
  const [lo, hi] = halves(rip);
  const page = cpu.mmu.translatePage(lo, hi, Need.execute);
  const generation = memory.markCode(page >>> 12);
  const offset = rip % PAGE_BYTES;
  const mode32 = cpu.mode32;
  // 32-bit and 64-bit code at one address decode differently: they are cached apart.
  const key = `${single ? -1 - rip : rip}${mode32 ? '/32' : ''}`;
  const versions = compiledCode.get(key);
  const known = versions?.find((version) => sameBytes(memory.u8, page + offset, version.bytes));
  if (known !== undefined) {
    if (memory.generation(page >>> 12) !== generation) return null;
    return makeBlock(cpu, rip, known, { page, generation, page2: -1, generation2: 0, linear2: -1 });
  }
  let bytes = memory.u8.slice(page + offset, page + PAGE_BYTES);
  const firstPageBytes = bytes.length;
  let page2 = -1;
  let generation2 = 0;
  let linear2 = -1;
  const slots: Slot[] = [];
  const max = single ? 1 : BLOCK_INSTRUCTIONS_MAX;
  let position = 0;
  while (slots.length < max && position < firstPageBytes) {
    const ip = rip + position;
    const bitness = mode32 ? 32 : 64;
    let result = decoder.decodeAt(bytes, position, canonical(ip), bitness);
    if (result.status === 'truncated' && page2 < 0) {
      linear2 = rip - offset + PAGE_BYTES;
      // 32-bit code fetches wrap at 4 GiB.
      if (mode32) linear2 %= 4294967296;
      const [lo2, hi2] = halves(linear2);
      try {
        // The page after the last lower-half page (0x7ffffffff000) starts the non-canonical hole:
        // fetching the rest of the instruction there is #GP(0). As a 48-bit number it would
        // otherwise wrap silently to the upper half (0xffff800000000000).
        if (linear2 === LOWER_HALF_END && !mode32) cpu.nonCanonical(false);
        page2 = cpu.mmu.translatePage(lo2, hi2, Need.execute);
      } catch (error) {
        // The instruction straddles into a page we cannot fetch: end the block before it, so the
        // fault is raised when that instruction itself is reached (with the right RIP).
        if (error === STOP && slots.length > 0) break;
        throw error;
      }
      generation2 = memory.markCode(page2 >>> 12);
      const joined = new Uint8Array(bytes.length + 15);
      joined.set(bytes);
      joined.set(memory.u8.subarray(page2, page2 + 15), bytes.length);
      bytes = joined;
      result = decoder.decodeAt(bytes, position, canonical(ip), bitness);
    }
    if (result.status === 'ok') {
      const insn = result.insn;
      slots.push({ kind: 'insn', insn });
      position += insn.length;
      const entry = OPCODES.get(insn.mnemonic);
      if (entry === undefined || entry.ends === true || insn.flow !== 0) break;
    } else {
      const length = result.status === 'invalid' ? result.length : 1;
      const raw = result.status === 'invalid' ? result.bytes : bytes.slice(position, position + 1);
      // A LOCK the instruction cannot take is an illegal use of a valid instruction, not garbage.
      const illegalLock = result.status === 'invalid' ? result.illegalLock : undefined;
      const reason = illegalLock !== undefined ? UdReason.illegalUse : UdReason.invalidEncoding;
      slots.push({ kind: 'ud', ip, length, bytes: raw, reason, code: illegalLock ?? 0 });
      break;
    }
  }
  // Seqlock check: the bytes we decoded are the bytes of these generations.
  if (memory.generation(page >>> 12) !== generation) return null;
  if (page2 >= 0 && memory.generation(page2 >>> 12) !== generation2) return null;
  if (page2 >= 0 && position <= firstPageBytes) {
    // The second page was fetched but no instruction used it after all.
    page2 = -1;
    linear2 = -1;
  }
  const pages = { page, generation, page2, generation2, linear2 };
  const code = assemble(rip, slots, mode32);
  // Blocks that cross a page are rare, and their second page can fault: they are not kept.
  if (page2 < 0) {
    if (compiledCode.size >= COMPILED_CODE_MAX) compiledCode.clear();
    // The span includes an undefined instruction that ends the block (its bytes decide the #UD).
    const last = slots[slots.length - 1];
    const span = last !== undefined && last.kind === 'ud' ? last.ip - rip + last.length : position;
    const version = { ...code, bytes: bytes.slice(0, span) };
    if (versions === undefined) compiledCode.set(key, [version]);
    else if (versions.unshift(version) > VERSIONS_MAX) versions.pop();
  }
  return makeBlock(cpu, rip, code, pages);
}

function sameBytes(memory: Uint8Array, at: number, bytes: Uint8Array): boolean {
  if (at + bytes.length > memory.length) return false;
  for (let k = 0; k < bytes.length; k++) if (memory[at + k] !== bytes[k]) return false;
  return true;
}

function makeBlock(cpu: Cpu, rip: number, code: Omit<CompiledCode, 'bytes'>, pages: BlockPages): Block {
  return new Block(rip, code, pages, cpu.mmu.epoch, cpu.codeStamp);
}

function assemble(rip: number, slots: Slot[], mode32: boolean): Omit<CompiledCode, 'bytes'> {
  const parts: string[] = [];
  const ips: number[] = [];
  const lengths: number[] = [];
  const insns: Insn[] = [];
  let previous = { kind: -1, size: 0 };
  let ended = false;
  for (let k = 0; k < slots.length; k++) {
    const slot = slots[k];
    const ip = slot.kind === 'insn' ? slot.insn.ip : slot.ip;
    ips.push(ip);
    lengths.push(slot.kind === 'insn' ? slot.insn.length : slot.length);
    const cur = k === 0 ? '' : `c.cur = ${k}; `;
    if (slot.kind === 'ud') {
      parts.push(`{ ${cur}H.undefinedOpcode(c, ${slot.reason}, ${slot.code}, ${ip}); }`);
      ended = true;
      break;
    }
    insns.push(slot.insn);
    const emitted = emitInstruction(k, slot.insn, previous, mode32);
    if (emitted.kind === 'ud') {
      parts.push(`{ ${cur}H.undefinedOpcode(c, ${emitted.reason}, ${slot.insn.code}, ${ip}); }`);
      ended = true;
      break;
    }
    const e = emitted.emitter;
    let body = e.source;
    if (!e.ended && e.writesMemory) body += `\nif (c.smc !== 0) { c.rip = ${e.next}; return ${k + 1}; }`;
    // Only a helper can throw STOP (a translation's fault returns its instruction's index), so
    // only code calling one needs `cur` for the rollback.
    const mayStop = /\bH\./.test(body);
    parts.push(`// ${ip.toString(16)}: ${hex(slot.insn.bytes)}\n{ ${mayStop ? cur : ''}${body} }`);
    previous = e.ended ? { kind: -1, size: 0 } : { kind: e.flagsKind, size: e.flagsSize };
    if (e.ended) {
      ended = true;
      break;
    }
    if (e.endBlockAfter) {
      parts.push(`c.rip = ${e.next}; return ${k + 1};`);
      ended = true;
      break;
    }
  }
  const count = ips.length;
  if (!ended) {
    const last = slots[count - 1];
    const next = last.kind === 'insn' ? last.insn.nextIp : last.ip + last.length;
    parts.push(`c.rip = ${next}; return ${count};`);
  }
  const name = `block_${rip.toString(16)}`;
  const source = `"use strict";\nreturn function ${name}(c) {\n${PROLOGUE}\n${parts.join('\n')}\n};`;
  let fn = functions.get(source);
  if (fn === undefined) {
    if (functions.size >= FUNCTIONS_MAX) functions.clear();
    fn = (new Function('H', source) as Factory)(helpers);
    functions.set(source, fn);
  }
  return { fn, ips: markDecoded(ips), lengths: markDecoded(lengths), insns: markDecoded(insns) };
}

type Emitted = { kind: 'code'; emitter: Emitter } | { kind: 'ud'; reason: number };

function emitInstruction(index: number, insn: Insn, previous: { kind: number; size: number }, mode32: boolean): Emitted {
  const entry = OPCODES.get(insn.mnemonic);
  if (entry === undefined) return { kind: 'ud', reason: UdReason.unsupported };
  if (insn.lock && (entry.lockable !== true || insn.memory === null)) return { kind: 'ud', reason: UdReason.illegalUse };
  const emitter = new Emitter(index, insn, previous, mode32);
  try {
    entry.emit(emitter);
  } catch (error) {
    if (error instanceof UnsupportedForm) return { kind: 'ud', reason: UdReason.unsupported };
    throw error;
  }
  return { kind: 'code', emitter };
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

