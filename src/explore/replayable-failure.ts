import type { Fixes } from '../intro/fixes.ts';
import type { FreeObservation } from './free-observation.ts';
import { findReplayable, type ReplayableOptions, type ReplayableSearch } from './free-to-replayable.ts';
import type { ScenarioRig } from './scenario-rig.ts';
import type { ScenarioGuest } from './scenario.ts';
import { shrinkFailingRun, type ShrunkFailure } from './shrink-run.ts';
import { errorLine } from './error-line.ts';

/**
 * A free-running failure made replayable and explained, as the campaign and `run.ts --explain`
 * do it: the guided search for a deterministic run that breaks the same invariant first, then
 * that run shrunk to its decisive preemptions, with its story. Neither step fails the caller: a
 * search or a shrink that cannot be carried out (the rig threw, a run did not replay) is said.
 */

export interface ReplayableFailure {
  /** What the free run showed (its seed, the invariant, its first line). */
  readonly observation: Omit<FreeObservation, 'steps'>;
  /** Null when the search could not be carried out (see `error`). */
  readonly search: ReplayableSearch | null;
  /** The run found, shrunk (null: nothing found, not asked for, or it failed — see `error`). */
  readonly shrunk: ShrunkFailure | null;
  /** Why the search or the shrink could not be carried out. */
  readonly error: string | null;
}

export interface MakeReplayableOptions extends ReplayableOptions {
  /** Runs the shrinker may make on the run found (0: do not shrink). */
  readonly shrinkRuns: number;
}

/** Searches a deterministic run for `observation` on `rig` (inline or workers) and shrinks it. */
export function makeReplayable<G extends ScenarioGuest>(rig: ScenarioRig<G>, observation: FreeObservation, fixes: Fixes<string>, options: MakeReplayableOptions): ReplayableFailure {
  const { steps: _steps, ...observed } = observation;
  const why = (what: string, error: unknown): string => `${what}: ${errorLine(error)}`;
  let search: ReplayableSearch;
  try {
    search = findReplayable(rig, observation, fixes, options);
  } catch (error) {
    return { observation: observed, search: null, shrunk: null, error: why(`free-running seed ${observation.seed} could not be searched`, error) };
  }
  const found = search.found;
  if (found === null || options.shrinkRuns <= 0) return { observation: observed, search, shrunk: null, error: null };
  try {
    const shrunk = shrinkFailingRun(rig, { seed: found.report.seed, choices: found.report.trace.choices }, fixes, { maxRuns: options.shrinkRuns });
    return { observation: observed, search, shrunk, error: null };
  } catch (error) {
    return { observation: observed, search, shrunk: null, error: why(`the run found could not be shrunk`, error) };
  }
}
