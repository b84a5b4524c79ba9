/**
 * Goal: a scenario can declare HVMI's own documented behaviour as a known limitation — a bug found
 * with every fix on — and the campaign then expects it on the all-fixes-on row instead of expecting
 * nothing to break there; a bug that switches no fix off must say it is one, and a known
 * limitation switches none off.
 * Method: pae-false-duplicate (a known limitation) and pae-half-written (an ordinary bug) through
 * the definition check and the campaign's choice of rows.
 */
import test from 'ava';
import { paeFalseDuplicate } from '../../scenarios/pae-false-duplicate.ts';
import { paeHalfWritten } from '../../scenarios/pae-half-written.ts';
import { rowsToRun, type CampaignRow } from '../../src/explore/campaign.ts';
import { validateScenario, type ScenarioDefinition, type ScenarioGuest } from '../../src/explore/scenario.ts';

const SCENARIOS: readonly ScenarioDefinition<ScenarioGuest>[] = [paeFalseDuplicate, paeHalfWritten];

/** The rows the campaign command builds for a scenario: all fixes on, then one per bug. */
function rowsOf(definition: ScenarioDefinition<ScenarioGuest>): CampaignRow[] {
  const windowGoals = definition.windows.map((w) => w.name);
  return [
    { scenario: definition.name, bug: null, caughtBy: null, fixesOff: [], windowGoals },
    ...definition.bugs.map((bug) => ({ scenario: definition.name, bug: bug.name, caughtBy: bug.caughtBy, fixesOff: bug.fixesOff, windowGoals })),
  ];
}

const byName = (name: string): ScenarioDefinition<ScenarioGuest> => {
  const found = SCENARIOS.find((s) => s.name === name);
  if (found === undefined) throw new Error(`no scenario ${name}`);
  return found;
};

test('the campaign runs a known limitation as the all-fixes-on row of its scenario, and keeps both rows of an ordinary bug', (t) => {
  const rows = rowsToRun([...rowsOf(paeFalseDuplicate), ...rowsOf(paeHalfWritten)], byName);
  t.deepEqual(rows.map((row) => [row.scenario, row.bug, row.fixesOff, row.caughtBy]), [
    ['pae-false-duplicate', paeFalseDuplicate.bugs[0].name, [], 'pae-view-matches-memory'],
    ['pae-half-written', null, [], null],
    ['pae-half-written', paeHalfWritten.bugs[0].name, ['partialWriteAssembly'], 'pae-changes-whole'],
  ]);
});

test('a bug with no fix off must be a known limitation, and a known limitation switches no fix off', (t) => {
  t.notThrows(() => validateScenario(paeFalseDuplicate));
  const [limitation] = paeFalseDuplicate.bugs;
  t.throws(() => validateScenario({ ...paeFalseDuplicate, bugs: [{ ...limitation, knownLimitation: false }] }), { message: /switches no fix off \(one HVMI has with every fix on is a knownLimitation\)/ });
  t.throws(() => validateScenario({ ...paeFalseDuplicate, bugs: [{ ...limitation, fixesOff: ['duplicateWriteDrop'] }] }), { message: /is a known limitation, found with every fix on: it switches no fix off/ });
});
