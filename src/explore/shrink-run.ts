import type { Fixes } from '../intro/fixes.ts';
import type { Seed } from './prng.ts';
import type { RunRecording } from './recorder.ts';
import type { RunReport, ScenarioRig } from './scenario-rig.ts';
import { failed } from './run-report.ts';
import type { ScenarioGuest } from './scenario.ts';
import type { Choice } from './schedule.ts';
import type { ChoiceWatcher, ListedChoice } from './schedulers/lenient.ts';
import { exploreScenarioBounded } from './exhaustive-run.ts';
import { ShrinkInputError, shrinkSchedule, type ShrinkAttempt, type ShrinkOptions, type ShrinkResult } from './shrink.ts';
import { storyOf, type PreemptionNote, type StoryLine } from './story.ts';
import { instructionAt } from './vcpu-report.ts';

/**
 * Shrinks a failing run of a scenario on its rig: every candidate is a real run of the scenario
 * (same seed, same fixes), followed leniently; the best is run once more, recorded, to tell its
 * story and to write its reports and trace.
 */

/** A failing run to shrink: its seed and the choices it made. */
export interface FailingSchedule {
  readonly seed: Seed;
  readonly choices: readonly Choice[];
}

/** What a shrink measured: the invariant, where it started, where it ended, at what cost. */
export interface ShrinkMeasures {
  readonly oracle: string;
  /** The input: its choices, preemptions and decisive choices. */
  readonly from: ShrinkResult<RunReport>['from'];
  readonly preemptions: number;
  /** Choices the default continuation would not have made (the shrunk schedule proper). */
  readonly decisive: number;
  /** Runs made (a recorded result counts its recording run). */
  readonly runs: number;
  /** No candidate of the result improves it (false: the run budget ran out first). */
  readonly minimal: boolean;
  /** The bounded search for a schedule with fewer preemptions than the greedy result (absent: none ran). */
  readonly search?: FewerPreemptionsSearch;
  /**
   * When several failing runs were offered (`shrinkSimplest`): which one this is, what each gave,
   * and the runs of the whole pick (each offered run followed once, every search).
   */
  readonly pickedFrom?: { readonly label: string; readonly tried: readonly ShrinkTry[]; readonly runs: number };
}

export interface ShrunkFailure extends ShrinkMeasures {
  /** The shrunk run, recorded: its trace replays strictly like any run's. */
  readonly report: RunReport;
  readonly recording: RunRecording | null;
  readonly preemptionNotes: readonly PreemptionNote[];
  readonly story: readonly StoryLine[];
}

/** A failing run offered to `shrinkSimplest`, with the name a report gives it ("seed 12 (pct d=2)"). */
export interface ShrinkCandidate extends FailingSchedule {
  readonly label: string;
}

/** One offered run as `shrinkSimplest` saw it. */
export interface ShrinkTry {
  readonly label: string;
  readonly seed: Seed;
  /** The invariant it broke first when followed (null: none); only runs breaking the target are shrunk. */
  readonly oracle: string | null;
  /** Its preemptions and decisive choices as it failed. */
  readonly preemptions: number;
  readonly decisive: number;
  /** What shrinking it gave; absent when it was not shrunk (another invariant, or an earlier one was enough). */
  readonly shrunkTo?: { readonly preemptions: number; readonly decisive: number; readonly runs: number; readonly minimal: boolean };
}

/**
 * A shrink's result without its recorded run: the schedule found and what the search measured —
 * plain data, so a pool thread can search and the main thread record (`recordShrunk`).
 */
export interface ShrinkFound extends ShrinkMeasures {
  readonly seed: Seed;
  /** The shrunk schedule's decisive choices (the default continuation makes the rest). */
  readonly choices: readonly ListedChoice[];
  /** The trace hash of its run in the search: the recorded run must give the same. */
  readonly hash: string;
}

/**
 * What the bounded search below a greedy result found: every schedule with fewer preemptions is a
 * candidate the greedy sweeps may never reach (they only cut the schedule they hold), so the
 * search runs them level by level — all with 0 preemptions, then 1, … — until one breaks the same
 * invariant first or its budget is spent. Its space is the bounded-exhaustive search's: switches
 * at the default continuation's choice points, slices of the scenario's length, no hypervisor
 * faults, the environment when due, the failing run's seed.
 */
export interface FewerPreemptionsSearch {
  /** The greedy result's preemptions: the search ran schedules with 0 to `from − 1`. */
  readonly from: number;
  /** Schedules run. */
  readonly schedules: number;
  /**
   * Levels explored whole, from 0, in which no schedule breaks the invariant first: no schedule of
   * the search's space with fewer preemptions than this breaks it.
   */
  readonly cleanLevels: number;
  /**
   * A schedule with fewer preemptions broke it: 'adopted' (the result is that one, shrunk greedily),
   * 'not-reproduced' (followed again leniently it did not break the invariant first — a sign of
   * nondeterminism — and the greedy result stands); null: none did.
   */
  readonly found: 'adopted' | 'not-reproduced' | null;
}

