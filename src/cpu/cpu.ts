import { ActivityState, EventInfo, ExitEptFlags, ExitReason, UdReason, Vcpu } from './state-block.ts';
import { markBlockCache, type Block } from './block.ts';
import { compileBlock } from './compile/block-compiler.ts';
import { canonical } from './decode.ts';
import { RFLAGS_FIXED1, readFlags, settleFlags, type LazyFlags } from './flags.ts';
import { deliverEvent } from './interrupts.ts';
import { Mmu, Need, type MmuFaults } from './mmu.ts';
import type { CpuPort, EptSource, PhysicalMemory } from './ports.ts';
import { EXITED, STOP, StopKind, Vector } from './stop.ts';
import { loadControlState } from './ops/system.ts';
import { StringEmulation, type StringEmulationCode } from './ops/string.ts';

/** Why `Cpu.run` returned. */
export const RunStop = {
  /** The instruction budget is used up; the vCPU is at an instruction boundary. */
  budget: 0,
  /** A VM exit; the exit record in the state block says which. */
  exit: 1,
  /** HLT without HLT exiting: nothing to do until an interrupt is injected. */
  halted: 2,
  /** The attention word was set: the host asked the vCPU to stop at a boundary. */
  attention: 3,
  /** The vCPU is in shutdown (after a triple fault); it will not run again. */
  shutdown: 4,
} as const;
export type RunStopCode = (typeof RunStop)[keyof typeof RunStop];

/** Blocks kept per vCPU before the cache is dropped and rebuilt (bounds memory on odd guests). */
const BLOCKS_MAX = 1 << 16;
const JUMP_CACHE_ENTRIES = 4096;
/** Recent block addresses kept for crash reports (a power of two). */
const HISTORY_BLOCKS = 16;
/** Blocks run between two polls of the attention word. */
const ATTENTION_POLL_BLOCKS = 8;

/**
 * One emulated x86-64 vCPU over a shared `Machine`: in 64-bit long mode, in compatibility mode
 * (EFER.LMA=1 with a 32-bit code segment, `Vcpu.csCompat`), or in 32-bit protected mode
 * (CR0.PE=1, EFER.LMA=0; paging off or PAE paging).
 *
 * 32-bit protected mode is the subset a small flat 32-bit kernel needs: segments are flat (base 0,
 * limit 4 GiB, CS.D=SS.B=1) and are not loaded from descriptors — segment registers hold
 * selectors only, MOV/PUSH/POP of segment registers and far transfers are #UD (unsupported),
 * and FS/GS overrides add the low half of the FS/GS base fields. Ring 0 only: interrupts go
 * through 32-bit gates to ring-0 handlers on the same stack. A 32-bit result written to a GPR
 * zero-extends into its 64-bit register word, as it does in compatibility mode on the host
 * (checked by the differential harness; the SDM leaves the high halves undefined outside
 * 64-bit mode). Compatibility mode runs 32-bit code the same way under 4-level paging; events
 * from it go through 64-bit gates (to 64-bit code) and IRETQ returns to it; IRETD there is #UD.
 *
 * GPRs live in the vCPU's shared state block and are used in place. RIP, RFLAGS (lazily) and a
 * few hot values live in fields while the CPU runs and are written back whenever `run` returns,
 * so the hypervisor side can read the whole state of a stopped vCPU from shared memory. After the
 * hypervisor changed anything, the host calls `enter()` (VM entry) before running again.
 *
 * The CPU never decides policy: on an EPT violation or any enabled exit it stops *before* the
 * instruction has an effect, fills the exit record and returns `RunStop.exit`.
 */
export class Cpu implements LazyFlags, MmuFaults {
  /** The vCPU's state block (int32 words, indexes from `Vcpu`). */
  readonly words: Int32Array;
  /** GPR words: register n at r[2n] (low) and r[2n+1] (high). */
  readonly r: Int32Array;
  readonly mmu: Mmu;

