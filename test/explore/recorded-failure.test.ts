/**
 * Goal: a recorded failure kept as a regression test is judged on its own interleaving — without
 * the fixes it was recorded with off it must still break the invariant the file names (exactly,
 * or after the scenario drifted), with them on nothing may break — and each way it can go wrong
 * is told apart: a regression, a trace that no longer fails ("gone"), a recording that cannot be
 * checked. Method: memtable-stale-icache's double relocation found by PCT with its two fixes off
 * (and with a third, unrelated to it, off too); the drift is real — the same scenario with its
 * guests' clock interrupts every 1,550 steps instead of 1,500.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { pushTwoAddresses } from '../../scenarios/push-two-addresses.ts';
import { checkRecordedFailure, keptFixed, recordedAgain, UncheckableRecordingError } from '../../src/explore/recorded-failure.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { firstMemtableFailure } from '../support/memtable-failures.ts';
import { parseTraceJson, traceToJson } from '../../src/explore/trace-json.ts';
import { formatRecordedFailureCheck } from '../../src/report/recorded-failure-text.ts';

const DOUBLE_RELOCATION = memtableStaleIcache.bugs[0].fixesOff;

test('a failure recorded with its fixes off breaks the same invariant again, exactly, and nothing breaks with every fix on', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const report = firstMemtableFailure(rig, DOUBLE_RELOCATION);
  const recorded = traceJsonOf(report);
  t.is(recorded.broke, report.violations[0].oracle, 'the trace file names the invariant its run broke');
  const check = checkRecordedFailure(rig, recorded);
  t.is(check.reproduction, 'exact');
  t.is(check.oracle, report.violations[0].oracle);
  t.is(check.recorded.hash, recorded.hash);
  t.is(check.divergence, null);
  t.true(check.holds, check.fixed.violations.map((v) => v.oracle).join(', '));
  t.not(check.partAt, null, 'the fixes change the run somewhere');
  t.is(check.withFix, 'all');
  t.true(keptFixed(check));
  t.true(keptFixed(check, 'refused'));
  t.regex(formatRecordedFailureCheck(check, 'x.json'), /^x\.json: memtable-stale-icache seed \d+, icacheFlushOnPatch, patchedGuard off, \d+ recorded choices\n {2}without the fixes: relocated-at-most-once breaks again, entry for entry/);
});

test('a recording that drifted (the scenario changed since) still counts when its choices still break the invariant; refused on request', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const recorded = traceJsonOf(firstMemtableFailure(rig, DOUBLE_RELOCATION));
  const changed = { ...memtableStaleIcache, bounds: { ...memtableStaleIcache.bounds, clockEverySteps: 1550 } };
  const drifted = ScenarioRig.open(changed, 'inline');
  t.teardown(() => drifted.close());
  const check = checkRecordedFailure(drifted, recorded);
  t.is(check.reproduction, 'drifted');
  t.regex(check.divergence ?? '', /is not possible now|diverged at entry/);
  t.true(check.recorded.violations.some((v) => v.oracle === recorded.broke));
  t.true(check.holds);
  t.true(keptFixed(check, 'allowed'));
  t.false(keptFixed(check, 'refused'));
  t.regex(formatRecordedFailureCheck(check, 'x.json'), /without the fixes: drifted — .+\n(.|\n)*following its choices, relocated-at-most-once still breaks/);
});

test('a trace whose run no longer breaks its invariant is "gone": it keeps nothing fixed', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const fixes = rig.fixes.without(DOUBLE_RELOCATION);
  let passing = null;
  for (let seed = 1; passing === null && seed <= 40; seed++) {
    const report = rig.run({ seed, strategy: 'pct', depth: 2, fixes });
    if (!failed(report)) passing = report;
  }
  if (passing === null) return t.fail('every seed failed');
  // What a file that named its invariant looks like once the code no longer breaks it on this schedule.
  const recorded = traceToJson(passing.trace, { scenario: passing.scenario, seed: passing.seed, strategy: passing.strategy, mode: 'inline', fixesOff: passing.fixesOff, broke: 'relocated-at-most-once' });
  const check = checkRecordedFailure(rig, parseTraceJson(JSON.stringify(recorded)));
  t.is(check.reproduction, 'gone');
  t.true(check.holds);
  t.false(keptFixed(check));
  t.regex(formatRecordedFailureCheck(check, 'x.json'), /GONE — relocated-at-most-once no longer breaks \(nothing breaks\); this trace keeps nothing fixed now: record the failure again/);
});

test('a fix that alone does not remove the failure on the recorded interleaving is a regression, with the fixed run\'s violation', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const recorded = traceJsonOf(firstMemtableFailure(rig, [...DOUBLE_RELOCATION, 'pauseWhilePatching']));
  const check = checkRecordedFailure(rig, recorded, ['pauseWhilePatching']);
  t.is(check.reproduction, 'exact');
  t.false(check.holds);
  t.deepEqual(check.withFix, ['pauseWhilePatching']);
  t.is(check.fixed.violations[0].oracle, 'relocated-at-most-once');
  t.false(keptFixed(check));
  t.regex(formatRecordedFailureCheck(check, 'x.json'), /with pauseWhilePatching on: REGRESSION — relocated-at-most-once breaks \(followed \d+ of \d+ choices/);
  // The two fixes of the race itself, on: it holds.
  t.true(checkRecordedFailure(rig, recorded, DOUBLE_RELOCATION).holds);
});

test('recordings that cannot be checked say why: every fix on, a fix the scenario does not have, a fix that was on already', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const report = firstMemtableFailure(rig, DOUBLE_RELOCATION);
  const recorded = traceJsonOf(report);
  const allOn = traceJsonOf(rig.run({ seed: 1, strategy: 'pct', depth: 2, fixes: rig.fixes.defaults() }));
  t.throws(() => checkRecordedFailure(rig, allOn), { instanceOf: UncheckableRecordingError, message: /recorded with every fix on: there is no fix to switch on/ });
  t.throws(() => checkRecordedFailure(rig, recorded, []), { instanceOf: UncheckableRecordingError, message: /no fix named to switch on/ });
  t.throws(() => checkRecordedFailure(rig, recorded, ['noSuchFix']), { instanceOf: UncheckableRecordingError, message: /has no fix "noSuchFix" \(its fixes: / });
  t.throws(() => checkRecordedFailure(rig, recorded, ['pauseWhilePatching']), { instanceOf: UncheckableRecordingError, message: /pauseWhilePatching was on in the recording already/ });
  const other = ScenarioRig.open(pushTwoAddresses, 'inline');
  t.teardown(() => other.close());
  t.throws(() => checkRecordedFailure(other, recorded), { instanceOf: UncheckableRecordingError, message: /the trace is of scenario "memtable-stale-icache", not push-two-addresses/ });
});

test('the trace header names the broken invariant under its check value; a file written before it existed still reads', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const report = firstMemtableFailure(rig, DOUBLE_RELOCATION);
  const withBroke = traceJsonOf(report);
  t.is(parseTraceJson(JSON.stringify(withBroke)).broke, 'relocated-at-most-once');
  t.throws(() => parseTraceJson(JSON.stringify({ ...withBroke, broke: 'guest-alive' })), { message: /does not match its check value/ });
  t.throws(() => parseTraceJson(JSON.stringify({ ...withBroke, broke: 'two\nlines' })), { message: /"broke" must be the name of the invariant/ });
  // A scenario's oracle may be named in words of its own: any one line reads back.
  const spaced = traceToJson(report.trace, { scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: 'inline', fixesOff: report.fixesOff, broke: 'table stays intact (v2)' });
  t.is(parseTraceJson(JSON.stringify(spaced)).broke, 'table stays intact (v2)');
  const older = traceToJson(report.trace, { scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: 'inline', fixesOff: report.fixesOff });
  t.is(parseTraceJson(JSON.stringify(older)).broke, undefined);
  // An older file: the invariant is the one its exact replay breaks.
  t.is(checkRecordedFailure(rig, older).oracle, 'relocated-at-most-once');
});

test('written again: a drifted recording as it runs now (same seed, fixes off and invariant; the next check is exact), an older file with its invariant named; nothing for an exact, named or gone one', (t) => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  t.teardown(() => rig.close());
  const report = firstMemtableFailure(rig, DOUBLE_RELOCATION);
  const recorded = traceJsonOf(report);
  t.is(recordedAgain(checkRecordedFailure(rig, recorded), recorded), null, 'exact and named: nothing to write');
  const changed = { ...memtableStaleIcache, bounds: { ...memtableStaleIcache.bounds, clockEverySteps: 1550 } };
  const drifted = ScenarioRig.open(changed, 'inline');
  t.teardown(() => drifted.close());
  const again = recordedAgain(checkRecordedFailure(drifted, recorded), recorded);
  if (again === null) return t.fail('a drifted recording is written again');
  t.like(again, { scenario: recorded.scenario, seed: recorded.seed, fixesOff: recorded.fixesOff, broke: recorded.broke, strategy: 'followed' });
  t.not(again.hash, recorded.hash);
  const recheck = checkRecordedFailure(drifted, parseTraceJson(JSON.stringify(again)));
  t.is(recheck.reproduction, 'exact');
  t.true(recheck.holds);
  const older = traceToJson(report.trace, { scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: 'inline', fixesOff: report.fixesOff });
  const named = recordedAgain(checkRecordedFailure(rig, older), older);
  t.like(named, { hash: recorded.hash, broke: 'relocated-at-most-once', strategy: report.strategy });
});
