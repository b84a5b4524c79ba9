import {
  defineScenario, dword, eax, ecx, edx, emitCountdown, guestAlive, Hypercall, notesOf, NtGuest, Pte, qword, r12d, rax, rbx,
  type ManagedRange, type NtGuestBuilder, type ScenarioEngine,
} from '../src/index.ts';
import { callbackInHalfEntry, exitOnEntry, halfWrittenEntry } from './half-entry-pairs.ts';

/**
 * A page-table entry written in two halves (hvmi-notes §13.8, here on a 64-bit guest: the entry
 * is 8 bytes and the memory manager stores its low dword, then its high one — as a 32-bit PAE
 * kernel always does). vCPU 0's memory manager moves a page between a data frame (NX) and a code
 * frame (executable); vCPU 1 uses the page while it is mapped. The engine watches the range with
 * the VAS monitor, NX included, and raises an alert when a frame that was mapped non-executable
 * becomes executable in place — how shellcode staged in a data page gets run.
 *
 * HVMI waits until every byte of an entry is written before calling back (partialWriteAssembly):
 * one callback, data frame → code frame. Taking each half as a whole entry, the first callback sees
 * the code frame with the data frame's NX — a mapping nobody wrote — and the second sees that
 * frame's NX cleared in place: a false alert.
 */

const RANGE_GVA = 0x0000_0180_0000_0000n;
const MOVES = 16;
const DATA_FRAME = 0;
const CODE_FRAME = 1;
const NX = 1n << 63n;

const rangeOf = (guest: { readonly ranges: ReadonlyMap<string, ManagedRange> }): ManagedRange => guest.ranges.get('moving page')!;
const entryOf = (range: ManagedRange, frame: number): bigint =>
  BigInt(range.frames.gpa + frame * 0x1000) | Pte.present | Pte.writable | Pte.user | (frame === DATA_FRAME ? NX : 0n);

function addMemoryManagerAndUser(guest: NtGuestBuilder): void {
  const range = guest.managedRange('moving page', { gva: RANGE_GVA, frames: 2, user: true, writable: true });
  guest.data('.data', 'PageMoves', 4, { align: 4 });
  // vCPU 0: map the page to the data frame, then the code frame, MOVES times — low dword, then high.
  guest.code('.text', 'PageMover', (a, symbol) => {
    const move = a.newLabel('PageMover.move');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(move);
    for (const frame of [DATA_FRAME, CODE_FRAME]) {
      const entry = entryOf(range, frame);
      a.mov(rbx, range.tables.gva);
      a.mov(eax, Number(entry & 0xffffffffn));
      a.mov(edx, Number(entry >> 32n));
      a.mov(dword(rbx), eax);
      a.mov(dword(rbx, 4), edx);
      a.mov(rax, symbol('PageMoves'));
      a.add(dword(rax), 1);
      emitCountdown(a, `PageMover.use${frame}`, 20);
    }
    a.add(r12d, 1);
    a.cmp(r12d, MOVES);
    a.jb(move);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  // vCPU 1: read the page's first dword whenever the mover has moved it.
  guest.code('.text', 'PageUser', (a, symbol) => {
    const wait = a.newLabel('PageUser.wait');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(wait);
    a.pause();
    a.mov(rax, symbol('PageMoves'));
    a.mov(ecx, dword(rax));
    a.cmp(ecx, r12d);
    a.je(wait);
    a.mov(r12d, ecx);
    a.mov(rbx, RANGE_GVA);
    a.invlpg(qword(rbx));
    a.mov(eax, dword(rbx));
    a.cmp(r12d, MOVES * 2);
    a.jb(wait);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'PageMover');
  guest.thread(1, 'PageUser');
}

/** Watch the range, NX included: a frame mapped NX that turns executable in place is an alert. */
function watchExecutableInPlace(engine: ScenarioEngine, guest: NtGuest): void {
  const FRAME = 0x000f_ffff_ffff_f000n;
  engine.monitorAddressSpace({
    owner: 'moving page',
    monitoredBits: FRAME | Pte.present | Pte.writable | Pte.user | Pte.large | NX,
    callback: (change) => {
      engine.note('leaf-change', { gla: change.gla, old: change.old, new: change.new, vcpu: change.vcpuId });
      const sameFrame = (change.old & FRAME) === (change.new & FRAME) && (change.old & change.new & 1n) !== 0n;
      if (sameFrame && (change.old & NX) !== 0n && (change.new & NX) === 0n) {
        engine.note('exec-in-place-alert', { gla: change.gla, frame: change.new & FRAME, vcpu: change.vcpuId });
      }
    },
  });
  void guest;
}

export const pteHalfWritten = defineScenario({
  name: 'pte-half-written',
  title: 'A page-table entry written in two halves, each taken as a whole',
  description:
    'A memory manager moves a page between a non-executable data frame and an executable code frame, storing each ' +
    'entry as two dwords. The engine alerts when a frame mapped non-executable becomes executable in place. Taking the ' +
    'low half as a whole entry shows the code frame with the data frame\'s NX, and the high half then clears NX on ' +
    'that frame: a false alert.',
  vcpus: 2,
  bugs: [{ name: 'half-written entry taken as whole', fixesOff: ['partialWriteAssembly'], caughtBy: 'no-false-exec-alert' }],
  bounds: { stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 600 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addMemoryManagerAndUser] }),
  engine: { start: watchExecutableInPlace },
  oracles: [
    {
      name: 'no-false-exec-alert',
      phase: 'end',
      description: 'no frame was reported made executable in place: the guest never does that, it moves the page between frames',
      check(world) {
        const alerts = notesOf(world.events, 'exec-in-place-alert');
        if (alerts.length === 0) return null;
        const first = alerts[0].event.detail;
        const frame = typeof first.frame === 'bigint' ? first.frame : 0n;
        return `${alerts.length} false alert(s): frame 0x${frame.toString(16)} "made executable in place" at 0x${rangeOf(world.guest).gva.toString(16)}, after a callback on a half-written entry`;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the mover and the user finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
    guestAlive(),
  ],
  // The bug needs no second vCPU (each half alone is a wrong callback): the first pair is its window;
  // the second records whether the user's walk ever met the entry half written.
  orderings: [
    callbackInHalfEntry,
    {
      name: 'half-entry-vs-user-walk',
      description: "A: the entry half written, from the mover's low-half store to its high-half store; B: another vCPU's write exit on that entry (the user's walk setting A/D), until handled. A during B: the walk met the entry half written",
      a: halfWrittenEntry(false),
      b: exitOnEntry,
    },
  ],
  windows: [
    {
      name: 'moves-seen',
      description: 'the monitor saw the page move to the code frame and back',
      reached: (world) => notesOf(world.events, 'leaf-change').length >= 2,
    },
  ],
});
