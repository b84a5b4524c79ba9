import { PAGE_SHIFT } from './state-block.ts';
import type { PhysicalMemory } from './ports.ts';
import { PfError, STOP, STOPPED } from './stop.ts';

/**
 * Linear → guest-physical translation for one vCPU: a software TLB, the 4-level page walk (4 KiB,
 * 2 MiB and 1 GiB pages; NX, U/S, R/W with CR0.WP, SMEP; A/D bits set atomically in guest memory),
 * the 3-level PAE walk of 32-bit protected mode (from the four cached PDPTE registers, then PD and
 * PT; 4 KiB and 2 MiB pages, same checks), and this vCPU's *view* of the EPT rights (the rights it
 * entered with; see `loadEptView`).
 *
 * Accesses name what they need with `Need` bits. A TLB entry caches, for its page, which kinds of
 * access may go ahead without a walk — for supervisor and user code, after paging *and* EPT — so
 * the fast path is one tag compare and one mask test. Anything else takes the slow path, which
 * finds the precise fault in hardware order: EPT on each paging-structure read, #PF from the
 * entries, EPT on A/D updates, EPT on the final page.
 */

/** What an access needs. Combine R|W for read-modify-write. */
export const Need = {
  read: 1,
  write: 2,
  readWrite: 3,
  execute: 4,
  /** Flag: the address is SS-relative (a non-canonical address raises #SS, not #GP). */
  stack: 8,
  /** Flag: implicit supervisor access (IDT, GDT, TSS) even at CPL 3. */
  supervisor: 16,
} as const;

/** TLB permission bits: supervisor R/W/X in bits 0..2, user R/W/X in bits 3..5. */
const PERM_SR = 1;
const PERM_SW = 2;
const PERM_SX = 4;
const PERM_UR = 8;
const PERM_UW = 16;
const PERM_UX = 32;

export const TLB_ENTRIES = 1024;
/** Split-access records kept at once (a power of two; ENTER with 31 levels needs 33). */
const SPLIT_SLOTS = 64;
const TLB_MASK = TLB_ENTRIES - 1;
/** Filled slots a flush clears one by one; beyond this many it clears the whole TLB. */
const FILLED_MAX = 64;

/**
 * TLB slot of a linear page. Folding in higher address bits keeps pages that are a multiple of
 * 1 MiB or 4 GiB apart (code vs data, user vs kernel halves) out of each other's way.
 */
function tlbSlot(lo: number, hi: number): number {
  return ((lo >>> 12) ^ (lo >>> 22) ^ hi) & TLB_MASK;
}


/** Physical-address bits this CPU reports (CPUID 8000_0008). Entry bits above are reserved. */
export const MAX_PHYS_BITS = 40;
/** Reserved bits of the high word of a paging entry (address bits MAXPHY..51), excluding NX (bit 63). */
const RSVD_HI = (((1 << (52 - 32)) - 1) & ~((1 << (MAX_PHYS_BITS - 32)) - 1)) | 0;
/** Reserved bits of a present PAE PDPTE (SDM Vol. 3A Table 4-8): bits 2:1 and 8:5 in the low word;
 *  bits 63:MAXPHYADDR in the high word (a PDPTE has no XD bit). */
const PDPTE_RSVD_LO = 0x1e6;
const PDPTE_RSVD_HI = ~((1 << (MAX_PHYS_BITS - 32)) - 1);

/**
 * How an MMU reports faults; the CPU implements it. Each call records the fault (or the exit) in
 * the CPU; the MMU then stops the access: the slow path returns STOPPED, the others throw STOP.
 */
export interface MmuFaults {
  recordPageFault(lo: number, hi: number, errorCode: number): void;
  recordNonCanonical(stack: boolean): void;
  recordEptViolation(gpa: number, lo: number, hi: number, access: number, finalTranslation: boolean, rights: number): void;
  /** Called after a guest store hit a page holding decoded code. */
  codeWritten(): void;
}

/** tlbHi value of an empty slot: not the high half of any canonical address. */
export const TLB_EMPTY = 0x40000000;

export class Mmu {
  /**
   * The TLB, as parallel arrays so generated code can test a hit inline: the linear page as its
   * two int32 halves (`lo & -4096`, full `hi`), the guest-physical page, and the permission bits.
   * Only canonical addresses are ever filled, so a non-canonical address can never hit.
   */
  readonly tlbLo = new Int32Array(TLB_ENTRIES);
  readonly tlbHi = new Int32Array(TLB_ENTRIES).fill(TLB_EMPTY);
  readonly tlbPage = new Int32Array(TLB_ENTRIES);
  readonly tlbPerm = new Int32Array(TLB_ENTRIES);
  /** True when some TLB entry came from a 2 MiB/1 GiB page (INVLPG must then flush all). */
  private largeEntries = false;

