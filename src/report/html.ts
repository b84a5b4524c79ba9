import { readFileSync } from 'node:fs';
import type { RunRecording } from '../explore/recorder.ts';
import type { RunReport } from '../explore/scenario-rig.ts';
import { buildTimeline } from './timeline.ts';
import type { Args, ExitDetail, Lane, PlacedViolation, StoryPoint, Timeline, TimelineMeta } from './timeline-model.ts';

/**
 * A run as one self-contained HTML file: the page's script and style inline, the run embedded as
 * JSON, a Content-Security-Policy that forbids every fetch — it opens from disk, offline, in any
 * browser. The page (html-timeline.js) draws a swimlane per vCPU, the handler and each actor over
 * the step clock (or, to see what happens within a step, over the order of events), lists the
 * broken invariants with the commands that repeat the run, and shows an exit's instruction,
 * registers, the engine's decision and its handler's log when it is clicked.
 */

/** What the page's script reads (`#run-data`); intervals and marks as arrays to keep big runs small. */
export interface HtmlTimelineData {
  readonly meta: TimelineMeta;
  /** Each lane with how many nesting levels its intervals use. */
  readonly lanes: readonly (Lane & { readonly levels: number })[];
  /** [lane index, start, end, depth, category, name, exit ticket or -1, args] */
  readonly slices: readonly (readonly [number, number, number, number, string, string, number, Args])[];
  /** [lane index or -1 for the whole run, at, category, name, args] */
  readonly marks: readonly (readonly [number, number, string, string, Args])[];
  readonly exits: readonly ExitDetail[];
  readonly violations: readonly PlacedViolation[];
  /** A shrunk run's story: the events that matter. */
  readonly story: readonly StoryPoint[];
  readonly points: readonly number[];
  readonly end: number;
}

const asset = (name: string): string => readFileSync(new URL(name, import.meta.url), 'utf8');

const HTML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

/** JSON that cannot end the script element it sits in, nor start a comment or CDATA there. */
const scriptJson = (value: unknown): string => JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

export function htmlTimelineData(timeline: Timeline): HtmlTimelineData {
  const index = new Map(timeline.lanes.map((lane, k) => [lane.id, k]));
  const levels = new Map<string, number>();
  for (const slice of timeline.slices) levels.set(slice.lane, Math.max(levels.get(slice.lane) ?? 1, slice.depth + 1));
  const laneIndex = (id: string): number => index.get(id) ?? -1;
  return {
    meta: timeline.meta,
    lanes: timeline.lanes.map((lane) => ({ ...lane, levels: levels.get(lane.id) ?? 1 })),
    slices: timeline.slices.map((s) => [laneIndex(s.lane), s.start, s.end, s.depth, s.category, s.name, s.exit ?? -1, s.args] as const),
    marks: timeline.marks.map((m) => [m.lane === null ? -1 : laneIndex(m.lane), m.at, m.category, m.name, m.args] as const),
    exits: timeline.exits,
    violations: timeline.violations,
    story: timeline.story,
    points: timeline.points,
    end: timeline.end,
  };
}

/** The page of a laid-out run. */
export function htmlPage(timeline: Timeline): string {
  const { meta } = timeline;
  const title = `${meta.scenario} seed ${meta.seed} (${meta.strategy}, ${meta.mode})${timeline.violations.length > 0 ? ` — ${timeline.violations[0].oracle} broken` : ''}`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    // Nothing leaves the page: no fetch, no font, no image but data: ones.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<link rel="icon" href="data:,">',
    `<title>vcpusim: ${escapeHtml(title)}</title>`,
    `<style>\n${asset('./html-timeline.css')}</style>`,
    '</head>',
    '<body>',
    '<noscript>This timeline is drawn by the script inside the file: allow scripts for this page to see it.</noscript>',
    '<main id="app"></main>',
    `<script type="application/json" id="run-data">${scriptJson(htmlTimelineData(timeline))}</script>`,
    `<script>\n${asset('./html-timeline.js')}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** The HTML timeline of a recorded run; `tracePath` (where its trace was written) makes the replay command. */
export function htmlTimeline(report: RunReport, recording: RunRecording, tracePath: string | null = null): string {
  return htmlPage(buildTimeline(report, recording, tracePath));
}
