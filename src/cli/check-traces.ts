import { statSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { errorLine } from '../explore/error-line.ts';
import { checkRecordedFailure, keptFixed, outcomeOf, recordedAgain, type RecordedFailureCheck } from '../explore/recorded-failure.ts';
import { findScenario, loadScenarioModules } from '../explore/registry.ts';
import { ScenarioRig } from '../explore/scenario-rig.ts';
import type { ScenarioGuest } from '../explore/scenario.ts';
import { junitDocument, type JunitCase } from '../report/junit.ts';
import { formatRecordedFailureCheck } from '../report/recorded-failure-text.ts';
import { commandsOf, formatFailure } from '../report/text.ts';
import { readTraceFile, traceFileText, traceFilesIn, writeRunTrace } from '../report/trace-file.ts';
import { ensureWritableDir, parseCommandLine, UsageError } from './common.ts';

export const CHECK_TRACES_USAGE = `usage: npx vcpusim check-traces <dir|trace.json>… [options]
  every recorded failure kept fixed: each trace (a directory: its *.json) replayed without the fixes
  it was recorded with off — it must still break the invariant it broke (exactly, or after the code
  drifted) — and its choices followed again with every fix on, where nothing may break
  --with-fix NAME     switch on only these fixes for the fixed run (repeatable; default every fix)
  --drift refused     a recording that no longer replays entry for entry fails too (default: allowed)
  --update            write a drifted recording (and one that does not name its invariant) over its
                      file as it runs now — same seed, fixes and invariant — so it replays exactly again
  --mode inline|workers
  --trace-dir DIR     where a fixed run that breaks writes its trace (default traces)
  --load MODULE       a module of your own scenarios (repeatable)
  --json              one JSON object per trace, then a summary object
  --junit FILE        also write the result as JUnit XML (one test case per trace), for CI
  exit status 0 when every trace stays fixed, 1 when one does not (or cannot be read), 2 on usage errors`;

/** One trace's outcome: its check, or why it could not be checked. */
type Outcome = { readonly file: string; readonly seconds: number } & (
  | { readonly check: RecordedFailureCheck; readonly kept: boolean; readonly fixedTrace: string | null; readonly updated: boolean }
  | { readonly error: string }
);

interface CheckOptions {
  readonly withFix: readonly string[] | undefined;
  readonly drift: 'allowed' | 'refused';
  readonly update: boolean;
  readonly mode: 'inline' | 'workers';
  readonly traceDir: string;
}

/** `vcpusim check-traces`: a regression corpus of recorded failures, checked without AVA (a CI step, a script). */
export async function checkTracesCommand(argv: readonly string[], context: { readonly builtIn: readonly string[] }): Promise<number> {
  let options: CheckOptions & { readonly files: readonly string[]; readonly json: boolean; readonly junit: string | undefined };
  try {
    const { values, positionals } = parseCommandLine(argv, {
      'with-fix': { type: 'string', multiple: true }, drift: { type: 'string' }, mode: { type: 'string' }, 'trace-dir': { type: 'string' },
      load: { type: 'string', multiple: true }, json: { type: 'boolean' }, junit: { type: 'string' }, update: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      process.stdout.write(`${CHECK_TRACES_USAGE}\n`);
      return 0;
    }
    if (positionals.length === 0) throw new UsageError('give the traces: a directory of them, or trace files');
    const drift = (values.drift as string | undefined) ?? 'allowed';
    if (drift !== 'allowed' && drift !== 'refused') throw new UsageError(`--drift must be allowed or refused, got "${drift}"`);
    const mode = (values.mode as string | undefined) ?? 'inline';
    if (mode !== 'inline' && mode !== 'workers') throw new UsageError(`--mode must be inline or workers (a recorded schedule replays deterministically), got "${mode}"`);
    const traceDir = (values['trace-dir'] as string | undefined) ?? 'traces';
    ensureWritableDir(traceDir);
    const junit = values.junit as string | undefined;
    if (junit !== undefined) ensureWritableDir(dirname(resolve(junit)), '--junit');
    await loadScenarioModules([...context.builtIn, ...((values.load as string[] | undefined) ?? [])]);
    options = { files: positionals.flatMap(expand), withFix: values['with-fix'] as string[] | undefined, drift, update: values.update === true, mode, traceDir, json: values.json === true, junit };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`error: ${error.message}\n(npx vcpusim check-traces --help lists the options)\n`);
    return 2;
  }
  const rigs = new Map<string, ScenarioRig<ScenarioGuest>>();
  const outcomes: Outcome[] = [];
  const started = performance.now();
  try {
    for (const file of options.files) {
      const outcome = checkOne(file, options, rigs);
      outcomes.push(outcome);
      process.stdout.write(options.json ? `${JSON.stringify(outcomeJson(outcome))}\n` : `${describe(outcome)}\n\n`);
    }
  } finally {
    await Promise.all([...rigs.values()].map((rig) => rig.close()));
  }
  const counts = tally(outcomes);
  const ok = counts.kept === outcomes.length;
  if (options.junit !== undefined) writeFileSync(options.junit, junitDocument('vcpusim recorded failures', 'check-traces', outcomes.map(junitCase), (performance.now() - started) / 1000));
  if (options.json) process.stdout.write(`${JSON.stringify({ ok, ...counts })}\n`);
  else {
    const drifted = `${counts.drifted} drifted but still failing without the fixes${options.drift === 'refused' && counts.drifted > counts.updated ? ' (refused)' : ''}`;
    const updated = options.update ? `; ${counts.updated} written again` : '';
    process.stdout.write(`${outcomes.length} recorded failure(s), ${counts.kept} kept fixed: ${counts.exact} replayed exactly, ${drifted}; ${counts.regressions} regression(s), ${counts.gone} gone, ${counts.unreadable} not checked${updated}\n`);
  }
  return ok ? 0 : 1;
}

/** A directory stands for its trace files; a file for itself. */
function expand(path: string): string[] {
  let directory: boolean;
  try {
    directory = statSync(path).isDirectory();
  } catch {
    throw new UsageError(`no trace file or directory at ${path}`);
  }
  if (!directory) return [path];
  const files = traceFilesIn(path);
  if (files.length === 0) throw new UsageError(`${path} holds no trace files (*.json)`);
  return files;
}

/** Checks one trace; a bad file or an uncheckable recording is its outcome, and the others go on. */
function checkOne(file: string, options: CheckOptions, rigs: Map<string, ScenarioRig<ScenarioGuest>>): Outcome {
  const started = performance.now();
  const seconds = (): number => (performance.now() - started) / 1000;
  try {
    const recorded = readTraceFile(file);
    if (recorded.scenario === undefined) throw new Error(`${file} does not name its scenario; check it with the AVA macro staysFixed, giving its scenario`);
    let rig = rigs.get(recorded.scenario);
    if (rig === undefined) {
      rig = ScenarioRig.open(findScenario(recorded.scenario), options.mode);
      rigs.set(recorded.scenario, rig);
    }
    const check = checkRecordedFailure(rig, recorded, options.withFix);
    const fixedTrace = check.holds ? null : writeRunTrace(options.traceDir, check.fixed);
    const again = options.update ? recordedAgain(check, recorded) : null;
    if (again !== null) writeFileSync(file, traceFileText(again));
    // A recording written again is pinned as it runs now: what it drifted from no longer matters.
    return { file, seconds: seconds(), check, kept: keptFixed(check, again !== null ? 'allowed' : options.drift), fixedTrace, updated: again !== null };
  } catch (error) {
    return { file, seconds: seconds(), error: errorLine(error) };
  }
}

function describe(outcome: Outcome): string {
  if ('error' in outcome) return `${outcome.file}: NOT CHECKED — ${outcome.error}`;
  const { check, fixedTrace } = outcome;
  const text = formatRecordedFailureCheck(check, outcome.file) + (outcome.updated ? `\n  written again as it runs now (trace hash ${check.recorded.hash}): the next check replays it exactly` : '');
  return fixedTrace === null ? text : `${text}\n${formatFailure(check.fixed, commandsOf(check.fixed, fixedTrace), fixedTrace)}`;
}

function outcomeJson(outcome: Outcome): object {
  if ('error' in outcome) return { file: outcome.file, error: outcome.error };
  const { check } = outcome;
  return {
    file: outcome.file, scenario: check.scenario, seed: check.seed, fixesOff: check.fixesOff, withFix: check.withFix, oracle: check.oracle,
    reproduction: check.reproduction, divergence: check.divergence, holds: check.holds, keptFixed: outcome.kept, updated: outcome.updated,
    fixedViolations: check.fixed.violations.map((v) => v.oracle), choices: check.choices, skipped: check.skipped, fixedTrace: outcome.fixedTrace,
  };
}

/** The outcomes counted, each once by what its check found (`outcomeOf`). */
function tally(outcomes: readonly Outcome[]): { kept: number; exact: number; drifted: number; updated: number; regressions: number; gone: number; unreadable: number } {
  const counts = { kept: 0, exact: 0, drifted: 0, updated: 0, regressions: 0, gone: 0, unreadable: 0 };
  for (const outcome of outcomes) {
    if ('error' in outcome) {
      counts.unreadable++;
      continue;
    }
    if (outcome.kept) counts.kept++;
    if (outcome.updated) counts.updated++;
    const found = outcomeOf(outcome.check);
    if (found === 'regression') counts.regressions++;
    else counts[found]++;
  }
  return counts;
}

/** Why a trace that was not kept fixed failed, by what its check found. */
const FAILURE_MESSAGES: Readonly<Record<'regression' | 'gone' | 'drifted', (check: RecordedFailureCheck) => string>> = {
  regression: (check) => `${check.fixed.violations[0].oracle} breaks with the fixes on`,
  gone: (check) => `${check.oracle ?? 'its invariant'} no longer breaks without the fixes: the trace keeps nothing fixed`,
  drifted: () => 'the recording drifted (refused)',
};

/** A trace as a JUnit test case: kept fixed, or failed as a regression, gone, refused drift or not checked. */
function junitCase(outcome: Outcome): JunitCase {
  const name = basename(outcome.file);
  if ('error' in outcome) return { classname: 'vcpusim.recorded', name, seconds: outcome.seconds, output: '', failure: { message: outcome.error, type: 'not-checked', details: outcome.error } };
  const base = { classname: `vcpusim.recorded.${outcome.check.scenario}`, name, seconds: outcome.seconds, output: describe(outcome) };
  if (outcome.kept) return base;
  const { check } = outcome;
  const found = outcomeOf(check);
  // An exact recording whose fixes hold is always kept.
  if (found === 'exact') return base;
  return { ...base, failure: { message: FAILURE_MESSAGES[found](check), type: found === 'drifted' ? 'drift-refused' : found, details: describe(outcome) } };
}
