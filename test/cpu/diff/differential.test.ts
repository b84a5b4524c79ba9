/**
 * Goal: the emulated CPU computes what the host CPU computes, for every instruction form the
 * opcode table marks `native`. Method: 20,000 seeded random cases through the differential
 * harness (host at ring 3 via the native runner, emulator at ring 3), every register, the
 * defined flags, the scratch memory and the way the run stopped compared.
 */
import test from 'ava';
import iced from 'iced-x86';
import { OPCODES } from '../../../src/cpu/opcode-table.ts';
import { differentialForms } from './forms.ts';
import { runDifferential } from './harness.ts';

const SEED = 20261121;
const CASES = 20_000;

test('20,000 random cases match the host CPU exactly', (t) => {
  const result = runDifferential({ seed: SEED, cases: CASES, maxMismatches: 3 });
  t.log(`${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(2)} s, ${result.exceptions} raised exceptions`);
  t.is(result.cases, CASES);
  t.is(result.unobservable, 0, 'cases the host could not observe');
  t.deepEqual(
    result.mismatches.map((m) => m.report),
    [],
    `replay: npm run fuzz:cpu -- --cases ${CASES} --seed ${SEED}`,
  );
  // Every family of the table was exercised, and most forms were.
  const families = new Set([...OPCODES.values()].filter((e) => e.native === true).map((e) => e.family));
  for (const family of families) t.true((result.byFamily.get(family) ?? 0) > 100, `family ${family} got too few cases`);
  const forms = differentialForms();
  const covered = forms.filter((f) => (result.byCode.get(f.name) ?? 0) > 0).length;
  t.true(covered / forms.length > 0.95, `only ${covered}/${forms.length} forms covered`);
});

test('every native mnemonic of the opcode table has forms in the generator', (t) => {
  const generated = new Set(differentialForms().map((f) => f.mnemonic));
  const missing = [...OPCODES.entries()].filter(([m, e]) => e.native === true && !generated.has(m)).map(([m]) => iced.Mnemonic[m]);
  // Only these have no generated form, each covered by hand-written tests instead.
  t.deepEqual(missing.sort(), [], `native mnemonics without generated forms: ${missing.join(', ')}`);
});