  /** This vCPU's EPT rights per guest page. */
  eptView: Uint8Array;
  private savedView: Uint8Array | null = null;
  eptEpochSeen = -1;

  /** Paging configuration, copied from CR0/CR3/CR4/EFER/CPL by the CPU whenever they change. */
  userShift = 0;
  cr3Page = 0;
  pagingOn = false;
  writeProtect = true;
  nxEnabled = false;
  smep = false;
  /** PAE paging of 32-bit protected mode (CR0.PG, CR4.PAE, EFER.LMA=0): walks start at `pdptes`. */
  pae = false;
  /** 32-bit code: an access that runs past 4 GiB wraps to address 0 instead of going on. */
  wrap32 = false;
  /** The four PDPTE registers (lo, hi each): the CPU points this at its state block. */
  pdptes: Int32Array = new Int32Array(8);
  private readonly pdptScratch = new Int32Array(8);
  /** The paging entries (guest-physical addresses) of the walk in progress, top level first. */
  private readonly walkEntries = new Float64Array(4);

  /** The control-register values the TLB was filled under (see `pagingStateIs`). */
  private pagingState = new Int32Array(5).fill(-1);

  /** True when these CR0/CR3/CR4/EFER values are the ones the MMU was last configured with. */
  pagingStateIs(cr0: number, cr3Lo: number, cr3Hi: number, cr4: number, efer: number): boolean {
    const s = this.pagingState;
    return s[0] === cr0 && s[1] === cr3Lo && s[2] === cr3Hi && s[3] === cr4 && s[4] === efer;
  }

  /**
   * Records the values the MMU was just configured with (after its flush). A flush alone keeps
   * them: an empty TLB fills under the same configuration.
   */
  notePagingState(cr0: number, cr3Lo: number, cr3Hi: number, cr4: number, efer: number): void {
    const s = this.pagingState;
    s[0] = cr0;
    s[1] = cr3Lo;
    s[2] = cr3Hi;
    s[3] = cr4;
    s[4] = efer;
  }

  /** Forgets the recorded configuration, so the next VM entry configures paging and flushes. */
  forgetPagingState(): void {
    this.pagingState.fill(-1);
  }

  /**
   * TLB slots filled since the last flush (the first FILLED_MAX of `filledCount`): flushes are
   * mostly close together (a guest's CR3 writes, EPT changes between exits) with few slots filled
   * in between, so clearing just those beats clearing all TLB_ENTRIES.
   */
  private readonly filled = new Int32Array(FILLED_MAX);
  private filledCount = 0;

  /** Incremented on every flush so decoded blocks can tell their translation may be stale. */
  epoch = 0;

  /**
   * Page-crossing accesses: `translate` returns a negative handle -(slot+1) into this ring of
   * records (physical address of the first byte, physical page of the rest, bytes in the first
   * page). One instruction may hold several at once (POP [mem], MOVS, IRETQ, ENTER), so they are
   * not overwritten until SPLIT_SLOTS later translations.
   */
  private readonly splitFirst = new Int32Array(SPLIT_SLOTS);
  private readonly splitSecond = new Int32Array(SPLIT_SLOTS);
  private readonly splitBytes = new Int32Array(SPLIT_SLOTS);
  private splitNext = 0;
  /** High half of the last 64-bit read. */
  hi = 0;

  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly i32: Int32Array;
  readonly view: DataView;
  readonly codeMark: Uint8Array;
  private readonly allRights: Uint8Array;

  constructor(
    readonly memory: PhysicalMemory,
    private readonly faults: MmuFaults,
  ) {
    this.u8 = memory.u8;
    this.u16 = new Uint16Array(memory.u8.buffer, memory.u8.byteOffset, memory.bytes >>> 1);
    this.i32 = memory.i32;
    this.view = memory.view;
    this.codeMark = memory.codeMark;
    this.eptView = new Uint8Array(memory.pages);
    this.allRights = new Uint8Array(memory.pages).fill(7);
  }

  // --- configuration -------------------------------------------------------------------------

