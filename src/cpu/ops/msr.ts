import { Vcpu } from '../state-block.ts';
import type { Cpu } from '../cpu.ts';
import { timestamp } from './system.ts';

/** Model-specific registers this CPU implements; any other index raises #GP(0). */
export const MSR = {
  TSC: 0x10,
  APIC_BASE: 0x1b,
  SYSENTER_CS: 0x174,
  SYSENTER_ESP: 0x175,
  SYSENTER_EIP: 0x176,
  PAT: 0x277,
  EFER: 0xc0000080,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  FMASK: 0xc0000084,
  FS_BASE: 0xc0000100,
  GS_BASE: 0xc0000101,
  KERNEL_GS_BASE: 0xc0000102,
  TSC_AUX: 0xc0000103,
} as const;

/** State-block field of each MSR that is plain storage. */
const STORAGE: ReadonlyMap<number, number> = new Map([
  [MSR.APIC_BASE, Vcpu.apicBase],
  [MSR.SYSENTER_CS, Vcpu.sysenterCs],
  [MSR.SYSENTER_ESP, Vcpu.sysenterEsp],
  [MSR.SYSENTER_EIP, Vcpu.sysenterEip],
  [MSR.PAT, Vcpu.pat],
  [MSR.EFER, Vcpu.efer],
  [MSR.STAR, Vcpu.star],
  [MSR.LSTAR, Vcpu.lstar],
  [MSR.CSTAR, Vcpu.cstar],
  [MSR.FMASK, Vcpu.fmask],
  [MSR.FS_BASE, Vcpu.fsBase],
  [MSR.GS_BASE, Vcpu.gsBase],
  [MSR.KERNEL_GS_BASE, Vcpu.kernelGsBase],
  [MSR.TSC_AUX, Vcpu.tscAux],
]);

/** MSRs whose value is an address and must be canonical. */
const CANONICAL = new Set<number>([MSR.LSTAR, MSR.CSTAR, MSR.FS_BASE, MSR.GS_BASE, MSR.KERNEL_GS_BASE, MSR.SYSENTER_ESP, MSR.SYSENTER_EIP]);

/** EFER bits software may write: SCE, LME, NXE (LMA is read-only and follows paging). */
const EFER_WRITABLE = 0x1 | 0x100 | 0x800;

/** Returns [lo, hi] of an MSR, or null for an MSR this CPU does not have. */
export function readMsr(cpu: Cpu, index: number): [number, number] | null {
  const w = cpu.words;
  if (index === MSR.TSC) return timestamp(cpu);
  const field = STORAGE.get(index);
  if (field === undefined) return null;
  return [w[field], w[field + 1]];
}

/** Writes an MSR; false means #GP(0) (unknown MSR, reserved bits, non-canonical address). */
export function writeMsr(cpu: Cpu, index: number, lo: number, hi: number): boolean {
  const w = cpu.words;
  if (index === MSR.TSC) {
    // Writing the TSC sets the offset so that the virtual TSC reads the written value now.
    const [nowLo, nowHi] = timestamp(cpu);
    const now = (nowHi >>> 0) * 4294967296 + (nowLo >>> 0);
    const offsetNow = (w[Vcpu.tscOffset + 1] >>> 0) * 4294967296 + (w[Vcpu.tscOffset] >>> 0);
    const wanted = (hi >>> 0) * 4294967296 + (lo >>> 0);
    const offset = wanted - (now - offsetNow);
    w[Vcpu.tscOffset] = offset % 4294967296 | 0;
    w[Vcpu.tscOffset + 1] = Math.floor(offset / 4294967296) | 0;
    return true;
  }
  const field = STORAGE.get(index);
  if (field === undefined) return false;
  if (CANONICAL.has(index) && ((hi >> 15) + 1) >>> 1 !== 0) return false;
  if (index === MSR.EFER) {
    if (hi !== 0 || (lo & ~(EFER_WRITABLE | 0x400)) !== 0) return false;
    const current = w[Vcpu.efer];
    // LME cannot change while paging is on; LMA is read-only.
    if (((current ^ lo) & 0x100) !== 0 && (w[Vcpu.cr0] & 0x80000000) !== 0) return false;
    w[field] = (lo & EFER_WRITABLE) | (current & 0x400);
    w[field + 1] = 0;
    return true;
  }
  if (index === MSR.PAT) {
    // Each PAT entry must be a valid memory type (0, 1, 4, 5, 6, 7).
    for (let k = 0; k < 8; k++) {
      const type = ((k < 4 ? lo : hi) >>> ((k % 4) * 8)) & 0xff;
      if (type === 2 || type === 3 || type > 7) return false;
    }
  }
  w[field] = lo;
  w[field + 1] = hi;
  if (index === MSR.FS_BASE) {
    cpu.fsLo = lo;
    cpu.fsHi = hi;
  } else if (index === MSR.GS_BASE) {
    cpu.gsLo = lo;
    cpu.gsHi = hi;
  }
  return true;
}
