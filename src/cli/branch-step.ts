import { failed, ScenarioRig, type BranchResult, type RunReport } from '../explore/scenario-rig.ts';
import { describePrefix, type BranchPoint, type BranchPrefix } from '../explore/branch.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../explore/scenario.ts';
import type { StrategyName } from '../explore/schedulers/index.ts';
import { RunTally } from '../explore/tally.ts';
import { commandsOf, formatFailure } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import type { SearchOutput } from './common.ts';

/**
 * `run.ts <scenario> --branch-at POINT --branches N`: runs the --seed/--strategy schedule (or the
 * --replay trace) to the point once, snapshots the whole simulation there, and explores N suffixes from it (the same
 * strategy, suffix seeds 1..N) without running the prefix again; prints the point, what the
 * snapshot holds and costs, the suffixes' failures and ordering coverage, and the first failing
 * suffix with its trace (labelled "branched": it replays strictly from the start).
 * Exit 1 when a suffix failed.
 */
export interface BranchCommandRequest extends SearchOutput {
  /** A seed and a strategy, or a recorded trace. */
  readonly prefix: BranchPrefix;
  readonly at: BranchPoint;
  readonly branches: number;
  /** Cut every suffix this many choices past the point (null: whole suffixes). */
  readonly horizon: number | null;
  /** The suffixes' strategy. */
  readonly strategy: StrategyName;
  readonly depth: number;
}

export async function branchCommand(definition: ScenarioDefinition<ScenarioGuest>, request: BranchCommandRequest): Promise<number> {
  const rig = ScenarioRig.open(definition, 'inline');
  const started = performance.now();
  try {
    const tally = new RunTally(definition.windows.map((goal) => goal.name), false, definition.orderings ?? []);
    let first: { report: RunReport; suffixSeed: number } | null = null;
    const result = rig.branch({
      prefix: request.prefix,
      at: request.at,
      suffixes: Array.from({ length: request.branches }, (_, index) => ({ seed: index + 1, strategy: request.strategy, depth: request.depth })),
      ...(request.horizon === null ? {} : { horizon: request.horizon }),
      onRun: (report, index) => {
        tally.add(report);
        if (first === null && failed(report)) first = { report, suffixSeed: index + 1 };
        request.progress.update(`  ${index + 1}/${request.branches} suffixes, ${tally.failures} failed`);
      },
    });
    request.progress.update('');
    const seconds = (performance.now() - started) / 1000;
    const found = first as { report: RunReport; suffixSeed: number } | null;
    const failure = found?.report ?? null;
    const tracePath = failure === null ? null : writeRunTrace(request.traceDir, failure);
    const fixesOff = rig.fixes.off(request.prefix.fixes);
    if (request.json) {
      process.stdout.write(`${JSON.stringify({
        scenario: definition.name, branch: { ...summary(result), horizon: request.horizon, strategy: request.strategy, prefix: describePrefix(request.prefix), suffixes: result.runs.length, failures: tally.failures, coverage: tally.orderings.toJSON(), seconds },
        fixesOff, ...(failure !== null ? { firstFailure: { suffixSeed: found?.suffixSeed, invariant: failure.violations[0].oracle, hash: failure.hash, trace: tracePath } } : {}),
      })}\n`);
      return failure !== null ? 1 : 0;
    }
    const { seen, of } = tally.orderings.covered;
    const out = [
      `${definition.name}: ${result.runs.length} ${request.strategy} suffixes branched from ${describePrefix(request.prefix)} at choice ${result.at} (${result.asked}), `
        + `${fixesOff.length > 0 ? `fixes off: ${fixesOff.join(', ')}` : 'all fixes on'} — ${seconds.toFixed(1)} s (${(result.runs.length / seconds).toFixed(1)} suffixes/s)`,
      ...(request.horizon === null ? [] : [`  every suffix cut ${request.horizon} choices past the point: judged by the continuous oracles only (a failure's trace replays the whole run)`]),
      ...describeBranch(result).map((line) => `  ${line}`),
      `  ${tally.failures} of ${result.runs.length} suffixes failed${tally.failures > 0 ? ` (${Object.entries(tally.byOracle).map(([oracle, count]) => `${oracle} ${count}`).join(', ')})` : ''}`,
      ...(of > 0 ? [`  orderings covered ${seen}/${of}:`, ...tally.orderings.describe().map((line) => `    ${line}`)] : []),
    ];
    if (failure !== null) out.push(`the first failing suffix (suffix seed ${found?.suffixSeed}):`, formatFailure(failure, commandsOf(failure, tracePath), tracePath));
    process.stdout.write(`${out.join('\n')}\n`);
    return failure !== null ? 1 : 0;
  } finally {
    await rig.close();
  }
}

/** The figures of a branch, for JSON. */
function summary(result: BranchResult): Record<string, number | string> {
  const restores = result.dirtyPages.length;
  return {
    at: result.at, asked: result.asked, objects: result.objects, ramPages: result.ramPages,
    meanDirtyPages: restores === 0 ? 0 : result.dirtyPages.reduce((sum, pages) => sum + pages, 0) / restores,
    prefixMs: result.prefixMs, snapshotMs: result.snapshotMs, meanRestoreMs: restores === 0 ? 0 : result.restoreMs / restores,
  };
}

/** "snapshot: 5,563 objects, 31.5 ms; a restore: 5.8 of 2,048 RAM pages, 1.5 ms; the prefix: 25.6 ms" */
export function describeBranch(result: BranchResult): string[] {
  const figures = summary(result);
  const suffixMs = result.runs.reduce((sum, run) => sum + run.durationMs, 0);
  return [
    `snapshot: ${result.objects.toLocaleString('en-US')} objects and the machine, taken in ${result.snapshotMs.toFixed(1)} ms after a ${result.prefixMs.toFixed(1)} ms prefix`,
    `a restore: ${Number(figures.meanDirtyPages).toFixed(1)} of ${result.ramPages.toLocaleString('en-US')} RAM pages copied back, ${Number(figures.meanRestoreMs).toFixed(2)} ms (mean of ${result.dirtyPages.length})`,
    `suffixes: ${(suffixMs / Math.max(1, result.runs.length)).toFixed(1)} ms each on average; every one replays from the start with its trace`,
  ];
}
