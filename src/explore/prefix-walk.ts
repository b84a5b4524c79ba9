import { BranchStateLeak } from './branch.ts';
import type { RunReport, FollowedRun } from './run-report.ts';
import { sameChoice, type ScheduleShape } from './schedule-shape.ts';
import type { Choice } from './schedule.ts';
import type { LenientScheduler } from './schedulers/lenient.ts';
import { firstDivergence } from './trace.ts';

/**
 * Whole runs of schedules that share prefixes, each run from a snapshot along the shared prefix
 * instead of from the start. A bounded search's schedules are exactly that: an earlier run's
 * choices up to a point, then another choice, then the default continuation — taken in order of
 * the point along the same earlier run. The walk keeps one snapshot at a top-level choice point of
 * the prefix the schedules share and moves it forward as the points do, so a schedule costs its
 * suffix, a restore (dirty pages only) and the few choices from the snapshot to its point — not
 * the whole prefix again. Every run is the one `ScenarioRig.runChoices` makes from the start, to
 * the trace hash (what a branch guarantees); only the lists' shared prefixes are not run again.
 */

/** A point of a walk's run to come back to: the whole run there (`RunSnapshot`) and what the rig knows of it. */
export interface WalkPoint {
  /** Back to the point, copying the pages written since (valid while this is the latest point taken). */
  restore(): void;
  /** Back to the point, copying every page (after a later point was taken). */
  restoreAll(): void;
  release(): void;
}

/** A run paused at its start, driven by a walk: what the rig lends it (`ScenarioRig.openWalk`). */
export interface WalkRun {
  /** Follows the list it is given (`followInstead`), then the default continuation; points on. */
  readonly scheduler: LenientScheduler;
  readonly shape: ScheduleShape;
  /** Snapshots the whole run where it is now. */
  snapshot(): WalkPoint;
  /** Goes on to the top-level choice point with `choices` made: false if the run did not stop there. */
  advance(choices: number): boolean;
  /** Goes on to the end of the run and reports it; `onPoint` sees each top-level choice point on the way. */
  finish(onPoint: (choices: number) => void): RunReport;
  /** The run ends here (its session and engine stop). */
  close(): void;
}

/** Choices from the snapshot to a schedule's point at which moving the snapshot there pays off. */
const MOVE_AFTER = 24;

/** `a` and `b` agree on their entries from `from` up to (not including) `to`. */
function agree(a: readonly Choice[], b: readonly Choice[], from: number, to: number): boolean {
  if (a.length < to || b.length < to) return false;
  for (let k = from; k < to; k++) if (a[k] !== b[k] && !sameChoice(a[k], b[k])) return false;
  return true;
}

export class PrefixWalk {
  private run: WalkRun | null = null;
  /** The snapshot at the run's first choice (the walk's point 0), and the one the walk is at: the root or one further on. */
  private root: WalkPoint | null = null;
  private snapshot: WalkPoint | null = null;
  /** The snapshot's point (choices made there) and the list that led to it. */
  private at = 0;
  private path: readonly Choice[] = [];
  /** Something ran since the snapshot was taken or restored. */
  private used = false;
  /** Top-level choice points past the snapshot on the last list's path (before its last choice), ascending. */
  private points: readonly number[] = [];
  private pointsPath: readonly Choice[] = [];
  /** Runs made from a snapshot past the start, and the choices they did not run again. */
  reused = 0;
  savedChoices = 0;
  /** Snapshots taken (at starts and moves), and the time they took; returns to point 0 from a snapshot further on. */
  snapshots = 0;
  snapshotMs = 0;
  returns = 0;
  /** The first run from a snapshot past the start was run twice (state no snapshot holds would show). */
  private checked = false;

  /**
   * @param scenario named in errors
   * @param open starts a run paused at its first choice (the rig's)
   */
  constructor(
    private readonly scenario: string,
    private readonly open: () => WalkRun,
  ) {}

  /**
   * The run of `list` followed (each of its choices must apply when its turn comes: a list made of
   * a run's own choices and one alternative, as a bounded search makes), then the default
   * continuation; with each choice's alternatives, as `ScenarioRig.runChoices` gives them.
   */
  runChoices(list: readonly Choice[]): FollowedRun {
    try {
      return this.walkTo(list);
    } catch (error) {
      // Wherever it stopped, the run is in no state to go on from.
      this.close();
      throw error;
    }
  }

