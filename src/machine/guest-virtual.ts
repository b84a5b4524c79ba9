import { walkPaePageTables, walkPageTables } from '../cpu/page-walk.ts';
import type { PagingFormat } from './page-tables.ts';
import type { GuestMemory } from './memory.ts';

/**
 * Guest-virtual memory as the hypervisor side reaches it: a software walk of the guest's page
 * tables, then the host mapping of guest RAM — no EPT checks, no A/D updates, and no EPT write
 * hooks fire (HVMI's IntKernVirtMemRead, IntTranslateVirtualAddress).
 */

const PAGE = 0x1000;
const U64 = (1n << 64n) - 1n;

/**
 * GPA of `gva` under the tables at `cr3`, or null when it is not mapped. With `format` 'pae' (a
 * 32-bit PAE guest) the PDPTE is read from the PDPT in memory (see `walkPaePageTables`).
 */
export function translateGva(memory: GuestMemory, cr3: number, gva: bigint, format: PagingFormat = '4-level'): number | null {
  const address = gva & U64;
  const lo = Number(address & 0xffffffffn) | 0;
  const hi = Number(address >> 32n) | 0;
  if (format === 'pae') return hi === 0 ? (walkPaePageTables(memory, cr3, lo)?.gpa ?? null) : null;
  const result = walkPageTables(memory, cr3 - (cr3 % PAGE), lo, hi);
  return result === null ? null : result.gpa;
}

/** How a vCPU sees memory and code now: its page-table root and format, and its code width. */
export interface VcpuView {
  readonly root: number;
  readonly format: PagingFormat;
  readonly bitness: 32 | 64;
}

/**
 * The view of a vCPU in its current mode: long mode (4-level paging; 32-bit code in compatibility
 * mode) or 32-bit protected mode with PAE paging (legacy 32-bit paging is not modelled).
 */
export function vcpuView(state: { get64(field: 'efer' | 'cr3'): bigint; get32(field: 'csCompat'): number }): VcpuView {
  const cr3 = state.get64('cr3');
  if ((state.get64('efer') & 0x400n) === 0n) return { root: Number(cr3 & 0xffff_ffe0n), format: 'pae', bitness: 32 };
  return { root: cr3Root(cr3), format: '4-level', bitness: state.get32('csCompat') !== 0 ? 32 : 64 };
}

/** `cr3` as the page-table root GPA (CR3 value with its low flag bits dropped). */
export function cr3Root(cr3: bigint): number {
  return Number(cr3 & 0x000f_ffff_ffff_f000n);
}

/** The GPA of every page [gva, gva+length) touches, in order; null if any is not mapped. */
export function translateRange(memory: GuestMemory, cr3: number, gva: bigint, length: number, format: PagingFormat = '4-level'): { gva: bigint; gpa: number; bytes: number }[] | null {
  const pieces: { gva: bigint; gpa: number; bytes: number }[] = [];
  let done = 0;
  while (done < length) {
    const at = (gva + BigInt(done)) & U64;
    const gpa = translateGva(memory, cr3, at, format);
    if (gpa === null) return null;
    const bytes = Math.min(length - done, PAGE - (gpa & (PAGE - 1)));
    pieces.push({ gva: at, gpa, bytes });
    done += bytes;
  }
  return pieces;
}

/** Reads `length` bytes at `gva`, or returns null when a page is not mapped. */
export function tryReadGuestVirtual(memory: GuestMemory, cr3: number, gva: bigint, length: number, format: PagingFormat = '4-level'): Uint8Array | null {
  const pieces = translateRange(memory, cr3, gva, length, format);
  if (pieces === null) return null;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const piece of pieces) {
    out.set(memory.read(piece.gpa, piece.bytes), offset);
    offset += piece.bytes;
  }
  return out;
}
