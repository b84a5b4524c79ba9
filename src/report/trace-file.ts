import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { traceJsonOf, type RunReport } from '../explore/scenario-rig.ts';

/**
 * Where a failing run's trace goes: scenario, seed, strategy, mode and the fixes that were off, so
 * two runs that differ only in their fixes never share a file.
 */
export function traceFileName(report: Pick<RunReport, 'scenario' | 'seed' | 'strategy' | 'mode' | 'fixesOff'>, suffix = ''): string {
  const strategy = report.strategy.replace(/[^a-z0-9]+/gi, '');
  const fixes = report.fixesOff.length === 0 ? 'allfixes' : `off-${report.fixesOff.join('+')}`;
  return `${report.scenario}-seed${report.seed}-${strategy}-${report.mode}-${fixes}${suffix}.json`;
}

/** Writes the run's trace (what `run.ts --replay` reads) into `dir`; returns its path. */
export function writeRunTrace(dir: string, report: RunReport, suffix = ''): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, traceFileName(report, suffix));
  writeFileSync(path, JSON.stringify(traceJsonOf(report)));
  return path;
}
