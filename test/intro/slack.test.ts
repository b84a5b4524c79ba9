/**
 * Goal: slack is HVMI's bump allocator — only executable, non-writable, non-discardable, non-paged
 * sections other than INITKDBG; the next block starts above the highest live one; bytes that are
 * not zero are refused with an integrity alert. Method: PE images written into a test machine's
 * memory and parsed back by the engine.
 */
import test from 'ava';
import { Scn } from '../../src/guest/pe-format.ts';
import { writeImage } from '../../src/guest/pe-image.ts';
import { parseImage } from '../../src/intro/pe.ts';
import { SlackAllocator, isSlackEligible } from '../../src/intro/slack.ts';
import { IntStatus } from '../../src/intro/status.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { TestMachine } from '../support/test-machine.ts';

const BASE = 0xfffff80000200000n;
const GPA = 0x200000;
const code = Scn.code | Scn.execute | Scn.read;

function image(): { test: TestMachine; slack: SlackAllocator } {
  const test = new TestMachine();
  const fill = (n: number): Uint8Array => new Uint8Array(n).fill(0xc3);
  writeImage(test.machine.memory, GPA, {
    base: BASE,
    sizeOfImage: 0x7000,
    entryRva: 0x1000,
    sections: [
      { name: '.text', virtualAddress: 0x1000, virtualSize: 0xf00, characteristics: code | Scn.notPaged, bytes: fill(0xf00) },
      { name: 'INITKDBG', virtualAddress: 0x2000, virtualSize: 0x10, characteristics: code | Scn.notPaged, bytes: fill(0x10) },
      { name: 'PAGE', virtualAddress: 0x3000, virtualSize: 0x10, characteristics: code, bytes: fill(0x10) },
      { name: 'INIT', virtualAddress: 0x4000, virtualSize: 0x10, characteristics: code | Scn.notPaged | Scn.discardable, bytes: fill(0x10) },
      { name: '.data', virtualAddress: 0x5000, virtualSize: 0x10, characteristics: Scn.read | Scn.write | Scn.notPaged, bytes: fill(0x10) },
      { name: 'HALTEXT', virtualAddress: 0x6000, virtualSize: 0xff0, characteristics: code | Scn.notPaged, bytes: fill(0xff0) },
    ],
  });
  for (let page = 0; page < 7; page++) test.tables.map(BASE + BigInt(page * 0x1000), GPA + page * 0x1000, Pte.writable);
  const parsed = parseImage(test.machine.memory, test.tables.root, BASE);
  return { test, slack: new SlackAllocator(parsed, test.machine.memory, test.tables.root) };
}

test('the PE headers written by the guest builder parse back', (t) => {
  const { test } = image();
  const parsed = parseImage(test.machine.memory, test.tables.root, BASE);
  t.is(parsed.sizeOfImage, 0x7000);
  t.deepEqual(parsed.sections.map((s) => s.name), ['.text', 'INITKDBG', 'PAGE', 'INIT', '.data', 'HALTEXT']);
  t.deepEqual(parsed.sections.map(isSlackEligible), [true, false, false, false, false, true]);
});

test('bump allocation: first section with room, above the highest live block; a freed middle block is a hole', (t) => {
  const { slack } = image();
  t.deepEqual(slack.regions.map((r) => [r.section, Number(r.end - r.start)]), [['.text', 0x100], ['HALTEXT', 0x10]]);
  const a = slack.alloc(0x40, 'a');
  const b = slack.alloc(0x40, 'b');
  const c = slack.alloc(0x40, 'c');
  t.deepEqual([a.gva, b.gva, c.gva], [BASE + 0x1f00n, BASE + 0x1f40n, BASE + 0x1f80n]);
  t.is(slack.free(b.gva!), IntStatus.success);
  t.is(slack.alloc(0x40, 'd').gva, BASE + 0x1fc0n, 'the hole at b is not reused while c is live');
  t.is(slack.alloc(0x10, 'e').gva, BASE + 0x6ff0n, '.text is full: the next eligible section');
  const none = slack.alloc(0x10, 'f');
  t.is(none.status, IntStatus.insufficientResources);
  t.is(slack.free(BASE), IntStatus.notFound);
  // Room in .text again, below the HALTEXT block allocated since: the list stays lowest address first.
  t.is(slack.free(BASE + 0x1fc0n), IntStatus.success);
  t.is(slack.alloc(0x40, 'g').gva, BASE + 0x1fc0n);
  t.deepEqual(slack.allocations().map((a) => a.owner), ['a', 'c', 'g', 'e']);
});

test('bytes that are not zero are refused with an integrity alert', (t) => {
  const { test, slack } = image();
  test.machine.memory.write(GPA + 0x1f08, Uint8Array.of(0xcc));
  const result = slack.alloc(0x20, 'x');
  t.is(result.status, IntStatus.invalidInternalState);
  t.regex(result.detail, /not zero \(0xcc\): integrity alert/);
  t.is(slack.integrityAlerts, 1);
  t.is(slack.allocations().length, 0);
});
