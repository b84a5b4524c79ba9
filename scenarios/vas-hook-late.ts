import {
  defineScenario, dword, emitCountdown, guestAlive, Hypercall, notesOf, NtGuest, qword, r12d, rax, rbx, rcx, rdx,
  type Assembler, type ManagedRange, type NtGuestBuilder, type OrderingSide, type RunMemory, type RuntimeEvent, type ScenarioEngine, type SymbolResolver,
} from '../src/index.ts';

/**
 * A page-table hook placed late (hvmi-notes §13.7). The engine watches every page table of the
 * user half with the VAS monitor. The guest's memory manager on vCPU 0 links a fresh page table
 * into a directory entry; a thread on vCPU 1 watches that entry and, the moment the table is
 * there, fills four of its entries. Linking is a page-table write: the monitor sees the table
 * added and hooks it — and every write to it from then on must reach the monitor, or the engine's
 * picture of the address space no longer matches memory.
 *
 * HVMI hooks first and reads after (hookThenRead), and pauses every vCPU around placing the hook
 * so it is in force on all of them before anyone writes the table (pauseAroundVasHook). Read
 * first, and the filler's write between the read and the hook is never seen; hook without the
 * pause, and the filler — running, with the EPT view it entered with — writes straight through.
 */

const RANGE_GVA = 0x0000_0100_0000_0000n;
const ROUNDS = 12;
const FILLED_ENTRIES = 4;

const rangeOf = (guest: { readonly ranges: ReadonlyMap<string, ManagedRange> }): ManagedRange => guest.ranges.get('heap')!;
/** The directory entry the linker sets and clears (entry 1: [RANGE_GVA + 2 MiB, +2 MiB)). */
const linkedEntry = (range: ManagedRange): bigint => range.directory.gva + 8n;
/** The table it links: the range's second table. */
const linkedTable = (range: ManagedRange): { readonly gva: bigint; readonly gpa: number } => ({ gva: range.tables.gva + 0x1000n, gpa: range.tables.gpa + 0x1000 });

/** Spin until the qword at [rax] is not zero. */
function waitEntry(a: Assembler, name: string): void {
  const wait = a.newLabel(name);
  a.bind(wait);
  a.pause();
  a.cmp(qword(rax), 0);
  a.je(wait);
}

