import { describeBounded, exploreScenarioBounded } from '../explore/exhaustive-run.ts';
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
 */
export interface ExhaustiveRequest extends SearchOutput {
  readonly bound: number;
  readonly maxRuns: number;
}

export async function exhaustiveCommand(definition: ScenarioDefinition<ScenarioGuest>, mode: RunMode, fixes: Fixes<string>, request: ExhaustiveRequest): Promise<number> {
  const rig = ScenarioRig.open(definition, mode);
  const started = performance.now();
  try {
    const result = exploreScenarioBounded(rig, request.seed, fixes, {
      bound: request.bound,
      maxRuns: request.maxRuns,
      onRun: (runs, level) => request.progress.update(`  ${runs} schedules run, at k = ${level}`),
    });
    const seconds = (performance.now() - started) / 1000;
    const failure = result.firstFailure?.run ?? null;
    const tracePath = failure === null ? null : writeRunTrace(request.traceDir, failure);
    const fixesOff = rig.fixes.off(fixes);
    if (request.json) {
      process.stdout.write(`${JSON.stringify({
        scenario: definition.name, exhaustive: { bound: result.bound, levels: result.levels, runs: result.runs, distinct: result.distinct, complete: result.complete, seconds },
        fixesOff, ...(failure !== null ? { firstFailure: { invariant: failure.violations[0].oracle, preemptions: result.firstFailure?.preemptions, trace: tracePath } } : {}),
      })}\n`);
    } else {
      const out = [
        `${definition.name}: bounded-exhaustive, at most ${result.bound} preemption(s), ${fixesOff.length > 0 ? `fixes off: ${fixesOff.join(', ')}` : 'all fixes on'}, `
          + `${mode} — ${result.runs} runs in ${seconds.toFixed(1)} s (${(result.runs / seconds).toFixed(1)} runs/s), ${result.distinct} distinct traces`,
        ...describeBounded(result).map((line) => `  ${line}`),
        result.complete ? '  a bounded guarantee: every schedule up to the bound was run (preemptions at the choice points; the environment\'s timing as it comes)' : `  not a guarantee: the run budget (--exhaustive-runs ${request.maxRuns}) ran out first`,
      ];
      if (failure !== null) out.push(`the first failing schedule (${result.firstFailure?.preemptions} preemption(s)):`, formatFailure(failure, commandsOf(failure, tracePath), tracePath));
      process.stdout.write(`${out.join('\n')}\n`);
    }
    return failure !== null ? 1 : 0;
  } finally {
    await rig.close();
  }
}