  // Architectural state cached in fields while running.
  rip = 0;
  fl = RFLAGS_FIXED1;
  fop = 0;
  fa = 0;
  fb = 0;
  fr = 0;
  fah = 0;
  fbh = 0;
  frh = 0;
  fcin = 0;
  cpl = 0;
  fsLo = 0;
  fsHi = 0;
  gsLo = 0;
  gsHi = 0;
  /** 32-bit code (protected mode): decoding, addresses, the stack and EIP are 32-bit. */
  mode32 = false;
  /** STI shadow: 2 right after STI, 1 while the next instruction runs, 0 otherwise. */
  shadow = 0;
  /** Pending external interrupt vector, or -1. */
  irq = -1;
  halted = false;
  /** True while something must be looked at between blocks: an event to inject, a pending IRQ, HLT. */
  boundaryWork = false;
  shutdown = false;
  /** Retired steps since creation (an instruction, or one chunk of a REP string instruction). */
  retired = 0;
  /** Set only during a `stepIgnoringEpt` that the hypervisor performs without instruction exits. */
  instructionExitsSuppressed = false;
  /** How far a REP string instruction goes in one step (StringEmulation; not normal only inside `stepIgnoringEpt`). */
  stringEmulation: number = StringEmulation.normal;

  // Execution bookkeeping used by generated code and the dispatcher.
  /** Index in the current block of the instruction executing now (for precise faults). */
  cur = 0;
  /** Set by a store that hit decoded code: the block must stop after this instruction. */
  smc = 0;
  /** High half returned by helpers that produce 64-bit values. */
  vh = 0;
  stopKind = 0;
  faultVector = 0;
  faultError = -1;
  faultCr2Lo = 0;
  faultCr2Hi = 0;
  /** Bumped when decoded code may be stale; blocks re-check page generations when it moves. */
  codeStamp = 0;
  private codeEpochSeen = 0;
  /** Steps retired by the current `run` before the executing block (for the virtual TSC). */
  private runRetired = 0;
  private readonly blocks = new Map<number, Block>();
  /** Recently entered blocks by address hash, for indirect branches and returns (QEMU's tb_jmp_cache). */
  private readonly jumpCache: Array<Block | undefined> = markBlockCache(new Array<Block | undefined>(JUMP_CACHE_ENTRIES));
  private readonly singles = new Map<number, Block>();
  /** Start addresses of the most recent blocks (a ring; see `recentBlocks`), for crash reports. */
  private readonly history = new Float64Array(HISTORY_BLOCKS);
  private historyNext = 0;
  /** Event currently being delivered (for IDT-vectoring info on exits during delivery). */
  delivering = 0;
  deliveringError = 0;

  readonly id: number;
  readonly vcpuCount: number;
  readonly memory: PhysicalMemory;
  private readonly ept: EptSource;

  constructor(port: CpuPort) {
    this.id = port.id;
    this.vcpuCount = port.vcpuCount;
    this.words = port.words;
    this.memory = port.memory;
    this.ept = port.ept;
    this.r = this.words.subarray(Vcpu.gpr, Vcpu.gpr + 32);
    this.mmu = new Mmu(port.memory, this);
    this.mmu.pdptes = this.words.subarray(Vcpu.pdpte, Vcpu.pdpte + 8);
    this.enter();
  }

  // --- VM entry and state synchronisation ---------------------------------------------------------

  /**
   * VM entry: reloads every field from the state block (the hypervisor may have changed it),
   * takes the committed EPT rights as this vCPU's view, and serialises (sees all code writes).
   */
  enter(): void {
    const w = this.words;
    this.rip = lin48FromWords(w[Vcpu.rip], w[Vcpu.rip + 1]);
    this.fl = (w[Vcpu.rflags] & ~0x8) | RFLAGS_FIXED1;
    this.fop = 0;
    loadControlState(this);
    if (this.mode32) this.rip = w[Vcpu.rip] >>> 0;
    this.irq = w[Vcpu.pendingInterrupt];
    this.shadow = (w[Vcpu.interruptibility] & 1) !== 0 ? 1 : 0;
    this.halted = w[Vcpu.activity] === ActivityState.halted;
    this.shutdown = w[Vcpu.activity] === ActivityState.shutdown;
    this.retired = (w[Vcpu.retired] >>> 0) + (w[Vcpu.retired + 1] >>> 0) * 4294967296;
    this.updateBoundaryWork();
    this.mmu.loadEptView(this.ept.rights, this.ept.epoch());
    this.serialize();
  }

  /** Writes the lazily-held state back to the state block. */
  private saveState(): void {
    const w = this.words;
    const [lo, hi] = halvesOf(this.rip);
    w[Vcpu.rip] = lo;
    w[Vcpu.rip + 1] = hi;
    w[Vcpu.rflags] = settleFlags(this);
    w[Vcpu.activity] = this.shutdown ? ActivityState.shutdown : this.halted ? ActivityState.halted : ActivityState.active;
    w[Vcpu.interruptibility] = this.shadow > 0 ? 1 : 0;
    w[Vcpu.pendingInterrupt] = this.irq;
    w[Vcpu.retired] = this.retired % 4294967296 | 0;
    w[Vcpu.retired + 1] = Math.floor(this.retired / 4294967296) | 0;
  }

