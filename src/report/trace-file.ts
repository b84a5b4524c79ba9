import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { traceJsonOf, type RunReport } from '../explore/scenario-rig.ts';
import { parseTraceJson, type TraceJson } from '../explore/trace-json.ts';

/**
 * Trace files: where a failing run's trace goes (scenario, seed, strategy, mode and the fixes that
 * were off, so two runs that differ only in their fixes never share a file), and reading one back
 * with every field checked.
 */
export function traceFileName(report: Pick<RunReport, 'scenario' | 'seed' | 'strategy' | 'mode' | 'fixesOff'>, suffix = ''): string {
  const strategy = report.strategy.replace(/[^a-z0-9]+/gi, '');
  const fixes = report.fixesOff.length === 0 ? 'allfixes' : `off-${report.fixesOff.join('+')}`;
  return `${report.scenario}-seed${report.seed}-${strategy}-${report.mode}-${fixes}${suffix}.json`;
}

/**
 * The name of a bug row's recorded failure in a corpus (`campaign --corpus`): the scenario and the
 * fixes off, nothing that changes from one recording to the next, so a new recording of the same
 * row replaces the old one.
 */
export function corpusFileName(scenario: string, fixesOff: readonly string[]): string {
  return `${scenario}--${[...fixesOff].sort().join('+')}.json`;
}

/**
 * A trace file's text: the header's fields, then one choice and one trace entry per line — so a
 * recording kept in a repository and written again diffs entry by entry, where the run changed.
 */
export function traceFileText(trace: TraceJson): string {
  const { choices, entries, ...header } = trace;
  const lines = (items: readonly unknown[]): string => (items.length === 0 ? '[]' : `[\n${items.map((item) => `    ${JSON.stringify(item)}`).join(',\n')}\n  ]`);
  const fields = Object.entries(header).map(([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`);
  return `{\n${[...fields, `  "choices": ${lines(choices)}`, `  "entries": ${lines(entries)}`].join(',\n')}\n}\n`;
}

/** Writes the run's trace (what `run.ts --replay` reads) into `dir`; returns its path. */
export function writeRunTrace(dir: string, report: RunReport, suffix = ''): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, traceFileName(report, suffix));
  writeFileSync(path, traceFileText(traceJsonOf(report)));
  return path;
}

/** Reads and checks a trace file; one error naming the path for a missing file, a directory or a bad field. */
export function readTraceFile(path: string): TraceJson {
  let text: string;
  try {
    if (statSync(path).isDirectory()) throw new Error(`${path} is a directory: give the trace file itself (a .json file a failing run wrote)`);
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`no trace file at ${path}`);
    if (code === 'EACCES') throw new Error(`${path} cannot be read (permission denied)`);
    throw error;
  }
  return parseTraceJson(text, path);
}

/** The trace files (`*.json`) directly in `dir`, sorted: a regression suite's recorded failures, one test each. */
export function traceFilesIn(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`no trace directory at ${dir}`);
    if (code === 'ENOTDIR') throw new Error(`${dir} is a file, not a directory of traces`);
    throw error;
  }
  return names.filter((name) => name.endsWith('.json')).sort().map((name) => join(dir, name));
}
