/**
 * The first failing run of a scenario with its first bug's fixes off, recorded for the reports:
 * seeds are tried with random and then PCT (d=2) until one breaks an invariant, then that seed is
 * run again recorded — which must give the same trace hash (recording only reads).
 */
import { SCENARIOS } from '../../scenarios/index.ts';
import type { RunRecording } from '../../src/explore/recorder.ts';
import { failed, ScenarioRig, type RunReport, type ScenarioDefinition, type ScenarioGuest, type StrategyName } from '../../src/index.ts';

/** Seeds tried per strategy before a scenario counts as not failing (each found its race by seed 7 when written). */
export const SEED_BUDGET = 20;
const PLANS: readonly StrategyName[] = ['random', 'pct'];

export interface FailingRun {
  readonly report: RunReport;
  readonly recording: RunRecording;
  /** The same seed's hash without recording. */
  readonly unrecordedHash: string;
}

export async function firstFailingRun(definition: ScenarioDefinition<ScenarioGuest>): Promise<FailingRun | null> {
  const rig = ScenarioRig.open(definition, 'inline');
  try {
    const fixes = rig.fixes.without(definition.bugs[0].fixesOff);
    for (let seed = 1; seed <= SEED_BUDGET; seed++) {
      for (const strategy of PLANS) {
        const request = { seed, strategy, depth: 2, fixes };
        const plain = rig.run(request);
        if (!failed(plain)) continue;
        const report = rig.run(request, { record: true });
        const recording = rig.lastRecording;
        if (recording === null) throw new Error('a run asked to record has no recording');
        return { report, recording, unrecordedHash: plain.hash };
      }
    }
    return null;
  } finally {
    await rig.close();
  }
}

export { SCENARIOS };
