import type { RuntimeEvent } from '../../actors/events.ts';
import type { ActorChange, RunRecording } from '../explore/recorder.ts';
import { formatChoice, type Choice } from '../explore/schedule.ts';
import { formatEvent } from '../explore/trace.ts';

/**
 * A recorded run as one ordered list — scheduler choices, runtime events and actor state changes,
 * in the order they happened — each stamped on the report time axis: the deterministic step clock
 * times STEP_UNITS, plus the item's rank among the items of that step. Equal clocks are common
 * (a handler that no vCPU preempts takes no steps), and the rank keeps them apart and in order.
 */

/** Units of the report axis per step of virtual time. Chrome's unit is the µs, so a step shows as 1 ms. */
export const STEP_UNITS = 1000;

interface Stamped {
  /** Position on the report axis: clock × STEP_UNITS + rank within the step. */
  readonly ts: number;
  readonly clock: number;
  /** False for what happened after the run's trace ended (the engine's unload). */
  readonly traced: boolean;
}

export type TimelineItem = Stamped & (
  | { readonly kind: 'choice'; readonly choice: Choice; readonly text: string }
  | { readonly kind: 'event'; readonly index: number; readonly event: RuntimeEvent; readonly text: string }
  | { readonly kind: 'actor'; readonly change: ActorChange }
);

type Unstamped =
  | { readonly kind: 'choice'; readonly choice: Choice; readonly text: string; readonly clock: number; readonly traced: boolean }
  | { readonly kind: 'event'; readonly index: number; readonly event: RuntimeEvent; readonly text: string; readonly clock: number; readonly traced: boolean }
  | { readonly kind: 'actor'; readonly change: ActorChange; readonly clock: number; readonly traced: boolean };

/** The recording's choices, events and actor changes merged in the order they happened. */
export function timelineItems(recording: RunRecording): TimelineItem[] {
  const { entries, choices, events, actors } = recording;
  const merged: Unstamped[] = [];
  let actor = 0;
  let event = 0;
  let choice = 0;
  // An actor change recorded after n trace entries and m events goes before entry n and event m.
  const actorsBefore = (entriesDone: number, eventsDone: number): void => {
    while (actor < actors.length && actors[actor].at.entries <= entriesDone && actors[actor].at.events <= eventsDone) {
      const change = actors[actor++];
      merged.push({ kind: 'actor', change, clock: change.at.clock, traced: entriesDone < entries.length });
    }
  };
  entries.forEach((entry, index) => {
    actorsBefore(index, event);
    if (entry.text.startsWith('> ')) {
      const next = choices[choice++];
      if (next === undefined) throw new Error(`trace entry #${index} is a choice the recording does not have: ${entry.text}`);
      merged.push({ kind: 'choice', choice: next, text: formatChoice(next), clock: entry.clock, traced: true });
      return;
    }
    const timed = events[event];
    if (timed === undefined || formatEvent(timed.event) !== entry.text) {
      throw new Error(`trace entry #${index} (${entry.text}) is not the recording's event #${event} (${timed === undefined ? 'none' : formatEvent(timed.event)})`);
    }
    merged.push({ kind: 'event', index: event, event: timed.event, text: entry.text, clock: entry.clock, traced: true });
    event++;
  });
  for (; event < events.length; event++) {
    actorsBefore(entries.length, event);
    const timed = events[event];
    merged.push({ kind: 'event', index: event, event: timed.event, text: formatEvent(timed.event), clock: timed.clock, traced: false });
  }
  actorsBefore(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
  return stamp(merged);
}

/** Puts every item on the report axis; items past the STEP_UNITS-th of one step share its last unit. */
function stamp(items: readonly Unstamped[]): TimelineItem[] {
  let clock = -1;
  let rank = 0;
  let last = 0;
  return items.map((item) => {
    // The clock never goes back; an item that claims to (it cannot) stays in order anyway.
    const at = Math.max(item.clock, clock);
    rank = at === clock ? rank + 1 : 0;
    clock = at;
    last = Math.max(last, at * STEP_UNITS + Math.min(rank, STEP_UNITS - 1));
    return { ...item, clock: at, ts: last };
  });
}
