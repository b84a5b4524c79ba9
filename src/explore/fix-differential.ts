import type { Fixes } from '../intro/fixes.ts';
import type { RunReport, ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { TraceJson } from './trace-json.ts';
import { firstDivergence } from './trace.ts';

/**
 * Fix-differential replay: a failing schedule run again, choice for choice, with a fix switched
 * on — proof that the fix removes the failure on *this* interleaving, not on another one a new
 * seed happens to take. The recorded run is replayed strictly first (it must still fail); then
 * its choices are followed leniently with the fix on (a choice the fixed engine no longer allows
 * — a vCPU now paused, an exit no longer taken — is skipped), and the two traces are compared:
 * where they part is where the fix changed what happened.
 */

export interface FixDifferential {
  /** The recorded run, replayed strictly with its own fixes. */
  readonly recorded: RunReport;
  /** The same choices with the fixes on. */
  readonly fixed: RunReport;
  /** The invariant the recorded run broke first. */
  readonly oracle: string;
  /** The fixed run breaks no invariant at all. */
  readonly holds: boolean;
  /** The fixed run does not break `oracle` (it may break another). */
  readonly oracleHolds: boolean;
  /** Recorded choices, and how many of them the fixed run could not follow. */
  readonly choices: number;
  readonly skipped: number;
  /** Where the two runs part (the first differing trace entry, both versions), or null: they do not. */
  readonly divergence: string | null;
}

/** The recorded run does not fail: there is nothing for a fix to remove. */
export class NothingToFixError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NothingToFixError';
  }
}

/** Replays `recorded` with `recordedFixes`, then its choices again with `fixed`; see the module comment. */
export function replayWithFix<G extends ScenarioGuest>(rig: ScenarioRig<G>, recorded: TraceJson, recordedFixes: Fixes<string>, fixed: Fixes<string>): FixDifferential {
  const replayed = rig.replay(recorded, recordedFixes);
  const broken = replayed.violations[0];
  if (broken === undefined) throw new NothingToFixError(`the recorded run (seed ${recorded.seed}) breaks no invariant when replayed: there is no failure for a fix to remove`);
  const { report, skipped } = rig.runChoices(recorded.seed, recorded.choices, fixed, { label: 'followed' });
  return {
    recorded: replayed,
    fixed: report,
    oracle: broken.oracle,
    holds: report.violations.length === 0,
    oracleHolds: !report.violations.some((v) => v.oracle === broken.oracle),
    choices: recorded.choices.length,
    skipped,
    divergence: firstDivergence(replayed.trace.entries, report.trace.entries, ['failed', 'fixed']),
  };
}

/** The differential as lines of a report. */
export function formatFixDifferential(diff: FixDifferential, fixNames: readonly string[]): string {
  const lines = [
    `FIX-DIFFERENTIAL: the recorded schedule again with ${fixNames.join(', ')} on`,
    `  recorded: ${diff.oracle} broke (trace hash ${diff.recorded.hash})`,
    `  with the fix: followed ${diff.choices - diff.skipped} of ${diff.choices} recorded choices${diff.skipped > 0 ? ` (${diff.skipped} no longer possible, skipped)` : ''}`
      + `${diff.fixed.choices > diff.choices - diff.skipped ? `, then ${diff.fixed.choices - (diff.choices - diff.skipped)} of the default continuation's to the end` : ''}`,
    diff.divergence === null ? '  the two runs do not part: the fix changed nothing on this schedule' : `  the runs part at ${diff.divergence.replaceAll('\n', '\n  ')}`,
  ];
  if (diff.holds) lines.push(`  with the fix no invariant broke: it removes this failure on this interleaving`);
  else if (diff.oracleHolds) lines.push(`  with the fix ${diff.oracle} holds, but ${diff.fixed.violations.map((v) => v.oracle).join(', ')} broke: ${diff.fixed.violations[0].detail.split('\n')[0]}`);
  else lines.push(`  with the fix ${diff.oracle} STILL breaks: ${diff.fixed.violations.find((v) => v.oracle === diff.oracle)?.detail.split('\n')[0] ?? ''}`);
  return lines.join('\n');
}
