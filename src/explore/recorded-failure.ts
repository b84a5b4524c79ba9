import { traceJsonOf, type RunReport, type ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import { ReplayDivergence } from './schedulers/replay.ts';
import type { TraceJson } from './trace-json.ts';
import { firstDivergence } from './trace.ts';

/**
 * A recorded failure kept as a regression test: the trace of a run that broke an invariant with
 * some fixes off, checked both ways on its own interleaving — without those fixes it must still
 * break the same invariant (a trace that no longer fails would keep nothing fixed), and with them
 * on nothing may break. Traces outlive the code that wrote them, so a recorded schedule that no
 * longer replays entry for entry (the scenario, the guest or the engine changed since) is not a
 * failure by itself: its choices are followed as far as they still apply, and what counts is
 * whether they still lead to the same broken invariant.
 */

/**
 * How the recorded failure came back without the fixes. 'exact': the schedule replayed entry for
 * entry and broke the invariant again. 'drifted': the replay parts from the recording somewhere
 * (`divergence`), but following its choices still breaks that invariant. 'gone': it does not
 * break any more — the trace tests nothing now and must be recorded again.
 */
export type Reproduction = 'exact' | 'drifted' | 'gone';

export interface RecordedFailureCheck {
  readonly scenario: string;
  readonly seed: string;
  /** Fixes that were off in the recording. */
  readonly fixesOff: readonly string[];
  /** Fixes switched on for the fixed run: those named, or every fix ('all'). */
  readonly withFix: readonly string[] | 'all';
  /**
   * The invariant the recording broke: named in the file, or (a file written before files named
   * it) the first one its exact replay breaks. Null when neither says.
   */
  readonly oracle: string | null;
  readonly reproduction: Reproduction;
  /** Where the strict replay parted from the recording (drifted or gone), or null. */
  readonly divergence: string | null;
  /** The run without the fixes: the strict replay when exact, the choices followed otherwise. */
  readonly recorded: RunReport;
  /** The same choices with the fixes on. */
  readonly fixed: RunReport;
  readonly choices: number;
  /** Recorded choices the fixed run could not follow (the fix changed what could happen there). */
  readonly skipped: number;
  /** The fixed run breaks no invariant. */
  readonly holds: boolean;
  /** Where the run without the fixes and the fixed run part, or null: the fixes changed nothing on it. */
  readonly partAt: string | null;
}

/** The recording cannot be checked as a kept-fixed failure (every fix was on, or a fix it names is unknown). */
export class UncheckableRecordingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UncheckableRecordingError';
  }
}

/**
 * Replays `recorded` without its fixes (strictly, then by its choices if the replay parts), and
 * follows its choices again with `withFix` on (default: every fix).
 */
export function checkRecordedFailure<G extends ScenarioGuest>(rig: ScenarioRig<G>, recorded: TraceJson, withFix?: readonly string[]): RecordedFailureCheck {
  const catalog = rig.fixes;
  const fixesOff = recorded.fixesOff ?? [];
  const where = `${rig.definition.name} seed ${recorded.seed} (${recorded.strategy})`;
  if (recorded.scenario !== undefined && recorded.scenario !== rig.definition.name) {
    throw new UncheckableRecordingError(`${where}: the trace is of scenario "${recorded.scenario}", not ${rig.definition.name}`);
  }
  if (fixesOff.length === 0) {
    throw new UncheckableRecordingError(`${where} was recorded with every fix on: there is no fix to switch on (a failure HVMI itself has is kept with explore's 'finds-bug')`);
  }
  for (const name of [...fixesOff, ...(withFix ?? [])]) {
    if (!catalog.has(name)) throw new UncheckableRecordingError(`${where}: ${rig.definition.name} has no fix "${name}" (its fixes: ${catalog.names.join(', ')})`);
  }
  if (withFix !== undefined && withFix.length === 0) throw new UncheckableRecordingError(`${where}: no fix named to switch on (leave withFix out to switch every fix on)`);
  const on = (withFix ?? []).find((name) => !fixesOff.includes(name));
  if (on !== undefined) throw new UncheckableRecordingError(`${where}: ${on} was on in the recording already (its fixes off: ${fixesOff.join(', ')}); switching it on changes nothing`);
  const recordedFixes = catalog.without(fixesOff);
  const fixedFixes = withFix === undefined ? catalog.defaults() : catalog.apply(recordedFixes, withFix.map((name) => `${name}=on`));
  let run: RunReport;
  let divergence: string | null = null;
  try {
    run = rig.replay(recorded, recordedFixes);
  } catch (error) {
    if (!(error instanceof ReplayDivergence)) throw error;
    divergence = error.message;
    run = rig.runChoices(recorded.seed, recorded.choices, recordedFixes, { label: 'followed' }).report;
  }
  // A file that does not name its invariant: an exact replay breaks the recorded one; after a drift any will do.
  const named = recorded.broke ?? (divergence === null ? run.violations[0]?.oracle : undefined);
  const brokeAgain = named === undefined ? run.violations.length > 0 : run.violations.some((v) => v.oracle === named);
  const fixed = rig.runChoices(recorded.seed, recorded.choices, fixedFixes, { label: 'followed' });
  return {
    scenario: rig.definition.name,
    seed: recorded.seed,
    fixesOff,
    withFix: withFix ?? 'all',
    oracle: named ?? run.violations[0]?.oracle ?? null,
    reproduction: !brokeAgain ? 'gone' : divergence === null ? 'exact' : 'drifted',
    divergence,
    recorded: run,
    fixed: fixed.report,
    choices: recorded.choices.length,
    skipped: fixed.skipped,
    holds: fixed.report.violations.length === 0,
    partAt: firstDivergence(run.trace.entries, fixed.report.trace.entries, ['without', 'with']),
  };
}

/** What the check found, each check once: a fixed run that breaks is a regression whatever else; then gone, drifted or exact. */
export function outcomeOf(check: RecordedFailureCheck): 'regression' | Reproduction {
  return check.holds ? check.reproduction : 'regression';
}

/** The check passed: the failure still comes back without the fixes (exactly, or `drift` allows it after drifting) and not with them. */
export function keptFixed(check: RecordedFailureCheck, drift: 'allowed' | 'refused' = 'allowed'): boolean {
  return check.holds && (check.reproduction === 'exact' || (check.reproduction === 'drifted' && drift === 'allowed'));
}

/**
 * The recording again as it runs now, when it should be written over its file: it drifted (its
 * choices still break its invariant, but the run they make is no longer the recorded one), or it
 * is an older file that does not name its invariant. The same seed, fixes off and invariant; the
 * run its choices make now, so that the next check replays it exactly. Null when there is nothing
 * to write (exact and named) or nothing worth keeping (gone, or the fixes do not hold).
 */
export function recordedAgain(check: RecordedFailureCheck, recorded: TraceJson): TraceJson | null {
  if (!check.holds || check.reproduction === 'gone' || check.oracle === null) return null;
  if (check.reproduction === 'exact' && recorded.broke !== undefined) return null;
  return traceJsonOf(check.recorded, check.oracle);
}
