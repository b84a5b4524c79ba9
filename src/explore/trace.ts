import type { RuntimeEvent } from '../../actors/events.ts';
import { formatChoice, type Choice } from './schedule.ts';

/**
 * The trace of a run: every scheduling choice and every runtime event, in order, each as a stable
 * line of text stamped with the virtual clock. The hash is a 64-bit FNV-1a over those lines; the
 * running hash after each entry is kept, so a replay can name the first entry that differs.
 */

export interface TraceEntry {
  readonly clock: number;
  readonly text: string;
}

/** A trace as JSON (what `--replay` reads). */
export interface TraceJson {
  readonly format: 'vcpusim-trace';
  readonly version: 1;
  readonly scenario?: string;
  readonly seed: string;
  readonly strategy: string;
  readonly mode: string;
  /** Fixes that were off in the recorded run (scenario traces). */
  readonly fixesOff?: readonly string[];
  readonly hash: string;
  readonly choices: readonly Choice[];
  readonly entries: readonly TraceEntry[];
}

const OFFSET_LO = 0x84222325 | 0;
const OFFSET_HI = 0xcbf29ce4 | 0;

/** Canonical text of an event (bigints in hex, keys in a fixed order). */
export function formatEvent(event: RuntimeEvent): string {
  switch (event.kind) {
    case 'stop': return `stop v${event.vcpu} ${event.stop}${event.reason ? ` ${event.reason}` : ''} rip=${event.rip.toString(16)} retired=${event.retired}`;
    case 'handle': return `handle v${event.vcpu} ${event.reason} rip=${event.rip.toString(16)} -> ${event.action}${event.inject >= 0 ? ` inject=${event.inject}` : ''}`;
    case 'pause': return `pause depth=${event.depth}`;
    case 'resume': return `resume depth=${event.depth}`;
    case 'ept': return `ept gpa=${event.gpa.toString(16)} rights=${event.rights} pages=${event.pages}`;
    case 'ept-commit': return `ept-commit pages=${event.pages}`;
    case 'timer': return 'timer';
    case 'irq': return `irq v${event.vcpu} vector=${event.vector}`;
    case 'note': {
      const detail = Object.keys(event.detail)
        .sort()
        .map((key) => {
          const value = event.detail[key];
          return `${key}=${typeof value === 'bigint' ? value.toString(16) : String(value)}`;
        })
        .join(' ');
      return `note ${event.what}${detail ? ` ${detail}` : ''}`;
    }
    case 'fail': return `fail ${event.reason.split('\n')[0]}`;
  }
}

export class Trace {
  readonly choices: Choice[] = [];
  readonly entries: TraceEntry[] = [];
  /** Running hash (lo, hi) after each entry. */
  private readonly running: number[] = [];
  private lo = OFFSET_LO;
  private hi = OFFSET_HI;
  /** Semantic events (exits, engine notes, pauses): PCT counts its change points over these. */
  events = 0;
  /** Called after every appended entry (replay checks use it). */
  onEntry: ((index: number, entry: TraceEntry) => void) | null = null;

  recordChoice(choice: Choice, clock: number): void {
    this.choices.push(choice);
    this.append(`> ${formatChoice(choice)}`, clock);
  }

  recordEvent(event: RuntimeEvent, clock: number): void {
    if ((event.kind === 'stop' && event.stop === 'exit') || event.kind === 'note' || event.kind === 'pause') this.events++;
    this.append(formatEvent(event), clock);
  }

  private append(text: string, clock: number): void {
    const line = `${clock} ${text}`;
    let lo = this.lo;
    let hi = this.hi;
    // FNV-1a 64 on int32 halves: hash ^= unit; hash *= 2^40 + 0x1b3 (mod 2^64). A newline ends
    // each entry so "ab" + "c" never hashes like "a" + "bc".
    for (let i = 0; i <= line.length; i++) {
      lo ^= i < line.length ? line.charCodeAt(i) : 0x0a;
      const product = (lo >>> 0) * 0x1b3;
      hi = (Math.imul(hi, 0x1b3) + Math.floor(product / 4294967296) + (lo << 8)) | 0;
      lo = product | 0;
    }
    this.lo = lo;
    this.hi = hi;
    const entry = { clock, text };
    this.entries.push(entry);
    this.running.push(lo, hi);
    this.onEntry?.(this.entries.length - 1, entry);
  }

  /** The trace hash: 16 hex digits. */
  get hash(): string {
    return (this.hi >>> 0).toString(16).padStart(8, '0') + (this.lo >>> 0).toString(16).padStart(8, '0');
  }

  /** Hash after entry `index` (for comparing two traces entry by entry). */
  hashAt(index: number): string {
    return (this.running[2 * index + 1] >>> 0).toString(16).padStart(8, '0') + (this.running[2 * index] >>> 0).toString(16).padStart(8, '0');
  }

  toJson(meta: { scenario?: string; seed: string; strategy: string; mode: string; fixesOff?: readonly string[] }): TraceJson {
    return { format: 'vcpusim-trace', version: 1, ...meta, hash: this.hash, choices: this.choices, entries: this.entries };
  }
}

const isCount = (value: unknown): boolean => Number.isInteger(value) && (value as number) >= 0;

function isChoice(value: unknown): value is Choice {
  if (value === null || typeof value !== 'object') return false;
  const c = value as Record<string, unknown>;
  switch (c.kind) {
    case 'run': return isCount(c.vcpu) && isCount(c.steps);
    case 'handle': return isCount(c.vcpu);
    case 'irq': return isCount(c.vcpu) && isCount(c.vector);
    case 'timer':
    case 'proceed': return true;
    default: return false;
  }
}

/** Reads a trace written by `toJson`, checking its shape. */
export function parseTraceJson(text: string, source = 'trace'): TraceJson {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${source} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const trace = value as Partial<TraceJson>;
  if (trace === null || typeof trace !== 'object' || trace.format !== 'vcpusim-trace' || trace.version !== 1) {
    throw new Error(`${source} is not a vcpusim trace (format 'vcpusim-trace', version 1)`);
  }
  if (!Array.isArray(trace.choices) || !Array.isArray(trace.entries) || typeof trace.hash !== 'string' || typeof trace.seed !== 'string') {
    throw new Error(`${source} is missing choices, entries, hash or seed`);
  }
  trace.choices.forEach((choice: unknown, index) => {
    if (!isChoice(choice)) throw new Error(`${source}: choice #${index} is not a valid choice: ${JSON.stringify(choice)}`);
  });
  return trace as TraceJson;
}
