import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * What the command-line tools share: the exit status of an async main, argument parsing with one
 * clear message per mistake, a trace directory checked before the first run, and stop requests
 * (Ctrl-C, SIGTERM, or the launcher that started us going away) that end a long job after the
 * current run with a partial summary instead of losing it.
 */

/** A mistake in the command line: printed as one "error:" line and the usage, exit status 2. */
export class UsageError extends Error {}

/**
 * Runs a CLI's async main and turns its outcome into the exit status: its return value, or 2 with
 * one "error: …" line when it throws (bad input, an unreadable trace, a replay that diverged).
 */
export function runMain(main: (argv: readonly string[]) => Promise<number>): void {
  // A reader that went away (| head) is not an error worth a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 2;
    },
  );
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * node:util parseArgs, with the mistakes a person makes answered in our words: an option value
 * that starts with "-" (`--runs -3`) is taken as the value so the range check can say what is
 * wrong, and unknown options or missing values become a UsageError.
 */
export function parseCommandLine<O extends Options>(argv: readonly string[], options: O): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const name = arg.startsWith('--') ? arg.slice(2) : null;
    const next = argv[i + 1];
    if (name !== null && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      args.push(`${arg}=${next}`);
      i++;
    } else args.push(arg);
  }
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new UsageError(message.replace(/\. To specify a positional argument.*$/s, '').replace(/^Unknown option '([^']+)'.*$/s, "unknown option '$1'"));
  }
}

/** An integer option in [min, max], or `fallback` when absent; the message names the real limits. */
export function integerOption(value: string | undefined, flag: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min} (at most 2^53 − 1)` : `in [${min}, ${max}]`;
    throw new UsageError(`${flag} must be an integer ${range}, got "${value}"`);
  }
  return n;
}

/**
 * Makes sure traces can be written to `dir` before any run starts (a job that learns at the end
 * that its results cannot be saved has lost them): creates it, writes and removes a probe file.
 */
export function ensureWritableDir(dir: string, flag = '--trace-dir'): void {
  const problem = writableDirProblem(dir);
  if (problem !== null) throw new UsageError(`${flag} ${dir} cannot hold trace files (${problem}); choose a writable directory with ${flag} DIR`);
}

/** The same check for the folder of a file to be written (`--perfetto FILE`), before the first run. */
export function ensureWritableFileDir(file: string, flag: string): void {
  const dir = dirname(file);
  const problem = writableDirProblem(dir);
  if (problem !== null) throw new UsageError(`${flag} ${file} cannot be written: its folder ${dir} ${problem.startsWith('it ') ? problem.slice(3) : `cannot take files (${problem})`}; choose a file in a writable folder`);
}

/**
 * mkdir -p, one level at a time: Node's recursive mkdirSync never returns for a path under a
 * directory that refuses new entries with ENOENT (/proc).
 */
function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let at = resolve(dir); !existsSync(at); at = dirname(at)) {
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const path of missing) mkdirSync(path);
}

/** Why `dir` cannot take files (created if missing; a probe file written and removed), or null. */
function writableDirProblem(dir: string): string | null {
  try {
    if (existsSync(dir) && !statSync(dir).isDirectory()) return 'it is a file, not a directory';
    makeDirectories(dir);
    accessSync(dir, constants.W_OK);
    const probe = join(dir, `.vcpusim-write-check-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message.replace(/^[A-Z]+: /, '') : String(error);
  }
}

/** Why a job was asked to stop, with the exit status that tells it. */
export interface StopReason {
  readonly why: string;
  readonly exitCode: number;
}

export interface StopRequests {
  /** Set once a stop was asked for; the job ends after its current run. */
  readonly requested: StopReason | null;
  dispose(): void;
}

const SIGNAL_CODES = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;

interface Ancestor {
  readonly pid: number;
  readonly started: string;
}

/** PID, parent and start time of a process from /proc (null when it is gone or a zombie). */
function procStat(pid: number): { ppid: number; started: string } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return null;
    return { ppid: Number(fields[1]), started: fields[19] };
  } catch {
    return null;
  }
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/**
 * The processes that launched this one: the parent, and above it every npm/npx/tsx launcher up to
 * the first process that is none (the user's shell, a CI runner). `npx tsx x.ts` is three such
 * processes; a signal to the outer one kills the middle one and leaves us an orphan unless we
 * notice.
 */
function launchers(): Ancestor[] {
  const found: Ancestor[] = [];
  let pid = process.ppid;
  for (let depth = 0; pid > 1 && depth < 8; depth++) {
    const stat = procStat(pid);
    if (stat === null) break;
    if (depth > 0 && !/(^|[\s/'"])(npx|npm|tsx)(['"\s]|$)|npm exec|npm-cli/.test(commandLine(pid))) break;
    found.push({ pid, started: stat.started });
    pid = stat.ppid;
  }
  return found;
}

/**
 * Watches for SIGINT, SIGTERM, SIGHUP and for the launcher processes going away. The first request
 * sets `requested` (the job stops after its current run and prints what it has); a second signal
 * exits at once. `onRequest` is told once.
 */
export function watchStopRequests(onRequest?: (reason: StopReason) => void): StopRequests {
  let requested: StopReason | null = null;
  const request = (reason: StopReason): void => {
    if (requested !== null) {
      process.exit(reason.exitCode);
    }
    requested = reason;
    process.stderr.write(`\n${reason.why}: stopping after the current run (a second signal quits at once)\n`);
    onRequest?.(reason);
  };
  const handlers = (Object.keys(SIGNAL_CODES) as (keyof typeof SIGNAL_CODES)[]).map((signal) => {
    const handler = (): void => request({ why: signal, exitCode: SIGNAL_CODES[signal] });
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  const watched = process.platform === 'linux' ? launchers() : [];
  const parent = process.ppid;
  const poll = setInterval(() => {
    const gone = process.ppid !== parent || watched.some((a) => procStat(a.pid)?.started !== a.started);
    if (gone && requested === null) request({ why: 'the process that started this job is gone', exitCode: SIGNAL_CODES.SIGHUP });
  }, 500);
  poll.unref();
  return {
    get requested() {
      return requested;
    },
    dispose() {
      clearInterval(poll);
      for (const [signal, handler] of handlers) process.off(signal, handler);
    },
  };
}

/** Lets timers and signal handlers run between two synchronous runs. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Where a search command (bounded-exhaustive, coverage-guided) writes and how it reports. */
export interface SearchOutput {
  /** Feeds the search's own randomness, and the engine's. */
  readonly seed: number;
  readonly traceDir: string;
  readonly json: boolean;
  readonly progress: Progress;
}

/** A progress line printer: on a terminal it redraws one line, elsewhere it prints every few seconds. */
export class Progress {
  private last = 0;
  private readonly tty = process.stderr.isTTY === true;

  constructor(private readonly enabled: boolean, private readonly everyMs = 5000) {}

  update(line: string, final = false): void {
    if (!this.enabled) return;
    if (this.tty) {
      process.stderr.write(`\r${line}${final ? '\n' : ''}`);
      return;
    }
    const now = performance.now();
    if (!final && now - this.last < this.everyMs) return;
    this.last = now;
    process.stderr.write(`${line}\n`);
  }
}
