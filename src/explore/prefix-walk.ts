import { BranchStateLeak } from './branch.ts';
import type { RunReport, FollowedRun } from './run-report.ts';
import { sameChoice, type ScheduleShape } from './schedule-shape.ts';
import type { Choice } from './schedule.ts';
import type { LenientScheduler } from './schedulers/lenient.ts';
import { firstDivergence } from './trace.ts';

/**
 * Runs of schedules that share prefixes, each from a snapshot along the shared prefix instead of
 * from the walk's point 0 (the start of a run, or a branch point). A bounded search's schedules
 * are exactly that: an earlier run's choices up to a point, then another choice, then the default
 * continuation — taken in order of the point along the same earlier run. The walk keeps a snapshot
 * at point 0 and one at a top-level choice point of the prefix the schedules share, moved forward
 * as the points do, so a schedule costs its suffix, a restore (dirty pages only) and the few
 * choices from the snapshot to its point — not the whole prefix again. A list that leaves the
 * prefix before the snapshot goes back to point 0 (every page copied back: only the latest
 * snapshot watches writes). Every run is the one made from point 0, to the trace hash (what a
 * branch guarantees); only the lists' shared prefixes are not run again.
 */

/** A point of a walk's run to come back to: the whole run there (`RunSnapshot`) and what the rig knows of it. */
export interface WalkPoint {
  /** Back to the point: the pages written since, or every page when another point was taken since. */
  restore(): void;
  /** The point is not come back to again (its write watches end, unless a later point's). */
  release(): void;
}

/** A run paused at the walk's point 0, driven by the walk: what the rig lends it (`ScenarioRig.openWalk`, `OpenBranch.walk`). */
export interface WalkRun {
  /** Follows the list it is given (`followInstead`), then the default continuation; points on. */
  readonly scheduler: LenientScheduler;
  readonly shape: ScheduleShape;
  /** Snapshots the whole run where it is now. */
  snapshot(): WalkPoint;
  /** Goes on to the top-level choice point with `choices` made past point 0: false if the run did not stop there. */
  advance(choices: number): boolean;
  /** Goes on to the end of the run (or its horizon) and reports it; `onPoint` sees each top-level choice point on the way (choices past point 0). */
  finish(onPoint: (choices: number) => void): RunReport;
  /** The walk is done with the run (a whole run's session and engine stop; a branch keeps its own). */
  close(): void;
}

/** Fewest choices a move of the snapshot skips (below that, replaying them is as cheap as any estimate). */
const MOVE_AT_LEAST = 8;
/** Weight of the newest measurement in the running estimates of a choice's and a snapshot's cost. */
const NEWEST = 0.25;

/** A running estimate with `measured` taken in (the first measurement as it is). */
const estimate = (so: number, measured: number): number => (so === 0 ? measured : so + NEWEST * (measured - so));

/** `a` and `b` agree on their entries from `from` up to (not including) `to`. */
function agree(a: readonly Choice[], b: readonly Choice[], from: number, to: number): boolean {
  if (a.length < to || b.length < to) return false;
  for (let k = from; k < to; k++) if (a[k] !== b[k] && !sameChoice(a[k], b[k])) return false;
  return true;
}

/** Opening a walk's run failed before its first choice (its engine did not start): a run from the start reports why. */
export class WalkSetupFailed extends Error {
  constructor(readonly reason: unknown) {
    super(`the walk's run could not start: ${reason instanceof Error ? reason.message : String(reason)}`);
    this.name = 'WalkSetupFailed';
  }
}

/** What a walk saved and what it cost. */
export interface WalkStats {
  /** Runs made from a snapshot past point 0, and the choices they did not run again. */
  readonly reused: number;
  readonly savedChoices: number;
  /** Snapshots taken (at point 0 and at moves), and returns to point 0 from a snapshot further on (every page copied back). */
  readonly snapshots: number;
  readonly returns: number;
}

/** How a walk moves its snapshot. */
export interface WalkOptions {
  /** Move it once it is this many choices behind a schedule's point (default: when the measured costs say it pays). */
  readonly moveEvery?: number;
}

/** The list a scheduler holds while a snapshot is taken: the walk's input is not the run's state (a restore would cut the caller's array). */
const NO_LIST: readonly Choice[] = [];

/**
 * Runs lists of choices that share prefixes along them (see above). Not for lists with choices
 * that do not apply when their turn comes: the run's choice points would not be the list's (such
 * a run is not used to move the snapshot).
 */