  /** Drops every cached translation (CR3 write, paging mode change, EPT view change). */
  flush(): void {
    if (this.filledCount <= FILLED_MAX) {
      for (let k = 0; k < this.filledCount; k++) this.tlbHi[this.filled[k]] = TLB_EMPTY;
    } else {
      this.tlbHi.fill(TLB_EMPTY);
    }
    this.filledCount = 0;
    this.largeEntries = false;
    this.epoch++;
  }

  /** INVLPG: drops the translation of one linear page (all of them if a large page may cover it). */
  flushPage(lo: number, hi: number): void {
    if (this.largeEntries) {
      this.flush();
      return;
    }
    const i = tlbSlot(lo, hi);
    if (this.tlbLo[i] === (lo & -4096) && this.tlbHi[i] === hi) this.tlbHi[i] = TLB_EMPTY;
    this.epoch++;
  }

  /** Copies the committed EPT rights into this vCPU's view (VM entry); flushes if they changed. */
  loadEptView(committed: Uint8Array, epoch: number): void {
    if (epoch === this.eptEpochSeen && this.savedView === null) return;
    this.eptView.set(committed);
    this.eptEpochSeen = epoch;
    this.flush();
  }

  /** Runs with EPT ignored ("emulate the allowed access"); `restoreEpt` undoes it. */
  ignoreEpt(): void {
    if (this.savedView !== null) return;
    this.savedView = this.eptView;
    this.eptView = this.allRights;
    this.flush();
  }

  restoreEpt(): void {
    if (this.savedView === null) return;
    this.eptView = this.savedView;
    this.savedView = null;
    this.flush();
  }

  // --- translation -----------------------------------------------------------------------------

  /**
   * Translates the `size`-byte access at linear lo/hi. Returns the guest-physical address, or a
   * negative split handle when the access crosses a page (see `splitAddress`).
   * Throws STOP (the fault recorded in the CPU) on #GP/#SS, #PF and EPT violations.
   */
  translate(lo: number, hi: number, need: number, size: number): number {
    const i = tlbSlot(lo, hi);
    const rights = need & 7;
    const shift = (need & Need.supervisor) !== 0 ? 0 : this.userShift;
    const offset = lo & 0xfff;
    if (this.tlbLo[i] === (lo & -4096) && this.tlbHi[i] === hi && ((this.tlbPerm[i] >> shift) & rights) === rights && offset + size <= 4096) {
      return this.tlbPage[i] + offset;
    }
    return stopOn(this.translateSlow(lo, hi, need, size));
  }

  /**
   * Everything but a plain TLB hit: the canonical check, page walks, page-crossing accesses.
   * Returns STOPPED after recording a fault or an EPT violation (generated code returns then,
   * where a throw would cost ~1 µs).
   */
  translateSlow(lo: number, hi: number, need: number, size: number): number {
    if (((hi >> 15) + 1) >>> 1 !== 0) return this.nonCanonical((need & Need.stack) !== 0);
    const offset = lo & 0xfff;
    if (offset + size <= 4096) {
      const page = this.pageOf(lo, hi, need);
      return page === STOPPED ? STOPPED : page + offset;
    }
    const nextLo = ((lo & ~0xfff) + 0x1000) | 0;
    const nextHi = nextLo === 0 && !this.wrap32 ? (hi + 1) | 0 : hi;
    // The canonical check covers every byte of the access and precedes paging: an access whose
    // tail is non-canonical is #GP/#SS even when its first page is unmapped (was: #PF first).
    if (((nextHi >> 15) + 1) >>> 1 !== 0) return this.nonCanonical((need & Need.stack) !== 0);
    const firstPage = this.pageOf(lo, hi, need);
    if (firstPage === STOPPED) return STOPPED;
    const first = firstPage + offset;
    const second = this.pageOf(nextLo, nextHi, need);
    if (second === STOPPED) return STOPPED;
    const slot = this.splitNext;
    this.splitNext = (slot + 1) & (SPLIT_SLOTS - 1);
    this.splitFirst[slot] = first;
    this.splitSecond[slot] = second;
    this.splitBytes[slot] = 4096 - offset;
    // Handles are ≡ 3 (mod 4): never mistaken for an aligned address by generated code.
    return -(4 * slot + 1);
  }

  /** Walks (or hits) and returns the physical base of the page; fills the TLB. Throws STOP on a fault. */
  translatePage(lo: number, hi: number, need: number): number {
    return stopOn(this.pageOf(lo, hi, need));
  }

