import type { RuntimeEvent } from '../../actors/events.ts';
import { disassemble } from '../asm/index.ts';
import { formatEvent } from './trace.ts';
import type { ExitCapture, RunRecording } from './recorder.ts';
import type { Choice, PreemptionPoint } from './schedule.ts';

/**
 * The story of a shrunk run: its preemptions with the few semantic events around each (exits with
 * the instruction disassembled, the handler's decisions, engine notes, pauses) and the invariant
 * that broke — the lines a person would write in a bug report.
 */

/** A preemption as it happened: who could have gone on, who ran instead, and where both were. */
export interface PreemptionNote {
  /** Index of the preempting choice in the run's choices. */
  readonly index: number;
  readonly choice: Choice;
  /** The vCPU switched away from, or -1: the handler. */
  readonly preempted: number;
  /** The preempted vCPU was stopped at an exit (what could go on was its handling). */
  readonly preemptedAtExit: boolean;
  /** Set when the handler was preempted (or resumed instead of a vCPU) at a point inside it. */
  readonly point: PreemptionPoint | null;
  /** RIP and instruction of the preempted vCPU, and of the vCPU that runs instead ("" when none). */
  readonly preemptedAt: string;
  readonly runsAt: string;
}

/** One line of the story, placed in the run. */
export interface StoryLine {
  /** Index of the trace entry it tells. */
  readonly entry: number;
  readonly clock: number;
  readonly text: string;
  /** Semantic events were left out just before this line. */
  readonly gap: boolean;
}

/** Semantic events shown before and after each preemption. */
const BEFORE = 2;
const AFTER = 3;

const hex = (value: bigint): string => value.toString(16);

function instructionText(capture: ExitCapture | undefined, rip: bigint): string {
  if (capture === undefined || capture.code.length === 0) return `${hex(rip)}`;
  const line = disassemble(capture.code, rip, { maxInstructions: 1, bitness: capture.bitness })[0];
  return line === undefined ? hex(rip) : `${hex(rip)}: ${line.text}`;
}

function eventText(event: RuntimeEvent, capture: ExitCapture | undefined): string | null {
  switch (event.kind) {
    case 'stop':
      if (event.stop !== 'exit') return null;
      return `v${event.vcpu} exits (${event.reason}${event.exit !== null && event.exit.access !== 0 ? ` gpa=${hex(event.exit.gpa)} gla=${hex(event.exit.gla)}` : ''}) at ${instructionText(capture, event.rip)}`;
    case 'handle': return `handler: v${event.vcpu}'s exit #${event.ticket} (${event.reason}) → ${event.action}${event.inject >= 0 ? `, inject ${event.inject}` : ''}`;
    case 'note': return `engine: ${formatEvent(event).slice('note '.length)}`;
    case 'pause':
    case 'resume':
    case 'fail': return formatEvent(event);
    default: return null;
  }
}

function preemptionText(note: PreemptionNote, ordinal: number): string {
  const who = note.preempted < 0
    ? `the handler of ${note.point !== null && note.point.handlerVcpu >= 0 ? `v${note.point.handlerVcpu}'s exit` : 'the timer'}${note.point !== null ? ` (at '${note.point.label}')` : ''}`
    : note.preemptedAtExit ? `v${note.preempted}'s exit${note.preemptedAt !== '' ? ` (at ${note.preemptedAt})` : ''}` : `v${note.preempted}${note.preemptedAt !== '' ? ` (at ${note.preemptedAt})` : ''}`;
  const instead = note.choice.kind === 'proceed'
    ? 'the handler goes on'
    : note.choice.kind === 'handle' ? `v${note.choice.vcpu}'s exit is handled` : `v${'vcpu' in note.choice ? note.choice.vcpu : '?'} runs${note.runsAt !== '' ? ` (from ${note.runsAt})` : ''}`;
  return `preemption ${ordinal}: ${who} could ${note.preemptedAtExit ? 'be handled' : 'go on'}; ${instead}`;
}

/** The story's lines, in run order: each preemption with the semantic events around it. */
export function storyOf(recording: RunRecording, preemptions: readonly PreemptionNote[]): StoryLine[] {
  const captures = new Map(recording.exits.map((capture) => [capture.event, capture]));
  const byIndex = new Map(preemptions.map((note, k) => [note.index, { note, ordinal: k + 1 }]));
  const lines: Omit<StoryLine, 'gap'>[] = [];
  const marks: number[] = [];
  let choice = 0;
  let event = 0;
  recording.entries.forEach((entry, index) => {
    if (entry.text.startsWith('> ')) {
      const preemption = byIndex.get(choice++);
      if (preemption === undefined) return;
      marks.push(lines.length);
      lines.push({ entry: index, clock: entry.clock, text: preemptionText(preemption.note, preemption.ordinal) });
      return;
    }
    const timed = recording.events[event];
    const text = timed === undefined ? null : eventText(timed.event, captures.get(event));
    event++;
    if (text !== null) lines.push({ entry: index, clock: entry.clock, text });
  });
  // Around every preemption, and the end of the run (where the invariant broke).
  const keep = new Set<number>();
  for (const mark of marks) for (let k = mark - BEFORE; k <= mark + AFTER; k++) if (k >= 0 && k < lines.length) keep.add(k);
  for (let k = Math.max(0, lines.length - BEFORE); k < lines.length; k++) keep.add(k);
  const kept = [...keep].sort((a, b) => a - b);
  return kept.map((k, i) => ({ ...lines[k], gap: i === 0 ? k > 0 : k > kept[i - 1] + 1 }));
}

/** The story as text: one line per event, a gap marker where events were left out. */
export function formatStory(lines: readonly StoryLine[], violation: { readonly oracle: string; readonly detail: string } | null): string {
  const out: string[] = [];
  for (const line of lines) {
    if (line.gap) out.push('        …');
    out.push(`  ${String(line.clock).padStart(7)}  ${line.text}`);
  }
  if (violation !== null) out.push(`  then ${violation.oracle} broke: ${violation.detail.split('\n')[0]}`);
  return out.join('\n');
}
