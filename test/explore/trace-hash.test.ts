/**
 * Goal: a trace's hash is FNV-1a 64 over its lines `${clock} ${text}\n` — what every recorded
 * trace file was hashed with. The trace feeds the clock's digits, a space, the text and a newline
 * without building the line; these check that against the line built and hashed directly, at
 * clocks of every digit count and at clocks only a hand-made file has (a fraction, a negative).
 */
import test from 'ava';
import { Trace } from '../../src/explore/trace.ts';

function fnvOfLines(entries: readonly { clock: number; text: string }[]): string {
  // 64-bit FNV-1a in BigInt: an independent reference for the int32-halves arithmetic.
  let hash = 0xcbf29ce484222325n;
  for (const { clock, text } of entries) {
    for (const unit of `${clock} ${text}\n`) {
      hash ^= BigInt(unit.charCodeAt(0));
      hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
    }
  }
  return hash.toString(16).padStart(16, '0');
}

test('the hash of entries is FNV-1a 64 over their lines, at every clock', (t) => {
  const clocks = [0, 1, 9, 10, 99, 100, 101, 65_535, 1_000_000, 2 ** 32, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER, 1.5, -3];
  const entries = clocks.map((clock, k) => ({ clock, text: `stop v${k % 4} exit vmcall rip=fffff80000001000 retired=${k}` }));
  t.is(Trace.hashOf(entries), fnvOfLines(entries));
  for (let n = 1; n <= entries.length; n++) t.is(Trace.hashOf(entries.slice(0, n)), fnvOfLines(entries.slice(0, n)), `first ${n} entries`);
});

test('the running hash after each recorded choice and event is the hash of the entries so far', (t) => {
  const trace = new Trace();
  trace.recordChoice({ kind: 'run', vcpu: 1, steps: 250 }, 0);
  trace.recordEvent({ kind: 'stop', vcpu: 1, stop: 'exit', reason: 'vmcall', rip: 0x1000n, retired: 250, exit: { ticket: 1, gpa: 0n, gla: 0n, access: 0 } }, 250);
  trace.recordChoice({ kind: 'handle', vcpu: 1 }, 250);
  t.is(trace.entries.length, 3);
  for (let k = 0; k < 3; k++) t.is(trace.hashAt(k), fnvOfLines(trace.entries.slice(0, k + 1)));
  t.is(trace.hash, fnvOfLines(trace.entries));
});

test('entries are written out when first read, the same as when recorded', (t) => {
  const stop = (ticket: number) => ({ kind: 'stop', vcpu: 0, stop: 'exit', reason: 'vmcall', rip: 0x1000n, retired: 5, exit: { ticket, gpa: 0n, gla: 0n, access: 0 } }) as const;
  const detail: Record<string, bigint | number | string | boolean> = { rip: 0x2000n };
  const record = (trace: Trace): void => {
    trace.recordChoice({ kind: 'run', vcpu: 0, steps: 5 }, 0);
    trace.recordEvent(stop(1), 5);
    trace.recordEvent({ kind: 'note', what: 'mtbl-patch', detail }, 5);
    trace.recordChoice({ kind: 'handle', vcpu: 0 }, 5);
  };
  const eager = new Trace();
  const seen: string[] = [];
  eager.onEntry = (index, entry) => seen.push(`${index} ${entry.text}`);
  record(eager);
  t.is(seen.length, 4, 'with onEntry set, each entry is written as it is recorded');
  const lazy = new Trace();
  record(lazy);
  t.deepEqual(lazy.entries, eager.entries);
  t.is(lazy.hash, eager.hash);
  t.regex(lazy.entries[2].text, /note mtbl-patch rip=2000/);
  // A copy taken before anything was written out goes on by itself.
  const partly = new Trace();
  record(partly);
  const copy = partly.copy();
  partly.recordEvent(stop(2), 9);
  copy.recordChoice({ kind: 'timer' }, 9);
  t.is(copy.entries.length, 5);
  t.is(copy.entries[4].text, '> timer');
  t.is(partly.entries[4].text.startsWith('stop v0 exit vmcall'), true);
  t.is(copy.hashAt(3), eager.hash);
  t.is(partly.hashAt(3), eager.hash);
});