  /** `translatePage`, returning STOPPED on a fault. */
  private pageOf(lo: number, hi: number, need: number): number {
    const i = tlbSlot(lo, hi);
    const rights = need & 7;
    const shift = (need & Need.supervisor) !== 0 ? 0 : this.userShift;
    if (this.tlbLo[i] === (lo & -4096) && this.tlbHi[i] === hi && ((this.tlbPerm[i] >> shift) & rights) === rights) return this.tlbPage[i];
    return this.walk(lo, hi, need, i);
  }

  /** The page walk (SDM Vol. 3A §4.5) followed by the EPT check of the final page; STOPPED on a fault. */
  private walk(lo: number, hi: number, need: number, slot: number): number {
    const user = (need & Need.supervisor) === 0 && this.userShift !== 0;
    const write = (need & Need.write) !== 0;
    const fetch = (need & Need.execute) !== 0;
    let page: number;
    let us = true;
    let rw = true;
    let nx = false;
    let large = false;
    let pageBytesLog = 12;
    let dirty = true;
    if (!this.pagingOn) {
      page = (hi !== 0 ? -1 : lo) & ~0xfff;
      if (hi !== 0) return this.eptViolation(lo, lo, hi, need & 7, true, 0);
    } else {
      // Reused: a walk follows every VM entry's TLB flush, and allocating here showed up as GC.
      const entries = this.walkEntries;
      let entryCount = 0;
      let table = this.cr3Page;
      let level = 4;
      if (this.pae) {
        // The PDPTE comes from its register, loaded at MOV CR3 (SDM §4.4.1): no memory read, no
        // EPT check, no A bit, and its reserved bits were checked when it was loaded.
        const k = lo >>> 30;
        const plo = this.pdptes[2 * k];
        if ((plo & 1) === 0) return this.pageFault(lo, hi, 0, write, user, fetch);
        table = physicalBase(plo, this.pdptes[2 * k + 1], 12);
        level = 2;
      }
      let leafLo = 0;
      let leafHi = 0;
      for (;;) {
        const entryGpa = table + tableIndex(lo, hi, level) * 8;
        if (this.checkStructure(entryGpa, lo, hi, 1) === STOPPED) return STOPPED;
        const elo = this.i32[entryGpa >>> 2];
        const ehi = this.i32[(entryGpa >>> 2) + 1];
        if ((elo & 1) === 0) return this.pageFault(lo, hi, 0, write, user, fetch);
        const ps = (elo & 0x80) !== 0;
        const reserved =
          (ehi & RSVD_HI) !== 0 ||
          (!this.nxEnabled && ehi < 0) ||
          (ps && level === 4) ||
          (ps && level === 3 && (elo & 0x3fffe000) !== 0) ||
          (ps && level === 2 && (elo & 0x1fe000) !== 0);
        if (reserved) return this.pageFault(lo, hi, PfError.present | PfError.reserved, write, user, fetch);
        entries[entryCount++] = entryGpa;
        us &&= (elo & 4) !== 0;
        rw &&= (elo & 2) !== 0;
        nx ||= ehi < 0;
        if (level === 1 || ps) {
          leafLo = elo;
          leafHi = ehi;
          large = level > 1;
          pageBytesLog = level === 3 ? 30 : level === 2 ? 21 : 12;
          break;
        }
        table = physicalBase(elo, ehi, 12);
        level--;
      }
      // Permission check on the combined rights (SDM §4.6).
      const denied = user
        ? !us || (write && !rw) || (fetch && nx)
        : (write && !rw && this.writeProtect) || (fetch && (nx || (this.smep && us)));
      if (denied) return this.pageFault(lo, hi, PfError.present, write, user, fetch);
      // Accessed flags on every level, dirty on the leaf for writes: atomic ORs in guest memory,
      // which are guest-physical writes to paging structures and so need EPT write access.
      for (let k = 0; k < entryCount; k++) {
        const entryGpa = entries[k];
        if ((Atomics.load(this.i32, entryGpa >>> 2) & 0x20) === 0) {
          if (this.checkStructure(entryGpa, lo, hi, 2) === STOPPED) return STOPPED;
          Atomics.or(this.i32, entryGpa >>> 2, 0x20);
          this.noteWrite(entryGpa, 4);
        }
      }
      const leafGpa = entries[entryCount - 1];
      dirty = (leafLo & 0x40) !== 0;
      if (write && !dirty) {
        if (this.checkStructure(leafGpa, lo, hi, 2) === STOPPED) return STOPPED;
        Atomics.or(this.i32, leafGpa >>> 2, 0x40);
        this.noteWrite(leafGpa, 4);
        dirty = true;
      }
      const base = physicalBase(leafLo, leafHi, pageBytesLog);
      const within = pageBytesLog === 12 ? 0 : pageBytesLog === 21 ? lo & 0x1ff000 : lo & 0x3ffff000;
      page = base + within;
    }
    // EPT check of the final guest-physical page.
    const rights = page >= 0 && page < this.memory.bytes ? this.eptView[page >>> PAGE_SHIFT] : 0;
    const needRights = need & 7;
    if ((rights & needRights) !== needRights) return this.eptViolation(page + (lo & 0xfff), lo, hi, needRights & ~rights, true, rights);
    // Fill the TLB with what this translation allows, under both privilege levels.
    let perm = 0;
    if ((rights & 1) !== 0) perm |= PERM_SR | (us ? PERM_UR : 0);
    if ((rights & 2) !== 0 && dirty) perm |= (rw || !this.writeProtect ? PERM_SW : 0) | (us && rw ? PERM_UW : 0);
    if ((rights & 4) !== 0 && !nx) perm |= (this.smep && us ? 0 : PERM_SX) | (us ? PERM_UX : 0);
    this.tlbLo[slot] = lo & -4096;
    this.tlbHi[slot] = hi;
    if (this.filledCount < FILLED_MAX) this.filled[this.filledCount] = slot;
    this.filledCount++;
    this.tlbPage[slot] = page;
    this.tlbPerm[slot] = perm;
    if (large) this.largeEntries = true;
    return page;
  }