  /** The code epoch this vCPU's decoded code was last checked against: code written after it may still run stale. */
  get codeEpochChecked(): number {
    return this.codeEpochSeen;
  }

  /** A serialising point: any code written since the last one becomes visible. */
  serialize(): void {
    const epoch = this.memory.codeEpoch();
    if (epoch !== this.codeEpochSeen) {
      this.codeEpochSeen = epoch;
      this.codeStamp++;
    }
  }

  /**
   * Switches between 64-bit and 32-bit code. The same bytes decode differently in the two, so
   * every decoded block is dropped; this happens only when the mode really changes — a VM entry
   * after the hypervisor changed EFER or CS, or an event or IRETQ between 64-bit code and
   * compatibility mode (costly if a guest does that often; 64-bit and 32-bit kernels never do).
   */
  setMode32(mode32: boolean): void {
    this.mmu.wrap32 = mode32;
    if (mode32 === this.mode32) return;
    this.mode32 = mode32;
    this.flushDecodedCode();
    this.jumpCache.fill(undefined);
    this.codeStamp++;
  }

  /** Steps retired so far, including the current block's instructions before `cur` (virtual TSC). */
  stepCount(): number {
    return this.retired + this.runRetired + this.cur;
  }

  /** Current RFLAGS (materialised). */
  get rflags(): number {
    return readFlags(this);
  }

  // --- running -------------------------------------------------------------------------------------

  /**
   * Runs until `budget` steps retired, a VM exit, HLT, the attention word, or shutdown.
   * Returns a `RunStop` code; the state block is up to date when it returns.
   */
  run(budget: number): RunStopCode {
    if (this.shutdown) return RunStop.shutdown;
    const words = this.words;
    let retired = 0;
    // Poll the attention word on entry and then every ATTENTION_POLL_BLOCKS blocks: an atomic load
    // per block costs ~8% on block-heavy code, and a few blocks of latency are far below the cost
    // of waking a thread.
    let poll = 0;
    /** The block whose code is executing (a STOP inside it rolls back to its instruction `cur`). */
    let running: Block | null = null;
    /** The block that ran last, whose successor links are followed and filled. */
    let previous: Block | null = null;
    let why: number = RunStop.budget;
    for (;;) {
      try {
        while (retired < budget) {
          if (poll-- === 0) {
            poll = ATTENTION_POLL_BLOCKS - 1;
            if (Atomics.load(words, Vcpu.attention) !== 0) {
              why = RunStop.attention;
              break;
            }
          }
          if (this.boundaryWork) {
            previous = null;
            const event = this.boundaryEvents();
            this.updateBoundaryWork();
            if (event >= 0) {
              why = event;
              break;
            }
          }
          const block = this.nextBlock(previous, budget - retired);
          this.cur = 0;
          this.smc = 0;
          this.runRetired = retired;
          running = block;
          this.history[this.historyNext++ & (HISTORY_BLOCKS - 1)] = block.ip;
          const ran = block.fn(this);
          running = null;
          if (ran < 0) {
            // Instruction -1 - ran stopped (its translation faulted or hit an EPT violation, or
            // its helper took a VM exit) and the block returned instead of throwing: as a STOP.
            const at = -1 - ran;
            this.rip = block.ips[at];
            retired += at;
            previous = null;
            const stop = this.handleStop(block.lengths[at]);
            if (stop >= 0) {
              why = stop;
              break;
            }
            continue;
          }
          retired += ran;
          previous = block;
          if (this.shadow > 0) this.shadow--;
        }
        break;
      } catch (error) {
        if (error !== STOP) {
          this.finishRun(retired);
          throw error;
        }
        let length = 0;
        if (running !== null) {
          this.rip = running.ips[this.cur];
          retired += this.cur;
          length = running.lengths[this.cur];
          running = null;
        }
        previous = null;
        const stop = this.handleStop(length);
        if (stop >= 0) {
          why = stop;
          break;
        }
      }
    }
    this.finishRun(retired);
    return why as RunStopCode;
  }

