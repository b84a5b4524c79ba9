import { rowPassed, rowProblem, type RowSummary } from '../explore/campaign.ts';

/**
 * A campaign as JUnit XML, so a CI shows one test case per scenario row: its bug found (or, with
 * every fix on, nothing broken), every re-run seed reproduced. A row that did not pass is a
 * failure whose text says why and where its first failing run's trace is.
 */

const XML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
// XML 1.0 has no representation for most control characters: drop them.
const escapeXml = (text: string): string => text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '').replace(/[&<>"']/g, (c) => XML_ESCAPES[c]);

export interface JunitInput {
  readonly rows: readonly RowSummary[];
  readonly seconds: number;
  /** The first failing run's trace of each row, when one was written. */
  readonly traces: ReadonlyMap<RowSummary, string | null>;
  /** Why the campaign stopped early, if it did (the suite then has an error). */
  readonly stopped: string | null;
}

export function campaignJunit(input: JunitInput): string {
  const { rows, seconds, traces, stopped } = input;
  const failures = rows.filter((row) => !rowPassed(row)).length;
  const cases = rows.map((row) => {
    const name = row.bug === null ? 'all fixes on' : row.fixesOff.length === 0 ? `${row.bug} (every fix on: a known limitation)` : `${row.bug} (${row.fixesOff.join(', ')} off)`;
    const time = row.runsPerSecond > 0 ? row.runs / row.runsPerSecond : 0;
    const open = `    <testcase classname="vcpusim.${escapeXml(row.scenario)}" name="${escapeXml(name)}" time="${time.toFixed(3)}">`;
    const problem = rowProblem(row);
    if (problem === null) return `${open}\n      <system-out>${escapeXml(summaryLine(row))}</system-out>\n    </testcase>`;
    const first = row.bug === null ? row.firstFailure : (row.firstFound ?? row.firstFailure);
    const details = [
      problem,
      summaryLine(row),
      first !== null ? `first failing seed ${first.seed} (${first.strategy}): ${first.oracle}${first.detail !== null ? ` — ${first.detail.split('\n')[0]}` : ''}` : '',
      traces.get(row) ? `trace: ${traces.get(row)}` : '',
    ].filter((line) => line !== '');
    return `${open}\n      <failure message="${escapeXml(problem)}" type="${row.bug === null ? 'invariant-broken' : 'race-not-found'}">${escapeXml(details.join('\n'))}</failure>\n    </testcase>`;
  });
  const errors = stopped === null ? 0 : 1;
  const stop = stopped === null ? [] : [`    <system-err>${escapeXml(`stopped: ${stopped}; the rows are partial`)}</system-err>`];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="vcpusim campaign" tests="${rows.length}" failures="${failures}" errors="${errors}" time="${seconds.toFixed(3)}">`,
    `  <testsuite name="campaign" tests="${rows.length}" failures="${failures}" errors="${errors}" time="${seconds.toFixed(3)}">`,
    ...cases,
    ...stop,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

function summaryLine(row: RowSummary): string {
  return `${row.runs} runs, ${row.failures} failing, ${row.found} found; windows: ${Object.entries(row.windows).map(([name, n]) => `${name} ${n}`).join(', ') || 'none'}`;
}