  /**
   * Reads the four PDPTEs of the PDPT at guest-physical `pdpt` (MOV CR3, or MOV CR0/CR4 turning
   * PAE paging on), each read EPT-checked as a paging-structure read. Returns them (lo, hi × 4,
   * in a buffer reused by the next call), or null when a present entry has reserved bits set —
   * the instruction then raises #GP(0) and nothing is loaded.
   */
  readPdpt(pdpt: number): Int32Array | null {
    const out = this.pdptScratch;
    for (let k = 0; k < 4; k++) {
      const gpa = pdpt + 8 * k;
      stopOn(this.checkStructure(gpa, 0, 0, 1));
      out[2 * k] = this.i32[gpa >>> 2];
      out[2 * k + 1] = this.i32[(gpa >>> 2) + 1];
      if ((out[2 * k] & 1) !== 0 && ((out[2 * k] & PDPTE_RSVD_LO) !== 0 || (out[2 * k + 1] & PDPTE_RSVD_HI) !== 0)) return null;
    }
    return out;
  }

  /** Records #PF with the error code built from the access (SDM §4.7). */
  private pageFault(lo: number, hi: number, bits: number, write: boolean, user: boolean, fetch: boolean): typeof STOPPED {
    const code = bits | (write ? PfError.write : 0) | (user ? PfError.user : 0) | (fetch && (this.nxEnabled || this.smep) ? PfError.fetch : 0);
    this.faults.recordPageFault(lo, hi, code);
    return STOPPED;
  }

  private nonCanonical(stack: boolean): typeof STOPPED {
    this.faults.recordNonCanonical(stack);
    return STOPPED;
  }

  private eptViolation(gpa: number, lo: number, hi: number, access: number, finalTranslation: boolean, rights: number): typeof STOPPED {
    this.faults.recordEptViolation(gpa, lo, hi, access, finalTranslation, rights);
    return STOPPED;
  }

  /** EPT check of a paging-structure access (read while walking, write when setting A/D): STOPPED when denied. */
  private checkStructure(entryGpa: number, lo: number, hi: number, access: number): number {
    const rights = entryGpa >= 0 && entryGpa + 8 <= this.memory.bytes ? this.eptView[entryGpa >>> PAGE_SHIFT] : 0;
    return (rights & access) !== access ? this.eptViolation(entryGpa, lo, hi, access, false, rights) : 0;
  }

  // --- physical access after translation ---------------------------------------------------------

  read8(pa: number): number {
    return this.u8[pa];
  }

  read16(pa: number): number {
    if (pa < 0) return this.readSplit(pa, 0, 2);
    return (pa & 1) === 0 ? this.u16[pa >>> 1] : this.view.getUint16(pa, true);
  }

  read32(pa: number): number {
    if (pa < 0) return this.readSplit(pa, 0, 4);
    return (pa & 3) === 0 ? this.i32[pa >>> 2] : this.view.getInt32(pa, true);
  }

