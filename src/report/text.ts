import type { FixName } from '../intro/fixes.ts';
import type { RunMode, RunReport } from '../explore/scenario-rig.ts';
import { parseStrategyLabel } from '../explore/schedulers/index.ts';
import { isScheduleLabel } from '../explore/schedulers/lenient.ts';

/**
 * Plain-text reports for the CLI and the campaign: a failed run as the engineer needs it (seed,
 * broken invariant, where every vCPU is, the trace file, the command that replays it), and the
 * commands themselves.
 */

/** How a run was asked for, enough to print the command that repeats it. */
export interface RunCommandSpec {
  readonly scenario: string;
  readonly seed: string;
  readonly strategy: string;
  readonly depth: number;
  readonly mode: RunMode;
  readonly fixesOff: readonly FixName[];
}

/** Trace entries shown at the end of a failure report: what the handler and vCPUs did last. */
const TAIL_ENTRIES = 12;

const fixFlags = (fixesOff: readonly FixName[]): string => fixesOff.map((name) => ` --fix ${name}=off`).join('');

/**
 * `npx tsx scenarios/run.ts <name> --seed S --strategy X …`: runs the same seed again — the same
 * run in a deterministic mode; in free-running mode the same set-up, not the same interleaving.
 */
export function rerunCommand(spec: RunCommandSpec): string {
  const strategy = spec.mode === 'free' ? '' : ` --strategy ${spec.strategy}${spec.strategy === 'pct' ? ` --depth ${spec.depth}` : ''}`;
  const command = `npx tsx scenarios/run.ts ${spec.scenario} --seed ${spec.seed}${strategy} --mode ${spec.mode}${fixFlags(spec.fixesOff)}`;
  return spec.mode === 'free' ? `${command}   (free-running: the same set-up, not the same interleaving)` : command;
}

/** `npx tsx scenarios/run.ts <name> --replay <file>`: follows the recorded schedule exactly. */
export function replayCommand(scenario: string, tracePath: string, fixesOff: readonly FixName[]): string {
  return `npx tsx scenarios/run.ts ${scenario} --replay ${tracePath}${fixFlags(fixesOff)}`;
}

/** The commands that rerun a reported run and, when its trace was written to `tracePath`, replay it. */
export function commandsOf(report: RunReport, tracePath: string | null): { readonly rerun: string; readonly replay: string | null } {
  const replay = tracePath === null ? null : replayCommand(report.scenario, tracePath, report.fixesOff);
  // A shrunk, exhaustive or guided schedule comes from no strategy and seed alone: its trace is the way to run it again.
  if (isScheduleLabel(report.strategy)) return { rerun: replay ?? `(a ${report.strategy} schedule: replay its trace file)`, replay };
  // A strategy label that names no strategy ("free", "replay") reruns with the CLI's default.
  const plan = parseStrategyLabel(report.strategy) ?? { strategy: 'pct', depth: 2 };
  const rerun = rerunCommand({ scenario: report.scenario, seed: report.seed, strategy: plan.strategy, depth: plan.depth, mode: report.mode, fixesOff: report.fixesOff });
  return { rerun, replay };
}

/** The detailed report of one failed run. */
export function formatFailure(report: RunReport, commands: { readonly rerun: string; readonly replay: string | null }, tracePath: string | null): string {
  const [first, ...others] = report.violations;
  const lines = [
    `FAILED  ${report.scenario}  seed ${report.seed}  ${report.mode === 'free' ? 'free-running' : `${report.strategy}  ${report.mode}`}${report.fixesOff.length > 0 ? `  fixes off: ${report.fixesOff.join(', ')}` : ''}`,
    `  invariant broken: ${first.oracle}`,
    ...first.detail.split('\n').map((line) => `    ${line}`),
  ];
  if (others.length > 0) lines.push(`  also broken: ${others.map((v) => v.oracle).join(', ')}`);
  lines.push(`  run: ${report.outcome} after ${report.steps} steps, ${report.choices} choices, trace hash ${report.hash}`);
  if (report.vcpus !== '') lines.push('  vCPUs:', ...report.vcpus.split('\n').map((line) => `    ${line}`));
  const tail = report.trace.entries.slice(-TAIL_ENTRIES);
  if (tail.length > 0) lines.push(`  last ${tail.length} trace entries (clock, entry):`, ...tail.map((e) => `    ${String(e.clock).padStart(7)}  ${e.text}`));
  if (report.windows.length > 0) lines.push(`  windows reached: ${report.windows.join(', ')}`);
  if (tracePath !== null) lines.push(`  trace written to ${tracePath}`);
  lines.push(`  replay:  ${commands.replay ?? '(free-running runs have no schedule to replay: --explain searches a deterministic run that breaks the same invariant)'}`);
  lines.push(`  rerun:   ${commands.rerun}`);
  return lines.join('\n');
}
