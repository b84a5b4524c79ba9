import {
  defineScenario, dword, eax, emitCountdown, guestAlive, Hypercall, notesOf, NtGuest, qword, r12d, rax, rbx, rcx,
  type GpaHook, type ManagedRange, type NtGuestBuilder, type OrderingSide, type ScenarioEngine,
} from '../src/index.ts';

/**
 * A page-table CMPXCHG racing the CPU's A-bit update (hvmi-notes §13.10). The guest's working-set
 * trimmer steals page 0 of a range the way Windows' MiStealPage does: it reads the PTE and, when
 * the page was not accessed, remaps it to a spare frame with `LOCK CMPXCHG` expecting A = 0; if it
 * got the page, it maps it back later. A writer on another vCPU keeps storing into page 0 (after
 * INVLPG, so every store walks the tables and sets A and D). The engine protects page 0 wherever
 * it is mapped: the VAS monitor tells it of every change of the mapping and it moves its EPT
 * write hook to the new frame.
 *
 * HVMI carries the CMPXCHG out itself with a compare-exchange and judges it on the real outcome
 * (casPageTableEmulation). Judged at decode instead, the trimmer's exchange looks done, the hook
 * moves to the spare frame — and when the writer's walk set A in between, the hypervisor's real
 * CMPXCHG fails: page 0 still maps the original frame, now unprotected, and the next store lands.
 */

const RANGE_GVA = 0x0000_0080_0000_0000n;
/** Steal attempts the trimmer makes, and stores the writer makes. */
const ATTEMPTS = 40;
const STORES = 60;
/** Where in page 0 the writer stores. */
const STORE_OFFSET = 0x100;
/** The frame a stolen page 0 is remapped to. */
const SPARE_FRAME = 1;

const rangeOf = (guest: { readonly ranges: ReadonlyMap<string, ManagedRange> }): ManagedRange => guest.ranges.get('working set')!;
const pteOf = (range: ManagedRange, frame: number): bigint => BigInt(range.frames.gpa + frame * 0x1000) | range.leafFlags;

