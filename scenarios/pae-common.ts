import {
  byte, dword, eax, ebx, ecx, edi, edx, emitCountdown, esi, PAE32_THREAD_DONE, Pte,
  type Label, type Oracle, type Pae32Builder, type Pae32Guest, type ScenarioBounds, type ScenarioEngine, type VasDivergence,
} from '../src/index.ts';

/**
 * What the 32-bit PAE scenarios share: entries of the guest's own range (NX in the high half, so
 * an entry written as two dwords changes in both), a thread that keeps walking the range's pages
 * while they move, the engine watching the range with the VAS monitor (NX included), and how a
 * divergence of the monitor's view from memory is told.
 */

/** The no-execute bit: the only bit of these entries' high half (every frame is below 4 GiB). */
export const NX = 1n << 63n;

/** An entry of the range mapping frame `frame` of the guest's frames, user-writable, executable or not. */
export const paeEntry = (framesGpa: number, frame: number, executable: boolean): bigint =>
  BigInt(framesGpa + frame * 0x1000) | Pte.present | Pte.writable | Pte.user | (executable ? 0n : NX);

/** Two vCPUs, one of them waiting on the other at first: fairness keeps PCT from starving the one it waits for. */
export const PAE_BOUNDS: ScenarioBounds = {
  stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 300, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 600,
};

/** How the mapper remaps. */
export interface PaeMapperOptions {
  /** Pages of the range it moves: page k between code frame k (executable) and data frame `pages + k` (NX). */
  readonly pages: number;
  readonly rounds: number;
  /**
   * Both halves' registers loaded first and the two stores back to back (the form HVMI's PAE
   * lookahead joins into one exit), or each register loaded right before its store (two exits).
   */
  readonly backToBack: boolean;
}

/**
 * vCPU 0, the memory manager: `rounds` × (map every page to its code frame, then to its data
 * frame), each 8-byte entry written as two dwords, low then high — the way a PAE kernel writes one.
 * After each sweep every page is mapped (each half leaves a present entry) and the flag it returns
 * (kernel data) tells the toucher it may go.
 */
export function addPaeMapper(guest: Pae32Builder, options: PaeMapperOptions): bigint {
  const { a, range } = guest;
  const { pages, rounds, backToBack } = options;
  const ready = guest.data('PaeReady', 4);
  const round = a.newLabel('PaeMapper.round');
  a.bind(a.newLabel('PaeMapper'));
  a.xor(esi, esi);
  a.bind(round);
  a.mov(edi, Number(range.tablesGva));
  for (const executable of [true, false]) {
    for (let page = 0; page < pages; page++) {
      const entry = paeEntry(range.framesGpa, executable ? page : pages + page, executable);
      const [low, high] = [Number(entry & 0xffffffffn), Number(entry >> 32n)];
      if (backToBack) {
        a.mov(ecx, low);
        a.mov(edx, high);
        a.mov(dword(edi, page * 8), ecx);
        a.mov(dword(edi, page * 8 + 4), edx);
      } else {
        a.mov(ecx, low);
        a.mov(dword(edi, page * 8), ecx);
        a.mov(edx, high);
        a.mov(dword(edi, page * 8 + 4), edx);
      }
    }
    a.mov(ebx, Number(ready));
    a.mov(dword(ebx), 1);
    emitCountdown(a, `PaeMapper.wait${executable ? 'x' : 'nx'}`, 8);
  }
  countUpThenDone(a, round, rounds);
  guest.thread(0, 'PaeMapper');
  return ready;
}

/**
 * vCPU 1: once `ready` is set, `touches` loads from the range's first `pages` pages in turn, each
 * after an INVLPG — a fresh walk of an entry that may be moving — then done.
 */
export function addPaeToucher(guest: Pae32Builder, pages: number, touches: number, ready: bigint): void {
  const { a, range } = guest;
  const toucher = a.newLabel('PaeToucher');
  const touch = a.newLabel('PaeToucher.touch');
  const wait = a.newLabel('PaeToucher.wait');
  a.bind(toucher);
  a.mov(edi, Number(ready));
  a.bind(wait);
  a.pause();
  a.cmp(dword(edi), 0);
  a.je(wait);
  a.xor(esi, esi);
  a.bind(touch);
  a.mov(ebx, esi);
  a.and(ebx, pages - 1);
  a.shl(ebx, 12);
  a.add(ebx, Number(range.gva));
  a.invlpg(byte(ebx));
  a.mov(eax, dword(ebx));
  emitCountdown(a, 'PaeToucher.work', 6);
  countUpThenDone(a, touch, touches);
  guest.thread(1, 'PaeToucher');
}

/** vCPU 0 remaps the range's pages as `mapper` says while vCPU 1 touches them `touches` times. */
export function paeMapperAndToucher(mapper: PaeMapperOptions, touches: number): (guest: Pae32Builder) => void {
  return (guest) => addPaeToucher(guest, mapper.pages, touches, addPaeMapper(guest, mapper));
}

/** The loop's end: ESI counts up to `count`, going back to `again` below it; then the thread is done. */
function countUpThenDone(a: Pae32Builder['a'], again: Label, count: number): void {
  a.add(esi, 1);
  a.cmp(esi, count);
  a.jb(again);
  a.mov(eax, PAE32_THREAD_DONE);
  a.vmcall();
}

/** Monitored bits of the PAE scenarios: the frame, P, R/W, U/S, PS — and NX. */
export const PAE_MONITORED_BITS = 0x000f_ffff_ffff_f000n | Pte.present | Pte.writable | Pte.user | Pte.large | NX;

/** The engine watches the guest's user half, NX included; every leaf change is noted (`leaf-change`). */
export function watchPaeRange(engine: ScenarioEngine, guest: Pae32Guest): void {
  engine.monitorAddressSpace({
    owner: 'pae range',
    monitoredBits: PAE_MONITORED_BITS,
    callback: (change) => engine.note('leaf-change', { gla: change.gla, old: change.old, new: change.new, vcpu: change.vcpuId }),
  });
  void guest;
}

/** `the finished threads` oracle for the vCPUs listed. */
export function threadsFinished(vcpus: readonly number[], who: string): Oracle<Pae32Guest> {
  return {
    name: 'threads-finished',
    phase: 'end',
    description: `${who} finished`,
    check: (world) => (vcpus.every((vcpu) => world.guest.finished.has(vcpu)) ? null : 'a thread did not finish'),
  };
}

/** One line on the entries the monitor knows differently from memory. */
export function describeDivergence(stale: readonly VasDivergence[]): string {
  const first = stale[0];
  return `${stale.length} watched entr${stale.length === 1 ? 'y differs' : 'ies differ'} from memory: table 0x${first.table.toString(16)}[${first.index}] is 0x${first.memory.toString(16)}, the monitor knows 0x${first.known.toString(16)}`;
}

