/**
 * Goal: HVMI's PAE second-store lookahead (hvmi-notes §8, §10 step 12). After the engine carries
 * out one 4-byte half of a PAE entry, a 4-byte MOV, XCHG or CMPXCHG into the same entry right
 * after it is carried out in the same exit: one callback with the whole old and new entry, RIP
 * past both stores, memory and registers as the CPU would leave them; the second instruction is
 * not retried for TOCTOU (HVMI's observation). Anything else after the first half — a store to
 * another entry, a byte store, an instruction writing a register — is left to its own exit, and
 * with `paeStoreLookahead` off every half is an exit of its own, assembled across the two.
 * Method: the 32-bit PAE kernel of test/support/pae-kernel.ts with the stores each test emits;
 * the VAS monitor (NX included) and a swap hook watch the page; the handled exits say where RIP went.
 */
import test from 'ava';
import { byte, dl, dword, eax, ecx, edi, edx, type Assembler } from '../../src/asm/index.ts';
import { ZF } from '../../src/cpu/flags.ts';
import { fixesWithout, type Fixes } from '../../src/intro/fixes.ts';
import { IC_ANY_VAS } from '../../src/intro/icache.ts';
import { PTS_MONITORED_BITS } from '../../src/intro/page-table-writes.ts';
import type { SwapChange } from '../../src/intro/pts-hooks.ts';
import type { VasChange } from '../../src/intro/vas-monitor.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { lowThenHigh, notesOf, PAE_ENTRY, PAE_PAGE, paeKernel, type HandledExit, type PaeKernel } from '../support/pae-kernel.ts';

interface Watched {
  readonly kernel: PaeKernel;
  readonly before: bigint;
  readonly vas: VasChange[];
  readonly swaps: SwapChange[];
  readonly exits: HandledExit[];
}

/** Builds the kernel with `stores`, watches the page with the VAS monitor and a swap hook, runs it. */
function run(t: { teardown(fn: () => void): void }, stores: (a: Assembler) => void, fixes?: Fixes): Watched {
  const kernel = paeKernel(fixes === undefined ? { stores } : { stores, fixes });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const before = kernel.tm.machine.memory.read64(kernel.pteGpa);
  const vas: VasChange[] = [];
  const swaps: SwapChange[] = [];
  engine.vas.start(engine.kernel.systemCr3, 'pae', (change) => vas.push(change), PTS_MONITORED_BITS | NX, 'pae');
  engine.pts.set(BigInt(PAE_PAGE), engine.kernel.systemCr3, 'test', (change) => swaps.push(change), 'pae');
  kernel.session.ept.flush();
  const exits = kernel.runToEnd().filter((exit) => exit.reason === ExitReason.eptViolation);
  return { kernel, before, vas, swaps, exits };
}

/** The VAS monitor watches NX too: the high half of these entries is NX alone. */
const NX = 1n << 63n;

const at = (kernel: PaeKernel, label: string): bigint => kernel.addressOf(label);

test('low half then high half: one exit carries out both, one VAS and one swap callback with the whole entry, RIP past both stores', (t) => {
  const { kernel, before, vas, swaps, exits } = run(t, lowThenHigh);
  const [low, high, end] = [at(kernel, 'low'), at(kernel, 'high'), at(kernel, 'end')];
  // The first exit caches the low store and retries (TOCTOU); the second carries out both.
  t.deepEqual(exits.map((e) => [e.rip, e.reply.action, e.ripAfter]), [[low, 'retry', low], [low, 'allowedVirtual', end]]);
  t.is(exits[1].reply.emulatedLength, Number(end - low), 'the reply skips both stores');
  t.false(exits.some((e) => e.rip === high), 'the high store never exited');
  t.deepEqual(notesOf(kernel.events, 'pt-write').map((w) => [w.size, w.gpa]), [[4, kernel.pteGpa], [4, kernel.pteGpa + 4]]);
  t.like(notesOf(kernel.events, 'pae-lookahead'), [{ rip: high, ins: 'mov', gpa: kernel.pteGpa + 4 }]);
  t.is(vas.length, 1);
  t.like(vas[0], { gla: BigInt(PAE_PAGE), old: before, new: PAE_ENTRY, pageSize: 0x1000 });
  t.is(swaps.length, 1);
  t.like(swaps[0], { old: before, new: PAE_ENTRY });
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
  const engine = kernel.intro.engine;
  t.is(engine.stats.retries.toctou, 1, 'only the exiting store was retried for TOCTOU');
  t.not(engine.icache.lookup(high, IC_ANY_VAS), null, 'the high store went into the icache when it was decoded, and was judged at once');
  t.deepEqual(engine.vas.partialEntries(), []);
});

test('high half first, then low half: the same one exit', (t) => {
  const { kernel, before, vas, exits } = run(t, (a) => {
    a.bind(a.newLabel('high'));
    a.mov(dword(edi, 4), edx);
    a.mov(dword(edi), ecx);
  });
  t.deepEqual(exits.map((e) => [e.reply.action, e.ripAfter]), [['retry', at(kernel, 'high')], ['allowedVirtual', at(kernel, 'end')]]);
  t.is(vas.length, 1);
  t.like(vas[0], { old: before, new: PAE_ENTRY });
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
});

