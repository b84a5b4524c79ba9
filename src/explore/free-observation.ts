import type { RuntimeEvent } from '../../actors/events.ts';
import type { RunReport } from './scenario-rig.ts';
import type { TimedEvent } from './scenario.ts';
import type { Choice } from './schedule.ts';

/**
 * What a free-running failure showed the hypervisor side, in the order it saw it: the runner's
 * choices (launches, handlings, timer ticks, interrupts) and the runtime events (stops with each
 * vCPU's RIP and retired steps, the handlers' decisions, engine notes, pauses). A free run cannot
 * be replayed, but this order is what a deterministic search can be guided by. Plain data with
 * bigints, so a campaign's pool thread can send it back with the run's result.
 */

/** One step of a free run, as recorded: a choice the runner made or a runtime event. */
export type ObservedStep =
  | { readonly kind: 'choice'; readonly choice: Choice }
  | { readonly kind: 'event'; readonly event: RuntimeEvent };

/** A free-running failure, as a deterministic search needs it. */
export interface FreeObservation {
  readonly scenario: string;
  /** The free run's seed (it fed the engine's randomness; the OS made the schedule). */
  readonly seed: string;
  readonly fixesOff: readonly string[];
  /** The invariant a deterministic run must break first to reproduce the failure. */
  readonly oracle: string;
  /** The first line of what the free run reported for it. */
  readonly detail: string;
  /** Every step of the free run's trace, in order; it ends where the run ended (at the violation, for a continuous oracle). */
  readonly steps: readonly ObservedStep[];
}

/**
 * The observation of a failed free run: its trace's entries matched with the rig's events of that
 * run (`ScenarioRig.lastEvents`, read before the next run), choice entries with the trace's
 * choices. `oracle` defaults to the first invariant the run broke.
 */
export function observeFreeRun(report: RunReport, events: readonly TimedEvent[], oracle?: string): FreeObservation {
  const target = oracle ?? report.violations[0]?.oracle;
  if (target === undefined) throw new Error(`seed ${report.seed} broke no invariant: there is no failure to observe`);
  const violation = report.violations.find((v) => v.oracle === target);
  if (violation === undefined) throw new Error(`seed ${report.seed} did not break ${target} (it broke ${report.violations.map((v) => v.oracle).join(', ') || 'nothing'})`);
  const steps: ObservedStep[] = [];
  let choice = 0;
  let event = 0;
  for (const entry of report.trace.entries) {
    if (entry.text.startsWith('> ')) {
      steps.push({ kind: 'choice', choice: report.trace.choices[choice++] });
      continue;
    }
    // The rig's log holds every event the trace does, in the same order (and the unload's after them).
    const timed = events[event++];
    if (timed === undefined) throw new Error(`the events given are not those of seed ${report.seed}'s run: its trace has more`);
    steps.push({ kind: 'event', event: timed.event });
  }
  return { scenario: report.scenario, seed: report.seed, fixesOff: report.fixesOff, oracle: target, detail: violation.detail.split('\n')[0], steps };
}