/** A shrink on a scenario's rig: the greedy shrinker's options and the search below its result. */
export interface SearchShrinkOptions extends ShrinkOptions {
  /**
   * Runs of the bounded search for a schedule with fewer preemptions than the greedy result (and of
   * the greedy shrink of one it finds); default as many as `maxRuns`, 0: no search.
   */
  readonly searchRuns?: number;
}

export function searchShrink<G extends ScenarioGuest>(rig: ScenarioRig<G>, failing: FailingSchedule, fixes: Fixes<string>, options: SearchShrinkOptions = {}): ShrinkFound {
  const attempt = (choices: readonly ListedChoice[]): ShrinkAttempt<string> => {
    const { report, shape, followed } = rig.runChoices(failing.seed, choices, fixes);
    return {
      oracle: report.violations[0]?.oracle ?? null,
      preemptions: shape.preemptions,
      preemptionAt: shape.preemptionAt,
      preempted: shape.preempted,
      decisive: shape.decisive,
      executed: followed,
      run: report.hash,
    };
  };
  const greedy = shrinkSchedule<string>(failing.choices, attempt, options);
  let { best, runs, minimal } = greedy;
  let search: FewerPreemptionsSearch | undefined;
  const searchRuns = options.searchRuns ?? options.maxRuns ?? 2000;
  if (best.preemptions > 0 && searchRuns > 0) {
    const from = best;
    const below = exploreScenarioBounded(rig, failing.seed, fixes, {
      bound: from.preemptions - 1, maxRuns: searchRuns, target: greedy.oracle, stopAtFailure: true,
      onRun: (searched) => options.onRun?.(greedy.runs + searched, from),
    });
    runs += below.runs;
    let cleanLevels = 0;
    while (cleanLevels < below.levels.length && below.levels[cleanLevels].complete && below.levels[cleanLevels].failures === 0) cleanLevels++;
    let found: FewerPreemptionsSearch['found'] = null;
    if (below.firstFailure !== null) {
      found = 'not-reproduced';
      // Its decisive choices shrunk too (never to more preemptions), within what the search left
      // (one run at least: following it again is what tells whether it reproduces).
      try {
        const again = shrinkSchedule<string>(below.firstFailure.executed, attempt, { maxRuns: Math.max(1, searchRuns - below.runs), onRun: (more, now) => options.onRun?.(runs + more, now) });
        runs += again.runs;
        if (again.oracle === greedy.oracle && again.best.preemptions < best.preemptions) {
          ({ best, minimal } = again);
          found = 'adopted';
        }
      } catch (error) {
        // Followed again it broke nothing: the greedy result, which did, stands.
        if (!(error instanceof ShrinkInputError)) throw error;
        runs++;
      }
    }
    search = { from: from.preemptions, schedules: below.runs, cleanLevels, found };
  }
  return {
    seed: failing.seed, choices: best.executed.slice(0, best.decisive), hash: best.run, oracle: greedy.oracle, from: greedy.from,
    preemptions: best.preemptions, decisive: best.decisive, runs, minimal, ...(search !== undefined ? { search } : {}),
  };
}

/** Runs a shrunk schedule once more, recorded: its report, the preemptions told and its story. */
export function recordShrunk<G extends ScenarioGuest>(rig: ScenarioRig<G>, found: ShrinkFound, fixes: Fixes<string>): ShrunkFailure {
  const notes: PreemptionNote[] = [];
  const watch: ChoiceWatcher = (index, choice, shape, enabled) => {
    if (!shape.preempts) return;
    const machine = rig.guest.machine;
    const where = (vcpu: number): string => {
      const rip = machine.vcpu(vcpu).rip;
      return `${rip.toString(16)}: ${instructionAt(machine, vcpu, rip)}`;
    };
    notes.push({
      index, choice, preempted: shape.preempted, preemptedAtExit: enabled.pendingExits.includes(shape.preempted), point: enabled.preemption,
      preemptedAt: shape.preempted >= 0 ? where(shape.preempted) : '',
      runsAt: choice.kind === 'run' ? where(choice.vcpu) : '',
    });
  };
  const { report } = rig.runChoices(found.seed, found.choices, fixes, { record: true, watch });
  if (report.hash !== found.hash) throw new Error(`shrinking: the recorded re-run of the shrunk schedule gave trace ${report.hash}, the search's run ${found.hash} — the scenario is not deterministic`);
  const recording = rig.lastRecording;
  return {
    oracle: found.oracle, from: found.from, preemptions: found.preemptions, decisive: found.decisive, runs: found.runs + 1, minimal: found.minimal,
    ...(found.search !== undefined ? { search: found.search } : {}),
    report, recording, preemptionNotes: notes, story: recording === null ? [] : storyOf(recording, notes),
    ...(found.pickedFrom !== undefined ? { pickedFrom: { ...found.pickedFrom, runs: found.pickedFrom.runs + 1 } } : {}),
  };
}

