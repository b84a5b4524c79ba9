import iced from 'iced-x86';
import { OperandKind, Segment } from '../../decode.ts';
import { DtrKind, UdReason } from '../../state-block.ts';
import { Need } from '../../mmu.ts';
import { RepKind } from '../../ops/string.ts';
import { CF, DF } from '../../flags.ts';
import { Emitter, UnsupportedForm } from '../emitter.ts';

/**
 * System instructions, string instructions and the exchange family. Most delegate to helpers in
 * ops/system.ts; those that can change control flow, privilege, paging or may exit end the block
 * (the opcode table says which), and a helper that moved RIP is followed by `returnTo`.
 */

/** Ends the block at the RIP the helper chose. */
function returnAtHelperRip(e: Emitter): void {
  e.line(`return ${e.index + 1};`);
  e.ended = true;
}

/** A helper call with no operands that falls through. */
export function call(helper: string) {
  return (e: Emitter): void => {
    e.line(`H.${helper}(c);`);
  };
}

/** A helper call with no operands that may take a VM exit (see `Emitter.exitingCall`). */
export function exitingCall(helper: string) {
  return (e: Emitter): void => {
    e.exitingCall(`H.${helper}(c)`);
  };
}

export function hlt(e: Emitter): void {
  e.exitingCall(`H.hlt(c, ${e.next})`);
  returnAtHelperRip(e);
}

export function int3(e: Emitter): void {
  e.exitingCall(`H.int3(c, ${e.next})`);
  returnAtHelperRip(e);
}

export function intN(e: Emitter): void {
  e.line(`H.softwareInterrupt(c, ${e.insn.immLo & 0xff}, ${e.next});`);
  returnAtHelperRip(e);
}

/** IRETQ, or IRETD in 32-bit code (the helper picks the frame by mode). */
export function iret(e: Emitter): void {
  if (e.insn.bytes[0] === 0x66) throw new UnsupportedForm('IRET with a 16-bit operand');
  // IRETD in 64-bit code pops a 32-bit five-slot frame: not modelled (IRETQ is).
  if (e.insn.mnemonic === iced.Mnemonic.Iretd && !e.mode32) throw new UnsupportedForm('IRETD in 64-bit mode');
  e.line(`H.interruptReturn(c, ${e.insn.code}, ${e.insn.ip});`);
  returnAtHelperRip(e);
}

export function syscall(e: Emitter): void {
  e.line(`H.syscall(c, ${e.next});`);
  returnAtHelperRip(e);
}

export function sysret(e: Emitter): void {
  e.line('H.sysret(c);');
  returnAtHelperRip(e);
}

/** LGDT/LIDT/SGDT/SIDT m. */
export function descriptorTable(kind: number) {
  return (e: Emitter): void => {
    e.effectiveAddress();
    e.exitingCall(`H.descriptorTable(c, ${kind}, ea, eah, ${e.memory().stack})`);
    if (kind === DtrKind.sgdt || kind === DtrKind.sidt) e.writesMemory = true;
  };
}

export function ltr(e: Emitter): void {
  const [src] = e.operands(1);
  e.prepare(src, Need.read);
  e.read(src, 'a', 2);
  e.exitingCall('H.ltr(c, a)');
}

export function invlpg(e: Emitter): void {
  e.effectiveAddress();
  e.line('H.invlpg(c, ea, eah);');
}

/** PUSHFQ, or PUSHFD in 32-bit code. */
export function pushf(e: Emitter): void {
  if (e.insn.bytes[0] === 0x66) throw new UnsupportedForm('PUSHF with a 16-bit operand');
  e.line(`H.pushFlags(c, ${e.stackWidth});`);
  e.writesMemory = true;
}

/** POPFQ, or POPFD in 32-bit code. */
export function popf(e: Emitter): void {
  if (e.insn.bytes[0] === 0x66) throw new UnsupportedForm('POPF with a 16-bit operand');
  e.line(`H.popFlags(c, ${e.stackWidth});`);
}

/** CLC/STC/CMC/CLD/STD. */
export function flagEdit(clear: number, set: number, toggle: number) {
  return (e: Emitter): void => {
    e.line(`H.setFlagBits(c, ${clear}, ${set}, ${toggle});`);
  };
}
export const clc = flagEdit(CF, 0, 0);
export const stc = flagEdit(0, CF, 0);
export const cmc = flagEdit(0, 0, CF);
export const cld = flagEdit(DF, 0, 0);
export const std = flagEdit(0, DF, 0);

