import type { Fixes } from '../intro/fixes.ts';
import type { RunReport, ScenarioRig } from '../explore/scenario-rig.ts';
import type { ScenarioGuest } from '../explore/scenario.ts';
import { describePick, describeShrink, shrinkFailingReports, type ShrunkFailure } from '../explore/shrink-run.ts';
import { formatStory } from '../explore/story.ts';
import { writeReports, writeRunReports, type ReportTargets } from '../report/run-reports.ts';
import { replayCommand } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import type { Progress } from './common.ts';

/**
 * `--shrink`: the first failing run (the simplest of the first few) shrunk on the command's rig, its trace written, its reports
 * (when asked for) showing the shrunk run with the events that matter — and the text that tells it.
 */

export interface ShrinkOutcome {
  readonly shrunk: ShrunkFailure;
  /** Where the shrunk trace went (null: it could not be written; a warning said why). */
  readonly tracePath: string | null;
  readonly reports: ReportTargets | null;
}

/**
 * The simplest of `failing` shrunk (`shrinkFailingReports`: in order of their preemptions, until one
 * shrinks to a minimal schedule of at most one), or the only one; the target is what the first
 * breaks first. Its trace and reports are written.
 */
export function shrinkFailures(
  rig: ScenarioRig<ScenarioGuest>, failing: readonly RunReport[], fixes: Fixes<string>,
  options: { readonly maxRuns: number; readonly traceDir: string; readonly reports: ReportTargets; readonly progress: Progress },
): ShrinkOutcome {
  const shrunk = shrinkFailingReports(rig, failing, fixes, {
    maxRuns: options.maxRuns,
    onRun: (runs, best) => options.progress.update(`  shrinking: ${runs} runs, best so far ${best.preemptions} preemption(s) / ${best.decisive} decisive choice(s)`),
  });
  options.progress.update(`  shrinking: done in ${shrunk.pickedFrom?.runs ?? shrunk.runs} runs`, true);
  let tracePath: string | null = null;
  let reports: ReportTargets | null = null;
  try {
    tracePath = writeRunTrace(options.traceDir, shrunk.report);
    if (shrunk.recording !== null) reports = writeReports(options.reports, shrunk.report, shrunk.recording, tracePath, shrunk.story);
  } catch (error) {
    process.stderr.write(`warning: the shrunk run of seed ${shrunk.report.seed} could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  return { shrunk, tracePath, reports };
}

/**
 * Writes a shrunk run next to the other traces of `dir` — its trace and its Perfetto trace with its
 * story — as the campaign does for each row; a file that cannot be written is a warning naming `what`.
 */
export function writeShrunk(shrunk: ShrunkFailure, dir: string, suffix: string, what: string): ShrinkOutcome {
  let tracePath: string | null = null;
  let reports: ReportTargets | null = null;
  try {
    tracePath = writeRunTrace(dir, shrunk.report, suffix);
    if (shrunk.recording !== null) reports = writeRunReports(dir, shrunk.report, shrunk.recording, { suffix, tracePath, story: shrunk.story });
  } catch (error) {
    process.stderr.write(`warning: ${what}: the shrunk trace of seed ${shrunk.report.seed} could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  return { shrunk, tracePath, reports };
}

/** The shrink's lines of a report: what it did, where the trace is, how to replay it, and the story. */
export function formatShrink(outcome: ShrinkOutcome): string {
  const { shrunk, tracePath } = outcome;
  const report = shrunk.report;
  const pick = describePick(shrunk);
  return [
    ...(pick !== null ? [`  ${pick}`] : []),
    `  ${describeShrink(shrunk)}`,
    ...(tracePath !== null ? [`  shrunk trace written to ${tracePath}`, `  replay it: ${replayCommand(report.scenario, tracePath, [])}`] : []),
    `  how it happens (step clock, preemptions and the events around them):`,
    formatStory(shrunk.story, report.violations[0] ?? null),
  ].join('\n');
}

/** The shrink as JSON fields. */
export function shrinkJson(outcome: ShrinkOutcome): Record<string, unknown> {
  const { shrunk } = outcome;
  return {
    oracle: shrunk.oracle, from: shrunk.from, preemptions: shrunk.preemptions, decisive: shrunk.decisive, runs: shrunk.runs, minimal: shrunk.minimal,
    ...(shrunk.search !== undefined ? { search: shrunk.search } : {}),
    hash: shrunk.report.hash, trace: outcome.tracePath, seed: shrunk.report.seed, story: shrunk.story.map((line) => ({ clock: line.clock, text: line.text })),
    // Seeds may be bigints, which JSON lacks.
    ...(shrunk.pickedFrom !== undefined ? { pickedFrom: { ...shrunk.pickedFrom, tried: shrunk.pickedFrom.tried.map((tried) => ({ ...tried, seed: String(tried.seed) })) } } : {}),
  };
}
