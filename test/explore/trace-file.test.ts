/**
 * Goal: a trace file is read back only as written — every field is checked and each mistake gets
 * one error naming the file, the field and what to do (issue: a bogus mode, unknown fixes and an
 * edited seed used to be accepted). Method: a real failing run's trace, edited field by field.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { failed, ScenarioRig, traceJsonOf } from '../../src/explore/scenario-rig.ts';
import { parseTraceJson, type TraceJson } from '../../src/explore/trace-json.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { readTraceFile, traceFileText } from '../../src/report/trace-file.ts';

let recorded: TraceJson;

test.before(async () => {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  try {
    for (let seed = 1; ; seed++) {
      const report = rig.run({ seed, strategy: 'random', depth: 2, fixes: fixesWithout(memtableStaleIcache.bugs[0].fixesOff) });
      if (failed(report)) {
        recorded = traceJsonOf(report);
        break;
      }
    }
  } finally {
    await rig.close();
  }
});

const edit = (change: (t: Record<string, unknown>) => void): string => {
  const copy = JSON.parse(JSON.stringify(recorded)) as Record<string, unknown>;
  change(copy);
  return JSON.stringify(copy);
};

test('a trace as written reads back unchanged', (t) => {
  t.deepEqual(parseTraceJson(JSON.stringify(recorded), 'x.json'), recorded);
});

const cases: [string, (t: Record<string, unknown>) => void, RegExp][] = [
  ['a bogus mode', (t) => { t.mode = 'turbo'; }, /x\.json: "mode" must be "inline" or "workers".*got "turbo"/],
  ['free-running mode', (t) => { t.mode = 'free'; }, /"mode" must be "inline" or "workers" \(free-running runs have no schedule\)/],
  ['an edited seed', (t) => { t.seed = String(Number(t.seed) + 1); }, /the header .* does not match its check value: it was edited/],
  ['a seed that is no number', (t) => { t.seed = 'abc'; }, /"seed" must be a decimal string below 2\^64, got "abc"/],
  ['a seed of 2^64', (t) => { t.seed = '18446744073709551616'; }, /"seed" must be a decimal string below 2\^64/],
  ['an edited fix list', (t) => { t.fixesOff = ['patchedGuard']; }, /does not match its check value/],
  ['a fix named twice', (t) => { t.fixesOff = ['patchedGuard', 'patchedGuard']; }, /"fixesOff" names patchedGuard twice/],
  ['a fix list that is not names', (t) => { t.fixesOff = [3]; }, /"fixesOff" must be a list of fix names, got \[3\]/],
  ['an unknown strategy', (t) => { t.strategy = 'dfs'; }, /"strategy" must be rr, random, pct\(d=N\), pos, surw, or a made-up schedule \(shrunk, exhaustive, covering, guided, branched, followed\), got "dfs"/],
  ['an edited entry', (t) => { (t.entries as { text: string }[])[3].text += ' '; }, /the entries do not hash to "hash" \w+: the file was edited or damaged/],
  ['a removed choice', (t) => { (t.choices as unknown[]).pop(); }, /choices and entries disagree|choices but \d+ choice entries/],
  ['a bad choice', (t) => { (t.choices as unknown[])[0] = { kind: 'run', vcpu: -1, steps: 5 }; }, /choice #0 is not a valid choice/],
  ['an entry without a clock', (t) => { (t.entries as unknown[])[0] = { text: 'x' }; }, /entry #0 must be \{ clock: integer ≥ 0, text: string \}/],
  ['no check value', (t) => { delete t.check; }, /"check" must be 16 hex digits, got undefined/],
  ['an old version', (t) => { t.version = 1; }, /trace version 1, this vcpusim reads version 2; re-run the seed/],
  ['another format', (t) => { t.format = 'chrome-trace'; }, /not a vcpusim trace \(format is "chrome-trace"/],
  ['a bad scenario name', (t) => { t.scenario = '../etc'; }, /"scenario" must be a scenario name/],
];

for (const [what, change, message] of cases) {
  test(`refused: ${what}`, (t) => {
    t.throws(() => parseTraceJson(edit(change), 'x.json'), { message });
  });
}

test('not JSON, a directory, a missing file: each says the path', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcpusim-trace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const garbage = join(dir, 'garbage.json');
  writeFileSync(garbage, '{ nope');
  t.throws(() => readTraceFile(garbage), { message: new RegExp(`^${garbage}: not JSON`) });
  t.throws(() => readTraceFile(dir), { message: `${dir} is a directory: give the trace file itself (a .json file a failing run wrote)` });
  t.throws(() => readTraceFile(join(dir, 'missing.json')), { message: `no trace file at ${join(dir, 'missing.json')}` });
});

test('a trace file lays out one choice and one entry per line (a recording kept in a repository diffs where the run changed) and reads back as it was', (t) => {
  const text = traceFileText(recorded);
  t.deepEqual(parseTraceJson(text), recorded);
  const lines = text.split('\n');
  const headerFields = Object.keys(recorded).length - 2;
  t.is(lines.length, 1 + headerFields + 1 + recorded.choices.length + 2 + recorded.entries.length + 3, 'the braces, the header fields, each choice and entry, and the lists\' ends');
  t.true(lines.includes(`    ${JSON.stringify(recorded.entries[5])},`));
  t.true(lines.includes(`    ${JSON.stringify(recorded.choices[0])},`));
  const empty = traceFileText({ ...recorded, choices: [], entries: [] });
  t.regex(empty, /"choices": \[\],\n {2}"entries": \[\]\n\}\n$/);
});
