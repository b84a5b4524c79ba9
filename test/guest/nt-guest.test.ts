/**
 * Goal: the NT-like guest is a correct program on its own — without the engine its threads
 * compute exactly the expected results, and a vCPU out of threads rests on its own idle stack —
 * and its image has the shape the engine relies on (PE headers, sections, slack, switch tables in
 * the hooked page). With the engine attached, the
 * mem-table loads are relocated once each and results stay exact. Method: deterministic runs on
 * inline hosts; state read from guest memory.
 */
import test from 'ava';
import { Introspection } from '../../actors/introspection.ts';
import { Session } from '../../actors/session.ts';
import type { ExitHandler } from '../../actors/hypervisor.ts';
import { runDeterministic } from '../../src/explore/deterministic.ts';
import { Prng } from '../../src/explore/prng.ts';
import { createScheduler } from '../../src/explore/schedulers/index.ts';
import { Trace } from '../../src/explore/trace.ts';
import { HOOKED_APIS } from '../../src/guest/kernel.ts';
import { CLOCK_VECTOR, KERNEL_BASE, PerCpu } from '../../src/guest/layout.ts';
import { NtGuest } from '../../src/guest/nt-guest.ts';
import { SWITCHES } from '../../src/guest/switch-functions.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';
import { parseImage } from '../../src/intro/pe.ts';
import { isSlackEligible } from '../../src/intro/slack.ts';
import { ExitReason } from '../../src/machine/layout.ts';

function checkResults(t: { is: (a: unknown, b: unknown, m?: string) => void; deepEqual: (a: unknown, b: unknown, m?: string) => void }, guest: NtGuest): void {
  for (let vcpu = 0; vcpu < guest.vcpus; vcpu++) {
    const got = guest.report(vcpu);
    const want = guest.expected(vcpu);
    t.is(got.completed, want.completed, `vCPU ${vcpu} completed`);
    t.deepEqual(got.results, want.results, `vCPU ${vcpu} results`);
    t.is(got.apiCalls, want.apiCalls);
    t.is(got.serviceSum, want.serviceSum);
  }
}

test('without the engine, every thread computes the expected results (and takes its clock interrupts)', (t) => {
  const guest = new NtGuest({ vcpus: 3, iterations: 64 });
  const handler: ExitHandler = (context) => {
    if (context.exit.reason === ExitReason.int3) throw new Error('no detours without the engine');
    return guest.guestCall(context.vcpuId, context.self) === 'stop' ? { action: 'shutdown' } : { action: 'allowedVirtual' };
  };
  const session = Session.open({ machine: guest.machine, hosts: 'inline', handler });
  t.teardown(() => session.close());
  const trace = new Trace();
  const interrupts = [0, 1, 2].map((vcpu) => ({ vcpu, vector: CLOCK_VECTOR, everySteps: 500 }));
  const result = runDeterministic({ session, scheduler: createScheduler('random', new Prng(3), { vcpus: 3, slice: 100 }), trace, stepsMax: 1_000_000, interrupts });
  t.is(result.outcome, 'done');
  checkResults(t, guest);
  t.deepEqual([...guest.finished].sort(), [0, 1, 2]);
  t.true([0, 1, 2].every((vcpu) => guest.report(vcpu).clockTicks > 0), 'the clock ISR ran and IRETQ returned to the thread');
  t.is(guest.bugChecks.length, 0);
});