  private walkTo(list: readonly Choice[]): FollowedRun {
    if (this.run === null || !agree(list, this.path, 0, this.at)) this.restart();
    const run = this.run!;
    this.moveTowards(list);
    this.rewind();
    run.scheduler.followInstead(list);
    const from = this.at;
    const points: number[] = [];
    const report = run.finish((choices) => {
      if (choices > from && choices < list.length) points.push(choices);
    });
    this.used = true;
    if (from > 0) {
      this.reused++;
      this.savedChoices += from;
      if (!this.checked) this.check(list, report);
    }
    const { scheduler, shape } = run;
    const result: FollowedRun = { report, shape: shape.copy(), followed: scheduler.followed.slice(), skipped: scheduler.skipped, points: scheduler.points.slice() };
    // A skipped choice shifts the list against the run: its points would not be the list's. A run
    // that threw leaves a session the rig replaces: the next list starts afresh.
    this.points = scheduler.skipped === 0 ? points : [];
    this.pointsPath = list;
    if (report.outcome === 'error') this.close();
    return result;
  }

  /**
   * Runs `list` again from the same snapshot, after a restore this time, as a branch checks its
   * first suffix: state the snapshot cannot see (a closure's variables, a module's) shows as a
   * different run — which would make every run from a snapshot wrong without a sign.
   */
  private check(list: readonly Choice[], first: RunReport): void {
    this.checked = true;
    const run = this.run!;
    const firstEntries = first.trace.entries;
    this.rewind();
    run.scheduler.followInstead(list);
    const again = run.finish(() => undefined);
    this.used = true;
    if (again.hash !== first.hash) {
      const where = firstDivergence(firstEntries, again.trace.entries, ['the first run from the snapshot', 'the same list after a restore']) ?? 'their hashes differ';
      this.close();
      throw new BranchStateLeak(this.scenario, where);
    }
  }

  /** Ends the walk's run; the rig's next run starts afresh. Safe to call more than once. */
  close(): void {
    this.snapshot?.release();
    this.root?.release();
    this.snapshot = null;
    this.root = null;
    this.run?.close();
    this.run = null;
    this.points = [];
  }

  /** Back to point 0: the root snapshot, restored whole when another was taken since (or a run paused there, its root taken, the first time). */
  private restart(): void {
    if (this.run === null) {
      this.run = this.open();
      this.root = this.take();
      this.snapshot = this.root;
      this.used = false;
    } else if (this.snapshot !== this.root) {
      // Only the latest snapshot knows which pages were written since: the root copies back all.
      this.snapshot!.release();
      this.root!.restoreAll();
      this.snapshot = this.root;
      this.used = false;
      this.returns++;
    }
    this.at = 0;
    this.path = [];
    this.points = [];
  }

  private take(): WalkPoint {
    const started = performance.now();
    const snapshot = this.run!.snapshot();
    this.snapshots++;
    this.snapshotMs += performance.now() - started;
    return snapshot;
  }

  /** Back to the snapshot, unless nothing ran since it was taken or restored. */
  private rewind(): void {
    if (this.used) this.snapshot!.restore();
    this.used = false;
  }

  /** Moves the snapshot to the last known top-level point before `list`'s last choice on its path, when far enough ahead. */
  private moveTowards(list: readonly Choice[]): void {
    const run = this.run!;
    const known = this.points;
    for (let k = known.length - 1; k >= 0; k--) {
      const point = known[k];
      if (point >= list.length || point - this.at < MOVE_AFTER) continue;
      if (!agree(list, this.pointsPath, this.at, point)) continue;
      this.rewind();
      run.scheduler.followInstead(list);
      if (!run.advance(point)) throw new Error(`a walk along shared prefixes did not reach choice ${point} again: the scenario's runs are not deterministic`);
      if (this.snapshot !== this.root) this.snapshot!.release();
      this.snapshot = this.take();
      this.at = point;
      this.path = list;
      this.used = false;
      return;
    }
  }
}