export class PrefixWalk {
  private run: WalkRun | null = null;
  /** The snapshot at point 0, and the one the walk is at: the root or one further on. */
  private root: WalkPoint | null = null;
  private snapshot: WalkPoint | null = null;
  /** The snapshot's point (choices made past point 0 there) and the choices that led to it (a copy). */
  private at = 0;
  private path: readonly Choice[] = [];
  /** Something ran since the snapshot was taken or restored. */
  private used = false;
  /** Top-level choice points past the snapshot on the last list's path (before its last choice), ascending, and that list (a copy). */
  private points: readonly number[] = [];
  private pointsPath: readonly Choice[] = [];
  private counts = { reused: 0, savedChoices: 0, snapshots: 0, returns: 0 };
  /** The first run was run again after a restore (state no snapshot holds would show). */
  private checked = false;
  /**
   * What a choice of the shared prefix costs to run again, what a snapshot costs to take and what
   * a return to point 0 costs (ms, running estimates): whether moving the snapshot pays depends on
   * them — a short suffix from a branch point is a few milliseconds, a snapshot of the whole simulation a few too.
   */
  private choiceMs = 0;
  private takeMs = 0;
  private returnMs = 0;
  /** Schedules a point has (its alternatives, one after another: a running estimate), and the current point's so far. */
  private perPoint = 1;
  private lastEnd = -1;
  private streak = 0;
  /** Schedules run along the current earlier run's prefix so far. */
  private sincePrefix = 0;

  /**
   * @param scenario named in errors
   * @param open starts a run paused at point 0 (the rig's); throws WalkSetupFailed when its engine cannot start
   * @param fromStart runs a list from the start without the walk: what a list gets when `open` failed so
   */
  constructor(
    private readonly scenario: string,
    private readonly open: () => WalkRun,
    private readonly fromStart?: (list: readonly Choice[]) => FollowedRun,
    private readonly options: WalkOptions = {},
  ) {
    const every = options.moveEvery;
    if (every !== undefined && (!Number.isInteger(every) || every < 1)) throw new RangeError(`a walk moves its snapshot every ≥ 1 choices, got ${every}`);
  }

  get stats(): WalkStats {
    return { ...this.counts };
  }

