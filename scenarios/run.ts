import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { failed, RUN_MODES, ScenarioRig, type RunMode, type RunReport } from '../src/explore/scenario-rig.ts';
import { STRATEGIES, type StrategyName } from '../src/explore/schedulers/index.ts';
import { parseTraceJson, type TraceJson } from '../src/explore/trace.ts';
import { DEFAULT_FIXES, FIX_DESCRIPTIONS, FIX_NAMES, applyFixSettings, fixesWithout, type FixName } from '../src/intro/fixes.ts';
import { formatFailure, parseStrategyLabel, replayCommand, rerunCommand } from '../src/report/text.ts';
import { writeRunTrace } from '../src/report/trace-file.ts';
import { runMain } from './cli.ts';
import { findScenario, SCENARIOS } from './index.ts';

/**
 * Runs one scenario: `npx tsx scenarios/run.ts <name> [options]`. Prints a verdict; for the first
 * failing run, the seed, the invariant that broke, every vCPU's RIP disassembled, where the trace
 * was written and the commands that replay it. Exit status: 0 no failure, 1 failures, 2 bad usage.
 */

const USAGE = `usage: npx tsx scenarios/run.ts <scenario> [options]
  --seed N            first seed (default 1)
  --runs N            seeds N, N+1, … (default 1)
  --strategy S        ${STRATEGIES.join(' | ')} (default pct)
  --depth D           PCT depth d (default 2)
  --mode M            ${RUN_MODES.join(' | ')} (default inline)
  --fix name=off      turn one HVMI mitigation off (repeatable); the fixes:
${FIX_NAMES.map((name) => `                        ${name}: ${FIX_DESCRIPTIONS[name]}`).join('\n')}
  --bug               turn off the fixes whose absence brings the scenario's own race back
  --replay FILE       follow a recorded trace (written by a failing run): its seed, schedule, mode and
                      fixes (--fix changes fixes on top of the recorded ones, --mode the host)
  --trace-dir DIR     where failing traces go (default traces)
  --json              one machine-readable JSON object on stdout
  --list              the scenarios, their bugs, oracles and window goals
scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}`;

interface Options {
  readonly scenario: string;
  readonly seed: number;
  readonly runs: number;
  readonly strategy: StrategyName;
  readonly depth: number;
  readonly mode: RunMode;
  /** --mode was given (a replay otherwise uses the recorded mode). */
  readonly modeGiven: boolean;
  readonly fixSettings: readonly string[];
  readonly bug: boolean;
  readonly replay: string | null;
  readonly traceDir: string;
  readonly json: boolean;
}

class UsageError extends Error {}
class ListRequest extends Error {}

/** `--list`: every scenario with its bugs, oracles and window goals. */
function listScenarios(): string {
  return SCENARIOS.map((s) => [
    `${s.name} — ${s.title} (${s.vcpus} vCPUs)`,
    `  ${s.description}`,
    ...s.bugs.map((bug) => `  bug: ${bug.name}: --fix ${bug.fixesOff.map((f) => `${f}=off`).join(' --fix ')} (caught by ${bug.caughtBy})`),
    ...s.oracles.map((o) => `  oracle ${o.name} [${o.phase}]: ${o.description}`),
    ...s.windows.map((w) => `  window ${w.name}: ${w.description}`),
  ].join('\n')).join('\n\n');
}

function positiveInt(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} must be an integer ≥ ${min}, got "${value}"`);
  return n;
}

function parse(argv: readonly string[]): Options {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      seed: { type: 'string' }, runs: { type: 'string' }, strategy: { type: 'string' }, depth: { type: 'string' }, mode: { type: 'string' },
      fix: { type: 'string', multiple: true }, bug: { type: 'boolean' }, replay: { type: 'string' }, 'trace-dir': { type: 'string' },
      json: { type: 'boolean' }, help: { type: 'boolean' }, list: { type: 'boolean' },
    },
  });
  if (values.help === true) throw new UsageError('');
  if (values.list === true) throw new ListRequest();
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name a scenario' : `one scenario at a time, got ${positionals.join(' ')}`);
  if (values.replay !== undefined) {
    // A replay follows the recorded seed and schedule: options that would choose them are refused.
    const chosen = (['seed', 'runs', 'strategy', 'depth', 'bug'] as const).filter((name) => values[name] !== undefined);
    if (chosen.length > 0) throw new UsageError(`--replay follows the recorded seed and schedule; drop ${chosen.map((name) => `--${name}`).join(', ')}`);
  }
  const strategy = values.strategy ?? 'pct';
  if (!(STRATEGIES as readonly string[]).includes(strategy)) throw new UsageError(`--strategy must be one of ${STRATEGIES.join(', ')}, got "${strategy}"`);
  const mode = values.mode ?? 'inline';
  if (!(RUN_MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode must be one of ${RUN_MODES.join(', ')}, got "${mode}"`);
  return {
    scenario: positionals[0],
    seed: positiveInt(values.seed, '--seed', 1, 0),
    runs: positiveInt(values.runs, '--runs', 1),
    strategy: strategy as StrategyName,
    depth: positiveInt(values.depth, '--depth', 2),
    mode: mode as RunMode,
    modeGiven: values.mode !== undefined,
    fixSettings: values.fix ?? [],
    bug: values.bug === true,
    replay: values.replay ?? null,
    traceDir: values['trace-dir'] ?? 'traces',
    json: values.json === true,
  };
}

