/**
 * Goal: a failing run of every catalogue scenario becomes a Perfetto / Chrome trace that follows
 * the Trace Event Format (chrome-trace-format.ts lists the rules checked) and shows what the issue
 * asks for: a lane per vCPU with guest slices, exits, waits for the handler lock and pauses; the
 * handler's lane; a lane per actor; the violations and window goals as instants; arrows from each
 * exit to its handler and from patches to the exits that met them; the step clock as time axis.
 * Method: the first failing seed of each scenario (its first bug's fixes off), recorded; the JSON
 * written, parsed back and checked.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { unloadInDetour } from '../../scenarios/unload-in-detour.ts';
import { unwindCacheTorn } from '../../scenarios/unwind-cache-torn.ts';
import { perfettoTrace, type ChromeTrace, type TraceEvent } from '../../src/report/perfetto.ts';
import { chromeTraceProblems } from './chrome-trace-format.ts';
import { firstFailingRun, SCENARIOS, SEED_BUDGET, type FailingRun } from './failing-runs.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../../src/index.ts';

const runs = new Map<string, Promise<FailingRun | null>>();
const failingRun = (definition: ScenarioDefinition<ScenarioGuest>): Promise<FailingRun | null> => {
  if (!runs.has(definition.name)) runs.set(definition.name, firstFailingRun(definition));
  return runs.get(definition.name)!;
};

const threadNamed = (trace: ChromeTrace, name: string): number | undefined =>
  trace.traceEvents.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === name)?.tid;
const on = (trace: ChromeTrace, tid: number | undefined, ph: TraceEvent['ph'], cat?: string): TraceEvent[] =>
  trace.traceEvents.filter((e) => e.tid === tid && e.ph === ph && (cat === undefined || e.cat === cat));

for (const definition of SCENARIOS) {
  test(`${definition.name}: the Perfetto trace of a failing run follows the format and shows the run`, async (t) => {
    const run = await failingRun(definition);
    if (run === null) return t.fail(`${definition.name}: no seed up to ${SEED_BUDGET} failed with ${definition.bugs[0].fixesOff.join(', ')} off`);
    const { report, recording } = run;
    t.is(report.hash, run.unrecordedHash, 'recording the run changed nothing');
    const started = performance.now();
    const text = JSON.stringify(perfettoTrace(report, recording));
    const ms = performance.now() - started;
    const trace = JSON.parse(text) as ChromeTrace;
    t.deepEqual(JSON.parse(JSON.stringify(trace)), trace, 'the JSON round-trips');
    t.deepEqual(chromeTraceProblems(JSON.parse(text)), []);
    t.log(`seed ${report.seed} ${report.strategy}: ${report.violations[0].oracle}; ${trace.traceEvents.length} events, ${(text.length / 1024).toFixed(0)} KiB in ${ms.toFixed(0)} ms`);

    t.regex(String(trace.metadata.clock), /deterministic step clock/);
    t.is(trace.metadata.seed, report.seed);
    t.is(trace.metadata.traceHash, report.hash);
    for (let vcpu = 0; vcpu < definition.vcpus; vcpu++) {
      const tid = threadNamed(trace, `vCPU ${vcpu}`);
      t.not(tid, undefined, `vCPU ${vcpu} has a lane`);
      t.true(on(trace, tid, 'X', 'guest').length > 0, `vCPU ${vcpu} ran guest slices`);
    }
    const handler = threadNamed(trace, 'hypervisor handler');
    t.true(on(trace, handler, 'X', 'handler').length > 0, 'the handler lane shows who held the lock');
    for (const actor of ['dispatch', 'pause', 'vcpu0', 'uninit']) t.true(on(trace, threadNamed(trace, `actor ${actor}`), 'X', 'actor').length > 0, `actor ${actor} has states`);

    const exits = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'exit');
    const handled = trace.traceEvents.filter((e) => e.ph === 'X' && e.cat === 'handled');
    t.true(exits.length > 0 && handled.length > 0, 'exits and their handling');
    t.true(trace.traceEvents.some((e) => e.ph === 'X' && e.cat === 'wait'), 'waits for the handler lock');
    // An exit delivered twice (a hypervisor fault) reaches the handler twice: one arrow per delivery.
    const duplicated = trace.traceEvents.filter((e) => e.ph === 'i' && e.name === 'hypervisor-fault' && e.args?.fault === 'duplicate-exit').length;
    t.is(trace.traceEvents.filter((e) => e.ph === 's' && e.cat === 'exit-to-handler').length, handled.length + duplicated, 'an arrow from every handled exit to its handler (each delivery)');
    const violations = trace.traceEvents.filter((e) => e.ph === 'i' && e.cat === 'violation');
    t.deepEqual(violations.map((e) => e.name), report.violations.map((v) => `violation: ${v.oracle}`));
    t.true(violations.every((e) => e.s === 'g'));
    t.is(trace.traceEvents.filter((e) => e.ph === 'i' && e.cat === 'window').length, report.windows.length);
  });
}

test('memtable-stale-icache: the second relocation has an arrow from the patch to the exit it re-handled', async (t) => {
  const run = await failingRun(memtableStaleIcache);
  if (run === null) return t.fail('no failing seed');
  const trace = perfettoTrace(run.report, run.recording);
  const patches = trace.traceEvents.filter((e) => e.ph === 's' && e.cat === 'patch-to-exit' && e.name.startsWith('mtbl-patch'));
  t.true(patches.length > 0, 'a mem-table patch met by a later exit');
  t.true(trace.traceEvents.some((e) => e.ph === 'i' && e.name === 'mtbl-patch'), 'the patch is noted on the handler lane');
  // The violation is found after the handler that relocated a second time.
  const relocations = trace.traceEvents.filter((e) => e.ph === 'i' && e.name === 'mtbl-patch');
  const violation = trace.traceEvents.find((e) => e.cat === 'violation')!;
  t.true(relocations.some((e) => e.ts <= violation.ts));
});

test('unload-in-detour: the unload\'s pauses show on every vCPU and its machine\'s states on its lane', async (t) => {
  const run = await failingRun(unloadInDetour);
  if (run === null) return t.fail('no failing seed');
  const trace = perfettoTrace(run.report, run.recording);
  for (let vcpu = 0; vcpu < unloadInDetour.vcpus; vcpu++) t.true(on(trace, threadNamed(trace, `vCPU ${vcpu}`), 'X', 'paused').length > 0, `vCPU ${vcpu} paused`);
  const states = on(trace, threadNamed(trace, 'actor uninit'), 'X', 'actor').map((e) => e.name);
  t.true(states.includes('active'), states.join(', '));
  t.true(states.includes('unloaded'), states.join(', '));
  t.true(trace.traceEvents.some((e) => e.ph === 'i' && e.name === 'uninit'), 'the uninit note');
});

test('unwind-cache-torn: each cache entry update points at the exit that next read its byte', async (t) => {
  const run = await failingRun(unwindCacheTorn);
  if (run === null) return t.fail('no failing seed');
  const trace = perfettoTrace(run.report, run.recording);
  const updates = trace.traceEvents.filter((e) => e.ph === 'i' && e.name === 'rtlpvu-update');
  t.true(updates.length > 0);
  const arrows = trace.traceEvents.filter((e) => e.ph === 's' && e.name.startsWith('rtlpvu-update'));
  t.true(arrows.length > 0 && arrows.length <= updates.length);
  const preemptions = trace.traceEvents.filter((e) => e.ph === 'i' && e.cat === 'preemption');
  t.log(`${updates.length} updates, ${arrows.length} arrows, ${preemptions.length} preemption points`);
  t.true(preemptions.length > 0, 'the handler was preempted (the writes of an entry are preemption points)');
});