/** MOVS/STOS/LODS/CMPS/SCAS with optional REP/REPE/REPNE. */
export function string(kind: number, compares: boolean) {
  return (e: Emitter): void => {
    const ops = e.insn.operands;
    const size = ops.find((o) => o.kind === OperandKind.stringSource || o.kind === OperandKind.stringDestination)?.size ?? 0;
    if (size === 0) throw new UnsupportedForm('string instruction without string operands');
    const addressWidth = ops.find((o) => o.kind === OperandKind.stringSource || o.kind === OperandKind.stringDestination)?.reg ?? 8;
    if (addressWidth === 2) throw new UnsupportedForm('16-bit address size');
    let rep: number = RepKind.none;
    if (e.insn.rep) rep = RepKind.rep;
    else if (e.insn.repne) rep = compares ? RepKind.repne : RepKind.rep;
    const segment = e.insn.segmentOverride === Segment.fs ? 1 : e.insn.segmentOverride === Segment.gs ? 2 : 0;
    e.line(`if (H.stringOp(c, ${kind}, ${size}, ${rep}, ${addressWidth === 4}, ${segment})) { c.rip = ${e.insn.ip}; return ${e.index + 1}; }`);
    if (kind !== 2 && kind !== 3 && kind !== 4) e.writesMemory = true;
  };
}

/** XADD r/m, r. */
export function xadd(e: Emitter): void {
  const [dst, src] = e.operands(2);
  const size = dst.size;
  e.prepare(dst, Need.readWrite);
  e.read(src, 'b', size);
  if (dst.kind === OperandKind.memory) {
    e.line(`a = H.lockRmw(c, pa, ${size}, 0, b, ${size === 8 ? 'bh' : '0'}, 0);${size === 8 ? ' ah = m.hi;' : ''}`);
  } else {
    e.read(dst, 'a', size);
  }
  if (size === 8) e.line('t = (a >>> 0) + (b >>> 0); s = t | 0; sh = (ah + bh + (t > 4294967295 ? 1 : 0)) | 0;');
  else e.line(`s = ${size === 4 ? '(a + b) | 0' : `(a + b) & ${size === 1 ? 0xff : 0xffff}`};`);
  e.lazyFlags(1, size);
  // SRC := DEST first, then DEST := SUM (so XADD r, r with the same register keeps the sum).
  e.write(src, 'a', 'ah', size);
  if (dst.kind !== OperandKind.memory) e.write(dst, 's', 'sh', size);
}

/** CMPXCHG r/m, r: compare rAX with the destination (flags as CMP rAX, dest). */
export function cmpxchg(e: Emitter): void {
  const [dst, src] = e.operands(2);
  const size = dst.size;
  e.prepare(dst, Need.readWrite);
  e.read(src, 'b', size);
  e.line(size === 8 ? 'a = r[0]; ah = r[1];' : size === 4 ? 'a = r[0];' : `a = r[0] & ${size === 1 ? 0xff : 0xffff};`);
  if (dst.kind === OperandKind.memory) {
    // s/sh receive the old destination value.
    e.line(`s = H.compareExchange(c, pa, ${size}, a, ${size === 8 ? 'ah' : '0'}, b, ${size === 8 ? 'bh' : '0'}); sh = m.hi;`);
  } else {
    e.read(dst, 's', size);
  }
  // Lazy flags for CMP accumulator, old: operands a (accumulator) and the old value in s.
  e.line(size === 8 ? 'b = s; bh = sh;' : 'b = s;');
  e.line(size === 8 ? 't = (a >>> 0) - (b >>> 0); s = t | 0; sh = (ah - bh - (t < 0 ? 1 : 0)) | 0;' : `s = ${size === 4 ? '(a - b) | 0' : `(a - b) & ${size === 1 ? 0xff : 0xffff}`};`);
  e.lazyFlags(3, size);
  const equal = size === 8 ? '(s | sh) === 0' : 's === 0';
  e.line(`if (${equal}) {`);
  if (dst.kind !== OperandKind.memory) {
    e.read(src, 'a', size);
    e.write(dst, 'a', 'ah', size);
  }
  e.line('} else {');
  e.write({ kind: OperandKind.register, size, reg: 0, regClass: 0, high8: false }, 'b', 'bh', size);
  e.line('}');
  e.flagsKind = -1;
}

/** CMPXCHG8B/CMPXCHG16B m64/m128. */
export function cmpxchgWide(e: Emitter): void {
  const [dst] = e.operands(1);
  const size = dst.size === 16 ? 16 : 8;
  e.translateMemory(size, Need.readWrite);
  if (size === 16) e.line('if ((ea & 15) !== 0) H.fault(c, 13, 0);');
  e.line(`H.compareExchangeWide(c, pa, ${size});`);
}

/** UD2: the guest asked for #UD on purpose. */
export function ud2(e: Emitter): void {
  e.line(`H.undefinedOpcode(c, ${UdReason.invalidEncoding}, ${e.insn.code}, ${e.insn.ip});`);
  e.ended = true;
}
