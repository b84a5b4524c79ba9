import type { GuestMemory } from '../machine/memory.ts';
import type { DecodedInstruction } from './decoder.ts';
import type { ExitEvent, NoteDetail } from './glue.ts';
import { emulatePtWrite, predictPtWrite, PtWriteUnsupported } from './pt-write.ts';
import { processPtWrite, type PtEmuBuffer, type PteWriteState, type PtWriteCache, type WriteResult } from './pte-write-state.ts';
import { IntroError, IntStatus } from './status.ts';

/**
 * The engine's side of guest page-table writes (IntHookPtwEmulateWrite and its callers): each
 * vCPU's emulation buffer and write cache, reset at the start of every EPT-violation pass; the
 * emulation itself, run once per exit before the first paging-structure hook's callback; and the
 * merge of a write into an entry's state for the PTS hooks and the VAS monitor.
 */

/** P, R/W, U/S, PS and the physical address (HOOK_PTS_MONITORED_BITS): what a swap callback is about. */
export const PTS_MONITORED_BITS = 0x000f_ffff_ffff_f000n | 0x87n;

/** What the engine switches on (each a fix; see fixes.ts). */
export interface PageTableWriteRules {
  /** Emulate with a compare-exchange (off: judge at decode, let the hypervisor write later). */
  readonly cas: boolean;
  readonly assemble: boolean;
  readonly dropDuplicates: boolean;
}

export class PageTableWrites {
  private readonly buffers: PtEmuBuffer[] = [];
  private readonly caches: PtWriteCache[] = [];

  constructor(
    private readonly memory: GuestMemory,
    private readonly rules: () => PageTableWriteRules,
    /** A preemption point of the hypervisor (other vCPUs may run). */
    private readonly preemptionPoint: (label: string) => void,
    private readonly note: (what: string, detail: NoteDetail) => void,
    /** Bytes per entry: 8 (4-level and PAE paging), 4 (legacy 32-bit paging). */
    readonly entrySize = 8,
    /** A 32-bit guest (the duplicate-write rule applies only to those). */
    readonly guest32 = false,
  ) {}

  buffer(vcpu: number): PtEmuBuffer {
    return (this.buffers[vcpu] ??= { valid: false, emulated: false, partial: false, old: 0n, new: 0n, size: 0, gpa: 0, rip: 0n });
  }

  private cache(vcpu: number): PtWriteCache {
    return (this.caches[vcpu] ??= { valid: false, pteAddress: 0, value: 0n });
  }

  /** The start of an EPT-violation pass (`_process_again`): nothing emulated yet. */
  beginPass(vcpu: number): void {
    const buffer = this.buffer(vcpu);
    buffer.valid = false;
    buffer.emulated = false;
    buffer.partial = false;
    this.cache(vcpu).valid = false;
  }

  /**
   * IntHookPtwEmulateWrite, once per exit: the old entry, then the store carried out with a
   * compare-exchange (or, naive, only predicted). Returns the buffer; a form the emulator does
   * not know is an engine error (HVMI bug-checks).
   */
  emulate(event: ExitEvent, ins: DecodedInstruction, gpa: number): PtEmuBuffer {
    const buffer = this.buffer(event.vcpuId);
    if (buffer.valid) return buffer;
    const entryGpa = gpa - (gpa % this.entrySize);
    const old = this.entrySize === 8 ? this.memory.read64(entryGpa) : BigInt(this.memory.read32(entryGpa) >>> 0);
    const cas = this.rules().cas;
    let outcome;
    try {
      outcome = cas ? emulatePtWrite(this.memory, ins, event.self, gpa) : predictPtWrite(this.memory, ins, event.self, gpa);
    } catch (error) {
      if (error instanceof PtWriteUnsupported) throw new IntroError(IntStatus.notSupported, `page-table write at GPA 0x${gpa.toString(16)} by ${ins.text}: ${error.message}`);
      throw error;
    }
    if (gpa % this.entrySize + outcome.size > this.entrySize) throw new IntroError(IntStatus.notSupported, `${ins.text} at GPA 0x${gpa.toString(16)} spills into the next page-table entry`);
    buffer.valid = true;
    buffer.emulated = cas;
    buffer.partial = this.entrySize > outcome.size;
    buffer.old = old;
    buffer.new = outcome.value;
    buffer.size = outcome.size;
    buffer.gpa = gpa;
    buffer.rip = ins.ip;
    this.note('pt-write', { vcpu: event.vcpuId, gpa, ins: ins.mnemonic, old, new: outcome.value, size: outcome.size, emulated: cas, retries: outcome.retries });
    // The naive engine's judgement is final now; the hypervisor writes after the callbacks, later.
    if (!cas) this.preemptionPoint('pt-write-judged');
    return buffer;
  }

  /**
   * IntHookPtwProcessWrite for this pass's write into `state` (the hooked entry's write state). The
   * writer's RIP is the store's own — in a PAE lookahead pass, the second store's, as HVMI's
   * registers hold it once the first is emulated.
   */
  process(state: PteWriteState, vcpu: number): WriteResult {
    const rules = this.rules();
    return processPtWrite(state, this.buffer(vcpu), this.cache(vcpu), this.entrySize, { assemble: rules.assemble, dropDuplicates: rules.dropDuplicates, guest32: this.guest32 });
  }

  /** Whether a complete write changed nothing a callback watches (or both sides are not present). */
  static unchanged(buffer: PtEmuBuffer): boolean {
    if (!buffer.valid || buffer.partial) return false;
    const bits = (buffer.old ^ buffer.new) & PTS_MONITORED_BITS;
    return bits === 0n || ((buffer.old | buffer.new) & 1n) === 0n;
  }
}
