import type { TimelineItem } from './timeline-items.ts';

/**
 * Which later exit met a change the engine made. The engine notes each patch it writes (a mem-table
 * relocation, a detour, a cloak, an unwinder-cache entry, a hook); no event tells when a vCPU
 * fetched the patched bytes, but the first exit handled afterwards whose RIP, GLA or GPA falls on
 * the patched range is the first time the run shows the change met — the arrow the reports draw.
 */

type Detail = Readonly<Record<string, string | number | bigint | boolean>>;

/** Exit fields a patched range is compared with. */
export type ExitField = 'rip' | 'gla' | 'gpa';

/** A patched range, and which exit fields can show a vCPU met it. */
interface PatchRule {
  readonly range: (detail: Detail) => { readonly start: bigint; readonly length: bigint } | null;
  readonly fields: readonly ExitField[];
}

const address = (detail: Detail, key: string): bigint | null => {
  const value = detail[key];
  return typeof value === 'bigint' ? value : typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : null;
};

const span = (start: bigint | null, length: bigint | null): { start: bigint; length: bigint } | null =>
  start === null || length === null ? null : { start, length };

/** Bytes a detour's handler has before its INT3 at most (HVMI's templates put it in the first few). */
const DETOUR_REACH = 16n;
const PAGE = 0x1000n;

const PATCH_NOTES: Readonly<Record<string, PatchRule>> = {
  // The relocated table load is now a JMP: an exit at it is a vCPU that ran into the patch.
  'mtbl-patch': { range: (d) => span(address(d, 'rip'), 1n), fields: ['rip'] },
  // A cache entry filled for a byte: a later read of that byte that still exits met the entry.
  'rtlpvu-update': { range: (d) => span(address(d, 'address'), 1n), fields: ['gla'] },
  'detour': { range: (d) => span(address(d, 'handler'), DETOUR_REACH), fields: ['rip'] },
  'cloak': { range: (d) => span(address(d, 'gva'), address(d, 'size')), fields: ['rip', 'gla'] },
  'uncloak': { range: (d) => span(address(d, 'gva'), address(d, 'size')), fields: ['rip', 'gla'] },
  'hook': { range: (d) => { const gpa = address(d, 'gpa'); return span(gpa === null ? null : gpa - (gpa % PAGE), PAGE); }, fields: ['gpa'] },
};

/** An exit as the matcher sees it: `at` is when a handler looked at it. */
export interface ExitPoint<T> {
  readonly at: number;
  readonly ticket: number;
  readonly rip: bigint;
  readonly gla: bigint | null;
  readonly gpa: bigint | null;
  readonly target: T;
}

/** A patch note and the first exit that met its change. */
export interface PatchMatch<T> {
  readonly note: TimelineItem & { readonly kind: 'event' };
  readonly exit: ExitPoint<T>;
}

/** For every patch note of `items`, the first exit handled after it (`exits` ordered by `at`) that met it. */
export function patchMatches<T>(items: readonly TimelineItem[], exits: readonly ExitPoint<T>[]): PatchMatch<T>[] {
  const matches: PatchMatch<T>[] = [];
  for (const item of items) {
    if (item.kind !== 'event' || item.event.kind !== 'note') continue;
    const rule = PATCH_NOTES[item.event.what];
    const range = rule?.range(item.event.detail) ?? null;
    if (rule === undefined || range === null) continue;
    const inRange = (value: bigint | null): boolean => value !== null && value >= range.start && value < range.start + range.length;
    const exit = exits.find((e) => e.at > item.ts && rule.fields.some((name) => inRange(e[name])));
    if (exit !== undefined) matches.push({ note: item, exit });
  }
  return matches;
}
