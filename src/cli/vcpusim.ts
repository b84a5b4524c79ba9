import { fileURLToPath } from 'node:url';
import { readTraceFile } from '../report/trace-file.ts';
import { campaignCommand } from './campaign.ts';
import { checkTracesCommand } from './check-traces.ts';
import { runMain } from './common.ts';
import { runCommand } from './run.ts';

/**
 * `npx vcpusim <command> …`: one entry for the project's commands, each with its own --help.
 * The built-in scenarios are those of scenarios/index.ts; --load adds a module of your own.
 */

const BUILT_IN = [fileURLToPath(new URL('../../scenarios/index.ts', import.meta.url))];
const context = { builtIn: BUILT_IN };

const USAGE = `usage: npx vcpusim <command> [options]   (each command: --help)
  run <scenario> …        run a scenario over seeds with a strategy (as scenarios/run.ts)
  campaign …              the main job: every scenario, fixes on and each bug's fixes off (as scenarios/campaign.ts)
  campaign merge F.json…  the shards of a campaign (--shard I/N --json) as one run
  replay <trace.json> …   follow a recorded trace: its scenario, seed, schedule and fixes
  shrink <trace.json> …   shrink a failing trace to its fewest preemptions, and tell how the race happens
  report <trace.json> --perfetto F --html F
                          replay a trace and write its Perfetto trace and/or HTML timeline
  check-traces <dir|trace.json>…
                          recorded failures kept fixed: each still fails without its fixes, none with them`;

const REPORT_USAGE = `usage: npx vcpusim report <trace.json> [--perfetto FILE] [--html FILE] [--mode inline|workers]
  replays the trace a failing run wrote and writes the run as a Perfetto/Chrome trace (open it in
  ui.perfetto.dev or chrome://tracing) and/or a self-contained HTML timeline; at least one of the two`;

const REPLAY_USAGE = `usage: npx vcpusim replay <trace.json> [options]
  follows the trace a failing run wrote: its scenario, seed, schedule, mode and fixes; the options
  are those of \`run\` that a replay takes (--mode, --fix, --trace-dir, --json, --load, --perfetto FILE,
  --html FILE: the replayed run as a Perfetto trace and an HTML timeline)`;

const SHRINK_USAGE = `usage: npx vcpusim shrink <trace.json> [--shrink-runs N] [--trace-dir DIR] [--perfetto FILE] [--html FILE] [--mode inline|workers] [--json]
  replays the failing trace, then searches for the schedule with the fewest preemptions (then the
  fewest decisive choices) that breaks the same invariant — greedy cuts (--shrink-runs, default 2000), then
  a bounded search of every schedule with fewer preemptions (as many runs again), which proves the
  count the fewest at its choice points when every level below it ran; writes the shrunk trace into --trace-dir
  (default traces), prints "shrunk from N choices / P preemptions to …" and the story of the
  interleaving; --perfetto/--html show the shrunk run with the events that matter marked`;

/** The commands by name: each takes the arguments after its name and returns the exit status. */
const COMMANDS: Readonly<Record<string, (argv: readonly string[]) => Promise<number>>> = {
  run: (argv) => runCommand(argv, context),
  campaign: (argv) => campaignCommand(argv, context),
  replay: (argv) => replay(argv, REPLAY_USAGE),
  shrink: (argv) => replay(argv.length > 0 && argv[0] !== '--help' && argv[0] !== '-h' ? [...argv, '--shrink'] : argv, SHRINK_USAGE),
  report: (argv) => {
    if (argv[0] !== undefined && !argv[0].startsWith('-') && !argv.includes('--perfetto') && !argv.includes('--html')) {
      process.stderr.write('error: report writes --perfetto FILE and/or --html FILE; give at least one (npx vcpusim report --help)\n');
      return Promise.resolve(2);
    }
    return replay(argv, REPORT_USAGE);
  },
  'check-traces': (argv) => checkTracesCommand(argv, context),
};

/** Follows a trace file, its scenario read from the file; the rest of the options go to run. */
async function replay(argv: readonly string[], usage: string): Promise<number> {
  const [file, ...rest] = argv;
  if (file === undefined || file === '--help' || file === '-h') {
    process.stdout.write(`${usage}\n`);
    return file === undefined ? 2 : 0;
  }
  const { scenario } = readTraceFile(file);
  if (scenario === undefined) {
    process.stderr.write(`error: ${file} does not name its scenario; run it with: npx vcpusim run <scenario> --replay ${file}\n`);
    return 2;
  }
  return runCommand([scenario, '--replay', file, ...rest], context);
}

export async function dispatch(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`error: unknown command "${name}"; the commands: ${Object.keys(COMMANDS).join(', ')} (npx vcpusim --help)\n`);
    return 2;
  }
  return command(rest);
}

export function vcpusimMain(): void {
  runMain(dispatch);
}
