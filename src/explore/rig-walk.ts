import { SessionError, type Session } from '../../actors/session.ts';
import type { Fixes } from '../intro/fixes.ts';
import type { DeterministicRun } from './deterministic.ts';
import { runSuffix, type LiveRun, type RigRunner } from './live-run.ts';
import { PrefixWalk, WalkSetupFailed, type WalkOptions, type WalkRun } from './prefix-walk.ts';
import type { Seed } from './prng.ts';
import { orderingScanOf, type PrefixOrderings } from './run-judging.ts';
import { RunSnapshot } from './run-snapshot.ts';
import type { ScenarioGuest } from './scenario.ts';
import { ScheduleShape } from './schedule-shape.ts';
import { LenientScheduler, type ScheduleLabel } from './schedulers/lenient.ts';

/**
 * The rig's side of a PrefixWalk: a run paused at its first choice (or at a branch point), which
 * the walk snapshots, moves along and finishes, list after list.
 */

/** A list-following scheduler with its choice points, for a walk. */
export interface WalkScheduler {
  readonly scheduler: LenientScheduler;
  readonly shape: ScheduleShape;
}

/** A walk over whole runs: each list's run as `runChoices(seed, list, fixes, { alternatives: true, label })` makes it. */
export function openWalkOn<G extends ScenarioGuest>(runner: RigRunner<G>, seed: Seed, fixes: Fixes<string>, label: ScheduleLabel, options: WalkOptions): PrefixWalk {
  return new PrefixWalk(runner.definition.name, () => walkRun(runner, seed, fixes, label), (list) => runner.runChoices(seed, list, fixes, { alternatives: true, label }), options);
}

/** A run paused at its first choice, for a PrefixWalk to drive. */
function walkRun<G extends ScenarioGuest>(runner: RigRunner<G>, seed: Seed, fixes: Fixes<string>, label: ScheduleLabel): WalkRun {
  const live = runner.begin(seed, label, fixes, {});
  const { session } = live.context;
  live.branched = true;
  try {
    session.restart(live.restart);
    runner.startRecording(live.context);
  } catch (error) {
    // A run from the start reports this (its engine did not start): the walk runs the list so.
    runner.endEngine(live);
    if (!(error instanceof SessionError)) runner.distrustSession();
    throw new WalkSetupFailed(error);
  }
  const own = walkScheduler(runner, session);
  const loop = runner.loop(live.context, own.scheduler);
  return walkOver(runner, live, loop, own, 0, undefined, () => {
    loop.release();
    live.introspection.stop();
  });
}

/** A list-following scheduler with its choice points, for a walk. */
export function walkScheduler<G extends ScenarioGuest>(runner: RigRunner<G>, session: Session): WalkScheduler {
  const shape = new ScheduleShape(runner.definition.bounds.slice);
  return { shape, scheduler: new LenientScheduler([], shape, (vcpu) => session.retiredBy(vcpu), undefined, true) };
}

/**
 * A paused run (`live`, `loop`) as a walk drives it: its choices from `base` on are the walk's
 * (counted from there), each run cut `horizon` choices past `base` when given.
 */
export function walkOver<G extends ScenarioGuest>(
  runner: RigRunner<G>, live: LiveRun<G>, loop: DeterministicRun, own: WalkScheduler, base: number, horizon: number | undefined, close: () => void,
): WalkRun {
  const { session, trace } = live.context;
  const { scheduler, shape } = own;
  loop.scheduler = scheduler;
  // Append-only, saved by length; the list followed is the walk's input, not the run's state.
  const logs = (): unknown[][] => [live.events, live.choicesBefore, ...trace.logs, scheduler.followed, scheduler.points, shape.preemptionAt, shape.preempted, scheduler.list as unknown[]];
  let prefixOrderings: PrefixOrderings | null = null;
  return {
    scheduler, shape,
    snapshot: () => {
      const orderings = orderingScanOf(runner.definition, live.events, live.choicesBefore);
      prefixOrderings = orderings;
      // The prefix's entries written out (text and running hash) before the snapshot, not again by every run's hash.
      trace.writeOut();
      const taken = RunSnapshot.take(runner.guest.machine, { run: live, loop, session, guest: runner.guest }, logs());
      // Each point has its own scan of the events before it: a run goes on from the one it was restored to.
      return {
        restore: () => {
          taken.restore();
          prefixOrderings = orderings;
        },
        release: () => taken.release(),
      };
    },
    advance: (choices) => loop.continue((made) => made >= base + choices) === null && loop.counter.choices === base + choices,
    finish: (onPoint) => {
      live.started = performance.now();
      return runner.settle(live, () => runSuffix(live, loop, base, horizon, onPoint), prefixOrderings, true);
    },
    close,
  };
}
