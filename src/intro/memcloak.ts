import type { PagingFormat } from '../machine/page-tables.ts';
import { linearAddress, type DecodedInstruction, type GprOperand, type MemoryAccess } from './decoder.ts';
import type { Glue, NoteDetail } from './glue.ts';
import { HookType, type CallbackResult, type GpaHook, type GpaHookTable, type HookedAccess } from './gpa-hooks.ts';
import { translateRange, tryReadGuestVirtual, writeGuestVirtual } from './kernvm.ts';
import { IntStatus, IntroAction, IntroError } from './status.ts';

/**
 * Memory cloaking (memcloak.c): engine patches to guest memory that the guest cannot see. Each
 * region keeps the original and the patched bytes and puts a write hook, then a read hook, on its
 * range (write first: a read-only hook alone would leave the page writable but unreadable). Reads
 * of the range get the original bytes; writes to it are refused. With `applyPatch` the patched
 * bytes are written with every vCPU paused, and uncloaking writes the originals back, also paused.
 *
 * HVMI hands a hidden read's data to the hypervisor's emulator (introGuestAllowedPatched); here the
 * engine emulates the plain loads a guest uses to read code (MOV/MOVZX/MOVSX into a register) and
 * completes them as allowedVirtual. Anything else is allowed unhidden and noted.
 */

export interface CloakRegion {
  readonly id: number;
  readonly gva: bigint;
  readonly size: number;
  readonly cr3: number;
  readonly original: Uint8Array;
  readonly patched: Uint8Array;
  readonly owner: string;
  readonly applyPatch: boolean;
  readonly hooks: GpaHook[];
  live: boolean;
}

export class MemoryCloak {
  private readonly regions: CloakRegion[] = [];
  private nextId = 1;
  /** Hidden reads served, and reads that could not be hidden. */
  hiddenReads = 0;
  unhiddenReads = 0;
  deniedWrites = 0;

  constructor(
    private readonly glue: Glue,
    private readonly hooks: GpaHookTable,
    private readonly note: (what: string, detail: NoteDetail) => void,
    /** The guest's page-table layout (every cloaked region's CR3 uses it). */
    private readonly paging: PagingFormat = '4-level',
  ) {}

  /**
   * IntMemClkCloakRegion: hooks [gva, gva+size) and, with `applyPatch`, writes `patched` there
   * (paused). `original` is what reads will see and what uncloaking restores — the caller's
   * copy, not a re-read of memory.
   */
  cloak(gva: bigint, cr3: number, original: Uint8Array, patched: Uint8Array, owner: string, applyPatch = true): CloakRegion {
    const size = original.length;
    if (patched.length !== size || size === 0) throw new IntroError(IntStatus.notSupported, `cloak ${owner}: original and patched data must be the same non-zero size`);
    const pieces = translateRange(this.glue.memory, cr3, gva, size, this.paging);
    if (pieces === null) throw new IntroError(IntStatus.pageNotPresent, `cloak ${owner} at 0x${gva.toString(16)}`);
    if (pieces.length > 2) throw new IntroError(IntStatus.notSupported, `cloak ${owner}: ${size} bytes span more than two pages`);
    const region: CloakRegion = { id: this.nextId++, gva, size, cr3, original: original.slice(), patched: patched.slice(), owner, applyPatch, hooks: [], live: true };
    this.regions.push(region);
    for (const piece of pieces) {
      region.hooks.push(this.hooks.set(piece.gpa, piece.bytes, HookType.write, (_h, access) => this.handleWrite(region, access), `memcloak ${owner}`));
      region.hooks.push(this.hooks.set(piece.gpa, piece.bytes, HookType.read, (_h, access) => this.handleRead(region, access), `memcloak ${owner}`));
    }
    if (applyPatch) {
      this.glue.pauseVcpus();
      try {
        writeGuestVirtual(this.glue, cr3, gva, region.patched, `cloak ${owner}`, this.paging);
        // Noted while still paused: the vCPUs may run the patch as soon as they resume.
        this.note('cloak', { owner, gva, size });
      } finally {
        this.glue.resumeVcpus();
      }
    } else {
      this.note('cloak', { owner, gva, size });
    }
    return region;
  }

  /** IntMemClkUncloakRegion: writes the original bytes back (paused) and removes the hooks. */
  uncloak(region: CloakRegion): void {
    if (!region.live) throw new IntroError(IntStatus.invalidInternalState, `cloak #${region.id} (${region.owner}) was already removed`);
    region.live = false;
    this.regions.splice(this.regions.indexOf(region), 1);
    if (region.applyPatch) {
      this.glue.pauseVcpus();
      try {
        writeGuestVirtual(this.glue, region.cr3, region.gva, region.original, `uncloak ${region.owner}`, this.paging);
      } finally {
        this.glue.resumeVcpus();
      }
    }
    for (const hook of region.hooks) this.hooks.remove(hook);
    this.note('uncloak', { owner: region.owner, gva: region.gva, size: region.size });
  }

