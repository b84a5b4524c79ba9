import type { Args, Lane, Slice, SliceCategory } from './timeline-model.ts';

/**
 * Intervals on one lane must nest (a viewer draws a lane as a stack: Perfetto drops a slice that
 * ends after its parent does). Intervals of different kinds on a vCPU — a pause, a wait for the
 * handler — nest in every run seen so far, but nothing guarantees it: one that would cross goes to
 * an extra lane next to its own ("vCPU 1 (overlapping)") rather than being cut or lost.
 */

/** An interval before it is placed; flows point at drafts, and learn their lane once placed. */
export interface SliceDraft {
  readonly lane: string;
  name: string;
  readonly category: SliceCategory;
  readonly start: number;
  end: number;
  args: Args;
  readonly exit: number | null;
}

export interface Nested {
  readonly lanes: readonly Lane[];
  readonly slices: readonly Slice[];
  /** Where each draft went. */
  readonly placed: ReadonlyMap<SliceDraft, Slice>;
}

const byStartThenLongest = (a: SliceDraft, b: SliceDraft): number => a.start - b.start || b.end - a.end;

/** Places every draft on its lane at its nesting depth, or on an overflow lane when it would cross another. */
export function nest(lanes: readonly Lane[], drafts: readonly SliceDraft[]): Nested {
  const byLane = new Map<string, SliceDraft[]>(lanes.map((lane) => [lane.id, []]));
  for (const draft of drafts) {
    const list = byLane.get(draft.lane);
    if (list === undefined) throw new Error(`an interval names lane "${draft.lane}", which the timeline does not have`);
    list.push(draft);
  }
  const outLanes: Lane[] = [];
  const slices: Slice[] = [];
  const placed = new Map<SliceDraft, Slice>();
  for (const lane of lanes) {
    let pending = [...(byLane.get(lane.id) ?? [])].sort(byStartThenLongest);
    for (let level = 0; level === 0 || pending.length > 0; level++) {
      const target: Lane = level === 0 ? lane : { id: `${lane.id}~${level}`, name: `${lane.name} (overlapping${level > 1 ? ` ${level}` : ''})`, kind: lane.kind };
      outLanes.push(target);
      const crossing: SliceDraft[] = [];
      const open: SliceDraft[] = [];
      for (const draft of pending) {
        while (open.length > 0 && open[open.length - 1].end <= draft.start) open.pop();
        const parent = open[open.length - 1];
        if (parent !== undefined && draft.end > parent.end) {
          crossing.push(draft);
          continue;
        }
        const slice: Slice = { lane: target.id, name: draft.name, category: draft.category, start: draft.start, end: draft.end, depth: open.length, args: draft.args, exit: draft.exit };
        slices.push(slice);
        placed.set(draft, slice);
        open.push(draft);
      }
      pending = crossing;
    }
  }
  return { lanes: outLanes, slices, placed };
}
