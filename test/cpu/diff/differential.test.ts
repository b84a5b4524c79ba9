/**
 * Goal: the emulated CPU computes what the host CPU computes, for every instruction form the
 * opcode table marks `native`, in 64-bit code and in 32-bit code. Method: 20,000 seeded random
 * 64-bit cases and 4,000 32-bit cases (compatibility mode on the host, 32-bit PAE protected mode
 * in the emulator; 1,000 more with the emulator in compatibility mode) through the differential harness (host at ring 3 via the native runner,
 * emulator at ring 3), every register (all 64 bits), the defined flags, the scratch memory and
 * the way the run stopped compared.
 */
import test from 'ava';
import iced from 'iced-x86';
import { OPCODES } from '../../../src/cpu/opcode-table.ts';
import { differentialForms } from './forms.ts';
import { runDifferential } from './harness.ts';

const SEED = 20261121;
const CASES = 20_000;
const SEED_32 = 20261206;
const CASES_32 = 4_000;

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

test('4,000 random 32-bit cases match the host CPU in compatibility mode exactly', (t) => {
  const result = runDifferential({ seed: SEED_32, cases: CASES_32, bits: 32, maxMismatches: 3 });
  t.log(`${result.cases} cases in ${(result.elapsedMs / 1000).toFixed(2)} s, ${result.exceptions} raised exceptions`);
  t.is(result.cases, CASES_32);
  t.is(result.unobservable, 0, 'cases the host could not observe');
  t.deepEqual(
    result.mismatches.map((m) => m.report),
    [],
    `replay: npm run fuzz:cpu -- --cases ${CASES_32} --seed ${SEED_32} --bits 32`,
  );
  // The forms that only 32-bit code has were among them.
  for (const name of ['Inc_r32', 'Dec_r16', 'Pushad', 'Popad', 'Pushfd', 'Popfd', 'Call_rel32_32', 'Retnd', 'Leaved']) {
    t.true((result.byCode.get(name) ?? 0) > 0, `no case of ${name}`);
  }
  const forms = differentialForms(32);
  const covered = forms.filter((f) => (result.byCode.get(f.name) ?? 0) > 0).length;
  t.true(covered / forms.length > 0.9, `only ${covered}/${forms.length} 32-bit forms covered`);
});

test('1,000 random 32-bit cases match the host with the emulator in compatibility mode too', (t) => {
  const result = runDifferential({ seed: SEED_32 + 1, cases: 1_000, bits: 32, mode32: 'compat', maxMismatches: 3 });
  t.is(result.cases, 1_000);
  t.deepEqual(
    result.mismatches.map((m) => m.report),
    [],
    `replay: npm run fuzz:cpu -- --cases 1000 --seed ${SEED_32 + 1} --bits 32 --emulator-mode compat`,
  );
});

test('every native mnemonic of the opcode table has forms in the generator', (t) => {
  // PUSHAD/POPAD and PUSHFD/POPFD exist in 32-bit code only.
  const generated = new Set([...differentialForms(64), ...differentialForms(32)].map((f) => f.mnemonic));
  const missing = [...OPCODES.entries()].filter(([m, e]) => e.native === true && !generated.has(m)).map(([m]) => iced.Mnemonic[m]);
  // Only these have no generated form, each covered by hand-written tests instead.
  t.deepEqual(missing.sort(), [], `native mnemonics without generated forms: ${missing.join(', ')}`);
});
