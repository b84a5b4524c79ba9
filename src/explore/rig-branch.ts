import { BranchStateLeak, describeBranchPoint, lastPointAtOrBefore, windowOpensAt, type BranchPoint, type BranchPrefix, type BranchRequest, type BranchResult, type BranchSuffix } from './branch.ts';
import type { RunResult } from './deterministic.ts';
import { runSuffix, type RigRunner } from './live-run.ts';
import { PrefixWalk } from './prefix-walk.ts';
import { Prng, type Seed } from './prng.ts';
import { walkOver, walkScheduler } from './rig-walk.ts';
import { orderingScanOf } from './run-judging.ts';
import type { OpenBranch, RunReport } from './run-report.ts';
import { RunSnapshot } from './run-snapshot.ts';
import type { ScenarioDefinition, ScenarioGuest } from './scenario.ts';
import { ScheduleShape } from './schedule-shape.ts';
import type { Scheduler } from './schedule.ts';
import { createScheduler } from './schedulers/index.ts';
import { LenientScheduler } from './schedulers/lenient.ts';
import { ReplayScheduler } from './schedulers/replay.ts';
import { firstDivergence } from './trace.ts';

/**
 * The rig's branch points: one full run of the prefix finds the point, a second runs to it and
 * snapshots the whole simulation, and every suffix runs from there after a restore (dirty pages).
 */

/** The seed a branch's runs start from: the prefix's own, or its trace's. */
function prefixSeed(prefix: BranchPrefix): Seed {
  return 'trace' in prefix ? prefix.trace.seed : prefix.seed;
}

/** Every suffix of `request`, then (unless `check: false`) the first again after a restore: see ScenarioRig.branch. */
export function branchOn<G extends ScenarioGuest>(runner: RigRunner<G>, request: BranchRequest): BranchResult {
  const open = openBranchOn(runner, request);
  try {
    const runs: RunReport[] = [];
    for (const [index, suffix] of request.suffixes.entries()) {
      const report = open.run(suffix, request.horizon);
      runs.push(report);
      if (request.onRun?.(report, index) === false) break;
    }
    if (request.check !== false && runs.length > 0) {
      // The first suffix again, from a restore this time: state a snapshot cannot see (a closure's
      // variables, a module's) shows as a different run.
      const again = open.run(request.suffixes[0], request.horizon);
      if (again.hash !== runs[0].hash) {
        const where = firstDivergence(runs[0].trace.entries, again.trace.entries, ['the first suffix', 'the same suffix after a restore']) ?? 'their hashes differ';
        throw new BranchStateLeak(runner.definition.name, where);
      }
    }
    const { at, asked, objects, ramPages, dirtyPages, prefixMs, snapshotMs, restoreMs } = open;
    return { at, asked, objects, ramPages, dirtyPages: [...dirtyPages], prefixMs, snapshotMs, restoreMs, runs };
  } finally {
    open.close();
  }
}

/** Opens a branch point: see ScenarioRig.openBranch. */
export function openBranchOn<G extends ScenarioGuest>(runner: RigRunner<G>, request: Pick<BranchRequest, 'prefix' | 'at' | 'suffixes'>): OpenBranch {
  const { prefix } = request;
  const { definition } = runner;
  // SURW's estimate comes from a run of its own: made before the branch's runs, once.
  const strategies = [...('trace' in prefix ? [] : [prefix.strategy]), ...request.suffixes.map((suffix) => suffix.strategy)];
  const estimate = strategies.includes('surw') ? runner.eventEstimate(prefix.fixes) : undefined;
  const at = branchChoice(runner, prefix, request.at, estimate);
  const started = performance.now();
  const live = runner.begin(prefixSeed(prefix), 'branched', prefix.fixes, {});
  const { session } = live.context;
  live.branched = true;
  session.restart(live.restart);
  runner.startRecording(live.context);
  const loop = runner.loop(live.context, prefixScheduler(definition, prefix, live.context.prng, estimate));
  const close = (): void => {
    loop.release();
    // The session ends at some suffix's end; the next run starts it afresh.
    live.introspection.stop();
  };
  try {
    if (loop.continue((choices) => choices >= at) !== null || loop.counter.choices !== at) {
      throw new Error(`the prefix did not stop at choice ${at} the second time (it ended, or reached ${loop.counter.choices}): the run is not deterministic`);
    }
    const snapshotAt = performance.now();
    live.context.trace.writeOut();
    const machine = runner.guest.machine;
    const taken = RunSnapshot.take(machine, { run: live, loop, session, guest: runner.guest }, [live.events, live.choicesBefore, ...live.context.trace.logs]);
    const figures = { prefixMs: snapshotAt - started, snapshotMs: performance.now() - snapshotAt };
    // Every suffix shares the prefix's events: their ordering scan is made once, and each suffix scans its own.
    const prefixOrderings = orderingScanOf(definition, live.events, live.choicesBefore);
    const dirtyPages: number[] = [];
    let restoreMs = 0;
    let used = false;
    const backToPoint = (): void => {
      if (used) {
        const restoreAt = performance.now();
        // Every page, when a walk took snapshots of its own since (the checkpoint knows).
        dirtyPages.push(taken.restore().dirtyPages);
        restoreMs += performance.now() - restoreAt;
      }
      used = true;
    };
    /** Back to the point (unless nothing ran since the snapshot), then `scheduler` makes the suffix's choices. */
    const suffixRun = (scheduler: Scheduler, horizon: number | undefined): RunReport => {
      backToPoint();
      live.started = performance.now();
      loop.scheduler = scheduler;
      // The run's trace object is rewound by the next restore: the report keeps a copy.
      return runner.settle(live, () => runSuffix(live, loop, at, horizon), prefixOrderings, true);
    };
    return {
      at, asked: describeBranchPoint(request.at), objects: taken.objects, ramPages: machine.memory.pages, ...figures,
      dirtyPages,
      get restoreMs() {
        return restoreMs;
      },
      run: (suffix, horizon) => suffixRun(suffixScheduler(definition, suffix, estimate), horizon),
      runChoices: (choices, options = {}) => {
        const shape = new ScheduleShape(definition.bounds.slice);
        const scheduler = new LenientScheduler(choices, shape, (vcpu) => session.retiredBy(vcpu), undefined, options.alternatives === true);
        const report = suffixRun(scheduler, options.horizon);
        return { report, shape, followed: scheduler.followed, skipped: scheduler.skipped, points: scheduler.points };
      },
      walk: (horizon, options = {}) => new PrefixWalk(definition.name, () => {
        backToPoint();
        return walkOver(runner, live, loop, walkScheduler(runner, session), at, horizon, () => undefined);
      }, undefined, options),
      close: () => {
        taken.release();
        close();
      },
    };
  } catch (error) {
    close();
    throw error;
  }
}