  /**
   * Executes the instruction at RIP once with EPT checks off — HVMI's "allowed" action: the
   * hypervisor judged the access fine and lets it happen. Faults still apply, and so do the
   * instruction exits (ExitControl) unless `instructionExits` is 'suppressed': the hypervisor
   * then performs an instruction that exited on its own control (WRMSR, MOV CR, XSETBV, LGDT…),
   * which would otherwise exit again on the same control forever. A REP string instruction runs
   * to the end of its pages (`strings`: the hypervisor's REP optimisation) or, with that off, one
   * iteration. Call `enter()` first if the hypervisor changed state.
   */
  stepIgnoringEpt(instructionExits: 'taken' | 'suppressed' = 'taken', strings: StringEmulationCode = StringEmulation.toPageEnd): RunStopCode {
    // The hypervisor carries the instruction out before it enters the guest, so an interrupt or an
    // injected event waiting for that entry is delivered after it, not instead of it.
    const words = this.words;
    const irq = this.irq;
    const event = words[Vcpu.pendingEvent];
    this.irq = -1;
    words[Vcpu.pendingEvent] = 0;
    this.updateBoundaryWork();
    this.mmu.ignoreEpt();
    this.instructionExitsSuppressed = instructionExits === 'suppressed';
    this.stringEmulation = strings;
    try {
      return this.run(1);
    } finally {
      this.instructionExitsSuppressed = false;
      this.stringEmulation = StringEmulation.normal;
      this.mmu.restoreEpt();
      if (this.irq < 0) this.irq = irq;
      // run() saved its state without them: put them back in the state block too.
      words[Vcpu.pendingInterrupt] = this.irq;
      if (words[Vcpu.pendingEvent] === 0) words[Vcpu.pendingEvent] = event;
      this.updateBoundaryWork();
    }
  }

  /**
   * Skips the instruction that caused the last exit without executing it — HVMI's "not allowed"
   * action (and "allowed virtual", after the hypervisor emulated it and updated registers).
   */
  skipInstruction(): void {
    const length = this.words[Vcpu.exitInsnLength];
    if (length <= 0 || length > 15) {
      throw new Error(`cannot skip: the last exit has no instruction length (${length}); it was not caused by an instruction`);
    }
    this.rip += length;
    this.saveState();
  }

  private finishRun(retired: number): void {
    this.retired += retired;
    this.runRetired = 0;
    this.cur = 0;
    this.saveState();
  }

  /** Recomputes `boundaryWork` after anything it depends on changed. */
  updateBoundaryWork(): void {
    this.boundaryWork = this.halted || this.irq >= 0 || (this.words[Vcpu.pendingEvent] & EventInfo.valid) !== 0;
  }

  /** Injected events, halt, and external interrupts at an instruction boundary. */
  private boundaryEvents(): number {
    const w = this.words;
    const event = w[Vcpu.pendingEvent];
    if ((event & EventInfo.valid) !== 0) {
      const type = (event >> EventInfo.typeShift) & 7;
      const error = (event & EventInfo.hasError) !== 0 ? w[Vcpu.pendingEventError] : -1;
      try {
        // Injected: no exception-bitmap exit, no CR2 write, RF pushed as loaded (SDM 3C §26.5.1).
        deliverEvent(this, event & 0xff, type, error, this.rip, true);
      } catch (caught) {
        // A fault raised while delivering it (e.g. an injected INT n failing the gate DPL check)
        // replaces the event: the fault is delivered instead, so the event is consumed — otherwise
        // it would be delivered a second time from inside the fault's handler. An exit keeps it
        // pending, so delivery restarts once the hypervisor handled the exit.
        if (caught === STOP && this.stopKind === StopKind.fault) w[Vcpu.pendingEvent] = 0;
        throw caught;
      }
      w[Vcpu.pendingEvent] = 0;
      this.halted = false;
      return -1;
    }
    const interruptsOn = (this.fl & 0x200) !== 0;
    if (this.irq >= 0 && interruptsOn && this.shadow === 0) {
      const vector = this.irq;
      deliverEvent(this, vector, EventInfo.external, -1, this.rip);
      this.irq = -1;
      this.halted = false;
      return -1;
    }
    if (this.halted) return RunStop.halted;
    return -1;
  }

