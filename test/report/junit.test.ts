/**
 * Goal: a campaign's JUnit XML shows a row that did not pass as a failure that says why, escapes
 * whatever a detail holds, and marks a stopped campaign as an error.
 */
import test from 'ava';
import type { RowSummary } from '../../src/explore/campaign.ts';
import { campaignJunit } from '../../src/report/junit.ts';

const row = (over: Partial<RowSummary>): RowSummary => ({
  scenario: 'audit-record-torn', bug: 'torn audit record', caughtBy: 'audit-records-whole', fixesOff: ['auditUnderPause'], windowGoals: ['w'],
  runs: 10, failures: 0, found: 0, firstFailure: null, firstFound: null, errors: 0, firstError: null, windows: { w: 3 },
  byStrategy: {}, runsPerSecond: 5, complete: true, determinism: { checked: [1], nondeterministic: [] }, ...over,
});

test('a bug row whose oracle never broke is a failure naming the oracle; a clean row is not', (t) => {
  const notFound = row({});
  const clean = row({ bug: null, caughtBy: null, fixesOff: [] });
  const xml = campaignJunit({ rows: [notFound, clean], seconds: 4, traces: new Map(), stopped: null });
  t.regex(xml, /<testsuites name="vcpusim campaign" tests="2" failures="1" errors="0" time="4.000">/);
  t.regex(xml, /<testcase classname="vcpusim\.audit-record-torn" name="torn audit record \(auditUnderPause off\)" time="2\.000">\n {6}<failure message="audit-record-torn \(torn audit record\): audit-records-whole never broke in 10 runs" type="race-not-found">/);
  t.regex(xml, /<testcase classname="vcpusim\.audit-record-torn" name="all fixes on" time="2\.000">\n {6}<system-out>10 runs, 0 failing, 0 found; windows: w 3<\/system-out>/);
});

test('details are escaped, control characters dropped, and a stopped campaign is an error', (t) => {
  const broke = row({
    bug: null, caughtBy: null, fixesOff: [], failures: 1,
    firstFailure: { seed: 7, plan: { strategy: 'random', depth: 2 }, strategy: 'random', oracle: 'guest-alive', detail: 'a < b && "c" \u0007', hash: '0' },
  });
  const xml = campaignJunit({ rows: [broke], seconds: 1, traces: new Map([[broke, 'traces/x.json']]), stopped: 'SIGINT' });
  t.regex(xml, /first failing seed 7 \(random\): guest-alive — a &lt; b &amp;&amp; &quot;c&quot; \ntrace: traces\/x\.json<\/failure>/);
  t.regex(xml, /errors="1"/);
  t.regex(xml, /<system-err>stopped: SIGINT; the rows are partial<\/system-err>/);
});
