import type { PagingFormat } from '../machine/page-tables.ts';
import { GPR_NAMES } from '../machine/vcpu-state.ts';
import type { DecodedInstruction } from './decoder.ts';
import type { Fixes } from './fixes.ts';
import type { Glue, NoteDetail, VcpuAccess } from './glue.ts';
import { IC_ANY_VAS, type InstructionCache } from './icache.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import type { CloakRegion, MemoryCloak } from './memcloak.ts';
import { MAX_MEM_TABLE_SIZE, MEM_TABLE_ENTRY_SIZE, MEM_TABLE_HEADER_SIZE, buildMemtableHandler, jumpPatch } from './memtable-handler.ts';
import type { SlackAllocator } from './slack.ts';
import { IntStatus, IntroError, intSuccess, statusName, type IntStatusCode } from './status.ts';

/**
 * Mem-tables (memtables.c). Code pages that hold hooked APIs are read-protected in EPT to hide
 * the hooks, so compiler switch tables living in those pages storm the engine with read
 * violations. After 50 hits on one table, the table-load MOV is relocated into slack as a
 * sequence that loads the table's values as immediates, and the MOV becomes a JMP to it.
 *
 * Entries are keyed by table address (not RIP); `rip` is the first RIP seen. Patching happens
 * with every vCPU paused and ends with an icache flush of the patched RIP, because another vCPU
 * may already have faulted on the MOV: without the flush its handler would decode the stale
 * cached MOV and relocate the instruction a second time.
 */

/** Hits after which a table-load instruction is relocated. */
export const MEM_TABLE_PATCH_HITS = 50;

export interface MemTableEntry {
  /** The first RIP seen loading from this table. */
  readonly rip: bigint;
  readonly tableGva: bigint;
  hits: number;
  /** Patching failed once: never tried again. */
  ignored: boolean;
  patched: boolean;
  slackAddress: bigint;
  slackSize: number;
  insCloak: CloakRegion | null;
  slackCloak: CloakRegion | null;
  /** Successful relocations of this entry (HVMI makes exactly one; more is the race). */
  relocations: number;
  /** Handlers written for this entry, oldest first (all but the last are lost when it is patched again). */
  readonly handlers: { readonly address: bigint; readonly size: number; readonly vcpu: number; readonly clock: number }[];
}

/** What the guest looks like to mem-tables: the kernel image and its SSDT. */
export interface KernelLayout {
  readonly base: bigint;
  readonly size: number;
  readonly ssdt: bigint;
  readonly ssdtEntries: number;
  /** Pointer size in bytes (the SSDT bound is entries × word size, as HVMI computes it). */
  readonly wordSize: number;
  readonly systemCr3: number;
  /** How the guest's page tables are laid out (4-level, or PAE for a 32-bit guest). */
  readonly paging: PagingFormat;
}

export interface MemTablesContext {
  readonly glue: Glue;
  readonly fixes: Fixes;
  readonly icache: InstructionCache;
  readonly cloak: MemoryCloak;
  readonly slack: SlackAllocator;
  readonly kernel: KernelLayout;
  readonly note: (what: string, detail: NoteDetail) => void;
}

/** The exit being analysed (HVMI reads these from gVcpu). */
export interface TableAccess {
  readonly vcpuId: number;
  readonly self: VcpuAccess;
  readonly instruction: DecodedInstruction;
  readonly gla: bigint;
}

const gprNumber = (name: string | null): number => (name === null ? -1 : GPR_NAMES.indexOf(name as (typeof GPR_NAMES)[number]));

export class MemTables {
  private readonly list: MemTableEntry[] = [];

  constructor(private readonly ctx: MemTablesContext) {}

  entries(): readonly MemTableEntry[] {
    return this.list;
  }

  /** IntMtblCheckAccess: called for a read violation with no callback on a hooked page. */
  checkAccess(access: TableAccess): IntStatusCode {
    const ins = access.instruction;
    const { kernel } = this.ctx;
    const memory = ins.memory;
    const dst = ins.operands[0];
    if (ins.mnemonic !== 'mov' || ins.operands.length !== 2 || dst.kind !== 'register' || dst.register === null || ins.operands[1].kind !== 'memory') {
      return IntStatus.notNeededHint;
    }
    if (memory === null || memory.index === null || memory.access !== 'read' || dst.size !== 4 || memory.size !== 4 || ins.length < 5) {
      return IntStatus.notNeededHint;
    }
    const end = kernel.base + BigInt(kernel.size);
    const rip = access.self.rip();
    if (access.gla < kernel.base || access.gla >= end || rip < kernel.base || rip >= end) return IntStatus.notNeededHint;
    if (kernel.ssdtEntries > 0 && access.gla >= kernel.ssdt && access.gla < kernel.ssdt + BigInt(kernel.ssdtEntries * kernel.wordSize)) {
      return IntStatus.notNeededHint;
    }
    // HVMI indexes its register array with base 0 (RAX) when there is no base register; that
    // never happens for compiler-generated table loads, so no base simply means 0 here.
    const tableGva = BigInt.asUintN(64, (memory.base === null ? 0n : access.self.gpr(memory.base)) + memory.displacement);
    if (tableGva === 0n) return IntStatus.notNeededHint;

    const entry = this.list.find((e) => e.tableGva === tableGva);
    if (entry === undefined) {
      this.list.push({
        rip, tableGva, hits: 1, ignored: false, patched: false, slackAddress: 0n, slackSize: 0,
        insCloak: null, slackCloak: null, relocations: 0, handlers: [],
      });
      this.ctx.note('mtbl-new', { rip, table: tableGva, vcpu: access.vcpuId });
      return IntStatus.success;
    }
    entry.hits++;
    if (entry.ignored || (entry.patched && this.ctx.fixes.patchedGuard)) return IntStatus.success;
    if (entry.hits < MEM_TABLE_PATCH_HITS) return IntStatus.success;
    const status = this.patchInstruction(entry, ins, access);
    if (!intSuccess(status)) {
      entry.ignored = true;
      this.ctx.note('mtbl-patch-failed', { rip, status: statusName(status), vcpu: access.vcpuId });
    }
    return status;
  }