test('scheduler mode: more threads than vCPUs all finish exactly; a vCPU left without threads ends on its own idle stack, not the stack of the thread it ran last', (t) => {
  const guest = new NtGuest({ vcpus: 3, iterations: 40, threads: 6 });
  const idleStacks = [0, 1, 2].map((vcpu) => guest.machine.memory.read64(guest.gpaOf(guest.perCpu(vcpu) + BigInt(PerCpu.idleStack))));
  const handler: ExitHandler = (context) => (guest.guestCall(context.vcpuId, context.self) === 'stop' ? { action: 'shutdown' } : { action: 'allowedVirtual' });
  const session = Session.open({ machine: guest.machine, hosts: 'inline', handler });
  t.teardown(() => session.close());
  const interrupts = [0, 1, 2].map((vcpu) => ({ vcpu, vector: CLOCK_VECTOR, everySteps: 900 }));
  const result = runDeterministic({ session, scheduler: createScheduler('random', new Prng(5), { vcpus: 3, slice: 150 }), trace: new Trace(), stepsMax: 1_000_000, interrupts });
  t.is(result.outcome, 'done');
  t.deepEqual([...guest.finishedThreads].sort(), [0, 1, 2, 3, 4, 5]);
  for (let thread = 0; thread < 6; thread++) t.deepEqual(guest.threadReport(thread).results, guest.expected(thread).results, `thread ${thread}`);
  // The engine's stack scan reads 16 pages up from RSP on a vCPU with no current thread: from a
  // terminated thread's stack that reached other threads' dead frames (a false "unsafe" at unload).
  t.deepEqual([0, 1, 2].map((vcpu) => guest.machine.vcpu(vcpu).gpr('rsp')), idleStacks);
});

test('the image: PE sections, slack only in .text, the switch tables and the SSDT in the hooked page', (t) => {
  const guest = new NtGuest({ vcpus: 1, iterations: 1 });
  const image = parseImage(guest.machine.memory, guest.tables.root, KERNEL_BASE);
  t.is(image.sizeOfImage, guest.kernel.sizeOfImage);
  t.is(guest.kernel.sizeOfImage, 0xa000, 'headers, three .text pages, INITKDBG, PAGE, .rdata, three .data pages (per-vCPU blocks, thread records)');
  t.deepEqual(image.sections.map((s) => s.name), ['.text', 'INITKDBG', 'PAGE', '.rdata', '.data']);
  t.deepEqual(image.sections.filter(isSlackEligible).map((s) => s.name), ['.text']);
  const hookedPage = guest.symbol('KiHookedPage');
  t.is(hookedPage, KERNEL_BASE + 0x2000n, 'the second page of .text');
  const inHookedPage = (gva: bigint): boolean => gva >= hookedPage && gva < hookedPage + 0x1000n;
  for (const load of guest.kernel.switchLoads) {
    t.true(inHookedPage(load.rip) && inHookedPage(load.table), `${load.name}: load and table share the hooked page`);
  }
  t.deepEqual(guest.kernel.switchLoads.map((l) => l.cases), SWITCHES.map((s) => s.cases));
  t.true(inHookedPage(guest.kernel.ssdt));
  for (const api of HOOKED_APIS) t.true(inHookedPage(guest.kernel.symbols.get(api)!));
});

test('with the engine: each table load is relocated once at its 50th hit, the SSDT load never, results stay exact', (t) => {
  const guest = new NtGuest({ vcpus: 3, iterations: 96 });
  let intro: Introspection | null = null;
  const session = Session.open({
    machine: guest.machine,
    hosts: 'inline',
    handler: (context) => intro!.handler(context),
    afterHandler: (hypervisor) => intro!.afterHandler(hypervisor),
  });
  t.teardown(() => session.close());
  intro = new Introspection(session, { guest: guest.description, fixes: DEFAULT_FIXES, guestCall: (event) => guest.guestCall(event.vcpuId, event.self) });
  const engine = intro.start();
  t.teardown(() => intro!.stop());
  const result = runDeterministic({ session, scheduler: createScheduler('rr', new Prng(1), { vcpus: 3, slice: 200 }), trace: new Trace(), stepsMax: 1_000_000 });
  t.is(result.outcome, 'done');
  checkResults(t, guest);
  const entries = engine.memtables.entries();
  t.deepEqual(entries.map((e) => e.rip).sort(), guest.kernel.switchLoads.map((l) => l.rip).sort());
  t.true(entries.every((e) => e.relocations === 1 && e.hits === 50));
  t.false(engine.memtables.insRelocated(guest.kernel.symbols.get('KiSystemService.load')!), 'the SSDT load is never a mem-table');
  t.is(engine.detours.detours().reduce((sum, d) => sum + d.hits, 0), [0, 1, 2].reduce((sum, v) => sum + guest.report(v).apiCalls, 0));
  t.is(intro.unload().state, 'unloaded');
  t.is(engine.hooks.liveHooks().length, 0, 'uninit removed every hook');
  t.is(engine.cloak.liveRegions().length, 0);
});