  /** Reads 64 bits: returns the low half, leaves the high half in `hi`. */
  read64(pa: number): number {
    if (pa < 0) {
      const lo = this.readSplit(pa, 0, 4);
      this.hi = this.readSplit(pa, 4, 4);
      return lo;
    }
    if ((pa & 3) === 0) {
      this.hi = this.i32[(pa >>> 2) + 1];
      return this.i32[pa >>> 2];
    }
    this.hi = this.view.getInt32(pa + 4, true);
    return this.view.getInt32(pa, true);
  }

  write8(pa: number, value: number): void {
    this.u8[pa] = value;
    if (this.codeMark[pa >>> PAGE_SHIFT] !== 0) this.noteWrite(pa, 1);
  }

  write16(pa: number, value: number): void {
    if (pa < 0) {
      this.writeSplit(pa, 2, value, 0);
      return;
    }
    if ((pa & 1) === 0) this.u16[pa >>> 1] = value;
    else this.view.setUint16(pa, value, true);
    if (this.codeMark[pa >>> PAGE_SHIFT] !== 0) this.noteWrite(pa, 2);
  }

  write32(pa: number, value: number): void {
    if (pa < 0) {
      this.writeSplit(pa, 4, value, 0);
      return;
    }
    if ((pa & 3) === 0) this.i32[pa >>> 2] = value;
    else this.view.setInt32(pa, value, true);
    if (this.codeMark[pa >>> PAGE_SHIFT] !== 0) this.noteWrite(pa, 4);
  }

  write64(pa: number, lo: number, hi: number): void {
    if (pa < 0) {
      this.writeSplit(pa, 8, lo, hi);
      return;
    }
    if ((pa & 3) === 0) {
      this.i32[pa >>> 2] = lo;
      this.i32[(pa >>> 2) + 1] = hi;
    } else {
      this.view.setInt32(pa, lo, true);
      this.view.setInt32(pa + 4, hi, true);
    }
    if (this.codeMark[pa >>> PAGE_SHIFT] !== 0) this.noteWrite(pa, 8);
  }

  /** Physical address of byte `k` of the split access `handle` (first page, then second). */
  splitAddress(handle: number, k: number): number {
    const slot = (-handle - 1) >> 2;
    const first = this.splitBytes[slot];
    return k < first ? this.splitFirst[slot] + k : this.splitSecond[slot] + (k - first);
  }

  private readSplit(handle: number, start: number, size: number): number {
    let value = 0;
    for (let k = size - 1; k >= 0; k--) value = (value << 8) | this.u8[this.splitAddress(handle, start + k)];
    return size === 2 ? value & 0xffff : value | 0;
  }

  private writeSplit(handle: number, size: number, lo: number, hi: number): void {
    for (let k = 0; k < size; k++) {
      const byte = k < 4 ? (lo >>> (8 * k)) & 0xff : (hi >>> (8 * (k - 4))) & 0xff;
      const pa = this.splitAddress(handle, k);
      this.u8[pa] = byte;
      if (this.codeMark[pa >>> PAGE_SHIFT] !== 0) this.noteWrite(pa, 1);
    }
  }

  /** A guest store hit a page with decoded code: bump generations and tell the CPU. */
  noteWrite(pa: number, length: number): void {
    if (this.memory.noteWrite(pa, length)) this.faults.codeWritten();
  }
}

/** Throws STOP for a result of STOPPED (the fault is already recorded); passes any other through. */
function stopOn(result: number): number {
  if (result === STOPPED) throw STOP;
  return result;
}

/** Index into the paging table of `level` (4 = PML4 … 1 = PT) for linear lo/hi. */
function tableIndex(lo: number, hi: number, level: number): number {
  if (level === 4) return ((hi & 0xffff) >>> 7) & 511;
  if (level === 3) return (((hi & 0x7f) << 2) | (lo >>> 30)) & 511;
  return (lo >>> (level === 2 ? 21 : 12)) & 511;
}

/** Physical base address held in a paging entry, for a page of 2^log bytes. */
function physicalBase(lo: number, hi: number, log: number): number {
  const lowBits = (lo & ~((1 << Math.min(log, 31)) - 1) & ~0xfff) >>> 0;
  const highBits = hi & ((1 << (MAX_PHYS_BITS - 32)) - 1);
  return highBits * 0x100000000 + (log >= 32 ? 0 : lowBits);
}
