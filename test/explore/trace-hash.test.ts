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
