/**
 * Goal: the public scenario API does what a scenario author needs without touching the framework:
 * the guest builder (code and data in kernel sections, a thread's entry, pages from the allocator,
 * a hypercall that continues and returns a value), the engine's extension points (a hook placed
 * from a handler reaches a vCPU that is already running, with no flush by the scenario; scenario
 * hooks are gone after unload; beforeUninit runs), scenario-declared fixes, exit tickets in the
 * events, and the event queries. Method: small scenarios written here against src/index.ts only,
 * run through the real rig.
 */
import test from 'ava';
import { Prng } from '../../src/explore/prng.ts';
import {
  CLOCK_VECTOR, defineScenario, exitByTicket, exitsOf, handledOf, happenedBefore, Hypercall, notesOf, NtGuest, pendingExitsAt, qword, rax,
  rbx, rcx, ScenarioDefinitionError, ScenarioRig, validateScenario, type NtGuestBuilder, type TimedEvent,
} from '../../src/index.ts';

const PROBE = 0x7663_7075_7001n;
const ARM = 0x7663_7075_7002n;
const bounds = { stepsMax: 60_000, choicesMax: 20_000, slice: 10, pctEvents: 100, timerSteps: 1_000_000, timerMs: 1000, clockEverySteps: 1_000_000, freeWallMs: 10_000 };