function addTrimmerAndWriter(guest: NtGuestBuilder): void {
  const range = guest.managedRange('working set', { gva: RANGE_GVA, frames: 2, mapped: 1, writable: true, user: true });
  guest.data('.data', 'Steals', 4, { align: 4 });
  // vCPU 0: MiStealPage on page 0, ATTEMPTS times.
  guest.code('.text', 'WorkingSetTrimmer', (a, symbol) => {
    const loop = a.newLabel('Trimmer.loop');
    const steal = a.newLabel('Trimmer.steal');
    const next = a.newLabel('Trimmer.next');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(loop);
    a.mov(rbx, range.tables.gva);
    a.mov(rax, qword(rbx));
    a.test(rax, 0x20);
    a.je(steal);
    a.lock().and(qword(rbx), -0x61); //           accessed: age it (clear A and D)
    a.jmp(next);
    a.bind(steal);
    a.mov(rcx, pteOf(range, SPARE_FRAME));
    a.lock().cmpxchg(qword(rbx), rcx); //         not accessed: take it, unless A was set meanwhile
    a.jne(next);
    a.mov(rcx, symbol('Steals'));
    a.add(dword(rcx), 1);
    emitCountdown(a, 'Trimmer.stolen', 12);
    a.mov(rcx, pteOf(range, 0));
    a.mov(qword(rbx), rcx); //                    give it back
    a.bind(next);
    emitCountdown(a, 'Trimmer.work', 10);
    a.add(r12d, 1);
    a.cmp(r12d, ATTEMPTS);
    a.jb(loop);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  // vCPU 1: store into page 0, a fresh walk each time.
  guest.code('.text', 'PageWriter', (a) => {
    const loop = a.newLabel('PageWriter.loop');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(loop);
    a.mov(rbx, RANGE_GVA);
    a.invlpg(qword(rbx));
    a.mov(eax, r12d);
    a.add(eax, 1);
    a.mov(dword(rbx, STORE_OFFSET), eax);
    emitCountdown(a, 'PageWriter.work', 6);
    a.add(r12d, 1);
    a.cmp(r12d, STORES);
    a.jb(loop);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'WorkingSetTrimmer');
  guest.thread(1, 'PageWriter');
}

/**
 * Protect page 0 of the range wherever it is mapped: an EPT write hook that follows the mapping,
 * moved with every vCPU paused (so no running vCPU keeps writing through its old EPT view), and an
 * EPT stage that retries an exit on a frame the page has left — raised before the move, it would
 * otherwise be allowed on a page with no hook and carried out against the new mapping.
 */
function protectPageZero(engine: ScenarioEngine, guest: NtGuest): void {
  /** The hook on the page's frame, the frame, and the frames it has left. */
  const guard = engine.state({ hook: null as GpaHook | null, current: null as number | null, former: new Set<number>() });
  const protect = (frameGpa: number | null): void => {
    if (guard.current !== null) guard.former.add(guard.current);
    guard.current = frameGpa;
    if (frameGpa !== null) guard.former.delete(frameGpa);
    if (guard.hook !== null) engine.removeHook(guard.hook);
    guard.hook = null;
    if (frameGpa === null) return;
    guard.hook = engine.hook({
      gpa: frameGpa,
      length: 0x1000,
      type: 'write',
      owner: 'protected page',
      callback: (access) => {
        engine.note('protected-store-refused', { vcpu: access.vcpuId, gpa: access.gpa });
        return 'notAllowed';
      },
    });
  };
  protect(engine.translate(RANGE_GVA));
  engine.monitorAddressSpace({
    owner: 'working set',
    callback: (change) => {
      if (change.gla !== RANGE_GVA) return;
      engine.note('protected-page-moved', { old: change.old, new: change.new, vcpu: change.vcpuId });
      engine.pauseVcpus();
      try {
        protect((change.new & 1n) !== 0n ? Number(change.new & 0x000f_ffff_ffff_f000n) : null);
      } finally {
        engine.resumeVcpus();
      }
    },
  });
  engine.eptStage('left-frame-retry', (exit) => (guard.former.has(exit.gpa - (exit.gpa % 0x1000)) ? 'retry' : null));
  void guest;
}

/** The page-table entry a GPA falls in. */
const entryOf = (gpa: number | bigint): string => String(BigInt(gpa) & ~7n);

/**
 * The trimmer's CMPXCHG, from the engine's judgement of it (its pt-write note) until its vCPU next
 * stops: judged at decode, the hypervisor carries it out only at that vCPU's next entry.
 */
const steal: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'pt-write' && event.detail.ins === 'cmpxchg' ? { key: entryOf(event.detail.gpa as number), vcpu: Number(event.detail.vcpu) } : null),
  ends: (event, judged) => event.kind === 'stop' && event.vcpu === judged.vcpu,
};

/** An EPT write exit on a page-table entry — the writer's walk setting A, or a store — until its vCPU next stops (carried out). */
const writeToEntry: OrderingSide = {
  begins: (event) => (event.kind === 'stop' && event.exit !== null && event.reason === 'eptViolation' && (event.exit.access & 2) !== 0 ? { key: entryOf(event.exit.gpa), vcpu: event.vcpu } : null),
  ends: (event, exit) => event.kind === 'stop' && event.vcpu === exit.vcpu,
};

export const pteCmpxchgAccessed = defineScenario({
  name: 'pte-cmpxchg-accessed',
  title: 'A page-table CMPXCHG judged at decode, beaten by the A-bit update',
  description:
    'A working-set trimmer steals a page with LOCK CMPXCHG on its PTE, expecting it not accessed, while a writer on ' +
    'another vCPU walks to it and sets A. The engine keeps an EPT write hook on whatever frame the page maps, moved ' +
    'by the VAS monitor. Judging the CMPXCHG at decode moves the hook although the exchange later fails, leaving the ' +
    'page unprotected.',
  vcpus: 2,
  bugs: [{ name: 'page-table write judged at decode, done later', fixesOff: ['casPageTableEmulation'], caughtBy: 'protected-page-unwritten' }],
  bounds: { stepsMax: 300_000, choicesMax: 60_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addTrimmerAndWriter] }),
  engine: { start: protectPageZero },
  oracles: [
    {
      name: 'protected-page-unwritten',
      phase: 'end',
      description: 'no store reached page 0 of the range, in either frame it was mapped to',
      check(world) {
        const range = rangeOf(world.guest);
        for (const frame of [0, SPARE_FRAME]) {
          const value = world.guest.read(range.frames.gva + BigInt(frame * 0x1000 + STORE_OFFSET), 4);
          if (value.some((b) => b !== 0)) {
            const steals = notesOf(world.events, 'protected-page-moved').length;
            return `frame ${frame} of the range holds a store at +0x${STORE_OFFSET.toString(16)} (${[...value].reverse().map((b) => b.toString(16).padStart(2, '0')).join('')}): page 0 was writable while mapped there; the engine moved its hook ${steals} time(s)`;
          }
        }
        return null;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the trimmer and the writer finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
    guestAlive(),
  ],
  orderings: [
    {
      name: 'steal-vs-walk',
      description: "A: the trimmer's CMPXCHG on page 0's entry, from its judgement until it is carried out; B: another vCPU's write exit on that entry (the writer's walk setting A), until carried out. A during B is the window: A set between the judgement and the exchange, which then fails",
      a: steal,
      b: writeToEntry,
    },
  ],
  windows: [
    {
      name: 'page-stolen',
      description: 'the trimmer took the page and the engine moved its hook',
      reached: (world) => notesOf(world.events, 'protected-page-moved').length > 0,
    },
    {
      name: 'steal-lost',
      description: 'a trimmer CMPXCHG found A set by the writer\'s walk',
      reached: (world) => notesOf(world.events, 'pt-write').some(({ event }) => event.detail.ins === 'cmpxchg' && event.detail.new === event.detail.old),
    },
  ],
});