  /**
   * The run of `list` followed (each of its choices must apply when its turn comes: a list made of
   * a run's own choices and one alternative, as a bounded search makes), then the default
   * continuation; with each choice's alternatives, as `ScenarioRig.runChoices` gives them.
   */
  runChoices(list: readonly Choice[]): FollowedRun {
    try {
      // Another earlier run's prefix than the last list's: the schedules along that one are done.
      if (!agree(list, this.pointsPath, 0, Math.min(list.length, this.pointsPath.length) - 1)) this.sincePrefix = 0;
      this.sincePrefix++;
      if ((this.run === null || !agree(list, this.path, 0, this.at)) && !this.restart()) return this.fromStart!(list);
      return this.walkTo(list);
    } catch (error) {
      // Wherever it stopped, the run is in no state to go on from.
      this.close();
      throw error;
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

  private walkTo(list: readonly Choice[]): FollowedRun {
    const run = this.run!;
    if (list.length === this.lastEnd) this.streak++;
    else {
      if (this.streak > 0) this.perPoint = estimate(this.perPoint, this.streak);
      this.lastEnd = list.length;
      this.streak = 1;
    }
    this.moveTowards(list);
    const from = this.at;
    const points: number[] = [];
    const replayed = list.length - 1 - from;
    const started = performance.now();
    let timed = replayed < MOVE_AT_LEAST;
    const report = this.follow(list, (choices) => {
      if (choices > from && choices < list.length) points.push(choices);
      if (!timed && choices >= list.length - 1) {
        // The list's shared part is replayed by now: what a move would have saved.
        timed = true;
        this.choiceMs = estimate(this.choiceMs, (performance.now() - started) / replayed);
      }
    });
    const { scheduler, shape } = run;
    const result: FollowedRun = { report, shape: shape.copy(), followed: scheduler.followed.slice(), skipped: scheduler.skipped, points: scheduler.points.slice() };
    if (from > 0) {
      this.counts.reused++;
      this.counts.savedChoices += from;
    }
    if (!this.checked) this.check(list, report);
    // A skipped choice shifts the list against the run: its points would not be the list's. A run
    // that threw leaves a session the rig replaces: the next list starts afresh.
    this.points = scheduler.skipped === 0 ? points : [];
    this.pointsPath = list.slice();
    if (report.outcome === 'error') this.close();
    return result;
  }

  /**
   * Runs `list` again from the same snapshot, after a restore this time, as a branch checks its
   * first suffix: state the snapshot cannot see (a closure's variables, a module's) shows as a
   * different run — which would make every run after a restore wrong without a sign.
   */
  private check(list: readonly Choice[], first: RunReport): void {
    this.checked = true;
    const firstEntries = first.trace.entries;
    const again = this.follow(list, () => undefined);
    if (again.hash !== first.hash) {
      const where = firstDivergence(firstEntries, again.trace.entries, ['the first run from the snapshot', 'the same list after a restore']) ?? 'their hashes differ';
      this.close();
      throw new BranchStateLeak(this.scenario, where);
    }
  }

  /**
   * Back to point 0: a run paused there and its snapshot the first time (false: the run could not
   * start, and the list runs from the start instead); the root snapshot later — every page copied
   * back when a move took another since.
   */
  private restart(): boolean {
    if (this.run === null) {
      try {
        this.run = this.open();
      } catch (error) {
        if (!(error instanceof WalkSetupFailed) || this.fromStart === undefined) throw error;
        return false;
      }
      this.root = this.take();
      this.snapshot = this.root;
      this.used = false;
    } else if (this.snapshot !== this.root) {
      this.snapshot!.release();
      const started = performance.now();
      this.root!.restore();
      this.returnMs = estimate(this.returnMs, performance.now() - started);
      this.counts.returns++;
      this.snapshot = this.root;
      this.used = false;
    }
    this.at = 0;
    this.path = [];
    this.points = [];
    return true;
  }

  private take(): WalkPoint {
    const run = this.run!;
    const list = run.scheduler.list;
    run.scheduler.followInstead(NO_LIST);
    const started = performance.now();
    const snapshot = run.snapshot();
    this.takeMs = estimate(this.takeMs, performance.now() - started);
    this.counts.snapshots++;
    run.scheduler.followInstead(list);
    return snapshot;
  }

  /** `list` run from the snapshot (restored first, unless nothing ran since) to the end. */
  private follow(list: readonly Choice[], onPoint: (choices: number) => void): RunReport {
    this.rewind();
    this.run!.scheduler.followInstead(list);
    const report = this.run!.finish(onPoint);
    this.used = true;
    return report;
  }

  /** Back to the snapshot, unless nothing ran since it was taken or restored. */
  private rewind(): void {
    if (this.used) this.snapshot!.restore();
    this.used = false;
  }

  /**
   * Moves the snapshot to the last known top-level point before `list`'s last choice on its path,
   * once it is far enough behind. Moving every g choices costs a snapshot and a later return to
   * point 0 per move, and leaves each of the d·g schedules until the next move (d a point's) g/2
   * choices to replay on average: the cost per schedule is least at g = √(2 · (snapshot + return) / (d · choice)).
   */
  private moveTowards(list: readonly Choice[]): void {
    const every = this.options.moveEvery;
    if (every !== undefined) this.moveBy(list, (skipped) => skipped >= every);
    else if (this.choiceMs > 0) this.moveBy(list, this.pays());
  }

  /** Whether skipping that many choices pays for a move, by the measured costs. */
  private pays(): (skipped: number) => boolean {
    const perMove = this.takeMs + (this.returnMs || this.takeMs);
    const gap = Math.max(MOVE_AT_LEAST, Math.sqrt((2 * perMove) / (Math.max(1, this.perPoint) * this.choiceMs)));
    // A move pays only if enough schedules are left on this prefix to replay less. How many is not
    // known; as many again as it has had so far is the guess (a prefix's schedules are a few, or
    // hundreds): lists that leave the prefix every few schedules (free orders everywhere) stay at point 0.
    const left = this.sincePrefix;
    return (skipped) => skipped >= gap && skipped * this.choiceMs * left >= perMove;
  }

  /** Moves to the last known point `list` passes through that `worth` accepts (by the choices it skips). */
  private moveBy(list: readonly Choice[], worth: (skipped: number) => boolean): void {
    const run = this.run!;
    const known = this.points;
    for (let k = known.length - 1; k >= 0; k--) {
      const point = known[k];
      if (point >= list.length || !worth(point - this.at)) continue;
      if (!agree(list, this.pointsPath, this.at, point)) continue;
      this.rewind();
      run.scheduler.followInstead(list);
      if (!run.advance(point)) throw new Error(`a walk along shared prefixes did not reach choice ${point} again: the scenario's runs are not deterministic`);
      if (this.snapshot !== this.root) this.snapshot!.release();
      this.snapshot = this.take();
      this.at = point;
      this.path = list.slice(0, point);
      this.used = false;
      return;
    }
  }
}
