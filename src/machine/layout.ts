/**
 * The one shared-memory layout of a machine.
 *
 * Two SharedArrayBuffers make a machine:
 *  - `ram`: guest physical memory, byte-addressed from GPA 0.
 *  - `control`: a header of global words, per-page tables (write generations, code marks, EPT
 *    rights) and one fixed-size state block per vCPU.
 *
 * Every field below names its single writer. "vcpu" fields are written only by the thread that runs
 * that vCPU; "hv" fields only by the hypervisor side; "stopped" fields belong to the vCPU while it
 * runs and may be written by the hypervisor only while the vCPU is stopped (exited or paused) —
 * the runtime enforces that, the layout documents it. 64-bit values are two int32 words, low first,
 * so they can be read without BigInt and each half is naturally aligned for Atomics.
 *
 * All offsets are int32 indexes unless a name ends in `Bytes`.
 */

export {
  ActivityState,
  DtrKind,
  EptBits,
  EventInfo,
  ExitAccess,
  ExitControl,
  ExitEptFlags,
  ExitReason,
  PAGE_BYTES,
  PAGE_SHIFT,
  UdReason,
  Vcpu,
  VCPU_RUNTIME_WORDS,
  type ExitReasonCode,
  type UdReasonCode,
} from '../cpu/state-block.ts';
import { PAGE_BYTES, Vcpu } from '../cpu/state-block.ts';

/** Limits that keep every table small enough to index with int32 arithmetic. */
export const RAM_BYTES_MIN = 1 << 20;
export const RAM_BYTES_MAX = 1 << 30;
export const VCPUS_MAX = 16;

/** Magic value at header word 0, so a worker attached to the wrong buffer fails loudly. */
export const LAYOUT_MAGIC = 0x76637075; // 'vcpu'
export const LAYOUT_VERSION = 1;

/** Header words (int32 indexes into the control buffer). */
export const Header = {
  magic: 0, //            hv: LAYOUT_MAGIC
  version: 1, //          hv: LAYOUT_VERSION
  ramPages: 2, //         hv: number of 4 KiB guest pages
  vcpuCount: 3, //        hv
  eptEpoch: 4, //         hv: bumped (Atomics.add) on every committed EPT rights change
  codeEpoch: 5, //        any: bumped when a page holding decoded code is written
  splitLock: 6, //        any: spinlock word for LOCKed accesses that cross an 8-byte boundary
  virtualTimeLo: 7, //    hv: the run's virtual clock, in ticks (scheduler-owned)
  virtualTimeHi: 8,
  /** Bumped (Atomics.add + notify) by a vCPU host whenever one of its commands completes. */
  doorbell: 9, //         vcpu hosts
  /** 0 while the session is open; 1 once it is closing (idle workers then exit). */
  sessionState: 10, //    hv
  /** Source of exit tickets: the order in which free-running vCPUs stopped. */
  exitTickets: 11, //     vcpu hosts (Atomics.add)
  /** First free word; the per-page tables start at `headerWords`. */
  words: 16,
} as const;

/**
 * State of the thread hosting a vCPU, published for diagnostics of stuck runs. `gone` is a
 * worker's last word: its thread writes nothing of the machine after it, so the machine may serve
 * another session's workers (a failed session's machine is reused only once each of its workers said so).
 */
export const VcpuHostState = { starting: 0, idle: 1, running: 2, dead: 3, gone: 4 } as const;

/**
 * The host protocol, in each vCPU block's runtime words. The hypervisor side writes a command
 * (kind, budget, flags) and then bumps `commandSeq` (notify); the host runs it and writes the
 * outcome and then sets `doneSeq` to that sequence number (notify) and rings the doorbell.
 * Every word has one writer.
 */
export const Control = {
  commandSeq: Vcpu.runtime + 0, //  hv
  commandKind: Vcpu.runtime + 1, // hv: CommandKind
  commandBudget: Vcpu.runtime + 2, // hv: steps to run
  commandFlags: Vcpu.runtime + 3, // hv: CommandFlag bits
  doneSeq: Vcpu.runtime + 4, //     host
  outcome: Vcpu.runtime + 5, //     host: a RunStop code, or Outcome.error
  retired: Vcpu.runtime + 6, //     host: steps retired by the command
  ticket: Vcpu.runtime + 7, //      host: exit ticket of this stop (free-running order)
  hostState: Vcpu.runtime + 8, //   host: VcpuHostState
  errorLength: Vcpu.runtime + 9, // host: bytes of the error text in the host buffer
  codeSeen: Vcpu.runtime + 10, //   host: the code epoch (Header.codeEpoch) its decoded code was last checked against
} as const;

