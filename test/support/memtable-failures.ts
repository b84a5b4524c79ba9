import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { failed, ScenarioRig, type RunReport } from '../../src/explore/scenario-rig.ts';
import type { ScenarioGuest } from '../../src/explore/scenario.ts';
import { writeRunTrace } from '../../src/report/trace-file.ts';

/** The first PCT (d=2) seed of memtable-stale-icache that fails with `off` off: a recorded failure to keep fixed. */
export function firstMemtableFailure(rig: ScenarioRig<ScenarioGuest>, off: readonly string[]): RunReport {
  const fixes = rig.fixes.without(off);
  for (let seed = 1; seed <= 40; seed++) {
    const report = rig.run({ seed, strategy: 'pct', depth: 2, fixes });
    if (failed(report)) return report;
  }
  throw new Error(`no PCT seed up to 40 failed with ${off.join(', ')} off`);
}

/** The same, written as a trace file into `dir` (on a rig of its own); returns its path. */
export async function writeFirstMemtableFailure(dir: string, off: readonly string[]): Promise<string> {
  const rig = ScenarioRig.open(memtableStaleIcache, 'inline');
  try {
    return writeRunTrace(dir, firstMemtableFailure(rig, off));
  } finally {
    await rig.close();
  }
}
