import type { Alternative, ChoiceShape, ScheduleShape } from '../schedule-shape.ts';
import { isEnabled, type Choice, type Enabled, type Scheduler } from '../schedule.ts';

/**
 * The strategy label of a run that followed a list of choices leniently, by who made the list: the
 * shrinker, the bounded search, the coverage-guided search, or the retrace of a free-running run;
 * or of a run branched from a snapshot (its prefix from one seed, its suffix from another); or a
 * recorded schedule followed again with other fixes, or after the code drifted from it ('followed').
 */
export type ScheduleLabel = 'shrunk' | 'exhaustive' | 'covering' | 'guided' | 'branched' | 'followed';
export const SCHEDULE_LABELS: readonly ScheduleLabel[] = ['shrunk', 'exhaustive', 'covering', 'guided', 'branched', 'followed'];
export const SHRUNK_STRATEGY: ScheduleLabel = 'shrunk';

/** A run that followed a made-up schedule: it comes from no seed and strategy, only its trace runs it again. */
export const isScheduleLabel = (label: string): label is ScheduleLabel => (SCHEDULE_LABELS as readonly string[]).includes(label);

/**
 * A choice in a list to follow. A slice may be anchored to its vCPU's own progress — run until
 * the vCPU has retired `until` steps — so that cutting other vCPUs' choices out of the list does
 * not move where this vCPU is stopped: what a preemption point means is where its vCPU was.
 */
export type ListedChoice = Choice | (Extract<Choice, { kind: 'run' }> & { readonly until: number });

/**
 * Follows a list of choices leniently — the replay a shrinker needs, where a choice list has been
 * cut and its choices no longer all apply. A choice that is not possible now is skipped (an
 * anchored slice whose vCPU is already past its anchor, too); inside a handler, a choice that only
 * the main loop can make waits for the handler to finish; when the list runs out, the default
 * continuation (ScheduleShape) goes on to the end of the run. `followed` is what was chosen, each
 * slice anchored.
 */
export class LenientScheduler implements Scheduler {
  readonly name: string = SHRUNK_STRATEGY;
  private next = 0;
  /** Listed choices that were not possible when their turn came. */
  skipped = 0;
  /** Every choice made, slices anchored to their vCPU's progress. */
  readonly followed: ListedChoice[] = [];
  /** With `alternatives` on: at every choice, what else could have acted, and the preemptions before it. */
  readonly points: ChoicePoint[] = [];

  constructor(
    private choices: readonly ListedChoice[],
    private readonly shape: ScheduleShape,
    /** Steps vCPU `vcpu` has retired so far (anchors slices). */
    private readonly retired: (vcpu: number) => number,
    private readonly watch?: ChoiceWatcher,
    private readonly alternatives = false,
  ) {}

  /** The list being followed (its entries before the next one to take were taken, or skipped). */
  get list(): readonly ListedChoice[] {
    return this.choices;
  }

  /**
   * Follows `choices` from here on instead: its entries up to here must be those of the list
   * followed so far (a walk that restored a snapshot taken along a shared prefix, see PrefixWalk).
   */
  followInstead(choices: readonly ListedChoice[]): void {
    this.choices = choices;
  }

  choose(enabled: Enabled): Choice {
    let choice: Choice | null = null;
    while (this.next < this.choices.length) {
      const listed = this.resolve(this.choices[this.next]);
      if (listed !== null && enabled.preemption !== null && listed.kind !== 'run' && listed.kind !== 'proceed') break;
      this.next++;
      if (listed !== null && isEnabled(listed, enabled)) {
        choice = listed;
        break;
      }
      this.skipped++;
    }
    choice ??= this.shape.defaultChoice(enabled);
    this.followed.push(choice.kind === 'run' ? { kind: 'run', vcpu: choice.vcpu, steps: choice.steps, until: this.retired(choice.vcpu) + choice.steps } : choice);
    const index = this.shape.choices;
    if (this.alternatives) this.points.push({ alternatives: this.shape.alternatives(enabled), preemptionsBefore: this.shape.preemptions, deviationsBefore: this.shape.deviations });
    const shape = this.shape.observe(enabled, choice);
    this.watch?.(index, choice, shape, enabled);
    return choice;
  }

  /** The choice a listed one stands for now; null: an anchored slice its vCPU is already past. */
  private resolve(listed: ListedChoice): Choice | null {
    if (listed.kind !== 'run' || !('until' in listed)) return listed;
    const steps = listed.until - this.retired(listed.vcpu);
    return steps > 0 ? { kind: 'run', vcpu: listed.vcpu, steps } : null;
  }
}

/** A choice point as a bounded search sees it. */
export interface ChoicePoint {
  readonly alternatives: readonly Alternative[];
  /** Preemptions among the choices before this one. */
  readonly preemptionsBefore: number;
  /** Choices before this one that deviated from the default continuation (preemptions or not). */
  readonly deviationsBefore: number;
}

/** Sees each choice as it is made, before it is carried out (what a story of the run is built from). */
export type ChoiceWatcher = (index: number, choice: Choice, shape: ChoiceShape, enabled: Enabled) => void;
