import type { FreeObservation } from '../explore/free-observation.ts';
import type { SearchMethod } from '../explore/free-to-replayable.ts';
import { makeReplayable, type ReplayableFailure } from '../explore/replayable-failure.ts';
import { ScenarioRig } from '../explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../explore/scenario.ts';
import { describeRetraced } from '../explore/retrace.ts';
import { writeRunReports } from '../report/run-reports.ts';
import { replayCommand } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import type { Progress } from './common.ts';
import { formatShrink, shrinkJson, writeShrunk, type ShrinkOutcome } from './shrink-step.ts';

/**
 * A free-running failure made replayable, as the commands write and tell it: the deterministic
 * run found (its trace, proven by a strict replay, and its Perfetto trace), the same run shrunk
 * with its story, or — when the search found nothing — how close it came.
 */

export interface ReplayableOutcome {
  readonly failure: ReplayableFailure;
  /** The trace of the run found (null: none found, or it could not be written). */
  readonly tracePath: string | null;
  readonly perfetto: string | null;
  readonly shrink: ShrinkOutcome | null;
}

/** Writes the run found and its shrunk form into `dir`; `what` names the failure in warnings. */
export function writeReplayable(failure: ReplayableFailure, dir: string, suffix: string, what: string): ReplayableOutcome {
  const found = failure.search?.found ?? null;
  let tracePath: string | null = null;
  let perfetto: string | null = null;
  if (found !== null) {
    try {
      tracePath = writeRunTrace(dir, found.report, suffix);
      if (found.recording !== null) perfetto = writeRunReports(dir, found.report, found.recording, { suffix, tracePath }).perfetto;
    } catch (error) {
      process.stderr.write(`warning: ${what}: the trace of the run found could not be written: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
  const shrink = failure.shrunk === null ? null : writeShrunk(failure.shrunk, dir, suffix, what);
  return { failure, tracePath, perfetto, shrink };
}

/** "the guided schedule (the free run's order, as observed)", "random, seed 5", … */
export function describeMethod(method: SearchMethod): string {
  switch (method.kind) {
    case 'guided': return "the guided schedule (the free run's order, as observed)";
    case 'variation': return `a variation of the guided schedule (${method.edits.join('; ') || 'no edit applied'})`;
    case 'seed': return `${method.strategy === 'pct' ? `pct(d=${method.depth})` : method.strategy}, seed ${method.seed}`;
  }
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The outcome as lines of text, under a heading that names the failure (`title`). */
export function formatReplayable(outcome: ReplayableOutcome, title: string): string {
  const { failure } = outcome;
  const { observation, search } = failure;
  const head = `free-running seed ${observation.seed} broke ${observation.oracle} (${observation.detail})`;
  if (search === null) return `NOT REPLAYABLE  ${title}: ${head}\n  ${failure.error ?? 'the search did not run'}`;
  const runs = `${plural(search.runs, 'deterministic run')} (guided ${search.runsBy.guided}, random ${search.runsBy.random}, PCT ${search.runsBy.pct})`;
  const closeness = `exits of the free run retraced (each vCPU's, in order): by the guided schedule ${describeRetraced(search.retrace.observed)}, by the closest guided run ${describeRetraced(search.retrace.closest)}`;
  const found = search.found;
  if (found === null) {
    const others = Object.entries(search.otherFailures).map(([oracle, n]) => `${oracle} ${n}`).join(', ');
    return [
      `NOT REPLAYABLE  ${title}: ${head}`,
      `  no deterministic run broke ${search.oracle} first within ${runs}`,
      `  ${closeness}`,
      ...(others !== '' ? [`  other invariants broke first: ${others}`] : []),
      ...(failure.error !== null ? [`  ${failure.error}`] : []),
    ].join('\n');
  }
  const report = found.report;
  const lines = [
    `REPLAYABLE  ${title}: ${head}`,
    `  found in run ${found.run} of the deterministic search: ${describeMethod(found.method)}`,
    `  ${closeness}, by the run found ${describeRetraced(found.retrace)}`,
    `  seed ${report.seed}, strategy ${report.strategy}, ${report.mode}: ${search.oracle} broke first (${report.violations[0].detail.split('\n')[0]}); its trace replays strictly (hash ${report.hash})`,
  ];
  if (outcome.tracePath !== null) lines.push(`  trace written to ${outcome.tracePath}`, `  replay:  ${replayCommand(report.scenario, outcome.tracePath, [])}`);
  if (outcome.perfetto !== null) lines.push(`  perfetto trace written to ${outcome.perfetto}`);
  if (failure.error !== null) lines.push(`  ${failure.error}`);
  if (outcome.shrink !== null) lines.push(formatShrink(outcome.shrink));
  return lines.join('\n');
}

/** The outcome as JSON fields. */
export function replayableJson(outcome: ReplayableOutcome): Record<string, unknown> {
  const { failure } = outcome;
  const { search } = failure;
  const found = search?.found ?? null;
  return {
    freeSeed: failure.observation.seed,
    oracle: failure.observation.oracle,
    replayable: found !== null,
    ...(search !== null ? { runs: search.runs, maxRuns: search.maxRuns, runsBy: search.runsBy, retrace: search.retrace, otherFailures: search.otherFailures } : {}),
    ...(found !== null ? {
      foundInRun: found.run, method: found.method, seed: found.report.seed, strategy: found.report.strategy, hash: found.report.hash, retraced: found.retrace,
      trace: outcome.tracePath, perfetto: outcome.perfetto,
    } : {}),
    ...(outcome.shrink !== null ? { shrunk: shrinkJson(outcome.shrink) } : {}),
    error: failure.error,
  };
}

/** How `run.ts --explain` turns its first free-running failure into a replayable one. */
export interface ExplainOptions {
  readonly explainRuns: number;
  readonly shrinkRuns: number;
  readonly traceDir: string;
  readonly progress: Progress;
  /** A stop request: the search ends after the run in progress. */
  readonly shouldStop: () => boolean;
}

/** On a rig of its own (inline), searches, shrinks and writes the failure `observation` shows. */
export async function explainFreeFailure(definition: ScenarioDefinition<ScenarioGuest>, observation: FreeObservation, options: ExplainOptions): Promise<ReplayableOutcome> {
  const rig = ScenarioRig.open(definition, 'inline');
  try {
    const failure = makeReplayable(rig, observation, rig.fixes.without(observation.fixesOff), {
      maxRuns: options.explainRuns,
      shrinkRuns: options.shrinkRuns,
      shouldStop: options.shouldStop,
      onRun: (runs) => options.progress.update(`  turning free-running seed ${observation.seed} replayable: ${runs} deterministic run(s)`),
    });
    options.progress.update(`  turning free-running seed ${observation.seed} replayable: done`, true);
    return writeReplayable(failure, options.traceDir, '-free', definition.name);
  } finally {
    await rig.close();
  }
}
