import type { RuntimeEvent } from '../../actors/events.ts';

/**
 * How closely a deterministic run retraced a free-running one, measured on what both show the
 * same way: each vCPU's VM exits — reason and RIP — in its own order. Across vCPUs the free order
 * is the OS's and only partly observed (exits that happen together are collected together), so
 * the measure compares each vCPU with itself: its exits up to the first that differs.
 */

/** Each vCPU's exits in order, as "reason@rip". */
export type ExitTrails = ReadonlyMap<number, readonly string[]>;

export interface Retraced {
  /** Exits of the free run. */
  readonly exits: number;
  /** Of those, how many the run repeated: per vCPU, its exits up to the first that differs. */
  readonly retraced: number;
}

export function exitTrailsOf(events: Iterable<RuntimeEvent>): ExitTrails {
  const trails = new Map<number, string[]>();
  for (const event of events) {
    if (event.kind !== 'stop' || event.stop !== 'exit') continue;
    let trail = trails.get(event.vcpu);
    if (trail === undefined) trails.set(event.vcpu, (trail = []));
    trail.push(`${event.reason}@${event.rip.toString(16)}`);
  }
  return trails;
}

export function retraced(free: ExitTrails, run: ExitTrails): Retraced {
  let exits = 0;
  let same = 0;
  for (const [vcpu, trail] of free) {
    exits += trail.length;
    const other = run.get(vcpu) ?? [];
    let k = 0;
    while (k < trail.length && trail[k] === other[k]) k++;
    same += k;
  }
  return { exits, retraced: same };
}

/** "215 of 223 (96%)". */
export function describeRetraced(r: Retraced): string {
  return `${r.retraced} of ${r.exits}${r.exits > 0 ? ` (${Math.floor((100 * r.retraced) / r.exits)}%)` : ''}`;
}
