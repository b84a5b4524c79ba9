import { formatChoice, HYPERVISOR_FAULTS, type Choice, type HypervisorFault } from './schedule.ts';
import { parseStrategyLabel } from './schedulers/index.ts';
import { isScheduleLabel, SCHEDULE_LABELS } from './schedulers/lenient.ts';
import { Trace, type TraceEntry } from './trace.ts';

/**
 * A trace as a file: what `--replay` reads. Every field is checked on reading, with one error that
 * names the field, what is wrong and what to do; the header (scenario, seed, strategy, mode,
 * fixes) carries a check value, so an edited seed is refused instead of replayed under the wrong
 * name, and the entries must hash to the recorded hash.
 */

export const TRACE_FORMAT = 'vcpusim-trace';
export const TRACE_VERSION = 2;

/** The header a trace file carries besides its schedule. */
export interface TraceMeta {
  readonly scenario?: string;
  /** The run's seed as a decimal string (< 2^64). */
  readonly seed: string;
  /** "rr", "random", "pct(d=2)", or "shrunk" / "exhaustive" / "guided" / "followed" … (a made-up schedule: it can only be replayed). */
  readonly strategy: string;
  /** The deterministic mode that ran: "inline" or "workers". */
  readonly mode: 'inline' | 'workers';
  /** Fixes that were off in the recorded run (scenario traces). */
  readonly fixesOff?: readonly string[];
  /** The invariant the recorded run broke first, when it failed: what a replay must break again to reproduce it. */
  readonly broke?: string;
}

export interface TraceJson extends TraceMeta {
  readonly format: typeof TRACE_FORMAT;
  readonly version: typeof TRACE_VERSION;
  readonly hash: string;
  /** Check value over the header and the hash. */
  readonly check: string;
  readonly choices: readonly Choice[];
  readonly entries: readonly TraceEntry[];
}

function headerCheck(meta: TraceMeta, hash: string): string {
  const fields = [meta.scenario ?? '', meta.seed, meta.strategy, meta.mode, (meta.fixesOff ?? []).join(','), hash];
  // Files written before `broke` existed keep their check value.
  if (meta.broke !== undefined) fields.push(meta.broke);
  return Trace.hashOf(fields.map((text) => ({ clock: 0, text })));
}

/** The trace with its header, ready for JSON.stringify. */
export function traceToJson(trace: Trace, meta: TraceMeta): TraceJson {
  return {
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
    ...meta,
    hash: trace.hash,
    check: headerCheck(meta, trace.hash),
    choices: trace.choices,
    entries: trace.entries,
  };
}

const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

function isChoice(value: unknown): value is Choice {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  switch (c.kind) {
    case 'run': return isCount(c.vcpu) && isCount(c.steps) && c.steps > 0;
    case 'handle': return isCount(c.vcpu) && (c.fault === undefined || HYPERVISOR_FAULTS.includes(c.fault as HypervisorFault));
    case 'irq': return isCount(c.vcpu) && isCount(c.vector) && c.vector < 256;
    case 'see-code': return isCount(c.vcpu);
    case 'timer':
    case 'daemon':
    case 'proceed': return true;
    default: return false;
  }
}

const SEED_MAX = (1n << 64n) - 1n;
const HEX64 = /^[0-9a-f]{16}$/;