/** vCPU 0 calls a hypercall that answers RAX + 1 and stores it in a data variable and an allocated page; vCPU 1 writes its page 100 times. */
function extendGuest(guest: NtGuestBuilder): void {
  guest.data('.data', 'ProbeResult', 8, { align: 8 });
  const page = guest.pages('probe', 1, { writable: true });
  guest.code('.text', 'Probe', (a, symbol) => {
    for (let k = 0; k < 20; k++) a.nop();
    a.mov(rax, ARM);
    a.vmcall();
    a.mov(rax, PROBE);
    a.vmcall();
    a.mov(rbx, symbol('ProbeResult'));
    a.mov(qword(rbx), rax);
    a.mov(rbx, page.gva);
    a.mov(qword(rbx, 8), rax);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.code('.text', 'PageWriter', (a) => {
    const loop = a.newLabel('PageWriter.loop');
    a.mov(rbx, page.gva);
    a.mov(rcx, 100);
    a.bind(loop);
    a.mov(qword(rbx), rcx);
    a.dec(rcx);
    a.jne(loop);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'Probe');
  guest.thread(1, 'PageWriter');
  guest.hypercall(PROBE, 'probe', ({ regs }) => {
    regs.setGpr?.('rax', regs.gpr('rax') + 1n);
    return 'continue';
  });
}

let uninitCalls = 0;

const probeScenario = defineScenario({
  name: 'api-probe',
  title: 'API probe',
  description: 'exercises the builder and the engine extension points',
  vcpus: 2,
  fixes: [{ name: 'armHook', description: 'the engine hooks the writer page when asked' }, { name: 'otherSwitch', description: 'a second switch of the scenario' }],
  bugs: [{ name: 'nothing', fixesOff: ['armHook'], caughtBy: 'run-completes' }],
  bounds,
  clockVector: CLOCK_VECTOR,
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [extendGuest] }),
  engine: {
    start(engine, guest) {
      const page = guest.pools.get('probe')!;
      engine.hypercall(ARM, 'arm', () => {
        if (engine.fixes.armHook) {
          engine.hook({ gva: page.gva, length: 8, type: 'write', owner: 'probe writer', callback: (access, hook) => {
            engine.note('probe-write', { exit: access.exitTicket, placed: hook.placedTicket });
            return 'allowed';
          } });
        }
        return 'continue';
      });
    },
    beforeUninit() {
      uninitCalls++;
    },
  },
  oracles: [
    { name: 'probe-answered', phase: 'end', description: 'the hypercall answered RAX + 1', check: (w) => (w.guest.read64(w.guest.symbol('ProbeResult')) === PROBE + 1n ? null : 'ProbeResult is wrong') },
    { name: 'hooks-gone', phase: 'after-uninit', description: 'no scenario hook outlives the unload', check: (w) => (w.engine.hooks.liveHooks().some((h) => h.owner === 'probe writer') ? 'a scenario hook survived uninit' : null) },
  ],
  windows: [],
});

test('the guest builder: data, pages, thread entries and a hypercall that continues with a value', async (t) => {
  const rig = ScenarioRig.open(probeScenario, 'inline');
  t.teardown(() => rig.close());
  const report = rig.run({ seed: 1, strategy: 'rr', depth: 2, fixes: rig.fixes.defaults() });
  t.deepEqual(report.violations, []);
  const guest = rig.definition.setup();
  t.true(guest.symbol('Probe') > guest.symbol('KiServices'), 'scenario code follows the kernel in .text');
  t.is(guest.pools.get('probe')!.bytes, 0x1000);
  t.throws(() => new NtGuest({ vcpus: 1, iterations: 0, extensions: [(g) => g.hypercall(Hypercall.threadDone, 'again', () => 'stop')] }), { message: /is taken by "thread done"/ });
  t.throws(() => new NtGuest({ vcpus: 1, iterations: 0, extensions: [(g) => g.code('.text', 'X', (a, symbol) => void a.call(symbol('Nowhere')))] }), { message: /image symbol "Nowhere" is not defined/ });
});

test('a hook placed from a handler reaches a vCPU that is already running; unload removes it; beforeUninit runs', async (t) => {
  const rig = ScenarioRig.open(probeScenario, 'inline');
  t.teardown(() => rig.close());
  const before = uninitCalls;
  const report = rig.run({ seed: 1, strategy: 'rr', depth: 2, fixes: rig.fixes.defaults() });
  t.deepEqual(report.violations, []);
  t.is(uninitCalls, before + 1);
  const events = rig.lastEvents;
  const armed = handledOf(events, { reason: 'vmcall', vcpu: 0 })[0];
  const firstWriteBefore = exitsOf(events, { vcpu: 1 }).filter((e) => e.index < armed.index);
  t.deepEqual(firstWriteBefore, [], 'vCPU 1 wrote freely before the hook');
  const ranBefore = events.slice(0, armed.index).some(({ event }) => event.kind === 'stop' && event.vcpu === 1 && event.retired > 0);
  t.true(ranBefore, 'vCPU 1 was already running when the hook was placed');
  const hooked = notesOf(events, 'probe-write');
  t.true(hooked.length > 0, 'its next writes fault into the hook, with no flush called by the scenario');
  t.true(hooked.every((n) => Number(n.event.detail.exit) > Number(n.event.detail.placed)));
  const off = rig.run({ seed: 1, strategy: 'rr', depth: 2, fixes: rig.fixes.without(['armHook']) });
  t.deepEqual(notesOf(rig.lastEvents, 'probe-write'), [], 'armHook off: no hook');
  t.deepEqual(off.fixesOff, ['armHook']);
});

test('scenario fixes: declared next to HVMI\'s, all on unless turned off; a name that shadows a built-in is refused', (t) => {
  const rig = ScenarioRig.open(probeScenario, 'inline');
  t.teardown(() => rig.close());
  t.true(rig.fixes.names.includes('icacheFlushOnPatch') && rig.fixes.names.includes('armHook'));
  t.like(rig.fixes.defaults(), { armHook: true, otherSwitch: true, toctouRetry: true });
  t.like(rig.fixes.apply(rig.fixes.defaults(), ['otherSwitch=off', 'toctouRetry=off']), { otherSwitch: false, toctouRetry: false, armHook: true });
  t.deepEqual(rig.fixes.off(rig.fixes.without(['otherSwitch', 'patchedGuard'])), ['patchedGuard', 'otherSwitch']);
  t.throws(() => rig.fixes.apply(rig.fixes.defaults(), ['nope=off']), { message: /name one of icacheFlushOnPatch, .*armHook, otherSwitch/ });
  t.throws(() => validateScenario({ ...probeScenario, fixes: [{ name: 'toctouRetry', description: 'mine' }] }), { instanceOf: ScenarioDefinitionError, message: /fix "toctouRetry" is declared twice \(or shadows a built-in fix\)/ });
});

test('exit tickets: numbered in order, on the stop and the handle of each exit, with GPA, GLA and access for EPT violations', async (t) => {
  const rig = ScenarioRig.open(probeScenario, 'inline');
  t.teardown(() => rig.close());
  rig.run({ seed: 3, strategy: 'random', depth: 2, fixes: rig.fixes.defaults() });
  const exits = exitsOf(rig.lastEvents);
  t.deepEqual(exits.map((e) => e.event.exit.ticket), exits.map((_, k) => k + 1));
  for (const handled of handledOf(rig.lastEvents)) {
    const exit = exitByTicket(rig.lastEvents, handled.event.ticket);
    t.truthy(exit);
    t.is(exit!.event.vcpu, handled.event.vcpu);
    t.true(happenedBefore(exit!, handled));
  }
  const writes = exitsOf(rig.lastEvents, { reason: 'eptViolation', vcpu: 1, access: 2 });
  t.true(writes.length > 0);
  const page = rig.guest.pools.get('probe')!;
  t.true(writes.every((w) => w.event.exit.gla === page.gva && w.event.exit.gpa === BigInt(page.gpa)));
});

test('event queries on a hand-built run: pending exits, notes, order', (t) => {
  const stop = (vcpu: number, ticket: number, rip: bigint): TimedEvent => ({ clock: ticket, event: { kind: 'stop', vcpu, stop: 'exit', reason: 'eptViolation', rip, retired: 1, exit: { ticket, gpa: 0x1000n, gla: 0x2000n, access: 2 } } });
  const handle = (vcpu: number, ticket: number, rip = 0n): TimedEvent => ({ clock: ticket, event: { kind: 'handle', vcpu, reason: 'eptViolation', rip, action: 'allowed', inject: -1, ticket } });
  const note = (what: string): TimedEvent => ({ clock: 0, event: { kind: 'note', what, detail: {} } });
  const events = [stop(0, 1, 0x10n), stop(1, 2, 0x20n), handle(0, 1, 0x10n), note('patch'), stop(0, 3, 0x10n), handle(1, 2, 0x20n), note('patch'), handle(0, 3, 0x10n)];
  t.deepEqual([...pendingExitsAt(events, 3).keys()], [1], 'before the first patch only vCPU 1 waits');
  t.deepEqual([...pendingExitsAt(events, 6).keys()], [0]);
  t.deepEqual(notesOf(events, 'patch').map((n) => n.index), [3, 6]);
  t.deepEqual(exitsOf(events, { rip: 0x10n }).map((e) => e.event.exit.ticket), [1, 3]);
  t.deepEqual(handledOf(events, { vcpu: 1 }).map((h) => h.index), [5]);
  t.deepEqual(handledOf(events, { rip: 0x10n }).map((h) => h.index), [2, 7]);
  t.deepEqual(handledOf(events, { rip: 0x10n, vcpu: 1 }), []);
  t.deepEqual(exitsOf(events, { rip: 0x99n }), []);
  t.deepEqual(exitsOf(events, { rip: 0x20n, access: 2 }).map((e) => e.event.exit.ticket), [2]);
  t.deepEqual(exitsOf(events, { rip: 0x20n, access: 1 }), []);
  t.true(happenedBefore(exitByTicket(events, 2)!, notesOf(events, 'patch')[1]));
  t.is(exitByTicket(events, 9), null);
  // A log grows (the answers follow), and a branch's restore cuts it back and grows it differently.
  events.push(note('patch'), stop(1, 4, 0x20n));
  t.deepEqual(notesOf(events, 'patch').map((n) => n.index), [3, 6, 8]);
  t.deepEqual([...pendingExitsAt(events, 10).keys()], [1]);
  events.length = 4;
  events.push(note('decode'), stop(1, 5, 0x30n));
  t.deepEqual(notesOf(events, 'patch').map((n) => n.index), [3]);
  t.deepEqual(notesOf(events, 'decode').map((n) => n.index), [4]);
  t.deepEqual(exitsOf(events).map((e) => e.event.exit.ticket), [1, 2, 5]);
  t.deepEqual(exitsOf(events, { rip: 0x10n }).map((e) => e.event.exit.ticket), [1], 'the exit at 0x10 cut off is gone from its RIP too');
  t.deepEqual(handledOf(events, { rip: 0x10n }).map((h) => h.index), [2]);
  t.deepEqual([...pendingExitsAt(events, 6).keys()], [1], 'vCPU 1 waits at its new exit; vCPU 0 has none');
  t.is(exitByTicket(events, 3), null);
  events.length = 4;
  events.push(stop(0, 6, 0x40n), note('decode'));
  t.deepEqual(notesOf(events, 'decode').map((n) => n.index), [5], 'cut back and regrown to the same length: built again');
  t.deepEqual(exitsOf(events).map((e) => e.event.exit.ticket), [1, 2, 6]);
});

test('event queries agree with a plain scan of the log, however it is grown and cut back', (t) => {
  // The queries index the log and keep the index as it grows or is cut back (a branch's restore);
  // a reference that scans the whole log every time must give the same answers.
  const prng = new Prng(11);
  const events: TimedEvent[] = [];
  const pendingByScan = (index: number): [number, number][] => {
    const pending = new Map<number, number>();
    for (let k = 0; k < index; k++) {
      const event = events[k].event;
      if (event.kind === 'stop' && event.exit !== null) pending.set(event.vcpu, k);
      else if (event.kind === 'handle') pending.delete(event.vcpu);
    }
    return [...pending].sort((a, b) => a[1] - b[1]);
  };
  let ticket = 0;
  for (let step = 0; step < 400; step++) {
    const roll = prng.below(10);
    if (roll === 0 && events.length > 0) events.length = prng.below(events.length);
    else {
      const vcpu = prng.below(3);
      const rip = BigInt(0x10 * (1 + prng.below(3)));
      const waiting = pendingByScan(events.length).some(([v]) => v === vcpu);
      events.push(
        roll < 4 ? { clock: step, event: { kind: 'note', what: roll < 2 ? 'patch' : 'decode', detail: {} } }
        : waiting ? { clock: step, event: { kind: 'handle', vcpu, reason: 'eptViolation', rip, action: 'allowed', inject: -1, ticket } }
        : { clock: step, event: { kind: 'stop', vcpu, stop: 'exit', reason: 'eptViolation', rip, retired: 1, exit: { ticket: ++ticket, gpa: 0n, gla: 0n, access: 2 } } },
      );
    }
    const at = prng.below(events.length + 1);
    t.deepEqual([...pendingExitsAt(events, at)].map(([vcpu, exit]) => [vcpu, exit.index]), pendingByScan(at), `step ${step}, at ${at}`);
    const patches = events.flatMap((e, k) => (e.event.kind === 'note' && e.event.what === 'patch' ? [k] : []));
    t.deepEqual(notesOf(events, 'patch').map((n) => n.index), patches);
    const at20 = events.flatMap((e, k) => (e.event.kind === 'handle' && e.event.rip === 0x20n ? [k] : []));
    t.deepEqual(handledOf(events, { rip: 0x20n }).map((h) => h.index), at20);
  }
});
