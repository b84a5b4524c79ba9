import { Piscina } from 'piscina';
import type { Fixes } from '../intro/fixes.ts';
import { exploreBoundedAsync, type ExhaustiveAttempt, type ExhaustiveOptions, type ExhaustiveResult } from './exhaustive.ts';
import { attemptOn, attemptSchedule, attemptSuffix, suffixAttemptOn, type WalkOption } from './exhaustive-run.ts';
import type { PrefixWalk } from './prefix-walk.ts';
import type { BranchPoint, BranchPrefix } from './branch.ts';
import type { Seed } from './prng.ts';
import type { OpenBranch, RunMode } from './run-report.ts';
import type { RunReport, ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { Choice } from './schedule.ts';
import { decodeChoices, decodePoints, encodeChoices, encodePoints } from './choice-codec.ts';

/**
 * Bounded-exhaustive search on a pool of threads: each schedule is a pool task on the thread's own
 * rig (inline, or with its own vCPU workers) — a whole run, or a suffix from the thread's own
 * snapshot at the same branch point (each thread runs the prefix once) — and the results are taken
 * in the order the schedules were, so the outcome — every count, the first failure — is the
 * one-by-one search's (exhaustive.ts `exploreBoundedAsync`). The first failure is run once more
 * here, on the caller's rig or branch, for its full report.
 */

/** A branch point as pool threads open it again: the prefix, the point, and where suffixes are cut. */
export interface BranchSpec {
  readonly prefix: BranchPrefix;
  readonly at: BranchPoint;
  readonly horizon: number | null;
}

/**
 * A branch spec as every task of one search carries it: its JSON bytes in shared memory, which a
 * message passes without copying — a recorded trace as the prefix is tens of kilobytes, and cloning
 * it into every task cost more than a short suffix runs. A thread decodes it once, for the first
 * schedule it runs there.
 */
export interface SharedBranchSpec {
  /** The spec's identity within the process (a thread opens each spec's point once). */
  readonly key: string;
  readonly json: SharedArrayBuffer;
}

let specsShared = 0;

/** Puts `spec` in shared memory for the tasks of one search. */
export function shareBranchSpec(spec: BranchSpec): SharedBranchSpec {
  // Seeds may be bigints, which JSON lacks: tagged here, revived in readBranchSpec.
  const bytes = new TextEncoder().encode(JSON.stringify(spec, (_, value: unknown) => (typeof value === 'bigint' ? { bigint: value.toString() } : value)));
  const json = new SharedArrayBuffer(bytes.length);
  new Uint8Array(json).set(bytes);
  return { key: `branch-${++specsShared}`, json };
}

/** The spec back from shared memory. */
export function readBranchSpec(shared: SharedBranchSpec): BranchSpec {
  // TextDecoder refuses views of shared memory: decode a private copy.
  const text = new TextDecoder().decode(new Uint8Array(shared.json).slice());
  return JSON.parse(text, (_, value: unknown) => {
    if (typeof value === 'object' && value !== null && Object.keys(value).length === 1 && typeof (value as { bigint?: unknown }).bigint === 'string') return BigInt((value as { bigint: string }).bigint);
    return value;
  }) as BranchSpec;
}

/** One schedule for a pool thread. */
export interface ExhaustiveTask {
  readonly scenario: string;
  /** Modules of scenarios that are not built in, loaded by the pool thread first (absolute paths). */
  readonly modules: readonly string[];
  readonly mode: Exclude<RunMode, 'free'>;
  readonly fixesOff: readonly string[];
  readonly seed: Seed;
  /** The schedule's choices (choice-codec.ts), from the start or from the branch point. */
  readonly choices: Int32Array;
  /** Run as a suffix from this branch point (null: a whole run). */
  readonly branch: SharedBranchSpec | null;
  /** A schedule goes on from a snapshot along the prefix it shares with the thread's last one (inline). */
  readonly sharePrefixes: boolean;
}

/** What the pool thread sends back: the attempt without its report, its choices and points as words. */
export interface ExhaustiveTaskResult {
  readonly oracle: string | null;
  readonly hash: string;
  readonly preemptions: number;
  readonly deviations: number;
  /** Every choice the run made. */
  readonly executed: Int32Array;
  /** Its choice points after the schedule's own choices: the only ones a search branches at. */
  readonly points: Int32Array;
}

/** The branch point each pool thread's rig has open, by the spec it was opened for, and the walk along its suffixes' shared prefixes. */
interface ThreadBranch {
  readonly key: string;
  readonly branch: OpenBranch;
  readonly horizon: number | null;
  walk: PrefixWalk | null;
}
const openBranches = new WeakMap<object, ThreadBranch>();

function branchOf<G extends ScenarioGuest>(rig: ScenarioRig<G>, shared: SharedBranchSpec): ThreadBranch {
  const open = openBranches.get(rig);
  if (open?.key === shared.key) return open;
  closeBranch(rig);
  closeWalk(rig);
  const spec = readBranchSpec(shared);
  const opened: ThreadBranch = { key: shared.key, branch: rig.openBranch({ prefix: spec.prefix, at: spec.at, suffixes: [] }), horizon: spec.horizon, walk: null };
  openBranches.set(rig, opened);
  return opened;
}

/** One suffix of `task` from the thread's branch point: along the prefix it shares with the thread's last one, or from the point. */
function suffixRun(open: ThreadBranch, task: ExhaustiveTask, choices: readonly Choice[]): ExhaustiveAttempt<RunReport> {
  const horizon = open.horizon ?? undefined;
  if (!task.sharePrefixes) return attemptSuffix(open.branch, choices, horizon);
  open.walk ??= open.branch.walk(horizon);
  return suffixAttemptOn(open.walk.runChoices(choices), open.branch.at);
}

/** The walk along shared prefixes each pool thread's rig keeps for whole runs, by the search it serves. */
const openWalks = new WeakMap<object, { readonly key: string; readonly walk: PrefixWalk }>();

function walkOf<G extends ScenarioGuest>(rig: ScenarioRig<G>, task: ExhaustiveTask): PrefixWalk {
  // A pool serves one search: its tasks share the seed and the fixes.
  const key = `${String(task.seed)}/${task.fixesOff.join(',')}`;
  const open = openWalks.get(rig);
  if (open?.key === key) return open.walk;
  closeWalk(rig);
  closeBranch(rig);
  const walk = rig.openWalk(task.seed, rig.fixes.without(task.fixesOff), 'exhaustive');
  openWalks.set(rig, { key, walk });
  return walk;
}

/** The rig's walk over whole runs ends: it holds the rig's session, which a branch point takes over. */
function closeWalk<G extends ScenarioGuest>(rig: ScenarioRig<G>): void {
  openWalks.get(rig)?.walk.close();
  openWalks.delete(rig);
}

/** The rig's branch point (and its walk) ends: a whole run takes the session back. */
function closeBranch<G extends ScenarioGuest>(rig: ScenarioRig<G>): void {
  const open = openBranches.get(rig);
  open?.walk?.close();
  open?.branch.close();
  openBranches.delete(rig);
}

/** One whole-run schedule of `task`: from a snapshot along the prefix it shares with the thread's last one (inline), or from the start. */
function wholeRun<G extends ScenarioGuest>(rig: ScenarioRig<G>, task: ExhaustiveTask, choices: readonly Choice[]): ExhaustiveAttempt<RunReport> {
  if (rig.mode === 'inline' && task.sharePrefixes) return attemptOn(walkOf(rig, task).runChoices(choices));
  closeWalk(rig);
  closeBranch(rig);
  return attemptSchedule(rig, task.seed, rig.fixes.without(task.fixesOff), choices);
}

/** Runs one task on a rig of the task's scenario (a pool thread keeps one per scenario and mode). */
export function runExhaustiveTaskOn<G extends ScenarioGuest>(rig: ScenarioRig<G>, task: ExhaustiveTask): ExhaustiveTaskResult {
  const choices = decodeChoices(task.choices);
  const open = task.branch === null ? null : branchOf(rig, task.branch);
  const attempt = open === null ? wholeRun(rig, task, choices) : suffixRun(open, task, choices);
  return {
    oracle: attempt.oracle, hash: attempt.hash, preemptions: attempt.preemptions, deviations: attempt.deviations,
    executed: encodeChoices(attempt.executed), points: encodePoints(attempt.points, choices.length),
  };
}

function attemptOf(result: ExhaustiveTaskResult, choices: readonly Choice[]): ExhaustiveAttempt<null> {
  return {
    oracle: result.oracle, hash: result.hash, preemptions: result.preemptions, deviations: result.deviations,
    executed: decodeChoices(result.executed), points: decodePoints(result.points, choices.length), run: null,
  };
}

export interface PoolSearchOptions extends ExhaustiveOptions, WalkOption {
  /** Pool threads: schedules run at once. */
  readonly threads: number;
  /** The piscina task module; its export `runExhaustiveTask` runs an ExhaustiveTask. */
  readonly taskModule: URL;
  readonly modules: readonly string[];
}

/** Every schedule over whole runs, on the pool (the seed feeds only the engine's randomness). */
export function exploreScenarioBoundedOnPool<G extends ScenarioGuest>(rig: ScenarioRig<G>, seed: Seed, fixes: Fixes<string>, options: PoolSearchOptions): Promise<ExhaustiveResult<RunReport>> {
  return exploreOnPool(rig, { seed, fixesOff: rig.fixes.off(fixes), branch: null, sharePrefixes: options.sharePrefixes !== false }, (choices) => attemptSchedule(rig, seed, fixes, choices), options);
}

/** Every schedule after the branch point `open` (opened on `rig` for `spec`), on the pool: each thread opens the same point. */
export function exploreBranchBoundedOnPool<G extends ScenarioGuest>(rig: ScenarioRig<G>, open: OpenBranch, spec: BranchSpec, options: PoolSearchOptions): Promise<ExhaustiveResult<RunReport>> {
  return exploreOnPool(rig, { seed: 0, fixesOff: rig.fixes.off(spec.prefix.fixes), branch: shareBranchSpec(spec), sharePrefixes: options.sharePrefixes !== false }, (choices) => attemptSuffix(open, choices, spec.horizon ?? undefined), options);
}

async function exploreOnPool<G extends ScenarioGuest>(
  rig: ScenarioRig<G>, where: Pick<ExhaustiveTask, 'seed' | 'fixesOff' | 'branch' | 'sharePrefixes'>, here: (choices: readonly Choice[]) => ExhaustiveAttempt<RunReport>, options: PoolSearchOptions,
): Promise<ExhaustiveResult<RunReport>> {
  if (rig.mode === 'free') throw new Error('a bounded search runs deterministic schedules: inline or workers, not free');
  const pool = new Piscina<ExhaustiveTask, ExhaustiveTaskResult>({ filename: options.taskModule.href, name: 'runExhaustiveTask', minThreads: options.threads, maxThreads: options.threads, idleTimeout: 60_000 });
  const task = { scenario: rig.definition.name, modules: options.modules, mode: rig.mode, ...where };
  try {
    const result = await exploreBoundedAsync(async (choices) => attemptOf(await pool.run({ ...task, choices: encodeChoices(choices) }), choices), { ...options, concurrency: options.threads * 2 });
    const failure = result.firstFailure;
    if (failure === null) return { ...result, firstFailure: null };
    const local = here(failure.executed);
    if (local.hash !== failure.hash) {
      throw new Error(`${rig.definition.name}: the first failing schedule gave trace hash ${failure.hash} on a pool thread and ${local.hash} here — the scenario is not deterministic (run.ts --check-determinism)`);
    }
    return { ...result, firstFailure: local };
  } finally {
    await pool.destroy();
  }
}