  /**
   * The block to run at RIP: the previous block's linked successor when it matches, else a lookup
   * (or compile). Under an STI shadow, or when fewer steps remain than the block holds, a
   * single-instruction block is used so budgets and the shadow are exact.
   */
  private nextBlock(previous: Block | null, left: number): Block {
    const rip = this.rip;
    const stepping = this.shadow > 0;
    let block: Block | null = null;
    if (!stepping && previous !== null) {
      block = previous.next0;
      if (block === null || block.ip !== rip) {
        block = previous.next1;
        if (block === null || block.ip !== rip) block = null;
      }
    }
    if (block === null || !block.valid) {
      const slot = (rip ^ (rip >>> 12)) & (JUMP_CACHE_ENTRIES - 1);
      const cached = stepping ? undefined : this.jumpCache[slot];
      if (cached !== undefined && cached.ip === rip && cached.valid) {
        block = cached;
      } else {
        block = this.lookup(rip, stepping);
        if (!stepping) this.jumpCache[slot] = block;
      }
      if (!stepping && previous !== null) {
        if (previous.next0 === null || !previous.next0.valid) previous.next0 = block;
        else previous.next1 = block;
      }
    }
    if (block.epoch !== this.mmu.epoch || block.stamp !== this.codeStamp) block = this.revalidate(block);
    if (block.count > left) {
      block = this.lookup(rip, true);
      if (block.epoch !== this.mmu.epoch || block.stamp !== this.codeStamp) block = this.revalidate(block);
    }
    return block;
  }

  private lookup(rip: number, single: boolean): Block {
    const cache = single ? this.singles : this.blocks;
    const cached = cache.get(rip);
    if (cached !== undefined && cached.valid) return cached;
    if (cache.size >= BLOCKS_MAX) this.dropBlocks(cache);
    const block = compileBlock(this, rip, single);
    cache.set(rip, block);
    return block;
  }

  private dropBlocks(cache: Map<number, Block>): void {
    for (const block of cache.values()) block.valid = false;
    cache.clear();
  }

  /** Confirms a block still matches guest memory and the current translation, or recompiles it. */
  private revalidate(block: Block): Block {
    const [lo, hi] = halvesOf(block.ip);
    const page = this.mmu.translatePage(lo, hi, Need.execute);
    let valid = page === block.page && this.memory.generation(page >>> 12) === block.generation;
    if (valid && block.page2 >= 0) {
      const [lo2, hi2] = halvesOf(block.linear2);
      const page2 = this.mmu.translatePage(lo2, hi2, Need.execute);
      valid = page2 === block.page2 && this.memory.generation(page2 >>> 12) === block.generation2;
    }
    if (valid) {
      block.epoch = this.mmu.epoch;
      block.stamp = this.codeStamp;
      return block;
    }
    block.valid = false;
    const single = block.count === 1 && this.singles.get(block.ip) === block;
    (single ? this.singles : this.blocks).delete(block.ip);
    return this.lookup(block.ip, single);
  }

  /**
   * Forgets everything cached — decoded blocks, translations, the EPT view — and reloads the whole
   * state from shared memory. Used when the machine's memory and state were restored from a
   * snapshot (generations and epochs may then repeat old values, so nothing cached can be trusted).
   */
  reset(): void {
    this.flushDecodedCode();
    this.jumpCache.fill(undefined);
    this.mmu.eptEpochSeen = -1;
    this.mmu.forgetPagingState();
    this.codeEpochSeen = -1;
    this.codeStamp++;
    this.history.fill(0);
    this.historyNext = 0;
    this.enter();
  }

  /** Linear addresses (48-bit numbers) of the last blocks entered, oldest first. */
  recentBlocks(): number[] {
    const out: number[] = [];
    const count = Math.min(this.historyNext, HISTORY_BLOCKS);
    for (let k = this.historyNext - count; k < this.historyNext; k++) out.push(this.history[k & (HISTORY_BLOCKS - 1)]);
    return out;
  }

  /** Drops every decoded block (used by tests and after large code changes). */
  flushDecodedCode(): void {
    this.dropBlocks(this.blocks);
    this.dropBlocks(this.singles);
  }

  // --- stops: faults and exits ------------------------------------------------------------------------

  /**
   * Handles a STOP after RIP was rolled back to the instruction that raised it (`length` is that
   * instruction's length, 0 when the stop came from a fetch or a delivery). Returns a RunStop, or
   * -1 once a fault was delivered and execution can go on.
   */
  private handleStop(length: number): number {
    if (this.stopKind === StopKind.exit) return this.finishExit(length);
    this.shadow = 0;
    try {
      deliverEvent(this, this.faultVector, EventInfo.hardwareException, this.faultError, this.rip);
    } catch (error) {
      if (error !== STOP) throw error;
      return this.finishExit(0);
    }
    return -1;
  }

