import { rowProblem, type RowSummary } from '../explore/campaign.ts';

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

/** One test case of a JUnit document: passed (its output), or failed with a message, a type and details. */
export interface JunitCase {
  readonly classname: string;
  readonly name: string;
  readonly seconds: number;
  readonly output: string;
  readonly failure?: { readonly message: string; readonly type: string; readonly details: string };
}

/** A JUnit document of one suite; `stopped` (a note that it ended early, and why) makes it an error. */
export function junitDocument(title: string, suite: string, cases: readonly JunitCase[], seconds: number, stopped: string | null = null): string {
  const failures = cases.filter((c) => c.failure !== undefined).length;
  const errors = stopped === null ? 0 : 1;
  const body = cases.map((c) => {
    const open = `    <testcase classname="${escapeXml(c.classname)}" name="${escapeXml(c.name)}" time="${c.seconds.toFixed(3)}">`;
    if (c.failure === undefined) return `${open}\n      <system-out>${escapeXml(c.output)}</system-out>\n    </testcase>`;
    return `${open}\n      <failure message="${escapeXml(c.failure.message)}" type="${escapeXml(c.failure.type)}">${escapeXml(c.failure.details)}</failure>\n    </testcase>`;
  });
  const stop = stopped === null ? [] : [`    <system-err>${escapeXml(stopped)}</system-err>`];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${escapeXml(title)}" tests="${cases.length}" failures="${failures}" errors="${errors}" time="${seconds.toFixed(3)}">`,
    `  <testsuite name="${escapeXml(suite)}" tests="${cases.length}" failures="${failures}" errors="${errors}" time="${seconds.toFixed(3)}">`,
    ...body,
    ...stop,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

export function campaignJunit(input: JunitInput): string {
  const { rows, seconds, traces, stopped } = input;
  const cases = rows.map((row): JunitCase => {
    const name = row.bug === null ? 'all fixes on' : row.fixesOff.length === 0 ? `${row.bug} (every fix on: a known limitation)` : `${row.bug} (${row.fixesOff.join(', ')} off)`;
    const time = row.runsPerSecond > 0 ? row.runs / row.runsPerSecond : 0;
    const base = { classname: `vcpusim.${row.scenario}`, name, seconds: time, output: summaryLine(row) };
    const problem = rowProblem(row);
    if (problem === null) return base;
    const first = row.bug === null ? row.firstFailure : (row.firstFound ?? row.firstFailure);
    const details = [
      problem,
      summaryLine(row),
      first !== null ? `first failing seed ${first.seed} (${first.strategy}): ${first.oracle}${first.detail !== null ? ` — ${first.detail.split('\n')[0]}` : ''}` : '',
      traces.get(row) ? `trace: ${traces.get(row)}` : '',
    ].filter((line) => line !== '');
    return { ...base, failure: { message: problem, type: row.bug === null ? 'invariant-broken' : 'race-not-found', details: details.join('\n') } };
  });
  return junitDocument('vcpusim campaign', 'campaign', cases, seconds, stopped === null ? null : `stopped: ${stopped}; the rows are partial`);
}

function summaryLine(row: RowSummary): string {
  return `${row.runs} runs, ${row.failures} failing, ${row.found} found; windows: ${Object.entries(row.windows).map(([name, n]) => `${name} ${n}`).join(', ') || 'none'}`;
}