/** The prefix's scheduler: its strategy from the run's generator (as a plain run makes it), or its trace followed strictly. */
function prefixScheduler<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, prefix: BranchPrefix, prng: Prng, estimate: readonly number[] | undefined): Scheduler {
  if ('trace' in prefix) return new ReplayScheduler(prefix.trace.choices, () => `(the branch's prefix: ${prefix.trace.scenario} seed ${prefix.trace.seed})`);
  return createScheduler(prefix.strategy, prng.fork('scheduler'), schedulerOptions(definition, prefix.depth, estimate));
}

/** A suffix's scheduler: its strategy, seeded by its own seed (the engine keeps the prefix's generator). */
function suffixScheduler<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, suffix: BranchSuffix, estimate: readonly number[] | undefined): Scheduler {
  return createScheduler(suffix.strategy, new Prng(suffix.seed).fork('scheduler'), schedulerOptions(definition, suffix.depth ?? 2, estimate));
}

function schedulerOptions<G extends ScenarioGuest>(definition: ScenarioDefinition<G>, depth: number, eventEstimate: readonly number[] | undefined): Parameters<typeof createScheduler>[2] {
  const { bounds, vcpus } = definition;
  return { vcpus, slice: bounds.slice, depth, events: bounds.pctEvents, ...(eventEstimate === undefined ? {} : { eventEstimate }) };
}

/** The choice count of the branch point: found on one full run of the prefix. */
function branchChoice<G extends ScenarioGuest>(runner: RigRunner<G>, prefix: BranchPrefix, point: BranchPoint, estimate: readonly number[] | undefined): number {
  const { definition } = runner;
  const points: number[] = [];
  const live = runner.begin(prefixSeed(prefix), 'branched', prefix.fixes, {});
  const report = runner.settle(live, () => {
    live.context.session.restart(live.restart);
    runner.startRecording(live.context);
    const loop = runner.loop(live.context, prefixScheduler(definition, prefix, live.context.prng, estimate));
    try {
      return { result: loop.continue((choices) => {
        points.push(choices);
        return false;
      }) as RunResult, trace: live.context.trace };
    } finally {
      loop.release();
    }
  });
  let target: number;
  if ('choice' in point) target = point.choice;
  else {
    const pair = (definition.orderings ?? []).find((p) => p.name === point.pair);
    if (pair === undefined) throw new Error(`scenario "${definition.name}" has no ordering pair "${point.pair}"; its pairs: ${(definition.orderings ?? []).map((p) => p.name).join(', ') || 'none'}`);
    const opens = windowOpensAt(pair, point.side, live.events.map((e) => e.event), live.choicesBefore);
    if (opens === null) throw new Error(`${describeBranchPoint(point)}: never happened in the prefix run (seed ${report.seed}, ${report.strategy}); try another prefix seed`);
    target = opens;
  }
  const found = lastPointAtOrBefore(points, target);
  if (found === null) throw new Error(`${describeBranchPoint(point)}: no top-level choice point at or before choice ${target} (the prefix run has ${report.choices} choices): nothing to branch from`);
  return found;
}
