import type { Fixes } from '../intro/fixes.ts';
import type { Seed } from './prng.ts';
import type { RunRecording } from './recorder.ts';
import type { RunReport, ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { Choice } from './schedule.ts';
import type { ChoiceWatcher } from './schedulers/lenient.ts';
import { shrinkSchedule, type ShrinkOptions, type ShrinkResult } from './shrink.ts';
import { storyOf, type PreemptionNote, type StoryLine } from './story.ts';
import { instructionAt } from './vcpu-report.ts';

/**
 * Shrinks a failing run of a scenario on its rig: every candidate is a real run of the scenario
 * (same seed, same fixes), followed leniently; the best is run once more, recorded, to tell its
 * story and to write its reports and trace.
 */

/** A failing run to shrink: its seed and the choices it made. */
export interface FailingSchedule {
  readonly seed: Seed;
  readonly choices: readonly Choice[];
}

export interface ShrunkFailure {
  readonly oracle: string;
  /** The input: its choices, preemptions and decisive choices. */
  readonly from: ShrinkResult<RunReport>['from'];
  readonly preemptions: number;
  /** Choices the default continuation would not have made (the shrunk schedule proper). */
  readonly decisive: number;
  readonly runs: number;
  /** No candidate of the result improves it (false: the run budget ran out first). */
  readonly minimal: boolean;
  /** The shrunk run, recorded: its trace replays strictly like any run's. */
  readonly report: RunReport;
  readonly recording: RunRecording | null;
  readonly preemptionNotes: readonly PreemptionNote[];
  readonly story: readonly StoryLine[];
}

/** Shrinks `failing` (which must fail with `fixes`); see shrinkSchedule for the search. */
export function shrinkFailingRun<G extends ScenarioGuest>(rig: ScenarioRig<G>, failing: FailingSchedule, fixes: Fixes<string>, options: ShrinkOptions = {}): ShrunkFailure {
  const result = shrinkSchedule<RunReport>(failing.choices, (choices) => {
    const { report, shape, followed } = rig.runChoices(failing.seed, choices, fixes);
    return {
      oracle: report.violations[0]?.oracle ?? null,
      preemptions: shape.preemptions,
      preemptionAt: shape.preemptionAt,
      preempted: shape.preempted,
      decisive: shape.decisive,
      executed: followed,
      run: report,
    };
  }, options);
  const best = result.best;
  const notes: PreemptionNote[] = [];
  const watch: ChoiceWatcher = (index, choice, shape, enabled) => {
    if (!shape.preempts) return;
    const machine = rig.guest.machine;
    const where = (vcpu: number): string => {
      const rip = machine.vcpu(vcpu).rip;
      return `${rip.toString(16)}: ${instructionAt(machine, vcpu, rip)}`;
    };
    notes.push({
      index, choice, preempted: shape.preempted, preemptedAtExit: enabled.pendingExits.includes(shape.preempted), point: enabled.preemption,
      preemptedAt: shape.preempted >= 0 ? where(shape.preempted) : '',
      runsAt: choice.kind === 'run' ? where(choice.vcpu) : '',
    });
  };
  // The decisive choices alone make the same run: the rest is the default continuation.
  const { report } = rig.runChoices(failing.seed, best.executed.slice(0, best.decisive), fixes, { record: true, watch });
  if (report.hash !== best.run.hash) throw new Error(`shrinking: the recorded re-run of the shrunk schedule gave trace ${report.hash}, the search's run ${best.run.hash} — the scenario is not deterministic`);
  const recording = rig.lastRecording;
  return {
    oracle: result.oracle, from: result.from, preemptions: best.preemptions, decisive: best.decisive, runs: result.runs + 1, minimal: result.minimal,
    report, recording, preemptionNotes: notes, story: recording === null ? [] : storyOf(recording, notes),
  };
}

/** "shrunk from 812 choices / 37 preemptions to 9 decisive choices / 2 preemptions (143 runs, minimal)". */
export function describeShrink(shrunk: ShrunkFailure): string {
  const { from } = shrunk;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  return `shrunk from ${plural(from.choices, 'choice')} / ${plural(from.preemptions, 'preemption')} to ${plural(shrunk.decisive, 'decisive choice')} / ${plural(shrunk.preemptions, 'preemption')} `
    + `(${plural(shrunk.runs, 'run')}; ${shrunk.minimal ? 'no single cut, merge or deletion improves it' : 'the run budget ran out: smaller may exist'})`;
}
