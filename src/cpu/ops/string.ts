import { DF, Lazy, ZF, readFlags, sizeIndex, type LazyFlags } from '../flags.ts';
import { Need, type Mmu } from '../mmu.ts';

/**
 * String instructions MOVS STOS LODS CMPS SCAS, with REP/REPE/REPNE, DF and 32-bit address size.
 *
 * Each iteration translates every address it touches before writing anything, so a fault or EPT
 * violation in iteration i leaves iterations 0..i-1 done (RSI/RDI/RCX updated) and RIP on the
 * instruction — exactly where real hardware resumes a REP string operation. A REP runs at most
 * `STRING_ITERATIONS_PER_STEP` iterations per call; the caller then re-executes the same
 * instruction, giving the scheduler and pending interrupts a boundary to act on, as real CPUs do
 * between iterations.
 */

export const StringKind = { movs: 0, stos: 1, lods: 2, cmps: 3, scas: 4 } as const;
export const RepKind = { none: 0, rep: 1, repne: 2 } as const;
export const STRING_ITERATIONS_PER_STEP = 1024;

/**
 * How far one call of a REP string instruction goes while the hypervisor carries it out for an
 * engine that allowed it: `normal` — as the CPU runs it; `toPageEnd` — every iteration whose
 * source and destination stay on the pages of the first (a hypervisor's REP optimisation, which
 * emulates a page's worth at once); `oneIteration` — REP optimisation off.
 */
export const StringEmulation = { normal: 0, toPageEnd: 1, oneIteration: 2 } as const;
export type StringEmulationCode = (typeof StringEmulation)[keyof typeof StringEmulation];

export interface StringCpu extends LazyFlags {
  /** A StringEmulation value; normal outside a hypervisor-performed step. */
  stringEmulation: number;
  /** 32-bit code: a segment base added to ESI wraps at 4 GiB with the address. */
  mode32: boolean;
  readonly r: Int32Array;
  readonly mmu: Mmu;
  fsLo: number;
  fsHi: number;
  gsLo: number;
  gsHi: number;
}

const RSI = 6;
const RDI = 7;
const RCX = 1;

function readValue(mmu: Mmu, pa: number, size: number): number {
  switch (size) {
    case 1: return mmu.read8(pa);
    case 2: return mmu.read16(pa);
    case 4: return mmu.read32(pa);
    default: return mmu.read64(pa);
  }
}

function writeValue(mmu: Mmu, pa: number, size: number, lo: number, hi: number): void {
  switch (size) {
    case 1: mmu.write8(pa, lo); break;
    case 2: mmu.write16(pa, lo); break;
    case 4: mmu.write32(pa, lo); break;
    default: mmu.write64(pa, lo, hi);
  }
}

/** Adds a signed delta to register n, as a 64-bit or (addr32) zero-extended 32-bit register. */
function advance(r: Int32Array, n: number, delta: number, addr32: boolean): void {
  if (addr32) {
    r[2 * n] = (r[2 * n] + delta) | 0;
    r[2 * n + 1] = 0;
    return;
  }
  const t = (r[2 * n] >>> 0) + delta;
  r[2 * n] = t | 0;
  r[2 * n + 1] = (r[2 * n + 1] + (t > 4294967295 ? 1 : t < 0 ? -1 : 0)) | 0;
}

/**
 * Runs (up to a step's worth of) a string instruction. Returns true when iterations remain and
 * the instruction must execute again.
 */