/** Shrinks `failing` (which must fail with `fixes`) and records the result: `searchShrink`, then `recordShrunk`. */
export function shrinkFailingRun<G extends ScenarioGuest>(rig: ScenarioRig<G>, failing: FailingSchedule, fixes: Fixes<string>, options: SearchShrinkOptions = {}): ShrunkFailure {
  // The decisive choices alone make the same run: the rest is the default continuation.
  return recordShrunk(rig, searchShrink(rig, failing, fixes, options), fixes);
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "9 decisive choices / 2 preemptions": the size of a shrunk schedule as reports give it. */
export function shrunkSize(shrunk: { readonly decisive: number; readonly preemptions: number }): string {
  return `${plural(shrunk.decisive, 'decisive choice')} / ${plural(shrunk.preemptions, 'preemption')}`;
}

/** "shrunk from 812 choices / 37 preemptions to 9 decisive choices / 2 preemptions (143 runs, minimal; …)". */
export function describeShrink(shrunk: ShrunkFailure): string {
  const { from } = shrunk;
  const search = describeSearch(shrunk);
  return `shrunk from ${plural(from.choices, 'choice')} / ${plural(from.preemptions, 'preemption')} to ${shrunkSize(shrunk)} `
    + `(${plural(shrunk.runs, 'run')}; ${shrunk.minimal ? 'no single cut, merge or deletion improves it' : 'the run budget ran out: smaller may exist'}${search === '' ? '' : `; ${search}`})`;
}

/**
 * What the bounded search below the greedy result found or proved, or '' when none ran. "No
 * schedule" means none of the search's space (see FewerPreemptionsSearch), which the text says.
 */
export function describeSearch(shrunk: ShrinkMeasures): string {
  const search = shrunk.search;
  if (search === undefined) return '';
  const atMost = (k: number): string => (k === 0 ? 'without a preemption' : `with at most ${plural(k, 'preemption')}`);
  const searched = plural(search.schedules, 'schedule');
  const space = 'at the choice points, this seed';
  let found = '';
  if (search.found === 'adopted') {
    found = `the bounded search found it below the greedy result's ${plural(search.from, 'preemption')}`;
    if (shrunk.preemptions === 0) return `${found} (${searched} searched): it needs no preemption`;
    found += '; ';
  } else if (search.found === 'not-reproduced') {
    found = `the bounded search found a schedule with fewer preemptions that broke nothing when followed again (nondeterminism?); `;
  }
  if (search.cleanLevels >= shrunk.preemptions) return `${found}no schedule with fewer preemptions breaks it (${space}: every one ${atMost(shrunk.preemptions - 1)} ran; ${searched} searched)`;
  if (search.found !== null) return `${found}${searched} searched`;
  if (search.cleanLevels > 0) return `no schedule ${atMost(search.cleanLevels - 1)} breaks it (${space}; the search's ${searched} ran out among those with ${search.cleanLevels})`;
  return `a search of ${searched} with fewer preemptions found none (its budget ran out among those without a preemption)`;
}

export interface SimplestOptions extends SearchShrinkOptions {
  /** Stop once a result is minimal with at most this many preemptions (default 1: a story of one switch). */
  readonly enough?: number;
  /**
   * The invariant to shrink for (a campaign row's bug's); default: the one the first candidate
   * breaks first. Used only when some candidate breaks it first.
   */
  readonly target?: string;
}

/**
 * Shrinks the simplest of several runs that break the same invariant (a campaign row's first
 * failure and each strategy's first): the greedy shrinker ends in a local minimum, and where that
 * lies depends on the input far more than on the budget — a PCT run that fails with one preemption
 * shrinks to one, a random run with 500 may stall at 270. The runs are followed once each, then
 * shrunk in order of their preemptions (then decisive choices, then as offered) until one shrinks
 * to a minimal result (no candidate of the shrinker improves it) with at most `enough` preemptions;
 * the best result (fewest preemptions, then decisive choices) is returned. The first candidate
 * names the target invariant (the one it breaks first); a run that breaks another first is listed
 * and skipped. Deterministic: the same candidates give the same result. The search only:
 * `shrinkSimplest` also records the result.
 */
export function findSimplest<G extends ScenarioGuest>(rig: ScenarioRig<G>, candidates: readonly ShrinkCandidate[], fixes: Fixes<string>, options: SimplestOptions = {}): ShrinkFound {
  if (candidates.length === 0) throw new RangeError('shrinking the simplest of several runs needs at least one failing run');
  const enough = options.enough ?? 1;
  const seen = candidates.map((candidate, index) => {
    const { report, shape } = rig.runChoices(candidate.seed, candidate.choices, fixes);
    return { candidate, index, oracle: report.violations[0]?.oracle ?? null, preemptions: shape.preemptions, decisive: shape.decisive };
  });
  const target = options.target !== undefined && seen.some((s) => s.oracle === options.target) ? options.target : seen[0].oracle;
  if (target === null) throw new ShrinkInputError(`${candidates[0].label} breaks no invariant when it is followed: there is no failure to shrink`);
  const order = seen.filter((s) => s.oracle === target).sort((a, b) => a.preemptions - b.preemptions || a.decisive - b.decisive || a.index - b.index);
  const results = new Map<number, ShrinkFound>();
  let best: ShrinkFound | null = null;
  let bestIndex = -1;
  let runs = seen.length;
  for (const { candidate, index } of order) {
    let found: ShrinkFound;
    try {
      found = searchShrink(rig, candidate, fixes, options);
    } catch (error) {
      // Which of the offered runs could not be shrunk is what the reader needs first.
      if (error instanceof Error) error.message = `${candidate.label}: ${error.message}`;
      throw error;
    }
    results.set(index, found);
    runs += found.runs;
    if (best === null || found.preemptions < best.preemptions || (found.preemptions === best.preemptions && found.decisive < best.decisive)) {
      best = found;
      bestIndex = index;
    }
    // A result cut short by the budget may be beaten by a simpler start: go on unless the best finished.
    if (best.minimal && best.preemptions <= enough) break;
  }
  const tried = seen.map(({ candidate, oracle, preemptions, decisive, index }): ShrinkTry => {
    const found = results.get(index);
    return {
      label: candidate.label, seed: candidate.seed, oracle, preemptions, decisive,
      ...(found !== undefined ? { shrunkTo: { preemptions: found.preemptions, decisive: found.decisive, runs: found.runs, minimal: found.minimal } } : {}),
    };
  });
  return { ...best!, pickedFrom: { label: candidates[bestIndex].label, tried, runs } };
}

/** `findSimplest`, then the result recorded (`recordShrunk`). */
export function shrinkSimplest<G extends ScenarioGuest>(rig: ScenarioRig<G>, candidates: readonly ShrinkCandidate[], fixes: Fixes<string>, options: SimplestOptions = {}): ShrunkFailure {
  return recordShrunk(rig, findSimplest(rig, candidates, fixes, options), fixes);
}

/** How many failing runs of one command or test are offered the shrinker (the first that break the same invariant). */
export const SHRINK_OFFERS = 5;

/** Whether `report` breaks first what `first` broke first: one more start for the shrinker of `first`'s failure. */
export function breaksFirstAs(report: RunReport, first: RunReport): boolean {
  return failed(report) && report.violations[0].oracle === first.violations[0]?.oracle;
}

/**
 * Failing runs of a command or a test shrunk: the only one (`shrinkFailingRun`), or the simplest of
 * several (`shrinkSimplest`, each named by its seed), for the invariant the first breaks first.
 */
export function shrinkFailingReports<G extends ScenarioGuest>(rig: ScenarioRig<G>, failing: readonly RunReport[], fixes: Fixes<string>, options: SearchShrinkOptions = {}): ShrunkFailure {
  const [first] = failing;
  if (first === undefined) throw new RangeError('shrinking needs at least one failing run');
  if (failing.length === 1) return shrinkFailingRun(rig, { seed: first.seed, choices: first.trace.choices }, fixes, options);
  const target = first.violations[0]?.oracle;
  const candidates = failing.map((report) => ({ label: `seed ${report.seed}`, seed: report.seed, choices: report.trace.choices }));
  return shrinkSimplest(rig, candidates, fixes, { ...options, ...(target !== undefined ? { target } : {}) });
}

/** "shrunk seed 12 (pct(d=2)), the simplest of 5 runs offered (…)" — what each offered run gave. */
export function describePick(shrunk: ShrunkFailure): string | null {
  const picked = shrunk.pickedFrom;
  if (picked === undefined || picked.tried.length < 2) return null;
  const each = picked.tried.map((t) => {
    const as = `${t.label} ${t.preemptions}`;
    if (t.shrunkTo !== undefined) return `${as} → ${t.shrunkTo.preemptions}`;
    if (t.oracle === shrunk.oracle) return `${as} (not shrunk)`;
    return t.oracle === null ? `${t.label} (breaks nothing when followed)` : `${t.label} (breaks ${t.oracle} first)`;
  });
  return `shrunk ${picked.label}, the simplest of ${picked.tried.length} runs offered (preemptions as found → shrunk: ${each.join(', ')}; ${picked.runs} runs in all)`;
}
