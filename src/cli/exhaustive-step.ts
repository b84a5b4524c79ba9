import type { BoundMeasure } from '../explore/exhaustive.ts';
import { describeBounded, exploreBranchBounded, exploreScenarioBounded } from '../explore/exhaustive-run.ts';
import { exploreBranchBoundedOnPool, exploreScenarioBoundedOnPool } from '../explore/exhaustive-pool.ts';
import { describePrefix, type BranchPoint, type BranchPrefix } from '../explore/branch.ts';
import { ScenarioRig, type RunMode } from '../explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../explore/scenario.ts';
import type { Fixes } from '../intro/fixes.ts';
import { commandsOf, formatFailure } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import type { SearchOutput } from './common.ts';

/**
 * `run.ts <scenario> --exhaustive K`: every schedule with at most K preemptions, level by level,
 * as a bounded guarantee ("k = 1: N schedules, all explored, 0 failures"); the first failing
 * schedule (fewest preemptions first) is reported and its trace written. Exit 1 when one failed.
 * With `--branch-at POINT`, the schedules are those after the point, each a suffix run from a
 * snapshot taken there (the prefix: --seed and --strategy, or the --replay trace).
 */
export interface ExhaustiveRequest extends SearchOutput {
  readonly bound: number;
  /** What the bound counts: preemptions (CHESS) or every deviation from the default (delay bounding). */
  readonly measure: BoundMeasure;
  readonly maxRuns: number;
  /** Run the schedules on a pool of this many threads (null: one by one in this thread). */
  readonly pool: { readonly threads: number; readonly modules: readonly string[] } | null;
  /** Search the schedules after this point of this prefix only (null: whole runs). */
  readonly branch: { readonly prefix: BranchPrefix; readonly at: BranchPoint; readonly horizon: number | null } | null;
}

export async function exhaustiveCommand(definition: ScenarioDefinition<ScenarioGuest>, mode: RunMode, fixes: Fixes<string>, request: ExhaustiveRequest): Promise<number> {
  const rig = ScenarioRig.open(definition, request.branch === null ? mode : 'inline');
  const started = performance.now();
  const branch = request.branch === null ? null : rig.openBranch({ prefix: request.branch.prefix, at: request.branch.at, suffixes: [] });
  try {
    const search = { bound: request.bound, measure: request.measure, maxRuns: request.maxRuns, onRun: (runs: number, level: number) => request.progress.update(`  ${runs} schedules run, at k = ${level}`) };
    const horizon = request.branch?.horizon ?? null;
    const pool = request.pool;
    const onPool = pool === null ? null : { ...search, threads: pool.threads, modules: pool.modules, taskModule: new URL('../../workers/campaign-bootstrap.mjs', import.meta.url) };
    const result = branch !== null && request.branch !== null
      ? onPool === null
        ? exploreBranchBounded(branch, { ...search, ...(horizon === null ? {} : { horizon }) })
        : await exploreBranchBoundedOnPool(rig, branch, request.branch, onPool)
      : onPool === null
        ? exploreScenarioBounded(rig, request.seed, fixes, search)
        : await exploreScenarioBoundedOnPool(rig, request.seed, fixes, onPool);
    const where = branch === null || request.branch === null ? '' : ` after choice ${branch.at} of ${describePrefix(request.branch.prefix)} (${branch.asked}${horizon === null ? '' : `, suffixes cut ${horizon} choices past it`})`;
    const seconds = (performance.now() - started) / 1000;
    const failure = result.firstFailure?.run ?? null;
    const tracePath = failure === null ? null : writeRunTrace(request.traceDir, failure);
    const fixesOff = rig.fixes.off(fixes);
    if (request.json) {
      process.stdout.write(`${JSON.stringify({
        scenario: definition.name, exhaustive: { bound: result.bound, measure: result.measure, levels: result.levels, runs: result.runs, distinct: result.distinct, complete: result.complete, seconds, threads: pool?.threads ?? 1, ...(branch === null ? {} : { branchedAt: branch.at }) },
        fixesOff, ...(failure !== null ? { firstFailure: { invariant: failure.violations[0].oracle, preemptions: result.firstFailure?.preemptions, deviations: result.firstFailure?.deviations, trace: tracePath } } : {}),
      })}\n`);
    } else {
      const out = [
        `${definition.name}: bounded-exhaustive, at most ${result.bound} ${result.measure === 'preemptions' ? 'preemption(s)' : 'deviation(s) from the default'}${where}, ${fixesOff.length > 0 ? `fixes off: ${fixesOff.join(', ')}` : 'all fixes on'}, `
          + `${branch === null ? mode : 'inline'}${pool === null ? '' : ` on ${pool.threads} pool threads`} — ${result.runs} runs in ${seconds.toFixed(1)} s (${(result.runs / seconds).toFixed(1)} runs/s), ${result.distinct} distinct traces`,
        ...describeBounded(result).map((line) => `  ${line}`),
        result.complete
          ? `  a bounded guarantee: every schedule up to the bound was run${branch === null ? '' : ' after the point, given that prefix'} (${result.measure === 'preemptions' ? 'preemptions' : 'deviations'} at the choice points; the environment's timing as it comes)`
          : `  not a guarantee: the run budget (--exhaustive-runs ${request.maxRuns}) ran out first`,
        ...(result.measure === 'preemptions' && !result.levels[0].complete
          ? ['  k = 0 alone outran it: which vCPU runs when the current one cannot is a free choice, and here those multiply; --bound-by deviations charges them too (k = 1 is then one schedule per alternative of the default run)']
          : []),
      ];
      if (failure !== null) out.push(`the first failing schedule (${result.firstFailure?.preemptions} preemption(s), ${result.firstFailure?.deviations} deviation(s)):`, formatFailure(failure, commandsOf(failure, tracePath), tracePath));
      process.stdout.write(`${out.join('\n')}\n`);
    }
    return failure !== null ? 1 : 0;
  } finally {
    branch?.close();
    await rig.close();
  }
}