/** Reads a trace written by `traceToJson`, checking every field. `source` names it in errors. */
export function parseTraceJson(text: string, source = 'trace'): TraceJson {
  const fail = (what: string): never => {
    throw new Error(`${source}: ${what}`);
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON (${error instanceof Error ? error.message : String(error)}); a trace file is what a failing run writes`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return fail('not a vcpusim trace (a JSON object is expected)');
  const t = value as Record<string, unknown>;
  if (t.format !== TRACE_FORMAT) return fail(`not a vcpusim trace (format is ${JSON.stringify(t.format)}, expected "${TRACE_FORMAT}")`);
  if (t.version !== TRACE_VERSION) {
    return fail(`trace version ${JSON.stringify(t.version)}, this vcpusim reads version ${TRACE_VERSION}; re-run the seed to write a new trace`);
  }
  if (t.scenario !== undefined && (typeof t.scenario !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(t.scenario))) {
    fail(`"scenario" must be a scenario name, got ${JSON.stringify(t.scenario)}`);
  }
  if (typeof t.seed !== 'string' || !/^(0|[1-9]\d{0,19})$/.test(t.seed) || BigInt(t.seed) > SEED_MAX) {
    fail(`"seed" must be a decimal string below 2^64, got ${JSON.stringify(t.seed)}`);
  }
  if (typeof t.strategy !== 'string' || (parseStrategyLabel(t.strategy) === null && !isScheduleLabel(t.strategy))) {
    fail(`"strategy" must be rr, random, pct(d=N), pos, surw, or a made-up schedule (${SCHEDULE_LABELS.join(', ')}), got ${JSON.stringify(t.strategy)}`);
  }
  if (t.mode !== 'inline' && t.mode !== 'workers') {
    fail(`"mode" must be "inline" or "workers" (free-running runs have no schedule), got ${JSON.stringify(t.mode)}`);
  }
  if (t.fixesOff !== undefined) {
    const fixes = t.fixesOff;
    if (!Array.isArray(fixes) || !fixes.every((f) => typeof f === 'string' && /^[A-Za-z][A-Za-z0-9]*$/.test(f))) {
      fail(`"fixesOff" must be a list of fix names, got ${JSON.stringify(fixes)}`);
    }
    const names = fixes as string[];
    const repeated = names.find((name, i) => names.indexOf(name) !== i);
    if (repeated !== undefined) fail(`"fixesOff" names ${repeated} twice`);
  }
  // Oracle names are the scenario's own words: any one line.
  if (t.broke !== undefined && (typeof t.broke !== 'string' || !/^[^\x00-\x1f]+$/.test(t.broke))) {
    fail(`"broke" must be the name of the invariant the run broke, got ${JSON.stringify(t.broke)}`);
  }
  if (typeof t.hash !== 'string' || !HEX64.test(t.hash)) fail(`"hash" must be 16 hex digits, got ${JSON.stringify(t.hash)}`);
  if (typeof t.check !== 'string' || !HEX64.test(t.check)) fail(`"check" must be 16 hex digits, got ${JSON.stringify(t.check)}`);
  if (!Array.isArray(t.choices)) return fail('"choices" must be a list');
  if (!Array.isArray(t.entries)) return fail('"entries" must be a list');
  t.choices.forEach((choice: unknown, index) => {
    if (!isChoice(choice)) fail(`choice #${index} is not a valid choice: ${JSON.stringify(choice)}`);
  });
  let clock = 0;
  let nextChoice = 0;
  t.entries.forEach((entry: unknown, index) => {
    const e = entry as Partial<TraceEntry> | null;
    if (e === null || typeof e !== 'object' || !isCount(e.clock) || typeof e.text !== 'string') {
      fail(`entry #${index} must be { clock: integer ≥ 0, text: string }, got ${JSON.stringify(entry)}`);
    }
    const { clock: at, text } = e as TraceEntry;
    if (at < clock) fail(`entry #${index} goes back in time (clock ${at} after ${clock})`);
    clock = at;
    if (!text.startsWith('> ')) return;
    const choice = (t.choices as Choice[])[nextChoice];
    if (choice === undefined || text !== `> ${formatChoice(choice)}`) {
      fail(`entry #${index} "${text}" is not choice #${nextChoice} (${choice === undefined ? 'none left' : formatChoice(choice)}): choices and entries disagree`);
    }
    nextChoice++;
  });
  if (nextChoice !== t.choices.length) fail(`${t.choices.length} choices but ${nextChoice} choice entries`);
  const trace = value as TraceJson;
  if (Trace.hashOf(trace.entries) !== trace.hash) fail(`the entries do not hash to "hash" ${trace.hash}: the file was edited or damaged`);
  if (trace.check !== headerCheck(trace, trace.hash)) {
    fail('the header (scenario, seed, strategy, mode, fixesOff, broke) does not match its check value: it was edited; '
      + 'to try other fixes, keep the file and add --fix name=on|off');
  }
  return trace;
}