export function stringOp(cpu: StringCpu, kind: number, size: number, rep: number, addr32: boolean, segment: number): boolean {
  const r = cpu.r;
  const mmu = cpu.mmu;
  const delta = (readFlags(cpu) & DF) !== 0 ? -size : size;
  const sizeIdx = sizeIndex(size);
  const uses = { source: kind === StringKind.movs || kind === StringKind.lods || kind === StringKind.cmps, dest: kind !== StringKind.lods };
  const baseLo = segment === 1 ? cpu.fsLo : segment === 2 ? cpu.gsLo : 0;
  const baseHi = segment === 1 ? cpu.fsHi : segment === 2 ? cpu.gsHi : 0;
  const emulation = cpu.stringEmulation;
  const limit = emulation === StringEmulation.oneIteration ? 1 : STRING_ITERATIONS_PER_STEP;
  const firstSourcePage = r[2 * RSI] >>> 12;
  const firstDestPage = r[2 * RDI] >>> 12;
  for (let i = 0; i < limit; i++) {
    if (rep !== RepKind.none) {
      const zero = addr32 ? r[2 * RCX] === 0 : (r[2 * RCX] | r[2 * RCX + 1]) === 0;
      if (zero) return false;
    }
    // A page's worth: stop before an iteration that touches another page (its own checks apply).
    if (emulation === StringEmulation.toPageEnd && i > 0 && ((uses.source && r[2 * RSI] >>> 12 !== firstSourcePage) || (uses.dest && r[2 * RDI] >>> 12 !== firstDestPage))) return true;
    // Translate first (precise faults), then move data.
    let source = 0;
    let dest = 0;
    if (uses.source) {
      const lo = addr32 ? r[2 * RSI] : r[2 * RSI];
      const hi = addr32 ? 0 : r[2 * RSI + 1];
      const t = (lo >>> 0) + (baseLo >>> 0);
      source = mmu.translate(t | 0, cpu.mode32 ? 0 : (hi + baseHi + (t > 4294967295 ? 1 : 0)) | 0, Need.read, size);
    }
    if (uses.dest) {
      const need = kind === StringKind.cmps || kind === StringKind.scas ? Need.read : Need.write;
      dest = mmu.translate(r[2 * RDI], addr32 ? 0 : r[2 * RDI + 1], need, size);
    }
    switch (kind) {
      case StringKind.movs: {
        const lo = readValue(mmu, source, size);
        writeValue(mmu, dest, size, lo, mmu.hi);
        advance(r, RSI, delta, addr32);
        advance(r, RDI, delta, addr32);
        break;
      }
      case StringKind.stos:
        writeValue(mmu, dest, size, size === 1 ? r[0] & 0xff : size === 2 ? r[0] & 0xffff : r[0], r[1]);
        advance(r, RDI, delta, addr32);
        break;
      case StringKind.lods: {
        const lo = readValue(mmu, source, size);
        if (size === 1) r[0] = (r[0] & -256) | lo;
        else if (size === 2) r[0] = (r[0] & -65536) | lo;
        else {
          r[0] = lo;
          r[1] = size === 8 ? mmu.hi : 0;
        }
        advance(r, RSI, delta, addr32);
        break;
      }
      default: {
        // CMPS compares [rsi] with [rdi]; SCAS compares the accumulator with [rdi].
        let a: number;
        let ah = 0;
        if (kind === StringKind.cmps) {
          a = readValue(mmu, source, size);
          ah = mmu.hi;
        } else {
          a = size === 1 ? r[0] & 0xff : size === 2 ? r[0] & 0xffff : r[0];
          ah = r[1];
        }
        const b = readValue(mmu, dest, size);
        const bh = mmu.hi;
        recordCompare(cpu, a, ah, b, bh, size, sizeIdx);
        if (kind === StringKind.cmps) advance(r, RSI, delta, addr32);
        advance(r, RDI, delta, addr32);
      }
    }
    if (rep === RepKind.none) return false;
    advance(r, RCX, -1, addr32);
    if (kind === StringKind.cmps || kind === StringKind.scas) {
      const zf = (readFlags(cpu) & ZF) !== 0;
      // F3 is REPE for compares; F2 is REPNE.
      if (rep === RepKind.rep ? !zf : zf) return false;
    }
  }
  const remaining = addr32 ? r[2 * RCX] !== 0 : (r[2 * RCX] | r[2 * RCX + 1]) !== 0;
  return rep !== RepKind.none && remaining;
}

function recordCompare(cpu: LazyFlags, a: number, ah: number, b: number, bh: number, size: number, sizeIdx: number): void {
  let s: number;
  let sh = 0;
  if (size === 8) {
    const t = (a >>> 0) - (b >>> 0);
    s = t | 0;
    sh = (ah - bh - (t < 0 ? 1 : 0)) | 0;
  } else {
    s = size === 4 ? (a - b) | 0 : (a - b) & (size === 1 ? 0xff : 0xffff);
  }
  cpu.fop = (Lazy.sub << 2) | sizeIdx;
  cpu.fa = a;
  cpu.fb = b;
  cpu.fr = s;
  cpu.fah = ah;
  cpu.fbh = bh;
  cpu.frh = sh;
}
