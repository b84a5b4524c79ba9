import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { RunRecording } from '../explore/recorder.ts';
import type { RunReport } from '../explore/scenario-rig.ts';
import type { StoryLine } from '../explore/story.ts';
import { htmlPage } from './html.ts';
import { chromeTrace } from './perfetto.ts';
import { buildTimeline } from './timeline.ts';
import { traceFileName } from './trace-file.ts';

/**
 * Writing a recorded run's reports: the Perfetto / Chrome trace JSON and the HTML timeline, to
 * paths given by the user (`run.ts --perfetto FILE --html FILE`) or next to the run's trace file
 * (the campaign).
 */

/** Which reports to write, and where each goes (null: not written). */
export interface ReportTargets {
  readonly perfetto: string | null;
  readonly html: string | null;
}

/**
 * Writes the reports `targets` names; both come from one layout of the run. For a shrunk run,
 * `story` (its events that matter) is marked, and the HTML timeline shows only those by default.
 * Returns the paths written.
 */
export function writeReports(targets: ReportTargets, report: RunReport, recording: RunRecording, tracePath: string | null = null, story: readonly StoryLine[] = []): ReportTargets {
  if (targets.perfetto === null && targets.html === null) return targets;
  const timeline = buildTimeline(report, recording, tracePath, story);
  const write = (path: string | null, text: () => string): string | null => {
    if (path === null) return null;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text());
    return path;
  };
  return {
    perfetto: write(targets.perfetto, () => JSON.stringify(chromeTrace(timeline))),
    html: write(targets.html, () => htmlPage(timeline)),
  };
}

export interface RunReportsOptions {
  /** Write the Perfetto JSON (default true) and the HTML timeline (default false). */
  readonly perfetto?: boolean;
  readonly html?: boolean;
  /** The suffix the run's trace file was written with (`writeRunTrace(dir, report, suffix)`), so the names match. */
  readonly suffix?: string;
  /** The trace file itself, for the replay command the reports print. */
  readonly tracePath?: string | null;
  /** A shrunk run's story: its events that matter. */
  readonly story?: readonly StoryLine[];
}

/**
 * The reports of a recorded run, next to its trace file in `dir`: the trace's name with
 * `.perfetto.json` and `.html` for `.json`. Returns the paths written (null: not asked for).
 */
export function writeRunReports(dir: string, report: RunReport, recording: RunRecording, options: RunReportsOptions = {}): ReportTargets {
  const base = join(dir, traceFileName(report, options.suffix ?? '').replace(/\.json$/, ''));
  return writeReports(
    { perfetto: options.perfetto === false ? null : `${base}.perfetto.json`, html: options.html === true ? `${base}.html` : null },
    report, recording, options.tracePath ?? null, options.story ?? [],
  );
}