  private finishExit(length: number): number {
    const w = this.words;
    const rip = this.rip;
    w[Vcpu.exitRip] = rip % 4294967296 | 0;
    w[Vcpu.exitRip + 1] = highHalfOf(rip);
    w[Vcpu.exitInsnLength] = length;
    if (w[Vcpu.exitReason] === ExitReason.tripleFault) {
      this.shutdown = true;
      return RunStop.exit;
    }
    return RunStop.exit;
  }

  /** Raises an architectural exception (never returns). `error` < 0 means no error code. */
  fault(vector: number, error = -1): never {
    this.recordFault(vector, error);
    throw STOP;
  }

  /** Records an architectural exception of the current instruction, to deliver once it stopped. */
  private recordFault(vector: number, error: number): void {
    this.stopKind = StopKind.fault;
    this.faultVector = vector;
    this.faultError = error;
  }

  /** Stops with a VM exit (never returns). The dispatcher adds RIP and the instruction length. */
  exit(reason: number, qualification = 0, info0 = 0, valueLo = 0, valueHi = 0): never {
    this.recordExit(reason, qualification, info0, valueLo, valueHi);
    throw STOP;
  }

  /**
   * Fills the exit record of a VM exit caused by the current instruction and returns EXITED: the
   * helper returns it and the generated block stops there without a throw (see `exitingCall`).
   */
  recordExit(reason: number, qualification = 0, info0 = 0, valueLo = 0, valueHi = 0): typeof EXITED {
    const w = this.words;
    w[Vcpu.exitReason] = reason;
    w[Vcpu.exitQualification] = qualification;
    w[Vcpu.exitInfo0] = info0;
    w[Vcpu.exitInfo1] = valueLo;
    w[Vcpu.exitInfo2] = valueHi;
    w[Vcpu.exitVectoring] = this.delivering;
    w[Vcpu.exitVectoringError] = this.deliveringError;
    this.stopKind = StopKind.exit;
    return EXITED;
  }

  /** Records why the CPU raised #UD and raises it. */
  undefinedOpcode(reason: number, code: number, ip: number): never {
    const w = this.words;
    w[Vcpu.udReason] = reason;
    w[Vcpu.udCode] = code;
    const [lo, hi] = halvesOf(ip);
    w[Vcpu.udRip] = lo;
    w[Vcpu.udRip + 1] = hi;
    w[Vcpu.udCount]++;
    return this.fault(Vector.UD);
  }

  /** #GP(0), or #SS(0) for a stack access, for a non-canonical address (never returns). */
  nonCanonical(stack: boolean): never {
    this.recordNonCanonical(stack);
    throw STOP;
  }

  // MmuFaults
  recordPageFault(lo: number, hi: number, errorCode: number): void {
    this.faultCr2Lo = lo;
    this.faultCr2Hi = hi;
    this.recordFault(Vector.PF, errorCode);
  }

  recordNonCanonical(stack: boolean): void {
    this.recordFault(stack ? Vector.SS : Vector.GP, 0);
  }

  recordEptViolation(gpa: number, lo: number, hi: number, access: number, finalTranslation: boolean, rights: number): void {
    const w = this.words;
    w[Vcpu.exitGpa] = gpa % 4294967296 | 0;
    w[Vcpu.exitGpa + 1] = Math.floor(gpa / 4294967296) | 0;
    w[Vcpu.exitGla] = lo;
    w[Vcpu.exitGla + 1] = hi;
    const qualification =
      access | ExitEptFlags.glaValid | (finalTranslation ? ExitEptFlags.finalTranslation : 0) | ((rights & 7) << ExitEptFlags.rightsShift);
    this.recordExit(ExitReason.eptViolation, qualification);
  }

  codeWritten(): void {
    this.smc = 1;
    this.codeStamp++;
    this.codeEpochSeen = this.memory.codeEpoch();
  }

  /** The instruction at RIP decoded as invalid or unsupported (used by the compiler). */
  static readonly udReasons = UdReason;
}

/** 48-bit linear number from canonical 64-bit halves. */
export function lin48FromWords(lo: number, hi: number): number {
  return (hi & 0xffff) * 4294967296 + (lo >>> 0);
}

/** Canonical 64-bit halves of a 48-bit linear number. */
export function halvesOf(linear: number): [number, number] {
  return [linear % 4294967296 | 0, highHalfOf(linear)];
}

/** The high half of `halvesOf` (sign-extended from bit 47), without the pair's allocation. */
export function highHalfOf(linear: number): number {
  return ((Math.floor(linear / 4294967296) & 0xffff) << 16) >> 16;
}

export { canonical };