function addLinkerAndFiller(guest: NtGuestBuilder): void {
  const range = guest.managedRange('heap', { gva: RANGE_GVA, frames: FILLED_ENTRIES, tables: 2, writable: true, user: true });
  const table = linkedTable(range);
  guest.data('.data', 'TablesFilled', 4, { align: 4 });
  guest.data('.data', 'TablesUnlinked', 4, { align: 4 });
  // vCPU 0: link a clean table, wait until it is filled, unlink it; ROUNDS times.
  guest.code('.text', 'TableLinker', (a, symbol: SymbolResolver) => {
    const round = a.newLabel('TableLinker.round');
    const filled = a.newLabel('TableLinker.filled');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(round);
    a.mov(rbx, table.gva);
    for (let k = 0; k < FILLED_ENTRIES; k++) a.mov(qword(rbx, k * 8), 0);
    a.mov(rax, linkedEntry(range));
    a.mov(rdx, BigInt(table.gpa) | range.tableFlags);
    a.mov(qword(rax), rdx); //                    link: the monitor hooks the table
    a.mov(rcx, symbol('TablesFilled'));
    a.add(r12d, 1);
    a.bind(filled);
    a.pause();
    a.cmp(dword(rcx), r12d);
    a.jb(filled);
    emitCountdown(a, 'TableLinker.use', 10);
    a.mov(qword(rax), 0); //                      unlink: the monitor unhooks it
    a.mov(rcx, symbol('TablesUnlinked'));
    a.mov(dword(rcx), r12d);
    a.cmp(r12d, ROUNDS);
    a.jb(round);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  // vCPU 1: as soon as the table is linked, map four pages through it.
  guest.code('.text', 'TableFiller', (a, symbol) => {
    const round = a.newLabel('TableFiller.round');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(round);
    a.mov(rax, linkedEntry(range));
    waitEntry(a, 'TableFiller.linked');
    a.mov(rbx, table.gva);
    for (let k = 0; k < FILLED_ENTRIES; k++) {
      a.mov(rdx, BigInt(range.frames.gpa + k * 0x1000) | range.leafFlags);
      a.mov(qword(rbx, k * 8), rdx);
    }
    a.mov(rcx, symbol('TablesFilled'));
    a.add(dword(rcx), 1);
    // Wait for this round's unlink by its count: the entry itself may be linked again already.
    const unlinked = a.newLabel('TableFiller.unlinked');
    a.add(r12d, 1);
    a.mov(rcx, symbol('TablesUnlinked'));
    a.bind(unlinked);
    a.pause();
    a.cmp(dword(rcx), r12d);
    a.jb(unlinked);
    a.cmp(r12d, ROUNDS);
    a.jb(round);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'TableLinker');
  guest.thread(1, 'TableFiller');
}

/** The engine watches the user half; every leaf change is noted (the callbacks a protection would build on). */
function watchAddressSpace(engine: ScenarioEngine, guest: NtGuest): void {
  engine.monitorAddressSpace({
    owner: 'user half',
    callback: (change) => engine.note('leaf-change', { gla: change.gla, old: change.old, new: change.new, vcpu: change.vcpuId }),
  });
  void guest;
}

/**
 * The pair's `learn`: the table the monitor is adding (its vas-table-added note) and whether the
 * write protection of that table has been asked for (an `ept` change taking write away from it).
 */
function learnAddedTable(event: RuntimeEvent, memory: RunMemory): void {
  if (event.kind === 'note' && event.what === 'vas-table-added') {
    memory.set('adding', Number(event.detail.table));
    memory.set('hooked', false);
  }
  if (event.kind === 'ept' && event.gpa === memory.get('adding') && (event.rights & 2) === 0) memory.set('hooked', true);
}

/**
 * A freshly linked table not yet watched on every vCPU: from the monitor's note that it was added
 * until the EPT change write-protecting it is committed (then every vCPU enters with it).
 */
const unwatchedTable: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'vas-table-added' ? { key: 'table', vcpu: Number(event.detail.vcpu) } : null),
  ends: (event, _added, memory) => event.kind === 'ept-commit' && memory.get('hooked') === true,
};

export const vasHookLate = defineScenario({
  name: 'vas-hook-late',
  title: 'A page-table hook placed late: a write to a freshly linked table goes unseen',
  description:
    'The guest links a fresh page table and another vCPU fills it as soon as it appears. The VAS monitor must hook ' +
    'the table before reading it, with every vCPU paused around the hook, or a write slips in between and the ' +
    'engine\'s picture of the address space no longer matches memory.',
  vcpus: 2,
  bugs: [
    { name: 'table read before it is hooked', fixesOff: ['hookThenRead'], caughtBy: 'vas-view-matches-memory' },
    { name: 'hook not in force on a running vCPU', fixesOff: ['pauseAroundVasHook'], caughtBy: 'vas-view-matches-memory' },
  ],
  // Each thread spins on the other's progress: fairness keeps PCT from starving either.
  bounds: { stepsMax: 300_000, choicesMax: 60_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 600 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addLinkerAndFiller] }),
  engine: { start: watchAddressSpace },
  oracles: [
    {
      name: 'vas-view-matches-memory',
      phase: 'continuous',
      description: 'every entry of every watched page table is, in the bits the monitor watches, what the monitor last saw written',
      check(world) {
        const stale = world.engine.vas.divergence();
        if (stale.length === 0) return null;
        const first = stale[0];
        const table = linkedTable(rangeOf(world.guest));
        const which = first.table === table.gpa ? 'the linked table' : `table 0x${first.table.toString(16)}`;
        return `${stale.length} watched entr${stale.length === 1 ? 'y differs' : 'ies differ'} from memory: ${which}[${first.index}] is 0x${first.memory.toString(16)}, the monitor knows 0x${first.known.toString(16)} — a write it never saw`;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the linker and the filler finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
    guestAlive(),
  ],
  orderings: [
    {
      name: 'unwatched-table-vs-filler',
      description: "A: a linked table, from the monitor's noting it until its write hook is committed; B: another vCPU (the filler) executing guest code. A during B is the window of both bugs: a write between reading and hooking, or through an EPT view the hook has not reached",
      learn: learnAddedTable,
      a: unwatchedTable,
      b: { begins: (event) => (event.kind === 'stop' && event.retired > 0 ? { key: 'table', vcpu: event.vcpu } : null) },
    },
  ],
  windows: [
    {
      name: 'fill-seen',
      description: 'the monitor saw the filler map a page through a table it had just hooked',
      reached: (world) => notesOf(world.events, 'leaf-change').some(({ event }) => event.detail.vcpu === 1),
    },
  ],
});