  /**
   * IntMemClkUnInit: whatever is still cloaked when the engine goes (an owner that never removed
   * its region) is uncloaked and noted, in the order it was cloaked, as HVMI walks its list. Two
   * overlapping leftovers therefore end with the newer one's "original" bytes — which is how a
   * stale double patch leaves a JMP into freed slack behind.
   */
  uninit(): void {
    for (const region of [...this.regions]) {
      this.note('cloak-leaked', { owner: region.owner, gva: region.gva, size: region.size });
      this.uncloak(region);
    }
  }

  /** IntMemClkModifyPatchedData: changes part of the patched bytes, in memory too (paused). */
  modifyPatched(region: CloakRegion, offset: number, bytes: Uint8Array): void {
    if (!region.live || offset < 0 || offset + bytes.length > region.size) {
      throw new IntroError(IntStatus.notSupported, `modify cloak #${region.id} (${region.owner}) at +${offset}, ${bytes.length} bytes`);
    }
    this.glue.pauseVcpus();
    try {
      region.patched.set(bytes, offset);
      writeGuestVirtual(this.glue, region.cr3, region.gva + BigInt(offset), bytes, `modify ${region.owner}`, this.paging);
    } finally {
      this.glue.resumeVcpus();
    }
  }

  /** Live regions, in creation order. */
  liveRegions(): readonly CloakRegion[] {
    return this.regions;
  }

  /** The bytes the guest should see at [gva, gva+length): memory with every cloaked byte replaced by its original. */
  guestView(gva: bigint, length: number, cr3: number): Uint8Array | null {
    const bytes = tryReadGuestVirtual(this.glue.memory, cr3, gva, length, this.paging);
    if (bytes === null) return null;
    for (const region of this.regions) {
      for (let k = 0; k < length; k++) {
        const at = gva + BigInt(k);
        if (at >= region.gva && at < region.gva + BigInt(region.size)) bytes[k] = region.original[Number(at - region.gva)];
      }
    }
    return bytes;
  }

  /** IntMemClkHandleWrite: the default handler blocks every guest write to a cloaked range. */
  private handleWrite(region: CloakRegion, access: HookedAccess): CallbackResult {
    this.deniedWrites++;
    this.note('cloak-write-denied', { owner: region.owner, gla: access.gla, vcpu: access.vcpuId });
    return { status: IntStatus.success, action: IntroAction.notAllowed };
  }

  /** IntMemClkHandleRead: a read touching the range sees the original bytes. */
  private handleRead(region: CloakRegion, access: HookedAccess): CallbackResult {
    const ins = access.instruction;
    const load = ins === null ? null : this.loadOf(ins, access);
    if (load === null) {
      this.unhiddenReads++;
      this.note('cloak-read-unhidden', { owner: region.owner, gla: access.gla, vcpu: access.vcpuId, ins: ins?.text ?? '?' });
      return { status: IntStatus.success, action: IntroAction.allowed };
    }
    this.hiddenReads++;
    access.emulate(load);
    return { status: IntStatus.success, action: IntroAction.allowedVirtual };
  }

  /**
   * For `MOV/MOVZX/MOVSX reg, [mem]`: the emulation that completes it with the guest's view of
   * memory (computed when applied, from the registers as they are then); null for anything else.
   */
  private loadOf(ins: DecodedInstruction, access: HookedAccess): (() => void) | null {
    const dst = ins.operands[0]?.register;
    const memory = ins.memory;
    if (!['mov', 'movzx', 'movsx', 'movsxd'].includes(ins.mnemonic) || ins.operands.length !== 2 || dst === null || dst === undefined) return null;
    if (memory === null || ins.operands[1].kind !== 'memory' || ![1, 2, 4, 8].includes(memory.size)) return null;
    return () => this.completeLoad(ins, access, dst, memory);
  }

  private completeLoad(ins: DecodedInstruction, access: HookedAccess, dst: GprOperand, memory: MemoryAccess): void {
    const gla = linearAddress(memory, access.self);
    const cr3 = Number(access.self.get64('cr3') & 0x000f_ffff_ffff_f000n);
    const view = this.guestView(gla, memory.size, cr3);
    if (view === null) throw new IntroError(IntStatus.pageNotPresent, `cloaked load at 0x${gla.toString(16)}`);
    let value = 0n;
    for (let k = memory.size - 1; k >= 0; k--) value = (value << 8n) | BigInt(view[k]);
    if (ins.mnemonic === 'movsx' || ins.mnemonic === 'movsxd') value = BigInt.asUintN(64, BigInt.asIntN(memory.size * 8, value));
    const old = access.self.gpr(dst.gpr);
    let next: bigint;
    if (dst.size === 8) next = value;
    else if (dst.size === 4) next = value & 0xffffffffn;
    else if (dst.high8) next = (old & ~0xff00n) | ((value & 0xffn) << 8n);
    else {
      const mask = (1n << BigInt(dst.size * 8)) - 1n;
      next = (old & ~mask) | (value & mask);
    }
    access.self.setGpr(dst.gpr, next);
  }
}
