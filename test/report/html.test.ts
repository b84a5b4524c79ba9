/**
 * Goal: the HTML timeline is one self-contained file — no reference to anything outside it, a
 * policy that forbids fetching anything, the run embedded as JSON that no detail text can break
 * out of — and carries what the page shows: every exit with its disassembled instruction and
 * registers, the violations, the commands that repeat the run. (test/report/html-browser.test.ts
 * opens it in a real browser.) Method: the page of memtable-stale-icache's first failing run.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { htmlTimeline, type HtmlTimelineData } from '../../src/report/html.ts';
import { firstFailingRun } from './failing-runs.ts';

const found = firstFailingRun(memtableStaleIcache);

const embedded = (html: string): HtmlTimelineData => {
  const match = /<script type="application\/json" id="run-data">([^]*?)<\/script>/.exec(html);
  if (match === null) throw new Error('no embedded run data');
  return JSON.parse(match[1]) as HtmlTimelineData;
};

test('the page references nothing outside itself and forbids fetching', async (t) => {
  const run = await found;
  if (run === null) return t.fail('no failing seed');
  const html = htmlTimeline(run.report, run.recording, 'traces/x.json');
  t.regex(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">/);
  t.notRegex(html, /<script[^>]*\ssrc=/i);
  t.notRegex(html, /<(img|iframe|object|embed|audio|video|source)\b/i);
  t.deepEqual(html.match(/<link\b[^>]*>/gi), ['<link rel="icon" href="data:,">']);
  t.notRegex(html, /@import|url\(/i);
  t.notRegex(html, /https?:\/\//i);
  t.log(`${(html.length / 1024).toFixed(0)} KiB`);
});

test('the embedded run has every exit with its instruction, registers and decision, the violations and the commands', async (t) => {
  const run = await found;
  if (run === null) return t.fail('no failing seed');
  const data = embedded(htmlTimeline(run.report, run.recording, 'traces/x.json'));
  t.is(data.exits.length, run.recording.exits.length);
  for (const exit of data.exits) {
    t.regex(exit.code[0]?.text ?? '', /^[a-z]/, `exit #${exit.ticket} has its instruction`);
    t.true(exit.registers.length >= 20, `exit #${exit.ticket} has its registers`);
    t.is(exit.registers[0][0], 'rip');
    t.is(exit.registers[0][1], exit.rip);
  }
  t.true(data.exits.some((exit) => exit.action === 'retry') && data.exits.some((exit) => exit.action === 'allowed'));
  t.deepEqual(data.violations.map((v) => v.oracle), run.report.violations.map((v) => v.oracle));
  t.is(data.meta.replay, `npx tsx scenarios/run.ts memtable-stale-icache --replay traces/x.json --fix icacheFlushOnPatch=off --fix patchedGuard=off`);
  t.regex(data.meta.rerun, new RegExp(`--seed ${run.report.seed} --strategy `));
  t.deepEqual(data.lanes.slice(0, 4).map((lane) => lane.name), ['vCPU 0', 'vCPU 1', 'vCPU 2', 'hypervisor handler']);
});

test('no text in a report can end the script element the run is embedded in', async (t) => {
  const run = await found;
  if (run === null) return t.fail('no failing seed');
  const hostile = '</script><script>document.title="owned"</script><!-- \u2028';
  const report = { ...run.report, violations: [{ oracle: 'x', detail: hostile }] };
  const html = htmlTimeline(report, run.recording);
  t.is(html.match(/<\/script>/g)?.length, 2, 'only the data and the page script close');
  t.is(embedded(html).violations[0].detail, hostile);
});