test('XCHG as the second store: carried out in the same exit, the register gets the old high half', (t) => {
  const { kernel, before, vas, exits } = run(t, (a) => {
    a.mov(dword(edi), ecx);
    a.bind(a.newLabel('high'));
    a.xchg(dword(edi, 4), edx);
  });
  t.is(exits.at(-1)?.ripAfter, at(kernel, 'end'));
  t.like(notesOf(kernel.events, 'pae-lookahead'), [{ ins: 'xchg' }]);
  t.is(vas.length, 1);
  t.like(vas[0], { old: before, new: PAE_ENTRY });
  t.is(kernel.tm.state().gpr('rdx'), before >> 32n, 'EDX holds what the high half held');
});

for (const matches of [true, false]) {
  test(`CMPXCHG as the second store, ${matches ? 'expecting what is there: it stores, ZF set' : 'expecting something else: it fails, ZF clear, EAX gets the high half'}`, (t) => {
    const { kernel, before, vas, exits } = run(t, (a) => {
      a.mov(eax, dword(edi, 4)); //               the high half as it is (a read: the table is only write-hooked)
      if (!matches) a.not(eax);
      a.mov(dword(edi), ecx);
      a.cmpxchg(dword(edi, 4), edx);
    });
    t.is(exits.at(-1)?.ripAfter, at(kernel, 'end'));
    t.like(notesOf(kernel.events, 'pae-lookahead'), [{ ins: 'cmpxchg' }]);
    const state = kernel.tm.state();
    const zf = (state.rflags & BigInt(ZF)) !== 0n;
    const entry = matches ? PAE_ENTRY : (before & ~0xffffffffn) | (PAE_ENTRY & 0xffffffffn);
    t.is(zf, matches);
    t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), entry);
    if (!matches) t.is(state.gpr('rax'), before >> 32n, 'EAX holds what the high half held');
    t.is(vas.length, 1, 'one callback, with the entry as the store left it');
    t.like(vas[0], { old: before, new: entry });
  });
}

const notTaken: readonly (readonly [string, (a: Assembler) => void])[] = [
  ['a store into the next entry', (a) => {
    a.mov(dword(edi), ecx);
    a.bind(a.newLabel('second'));
    a.mov(dword(edi, 12), edx);
  }],
  ['a byte store into the same entry', (a) => {
    a.mov(dword(edi), ecx);
    a.bind(a.newLabel('second'));
    a.mov(byte(edi, 4), dl);
  }],
  ['a MOV that writes a register (a load of the other half)', (a) => {
    a.mov(dword(edi), ecx);
    a.mov(eax, dword(edi, 4));
    a.bind(a.newLabel('second'));
    a.mov(dword(edi, 4), edx);
  }],
];

for (const [what, stores] of notTaken) {
  test(`after the first half, ${what} is not taken: the exit skips the first store only, the next store exits itself`, (t) => {
    const { kernel, exits } = run(t, stores);
    const first = exits.find((e) => e.reply.action === 'allowedVirtual');
    t.is(notesOf(kernel.events, 'pae-lookahead').length, 0);
    t.is(first?.reply.emulatedLength, undefined, 'the reply skips its own instruction');
    t.true(exits.some((e) => e.rip === at(kernel, 'second') && e.reply.action === 'allowedVirtual'), 'the second store was carried out in an exit of its own');
    t.is(exits.at(-1)?.ripAfter, at(kernel, 'end'));
  });
}

test('a MOV loading the other half in between: each store its own exit, and the entry is still assembled whole across the two', (t) => {
  const { kernel, before, vas } = run(t, notTaken[2][1]);
  t.is(vas.length, 1);
  t.like(vas[0], { old: before, new: PAE_ENTRY });
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
});

test('paeStoreLookahead off: the plain two exits, each half carried out in its own, one callback with the whole entry', (t) => {
  const { kernel, before, vas, swaps, exits } = run(t, lowThenHigh, fixesWithout(['paeStoreLookahead']));
  const [low, high, end] = [at(kernel, 'low'), at(kernel, 'high'), at(kernel, 'end')];
  t.deepEqual(exits.map((e) => [e.rip, e.reply.action, e.ripAfter]), [[low, 'retry', low], [low, 'allowedVirtual', high], [high, 'retry', high], [high, 'allowedVirtual', end]]);
  t.is(notesOf(kernel.events, 'pae-lookahead').length, 0);
  t.is(vas.length, 1);
  t.like(vas[0], { old: before, new: PAE_ENTRY });
  t.is(swaps.length, 1);
  t.is(kernel.tm.machine.memory.read64(kernel.pteGpa), PAE_ENTRY);
});

test('partialWriteAssembly off (the naive engine): the lookahead\'s one exit calls back twice, the first time with a half-new entry', (t) => {
  const { kernel, before, vas } = run(t, lowThenHigh, fixesWithout(['partialWriteAssembly']));
  const halfNew = (before & ~0xffffffffn) | (PAE_ENTRY & 0xffffffffn);
  t.is(notesOf(kernel.events, 'pae-lookahead').length, 1);
  t.deepEqual(vas.map((c) => [c.old, c.new]), [[before, halfNew], [halfNew, PAE_ENTRY]]);
});