/** Commands a vCPU host understands. */
export const CommandKind = {
  /** VM-enter if asked, optionally execute one instruction with EPT ignored, then run. */
  run: 1,
  /** Forget decoded code and cached translations and reload all state (before a re-run). */
  reset: 2,
  /** Leave the host loop (the worker then exits). */
  stop: 3,
  /** Fault injection for tests: the host throws as if vcpusim had a bug. */
  crash: 4,
  /** Fault injection for tests: the host stops answering (a hung thread). */
  hang: 5,
} as const;

/**
 * Flags of a run command. `emulateFirst`: execute one instruction with EPT ignored before running;
 * `firstWithoutExits` (with it): that instruction takes no instruction exit either — the
 * hypervisor performs the instruction it exited on; `firstOneIteration` (with it): a REP string
 * instruction does one iteration (the hypervisor's REP optimisation is off), else a page's worth.
 * `seeCode`: before running, the vCPU sees every code write made so far — what a serialising
 * event would do, but chosen by the scheduler at any moment (SDM 8.1.3 lets a CPU execute stale
 * cross-modified code until it serialises, and see the new bytes at any time before).
 */
export const CommandFlag = { entry: 1, emulateFirst: 2, firstWithoutExits: 4, firstOneIteration: 8, seeCode: 16 } as const;

/**
 * Bits of a page's mark byte. Every writer checks the byte for zero before noting a write, so one
 * check serves all: `code` (a vCPU decoded instructions from the page: a write bumps its
 * generation), `writeWatch` (a checkpoint waits for the page's first write, to restore only the
 * pages written since) and `runWatch` (the same for the per-run snapshot). The first write to a
 * page clears both watches.
 */
export const PageMark = { code: 1, writeWatch: 2, runWatch: 4 } as const;

/** Both watch bits: what a write clears. */
export const PAGE_WATCHES = PageMark.writeWatch | PageMark.runWatch;

/** Outcome codes beyond the CPU's RunStop values. */
export const Outcome = { error: 100 } as const;

/** Byte offsets of the per-page tables and the vCPU blocks inside the control buffer. */
export interface ControlLayout {
  readonly ramPages: number;
  readonly vcpuCount: number;
  readonly pageGenBytes: number; // Int32 per page: write generation
  readonly codeMarkBytes: number; // Uint8 per page: PageMark bits (code decoded from it, write watched)
  readonly eptRightsBytes: number; // Uint8 per page: committed EPT rights
  readonly vcpuBlocksBytes: number; // vcpuCount × Vcpu.words int32
  readonly totalBytes: number;
}

const align = (value: number, to: number): number => Math.ceil(value / to) * to;

/** Computes where everything lives for a machine of this size. Pure; checked on every call. */
export function controlLayout(ramBytes: number, vcpuCount: number): ControlLayout {
  if (!Number.isInteger(ramBytes) || ramBytes < RAM_BYTES_MIN || ramBytes > RAM_BYTES_MAX || ramBytes % PAGE_BYTES !== 0) {
    throw new RangeError(
      `guest RAM must be a multiple of ${PAGE_BYTES} bytes between ${RAM_BYTES_MIN} and ${RAM_BYTES_MAX}, got ${ramBytes}`,
    );
  }
  if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > VCPUS_MAX) {
    throw new RangeError(`vCPU count must be an integer from 1 to ${VCPUS_MAX}, got ${vcpuCount}`);
  }
  const ramPages = ramBytes / PAGE_BYTES;
  const pageGenBytes = Header.words * 4;
  const codeMarkBytes = pageGenBytes + ramPages * 4;
  const eptRightsBytes = codeMarkBytes + ramPages;
  const vcpuBlocksBytes = align(eptRightsBytes + ramPages, 64);
  const totalBytes = vcpuBlocksBytes + vcpuCount * Vcpu.words * 4;
  const layout = { ramPages, vcpuCount, pageGenBytes, codeMarkBytes, eptRightsBytes, vcpuBlocksBytes, totalBytes };
  assertLayout(layout);
  return layout;
}

function assertLayout(layout: ControlLayout): void {
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new Error(`control layout invariant broken: ${what}`);
  };
  check(layout.pageGenBytes % 4 === 0, 'page generations are int32-aligned');
  check(layout.codeMarkBytes >= layout.pageGenBytes + layout.ramPages * 4, 'code marks follow generations');
  check(layout.eptRightsBytes >= layout.codeMarkBytes + layout.ramPages, 'EPT rights follow code marks');
  check(layout.vcpuBlocksBytes % 64 === 0, 'vCPU blocks start on a cache line');
  check(layout.vcpuBlocksBytes >= layout.eptRightsBytes + layout.ramPages, 'vCPU blocks follow EPT rights');
}
