import type { ExitFacts, RuntimeEvent } from '../../actors/events.ts';
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

const OFFSET_LO = 0x84222325 | 0;
const OFFSET_HI = 0xcbf29ce4 | 0;

const ACCESS_LETTERS = ['r', 'w', 'x'] as const;

/** " #ticket" and, for an EPT violation, its GPA, GLA and access ("rw"). */
function exitText(exit: ExitFacts | null): string {
  if (exit === null) return '';
  if (exit.access === 0) return ` #${exit.ticket}`;
  const access = ACCESS_LETTERS.filter((_, bit) => (exit.access & (1 << bit)) !== 0).join('');
  return ` #${exit.ticket} gpa=${exit.gpa.toString(16)} gla=${exit.gla.toString(16)} ${access}`;
}

/** Canonical text of an event (bigints in hex, keys in a fixed order). */
export function formatEvent(event: RuntimeEvent): string {
  switch (event.kind) {
    case 'stop': return `stop v${event.vcpu} ${event.stop}${event.reason ? ` ${event.reason}` : ''} rip=${event.rip.toString(16)}${exitText(event.exit)} retired=${event.retired}`;
    case 'handle': return `handle v${event.vcpu} #${event.ticket} ${event.reason} rip=${event.rip.toString(16)} -> ${event.action}${event.inject >= 0 ? ` inject=${event.inject}` : ''}`;
    case 'pause': return `pause depth=${event.depth}`;
    case 'resume': return `resume depth=${event.depth}`;
    case 'ept': return `ept gpa=${event.gpa.toString(16)} rights=${event.rights} pages=${event.pages}`;
    case 'ept-commit': return `ept-commit pages=${event.pages}`;
    case 'timer': return 'timer';
    case 'daemon': return `daemon ${event.label}`;
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

/** What a record holds until it is written out as an entry. */
const Held = { choice: 0, event: 1, text: 2 } as const;
type Held = (typeof Held)[keyof typeof Held];

export class Trace {
  readonly choices: Choice[];
  /**
   * Everything recorded, three slots a record (what it holds, the choice / event / text, the
   * clock). Records become entries — text and running hash — only when entries or a hash are first
   * asked for: most runs of a campaign never are, and formatting every event was a tenth of a run.
   */
  private readonly recorded: unknown[];
  private readonly written: TraceEntry[];
  /** Running hash (lo, hi) after each written entry. */
  private readonly running: number[];
  private lo: number;
  private hi: number;
  /** The clock's decimal digits, least significant first (scratch of `append`). */
  private readonly digits = new Int32Array(20);
  /** Semantic events (exits, engine notes, pauses): PCT counts its change points over these. */
  events: number;
  /** Called after every appended entry, as it is recorded (replay checks use it). */
  onEntry: ((index: number, entry: TraceEntry) => void) | null = null;

  /** An empty trace, or a copy of `from` (see `copy`). */
  constructor(from?: Trace) {
    this.choices = from?.choices.slice() ?? [];
    this.recorded = from?.recorded.slice() ?? [];
    this.written = from?.written.slice() ?? [];
    this.running = from?.running.slice() ?? [];
    this.lo = from?.lo ?? OFFSET_LO;
    this.hi = from?.hi ?? OFFSET_HI;
    this.events = from?.events ?? 0;
  }

  recordChoice(choice: Choice, clock: number): void {
    this.choices.push(choice);
    this.record(Held.choice, choice, clock);
  }

  recordEvent(event: RuntimeEvent, clock: number): void {
    if ((event.kind === 'stop' && event.stop === 'exit') || event.kind === 'note' || event.kind === 'pause') this.events++;
    // Events never change once emitted (the session copies a note's detail), so their text can wait.
    this.record(Held.event, event, clock);
  }

  /** Every entry: the recorded choices and events as text, in order. */
  get entries(): readonly TraceEntry[] {
    this.writeOut();
    return this.written;
  }

  private record(held: Held, item: unknown, clock: number): void {
    this.recorded.push(held, item, clock);
    if (this.onEntry !== null) this.writeOut();
  }

  /**
   * Writes every record not yet written as an entry (text and running hash), in order: before a
   * snapshot, so the runs that go on from it write only their own.
   */
  writeOut(): void {
    const recorded = this.recorded;
    for (let at = this.written.length * 3; at < recorded.length; at += 3) {
      const held = recorded[at] as Held;
      const item = recorded[at + 1];
      const text = held === Held.choice ? `> ${formatChoice(item as Choice)}` : held === Held.event ? formatEvent(item as RuntimeEvent) : (item as string);
      this.append(text, recorded[at + 2] as number);
    }
  }

  private append(text: string, clock: number): void {
    // The line hashed is `${clock} ${text}\n`, fed unit by unit without building it (an entry is
    // made on every choice and event; the joined string was one more copy each time). A newline
    // ends each entry so "ab" + "c" never hashes like "a" + "bc".
    if (Number.isSafeInteger(clock) && clock >= 0) {
      const digits = this.digits;
      let count = 0;
      for (let rest = clock; count === 0 || rest > 0; rest = Math.floor(rest / 10)) digits[count++] = 0x30 + (rest % 10);
      while (count > 0) this.hashUnit(digits[--count]);
    } else {
      // Only a hand-made trace file has such a clock: hashed as its text, as always.
      const written = String(clock);
      for (let i = 0; i < written.length; i++) this.hashUnit(written.charCodeAt(i));
    }
    this.hashUnit(0x20);
    for (let i = 0; i < text.length; i++) this.hashUnit(text.charCodeAt(i));
    this.hashUnit(0x0a);
    const { lo, hi } = this;
    const entry = { clock, text };
    this.written.push(entry);
    this.running.push(lo, hi);
    this.onEntry?.(this.written.length - 1, entry);
  }

  /**
   * FNV-1a 64 on int32 halves: hash ^= unit; hash *= 2^40 + 0x1b3 (mod 2^64). The low half's
   * product is taken in 16-bit pieces, all small-integer arithmetic (1.5× faster per unit than
   * one double product split by a division).
   */
  private hashUnit(unit: number): void {
    const lo = this.lo ^ unit;
    const low = (lo & 0xffff) * 0x1b3;
    const high = (lo >>> 16) * 0x1b3 + (low >>> 16);
    this.hi = (Math.imul(this.hi, 0x1b3) + (high >>> 16) + (lo << 8)) | 0;
    this.lo = (high << 16) | (low & 0xffff);
  }

  /** The arrays this trace only ever appends to (a run's snapshot saves their lengths). */
  get logs(): readonly unknown[][] {
    return [this.choices, this.recorded, this.written, this.running];
  }

  /** A trace with the same entries, choices and hash, that this one's later entries do not change. */
  copy(): Trace {
    // Slices, not pushes: a branch copies the whole trace, prefix included, for every suffix's report.
    return new Trace(this);
  }

  /** The trace hash: 16 hex digits. */
  get hash(): string {
    this.writeOut();
    return (this.hi >>> 0).toString(16).padStart(8, '0') + (this.lo >>> 0).toString(16).padStart(8, '0');
  }

  /** Hash after entry `index` (for comparing two traces entry by entry). */
  hashAt(index: number): string {
    this.writeOut();
    return (this.running[2 * index + 1] >>> 0).toString(16).padStart(8, '0') + (this.running[2 * index] >>> 0).toString(16).padStart(8, '0');
  }

  /** The hash `entries` give when recorded in order (a trace file's entries are checked with it). */
  static hashOf(entries: readonly TraceEntry[]): string {
    const trace = new Trace();
    for (const entry of entries) trace.record(Held.text, entry.text, entry.clock);
    return trace.hash;
  }
}

/**
 * Where two runs of what should be the same schedule part: the first entry that differs, both
 * versions and the entry before it; null when they are identical.
 */
export function firstDivergence(a: readonly TraceEntry[], b: readonly TraceEntry[], names: readonly [string, string] = ['first', 'second']): string | null {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i <= length; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined && y === undefined) return null;
    if (x !== undefined && y !== undefined && x.clock === y.clock && x.text === y.text) continue;
    const show = (e: TraceEntry | undefined): string => (e === undefined ? '(the trace ends)' : `${e.clock} ${e.text}`);
    const before = i > 0 ? `\n  after #${i - 1}: ${show(a[i - 1])}` : '\n  (at the start of the run)';
    return `entry #${i} differs\n  ${names[0].padEnd(6)}: ${show(x)}\n  ${names[1].padEnd(6)}: ${show(y)}${before}`;
  }
  return null;
}