  /** IntMtblPatchInstruction: relocates `ins` (at the exiting vCPU's RIP) and its table. */
  private patchInstruction(entry: MemTableEntry, ins: DecodedInstruction, access: TableAccess): IntStatusCode {
    const { glue, kernel, fixes, slack, cloak, icache } = this.ctx;
    const rip = access.self.rip();
    const raw = tryReadGuestVirtual(glue.memory, kernel.systemCr3, entry.tableGva, (MAX_MEM_TABLE_SIZE + 1) * 4, kernel.paging);
    if (raw === null) return IntStatus.pageNotPresent;
    const words = new DataView(raw.buffer);
    const values: number[] = [];
    while (values.length < MAX_MEM_TABLE_SIZE + 1 && words.getUint32(values.length * 4, true) < kernel.size) values.push(words.getUint32(values.length * 4, true));
    // Every one of the 257 dwords looks like an RVA: the table's end cannot be told.
    if (values.length > MAX_MEM_TABLE_SIZE) return IntStatus.notSupported;
    const dst = gprNumber(ins.operands[0].register?.gpr ?? null);
    const index = gprNumber(ins.memory?.index ?? null);
    const size = MEM_TABLE_HEADER_SIZE + MEM_TABLE_ENTRY_SIZE * values.length;
    const allocation = slack.alloc(size, `memtable 0x${rip.toString(16)}`);
    if (allocation.gva === null) {
      this.ctx.note('slack-refused', { size, why: allocation.detail });
      return allocation.status;
    }
    const handler = allocation.gva;
    entry.slackAddress = handler;
    entry.slackSize = size;
    const code = buildMemtableHandler({ address: handler, dst, index, values, returnTo: rip + BigInt(ins.length), zeroStackSlot: this.ctx.fixes.memtableZeroStackSlot });
    const jump = jumpPatch(rip, handler, ins.length);
    // The "original" bytes come from the decoded instruction, like HVMI's Instrux->InstructionBytes.
    const original = ins.bytes.slice();

    if (fixes.pauseWhilePatching) glue.pauseVcpus();
    let status: IntStatusCode = IntStatus.success;
    try {
      entry.insCloak = cloak.cloak(rip, kernel.systemCr3, original, jump, `memtable ins 0x${rip.toString(16)}`);
      entry.slackCloak = cloak.cloak(handler, kernel.systemCr3, new Uint8Array(size), code, `memtable handler 0x${rip.toString(16)}`);
      if (fixes.icacheFlushOnPatch) {
        status = icache.flushAddress(rip, IC_ANY_VAS);
        this.ctx.note('icache-flush', { rip, status: statusName(status) });
      }
      if (intSuccess(status)) {
        entry.patched = true;
        entry.relocations++;
        entry.handlers.push({ address: handler, size, vcpu: access.vcpuId, clock: glue.clock });
        status = IntStatus.instructionPatched;
        this.ctx.note('mtbl-patch', { rip, table: entry.tableGva, handler, entries: values.length, vcpu: access.vcpuId, relocation: entry.relocations });
      }
    } catch (error) {
      if (!(error instanceof IntroError)) throw error;
      status = error.status;
    }
    if (!intSuccess(status)) this.removeEntry(entry);
    if (fixes.pauseWhilePatching) glue.resumeVcpus();
    return status;
  }

  /** IntMtblRemoveEntry: restores the instruction and the slack bytes (the slack stays allocated). */
  private removeEntry(entry: MemTableEntry): void {
    if (entry.insCloak !== null) {
      this.ctx.cloak.uncloak(entry.insCloak);
      entry.insCloak = null;
      this.ctx.icache.flushAddress(entry.rip, IC_ANY_VAS);
    }
    if (entry.slackCloak !== null) {
      this.ctx.cloak.uncloak(entry.slackCloak);
      entry.slackCloak = null;
    }
    entry.patched = false;
  }

  /** IntMtblInsRelocated: whether `rip` is an instruction mem-tables relocated (or tracks). */
  insRelocated(rip: bigint): boolean {
    return this.list.some((e) => e.rip === rip);
  }

  /** IntMtblIsPtrInReloc: the entry whose handler contains `ptr` (live RIPs, stack values). */
  handlerContaining(ptr: bigint): MemTableEntry | null {
    return this.list.find((e) => e.slackSize > 0 && ptr >= e.slackAddress && ptr < e.slackAddress + BigInt(e.slackSize)) ?? null;
  }

  /** IntMtblDisable: puts the original instructions back; the handlers stay for threads inside them. */
  disable(): void {
    for (const entry of this.list) {
      if (entry.insCloak === null) continue;
      this.ctx.cloak.uncloak(entry.insCloak);
      entry.insCloak = null;
      this.ctx.icache.flushAddress(entry.rip, IC_ANY_VAS);
    }
  }

  /** IntMtblUninit: removes everything (callers have all vCPUs paused and checked thread safety). */
  uninit(): void {
    for (const entry of this.list) this.removeEntry(entry);
    this.list.length = 0;
  }
}
