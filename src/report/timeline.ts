import type { RunRecording } from '../explore/recorder.ts';
import type { RunReport } from '../explore/scenario-rig.ts';
import { nest } from './nesting.ts';
import { commandsOf } from './text.ts';
import { STEP_UNITS, timelineItems } from './timeline-items.ts';
import type { StoryLine } from '../explore/story.ts';
import type { Flow, Mark, PlacedViolation, StoryPoint, Timeline } from './timeline-model.ts';
import { inside, walkTimeline, type Walked } from './timeline-walk.ts';

/**
 * A recorded run as the reports show it (see timeline-model.ts): its items in order, laid out on
 * lanes, intervals nested, arrows resolved, every broken invariant placed where it was found.
 */

/** When the rig's own invariants are checked (the scenario's oracles say theirs). */
const RIG_PHASES: Readonly<Record<string, string>> = {
  'instructions-supported': 'end',
  'run-completes': 'end',
  'engine-runs': 'failure',
  'simulation-runs': 'end',
  'window-goals': 'after-uninit',
  'engine-unloads': 'after-uninit',
};

/** Where on the axis a violation found in each phase goes. */
const PHASE_PLACES: Readonly<Record<string, (walked: Walked) => number>> = {
  // A continuous oracle that breaks ends the run there: at the end of its trace.
  continuous: (walked) => walked.traceEnd,
  end: (walked) => walked.traceEnd,
  'after-uninit': (walked) => walked.lastItem,
  failure: (walked) => walked.failedAt ?? walked.traceEnd,
};

const CLOCK_NOTE = `time is the deterministic step clock (instructions retired by all vCPUs), not wall time: ts = step × ${STEP_UNITS} + the rank of the entry within that step, in µs — so 1 ms on the ruler is 1 step, and the µs inside a step order what happened in it`;

/**
 * The reports' view of `report`, recorded as `recording`; `tracePath` is where its trace was
 * written, if it was; `story`: for a shrunk run, the lines that tell it (placed as marks too).
 */
export function buildTimeline(report: RunReport, recording: RunRecording, tracePath: string | null = null, story: readonly StoryLine[] = []): Timeline {
  const items = timelineItems(recording);
  // The k-th traced choice or event is trace entry k: where the story's lines go on the axis.
  const entryAt = items.filter((item) => item.kind !== 'actor' && item.traced).map((item) => item.ts);
  const storyPoints: StoryPoint[] = story.map((line) => ({ at: entryAt[line.entry] ?? entryAt[entryAt.length - 1] ?? 0, clock: line.clock, text: line.text }));
  const walked = walkTimeline(items, recording);
  const nested = nest(walked.lanes, walked.drafts);
  const laneOf = (draft: Parameters<typeof nested.placed.get>[0]): string => {
    const slice = nested.placed.get(draft);
    if (slice === undefined) throw new Error(`an arrow points at "${draft.name}", which was not placed`);
    return slice.lane;
  };
  const flows: Flow[] = walked.flows.map((flow) => ({
    name: flow.name,
    category: flow.category,
    from: { lane: laneOf(flow.from.draft), at: flow.from.at ?? inside(flow.from.draft) },
    to: { lane: laneOf(flow.to.draft), at: flow.to.at ?? inside(flow.to.draft) },
  }));
  const violations: PlacedViolation[] = report.violations.map((violation) => {
    const phase = recording.oraclePhases[violation.oracle] ?? RIG_PHASES[violation.oracle] ?? 'end';
    return { oracle: violation.oracle, detail: violation.detail, phase, at: (PHASE_PLACES[phase] ?? PHASE_PLACES.end)(walked) };
  });
  const marks: Mark[] = [
    ...walked.marks,
    ...violations.map((v): Mark => ({ lane: null, name: `violation: ${v.oracle}`, category: 'violation', at: v.at, args: { detail: v.detail, phase: v.phase } })),
    ...report.windows.map((name): Mark => ({ lane: null, name: `window reached: ${name}`, category: 'window', at: walked.lastItem, args: {} })),
    ...storyPoints.map((point): Mark => ({ lane: null, name: point.text, category: 'story', at: point.at, args: { step: point.clock } })),
  ];
  const commands = commandsOf(report, tracePath);
  return {
    meta: {
      scenario: report.scenario, seed: report.seed, strategy: report.strategy, mode: report.mode, fixesOff: report.fixesOff, outcome: report.outcome,
      hash: report.hash, steps: report.steps, choices: report.choices, vcpus: recording.vcpus, windows: report.windows,
      rerun: commands.rerun, replay: commands.replay, clock: CLOCK_NOTE, stepUnits: STEP_UNITS,
    },
    lanes: nested.lanes,
    slices: nested.slices,
    marks,
    flows,
    exits: walked.exits,
    violations,
    story: storyPoints,
    points: items.map((item) => item.ts),
    end: walked.end,
  };
}
