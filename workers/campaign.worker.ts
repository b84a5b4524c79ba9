import { findScenario } from '../scenarios/index.ts';
import { failed, ScenarioRig } from '../src/explore/scenario-rig.ts';
import type { ScenarioGuest } from '../src/explore/scenario.ts';
import type { CampaignResult, CampaignTask } from '../src/explore/campaign.ts';
import { fixesWithout } from '../src/intro/fixes.ts';

/**
 * A campaign task (one piscina task = one run). Each pool thread keeps one rig per scenario and
 * mode, so a task costs a snapshot restore and the run itself, not a new machine. The rigs live as
 * long as the thread: the pool's destroy() terminates it, and with it any vCPU workers it started.
 */

const rigs = new Map<string, ScenarioRig<ScenarioGuest>>();

export async function runCampaignTask(task: CampaignTask): Promise<CampaignResult> {
  const key = `${task.scenario}/${task.mode}`;
  let report;
  try {
    let rig = rigs.get(key);
    if (rig === undefined) {
      rig = ScenarioRig.open(findScenario(task.scenario), task.mode);
      rigs.set(key, rig);
    }
    report = rig.run({ seed: task.seed, strategy: task.strategy, depth: task.depth, fixes: fixesWithout(task.fixesOff) });
  } catch (error) {
    // One broken run is one failed result with its seed, not the end of the campaign; this
    // thread's rig may be in any state, so the next task starts a new one.
    const rig = rigs.get(key);
    rigs.delete(key);
    void rig?.close();
    const message = error instanceof Error ? error.message : String(error);
    return { seed: task.seed, strategy: task.strategy, failed: true, invariant: 'exception', detail: message.split('\n')[0], windows: [], hash: '', steps: 0, durationMs: 0 };
  }
  const first = report.violations[0];
  return {
    seed: task.seed,
    strategy: report.strategy,
    failed: failed(report),
    invariant: first?.oracle ?? null,
    detail: first?.detail.split('\n')[0] ?? null,
    windows: report.windows,
    hash: report.hash,
    steps: report.steps,
    durationMs: report.durationMs,
  };
}
