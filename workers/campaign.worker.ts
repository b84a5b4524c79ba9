import { findScenario, loadScenarioModules } from '../src/explore/registry.ts';
import { failed, ScenarioRig, traceJsonOf, type RunMode } from '../src/explore/scenario-rig.ts';
import type { ScenarioGuest } from '../src/explore/scenario.ts';
import type { CampaignResult, CampaignTask } from '../src/explore/campaign.ts';
import { observeFreeRun, type FreeObservation } from '../src/explore/free-observation.ts';
import { runExhaustiveTaskOn, type ExhaustiveTask, type ExhaustiveTaskResult } from '../src/explore/exhaustive-pool.ts';
import { runShrinkTaskOn, type ShrinkTask } from '../src/explore/campaign-shrink.ts';
import type { ShrinkFound } from '../src/explore/shrink-run.ts';

/**
 * A campaign task (one piscina task = one run), a campaign row's shrink, or one schedule of a bounded search on a pool. Each pool thread keeps one rig per scenario and
 * mode, so a task costs a snapshot restore and the run itself, not a new machine. The rigs live as
 * long as the thread: the pool's destroy() terminates it, and with it any vCPU workers it started.
 */

const rigs = new Map<string, ScenarioRig<ScenarioGuest>>();

export async function runCampaignTask(task: CampaignTask): Promise<CampaignResult> {
  let report;
  let observation: FreeObservation | undefined;
  try {
    report = await onRig(task, (rig) => {
      const run = rig.run({ seed: task.seed, strategy: task.strategy, depth: task.depth, fixes: rig.fixes.without(task.fixesOff) });
      // A free-running failure cannot be run again: what the hypervisor side saw of it goes back with it.
      if (task.mode === 'free' && failed(run)) {
        const target = run.violations.some((v) => v.oracle === task.caughtBy) ? task.caughtBy ?? undefined : undefined;
        observation = observeFreeRun(run, rig.lastEvents, target);
      }
      return run;
    });
  } catch (error) {
    // One broken task is one error result with its seed, not the end of the campaign (onRig
    // dropped this thread's rig, which may be in any state: the next task starts a new one).
    const message = error instanceof Error ? error.message : String(error);
    return { seed: task.seed, strategy: task.strategy, failed: true, oracles: [], detail: null, windows: [], steps: 0, durationMs: 0, error: message.split('\n')[0] };
  }
  return {
    seed: task.seed,
    strategy: report.strategy,
    failed: failed(report),
    oracles: report.violations.map((v) => v.oracle),
    detail: report.violations[0]?.detail.split('\n')[0] ?? null,
    windows: report.windows,
    orderings: report.orderings.map(({ pair, ordering }) => ({ pair, ordering })),
    ...(task.withHash === true || failed(report) ? { hash: report.hash } : {}),
    steps: report.steps,
    durationMs: report.durationMs,
    ...(task.withTrace === true ? { trace: traceJsonOf(report) } : {}),
    ...(observation !== undefined ? { observation } : {}),
  };
}

/** One schedule of a bounded-exhaustive search (exhaustive-pool.ts); an error fails the search, as it would run one by one. */
export async function runExhaustiveTask(task: ExhaustiveTask): Promise<ExhaustiveTaskResult> {
  return onRig(task, (rig) => runExhaustiveTaskOn(rig, task));
}

/** A campaign row's shrink (campaign-shrink.ts): the search only; the main thread records what it found. */
export async function runShrinkTask(task: ShrinkTask): Promise<ShrinkFound> {
  return onRig(task, (rig) => runShrinkTaskOn(rig, task));
}

/** Runs `work` on this thread's rig for the task's scenario and mode; a rig that threw is dropped (the next task builds a new one). */
async function onRig<T>(task: { readonly scenario: string; readonly mode: RunMode; readonly modules: readonly string[] }, work: (rig: ScenarioRig<ScenarioGuest>) => T): Promise<T> {
  const key = `${task.scenario}/${task.mode}`;
  await loadScenarioModules(task.modules);
  let rig = rigs.get(key);
  try {
    if (rig === undefined) {
      rig = ScenarioRig.open(findScenario(task.scenario), task.mode);
      rigs.set(key, rig);
    }
    return work(rig);
  } catch (error) {
    rigs.delete(key);
    void rig?.close();
    throw error;
  }
}
