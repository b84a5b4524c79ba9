import { describeFound, searchCoverage } from '../explore/coverage-guided.ts';
import { ScenarioRig, type RunMode } from '../explore/scenario-rig.ts';
import type { ScenarioDefinition, ScenarioGuest } from '../explore/scenario.ts';
import type { StrategyName } from '../explore/schedulers/index.ts';
import type { Fixes } from '../intro/fixes.ts';
import { commandsOf, formatFailure } from '../report/text.ts';
import { writeRunTrace } from '../report/trace-file.ts';
import type { SearchOutput } from './common.ts';

/**
 * `run.ts <scenario> --cover N`: a coverage-guided search of N runs over the scenario's ordering
 * pairs (fresh seeds of the strategy, and kept runs changed toward the orders not yet seen, then
 * the rarest); prints the coverage, when each order was first produced and how, and the first
 * failure with its trace (labelled "covering": it replays strictly). Exit 1 when a run failed.
 */
export interface CoverRequest extends SearchOutput {
  readonly runs: number;
  readonly base: StrategyName;
}

export async function coverCommand(definition: ScenarioDefinition<ScenarioGuest>, mode: RunMode, fixes: Fixes<string>, request: CoverRequest): Promise<number> {
  const rig = ScenarioRig.open(definition, mode);
  const started = performance.now();
  try {
    const result = searchCoverage(rig, fixes, {
      runs: request.runs, seed: request.seed, base: request.base,
      onRun: (runs, coverage) => request.progress.update(`  ${runs}/${request.runs} runs, orderings covered ${coverage.covered.seen}/${coverage.covered.of}`),
    });
    const seconds = (performance.now() - started) / 1000;
    const failure = result.firstFailure;
    const tracePath = failure === null ? null : writeRunTrace(request.traceDir, failure);
    const fixesOff = rig.fixes.off(fixes);
    if (request.json) {
      process.stdout.write(`${JSON.stringify({
        scenario: definition.name, cover: { runs: result.runs, base: request.base, aimed: result.aimed, hit: result.hit, coverage: result.coverage.toJSON(), covered: result.coverage.covered, givenUp: result.givenUp, seconds },
        fixesOff, ...(failure !== null ? { firstFailure: { run: result.firstFailureAfter, invariant: failure.violations[0].oracle, trace: tracePath } } : {}),
      })}\n`);
      return failure !== null ? 1 : 0;
    }
    const { seen, of } = result.coverage.covered;
    const out = [
      `${definition.name}: coverage-guided, ${result.runs} runs (fresh ${request.base} seeds, and kept runs changed toward missing orders), `
        + `${fixesOff.length > 0 ? `fixes off: ${fixesOff.join(', ')}` : 'all fixes on'}, ${mode} — ${seconds.toFixed(1)} s (${(result.runs / seconds).toFixed(1)} runs/s)`,
      `  orderings covered ${seen}/${of}; ${result.aimed} changed runs, ${result.hit} produced the order they went after`,
      ...result.coverage.describe().map((line) => `    ${line}`),
      ...describeFound(result.found).map((line) => `  ${line}`),
      ...(result.givenUp.length > 0 ? [`  never produced, given up after the aimed runs missed: ${result.givenUp.join('; ')}`] : []),
    ];
    if (failure !== null) out.push(`the first failing run (run ${result.firstFailureAfter}):`, formatFailure(failure, commandsOf(failure, tracePath), tracePath));
    process.stdout.write(`${out.join('\n')}\n`);
    return failure !== null ? 1 : 0;
  } finally {
    await rig.close();
  }
}