async function main(argv: readonly string[]): Promise<number> {
  let options: Options;
  try {
    options = parse(argv);
  } catch (error) {
    if (error instanceof ListRequest) {
      process.stdout.write(`${listScenarios()}\n`);
      return 0;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${message ? `error: ${message}\n` : ''}${USAGE}\n`);
    return 2;
  }
  const definition = findScenario(options.scenario);
  const reports: RunReport[] = [];
  let mode = options.mode;
  let recorded: TraceJson | null = null;
  let base = options.bug ? fixesWithout(definition.bugs[0].fixesOff) : DEFAULT_FIXES;
  if (options.replay !== null) {
    recorded = parseTraceJson(readFileSync(options.replay, 'utf8'), options.replay);
    if (recorded.scenario !== undefined && recorded.scenario !== definition.name) {
      throw new Error(`${options.replay} is a trace of "${recorded.scenario}", not "${definition.name}"`);
    }
    // The recorded fixes, with any --fix applied on top.
    base = fixesWithout((recorded.fixesOff ?? []).filter((n): n is FixName => (FIX_NAMES as readonly string[]).includes(n)));
    if (!options.modeGiven && (recorded.mode === 'inline' || recorded.mode === 'workers')) mode = recorded.mode;
    if (mode === 'free') throw new Error('a recorded trace replays in a deterministic mode: use --mode inline or --mode workers');
  }
  const fixes = applyFixSettings(base, options.fixSettings);
  const rig = ScenarioRig.open(definition, mode);
  const started = performance.now();
  try {
    if (recorded !== null) {
      reports.push(rig.replay(recorded, fixes));
    } else {
      for (let k = 0; k < options.runs; k++) {
        reports.push(rig.run({ seed: options.seed + k, strategy: options.strategy, depth: options.depth, fixes }));
        if (!options.json && process.stderr.isTTY && options.runs > 1) process.stderr.write(`\r  ${k + 1}/${options.runs} runs, ${reports.filter(failed).length} failing`);
      }
      if (!options.json && process.stderr.isTTY && options.runs > 1) process.stderr.write('\n');
    }
  } finally {
    await rig.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const failures = reports.filter(failed);
  const windowsReached: Record<string, number> = {};
  for (const goal of definition.windows) windowsReached[goal.name] = reports.filter((r) => r.windows.includes(goal.name)).length;
  const first = failures[0];
  let tracePath: string | null = null;
  if (first !== undefined && first.mode !== 'free') tracePath = writeRunTrace(options.traceDir, first);
  if (options.json) {
    const out = {
      scenario: definition.name,
      runs: reports.length,
      failures: failures.length,
      ...(first !== undefined ? { firstFailure: { seed: first.seed, invariant: first.violations[0].oracle, trace: tracePath } } : {}),
      windowsReached,
      traceHashes: reports.map((r) => r.hash),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return failures.length > 0 ? 1 : 0;
  }
  const how = mode === 'free' ? 'free-running' : `${reports[0]?.strategy ?? options.strategy}, ${mode}`;
  const what = recorded !== null ? `replay of ${options.replay}` : `${reports.length} run(s), ${how}`;
  const fixesNote = reports[0]?.fixesOff.length ? `fixes off: ${reports[0].fixesOff.join(', ')}` : 'all fixes on';
  process.stdout.write(`${definition.name}: ${what}, ${fixesNote} — ${seconds.toFixed(1)} s (${(reports.length / seconds).toFixed(1)} runs/s)\n`);
  if (recorded !== null && reports[0].outcome !== 'error') {
    process.stdout.write(`  replay followed all ${recorded.choices.length} recorded choices; trace hash ${reports[0].hash} (recorded ${recorded.hash})\n`);
  }
  process.stdout.write(`  windows reached: ${Object.entries(windowsReached).map(([name, n]) => `${name} ${n}/${reports.length}`).join(', ')}\n`);
  if (first === undefined) {
    process.stdout.write(`PASS: no invariant broke in ${reports.length} run(s)\n`);
    return 0;
  }
  // A replay reruns with the recorded strategy, not this invocation's defaults.
  const plan = parseStrategyLabel(first.strategy) ?? { strategy: options.strategy, depth: options.depth };
  const spec = { scenario: definition.name, seed: first.seed, strategy: plan.strategy, depth: plan.depth, mode, fixesOff: first.fixesOff };
  process.stdout.write(`${failures.length} of ${reports.length} run(s) failed; the first:\n`);
  process.stdout.write(`${formatFailure(first, { rerun: rerunCommand(spec), replay: tracePath === null ? null : replayCommand(definition.name, tracePath, first.fixesOff) }, tracePath)}\n`);
  return 1;
}

runMain(main);
