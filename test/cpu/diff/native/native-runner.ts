/**
 * Host half of the CPU differential test: runs x86-64 machine code on the
 * real CPU through a small C helper (runner.c, built on demand with `cc`)
 * and returns the resulting registers, flags, fault information and scratch
 * memory.  The emulator half runs the same cases and compares.
 *
 * Address map shared with the emulator (details at the top of runner.c):
 *   - code at CODE_BASE (64 KiB RWX); the case ends when execution reaches
 *     the end address CODE_BASE + code.length, where the runner places a
 *     7-byte exit stub (so code.length <= MAX_CODE_BYTES);
 *   - scratch memory at SCRATCH_BASE (64 KiB RW); each case declares a
 *     window inside it with initial bytes and gets the final bytes back;
 *     the rest of the region is zero as long as earlier cases stayed inside
 *     their own windows (otherwise set `fullClear`);
 *   - a read-only page at EXIT_PAGE_BASE (4 KiB) holding the runner's exit
 *     address for the exit stub: natively mapped, absent in the emulator;
 *   - nothing else is mapped below 4 GiB.
 *
 * Cases run with FS and GS bases 0 (like an emulator with zero bases), an
 * x87 reset (fninit), MXCSR = 0x1f80 and xmm/ymm 0-15 zero.  Output RFLAGS
 * are what pushfq / the kernel report, so IF (0x200) and reserved bit 1 are
 * set, and at faults usually RF (0x10000).  System calls from case code are
 * blocked (SIGSYS).
 *
 * Two threads (benchmark mode): both execute the *same* code at CODE_BASE
 * concurrently, share the code and scratch regions and end at the same end
 * address; the caller provides ordinary code (no per-thread copies, no
 * position independence).  They differ only in their input registers.
 * (Natively the second thread is a worker process that maps code and scratch
 * shared and has its own private runner state at the same address: that is
 * how each exit stub finds its own save area without a register or segment
 * base.)
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type GprName =
  | 'rax' | 'rcx' | 'rdx' | 'rbx' | 'rsp' | 'rbp' | 'rsi' | 'rdi'
  | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15';

/** Protocol / encoding order (matches the ModRM register numbers). */
export const GPR_NAMES: readonly GprName[] = Object.freeze([
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const);

export const CODE_BASE = 0x200000n;
export const CODE_REGION_BYTES = 0x10000;
/** Size of the exit stub the runner writes at the end address. */
export const EXIT_STUB_BYTES = 7;
export const MAX_CODE_BYTES = CODE_REGION_BYTES - EXIT_STUB_BYTES;
export const SCRATCH_BASE = 0x300000n;
export const SCRATCH_REGION_BYTES = 0x10000;
/** Read-only page holding the runner's exit address (natively mapped only). */
export const EXIT_PAGE_BASE = 0x7ffff000n;
export const DEFAULT_TIMEOUT_MS = 1000;

/** Signal numbers the runner reports (x86-64 Linux). */
export const SIG = Object.freeze({
  SIGILL: 4, SIGTRAP: 5, SIGBUS: 7, SIGFPE: 8, SIGSEGV: 11, SIGALRM: 14, SIGSYS: 31,
} as const);

/** RFLAGS bits that pushfq always reports in user mode (IF and reserved bit 1). */
export const RFLAGS_ALWAYS_SET = 0x202n;

export interface NativeThreadInput {
  regs: Record<GprName, bigint>;
  /** Loaded with popfq: only user-changeable bits take effect (not IF/IOPL/RF/VM).
   *  Don't set TF (0x100): it traps inside the runner's trampoline.  AC
   *  (0x40000) makes misaligned accesses fault with #AC (SIGBUS, vector 17). */
  rflags: bigint;
}

export interface NativeCase {
  /** At most MAX_CODE_BYTES; runs at CODE_BASE, ends at CODE_BASE + code.length. */
  code: Uint8Array;
  /** 1 or 2 entries; with 2 both threads run the same code concurrently. */
  threads: NativeThreadInput[];
  /** Absolute address of the scratch window; [scratchAddress, +scratch.length)
   *  must lie inside [SCRATCH_BASE, SCRATCH_BASE + SCRATCH_REGION_BYTES). */
  scratchAddress: bigint;
  /** Initial window contents (its length is the window length). */
  scratch: Uint8Array;
  /** Per-thread time limit; default DEFAULT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Zero the whole code and scratch regions before this case (~1 us), for
   *  cases whose predecessors may have stored outside their own window. */
  fullClear?: boolean;
  /** Run the code as 32-bit code in compatibility mode (CS 0x23; one thread only). Registers go
   *  in and come out as 64-bit values: the case sees their low halves, and what the CPU leaves
   *  in the high halves is reported as it is. */
  compat32?: boolean;
}

export interface NativeThreadResult {
  /** 'end': reached the end address; 'signal': faulted/trapped;
   *  'timeout': still running after timeoutMs (state where it was stopped);
   *  'host-interrupted': RSP was non-canonical when the host interrupted the
   *  case, and this host cannot return to such a context (see
   *  NativeRunnerConfig.nonCanonicalRsp): the case's own outcome is unknown. */
  status: 'end' | 'signal' | 'timeout' | 'host-interrupted';
  /** Only for 'signal': the Linux signal number (SIG.*). */
  signal?: number;
  /** Only for 'signal': the kernel's REG_TRAPNO, i.e. the exception vector
   *  (0 #DE, 3 #BP, 6 #UD, 13 #GP, 14 #PF, 17 #AC ...); not meaningful for SIGSYS. */
  vector?: number;
  /** Only for 'signal': the kernel's REG_ERR (the page-fault error code for #PF). */
  errorCode?: bigint;
  /** Only for 'signal': si_addr (CR2 for page faults, 0 for #GP, the RIP of the
   *  instruction for #DE/#UD, the RIP after int3 for #BP). */
  faultAddress?: bigint;
  /** End address for 'end'; as reported by the kernel otherwise (for int3: the
   *  address after the int3, as Linux reports it). */
  rip: bigint;
  regs: Record<GprName, bigint>;
  rflags: bigint;
  /** CLOCK_MONOTONIC time around entering/leaving the case, including a few
   *  tens of ns of runner overhead (calibrate with an empty case). */
  elapsedNs: number;
}

export interface NativeResult {
  threads: NativeThreadResult[];
  /** From the earliest thread start to the latest thread end. */
  wallNs: number;
  /** Final contents of the scratch window. */
  scratch: Uint8Array;
}

// ---- protocol (mirrors the layout documented at the top of runner.c) ------

const IN_MAGIC = 0x31435356; // "VSC1"
const OUT_MAGIC = 0x31525356; // "VSR1"
const CTRL_FULL_CLEAR = 0x100;
const CTRL_COMPAT32 = 0x200;
const IN_HEADER_BYTES = 24; // magic, control, codeLen, scratchAddr, scratchLen, timeoutMs
const THREAD_IN_BYTES = 17 * 8; // 16 GPRs + rflags
const OUT_HEADER_BYTES = 8; // magic, thread count
const THREAD_OUT_BYTES = 184; // status, signo, trapno, err, faultAddr, rip, 16 GPRs, rflags, elapsedNs
const WALL_BYTES = 8;
const STATUS_NAMES = ['end', 'signal', 'timeout', 'host-interrupted'] as const;
const U64_MAX = (1n << 64n) - 1n;

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE_PATH = join(here, 'runner.c');
const CACHE_DIR = resolve(here, '../../../../node_modules/.cache/vcpusim');
// PIE keeps the runner's own image far above the low address map; no stack
// protector because the signal handler may run with the case's FS base (0).
const CC_FLAGS = ['-O2', '-std=gnu11', '-pthread', '-fPIE', '-pie', '-fno-stack-protector', '-Wall', '-Wextra'];

let builtPath: string | undefined;

/** Whether this host can run the native runner at all. */
export function isNativeRunnerSupported(): boolean {
  return process.platform === 'linux' && process.arch === 'x64';
}

/**
 * Compiles runner.c (once per source/flags hash) into
 * node_modules/.cache/vcpusim/ and returns the binary's path.  Safe against
 * concurrent builds from several test processes (compile to a private name,
 * then rename).
 */
export function buildNativeRunner(): string {
  if (builtPath !== undefined && existsSync(builtPath)) return builtPath;
  if (!isNativeRunnerSupported()) {
    throw new Error(`native runner needs x86-64 Linux (this is ${process.platform}/${process.arch})`);
  }
  const source = readFileSync(SOURCE_PATH);
  const compiler = process.env.CC ?? 'cc'; // $CC overrides, like make
  const hash = createHash('sha256')
    .update(source)
    .update('\0' + compiler + '\0' + CC_FLAGS.join(' '))
    .digest('hex')
    .slice(0, 16);
  const target = join(CACHE_DIR, `native-runner-${hash}`);
  if (!existsSync(target)) {
    mkdirSync(CACHE_DIR, { recursive: true });
    const tmp = `${target}.${process.pid}.tmp`;
    const cc = spawnSync(compiler, [...CC_FLAGS, '-o', tmp, SOURCE_PATH], { encoding: 'utf8' });
    if (cc.error) {
      rmSync(tmp, { force: true });
      const missing = (cc.error as NodeJS.ErrnoException).code === 'ENOENT';
      throw new Error(
        missing
          ? `C compiler '${compiler}' not found: it is needed to build the native runner (${SOURCE_PATH})`
          : `running '${compiler}' failed: ${cc.error.message}`,
      );
    }
    if (cc.status !== 0) {
      rmSync(tmp, { force: true });
      throw new Error(
        `building the native runner failed (${compiler} exit ${cc.status ?? cc.signal}):\n${cc.stderr}${cc.stdout}`,
      );
    }
    renameSync(tmp, target);
  }
  builtPath = target;
  return target;
}

/** How the runner works on this host, as it prints it with `--print-config`. */
export interface NativeRunnerConfig {
  /** How cases get FS and GS bases 0: directly, or through the kernel (no FSGSBASE, or forced). */
  fsgs: 'wrfsbase' | 'arch_prctl';
  /** VCPUSIM_NATIVE_NO_FSGSBASE=1 chose the arch_prctl path. */
  forced: boolean;
  /** 'host-gp': this host turns any kernel entry during a case with a non-canonical RSP
   *  into #GP(0); such results come back as 'host-interrupted'. */
  nonCanonicalRsp: 'ok' | 'host-gp';
}

/** Environment variable that forces the runner's no-FSGSBASE path ('1'). */
export const FORCE_NO_FSGSBASE_ENV = 'VCPUSIM_NATIVE_NO_FSGSBASE';

/** Asks the runner (with this process's environment) how it runs cases here. */
export function nativeRunnerConfig(): NativeRunnerConfig {
  const run = spawnSync(buildNativeRunner(), ['--print-config'], { encoding: 'utf8', timeout: 30_000 });
  const match = /^fsgs=(wrfsbase|arch_prctl) forced=([01]) noncanonical-rsp=(ok|host-gp)$/.exec(run.stdout.trim());
  if (run.status !== 0 || match === null) {
    throw new Error(`native runner --print-config failed (exit ${run.status ?? run.signal}): ${run.stdout}${run.stderr}`);
  }
  return { fsgs: match[1] as NativeRunnerConfig['fsgs'], forced: match[2] === '1', nonCanonicalRsp: match[3] as NativeRunnerConfig['nonCanonicalRsp'] };
}

function checkU64(value: bigint, what: string): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new RangeError(`${what} must be a bigint in [0, 2^64): got ${String(value)}`);
  }
  return value;
}

function validateCase(c: NativeCase, index: number): void {
  const where = `native case #${index}`;
  if (!(c.code instanceof Uint8Array) || c.code.length > MAX_CODE_BYTES) {
    throw new RangeError(`${where}: code must be a Uint8Array of at most ${MAX_CODE_BYTES} bytes`);
  }
  if (c.compat32 === true && c.threads.length !== 1) throw new RangeError(`${where}: a 32-bit case runs on one thread`);
  if (c.threads.length !== 1 && c.threads.length !== 2) {
    throw new RangeError(`${where}: threads must have 1 or 2 entries, got ${c.threads.length}`);
  }
  const lo = c.scratchAddress;
  if (typeof lo !== 'bigint' || lo < SCRATCH_BASE
    || lo + BigInt(c.scratch.length) > SCRATCH_BASE + BigInt(SCRATCH_REGION_BYTES)) {
    throw new RangeError(
      `${where}: scratch window [0x${String(lo.toString(16))}, +${c.scratch.length}) is outside the scratch region`,
    );
  }
  const t = c.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(t) || t < 1 || t > 0xffffffff) {
    throw new RangeError(`${where}: timeoutMs must be an integer in [1, 2^32)`);
  }
  c.threads.forEach((th, i) => {
    for (const name of GPR_NAMES) checkU64(th.regs[name], `${where} thread ${i} ${name}`);
    checkU64(th.rflags, `${where} thread ${i} rflags`);
  });
}

function inputBytes(c: NativeCase): number {
  return IN_HEADER_BYTES + c.code.length + c.threads.length * THREAD_IN_BYTES + c.scratch.length;
}

function outputBytes(c: NativeCase): number {
  return OUT_HEADER_BYTES + c.threads.length * THREAD_OUT_BYTES + WALL_BYTES + c.scratch.length;
}

// Aligned staging buffers: the stream itself has no alignment, and going
// through a BigUint64Array is far cheaper than Buffer.{read,write}BigUInt64LE.
// Typed arrays are host-endian, i.e. little-endian on the only supported host
// (x86-64).  The array silently wraps values mod 2^64: validateCase checks.
const regStage = new BigUint64Array(17);
const regStageBytes = new Uint8Array(regStage.buffer);
const resultStage = new BigUint64Array(THREAD_OUT_BYTES / 8);
const resultStageBytes = new Uint8Array(resultStage.buffer);

function encodeBatch(cases: readonly NativeCase[]): Buffer {
  let total = 0;
  for (const c of cases) total += inputBytes(c);
  const buf = Buffer.allocUnsafe(total); // every byte is written below
  let o = 0;
  for (const c of cases) {
    buf.writeUInt32LE(IN_MAGIC, o);
    buf.writeUInt32LE(c.threads.length | (c.fullClear ? CTRL_FULL_CLEAR : 0) | (c.compat32 === true ? CTRL_COMPAT32 : 0), o + 4);
    buf.writeUInt32LE(c.code.length, o + 8);
    buf.writeUInt32LE(Number(c.scratchAddress), o + 12);
    buf.writeUInt32LE(c.scratch.length, o + 16);
    buf.writeUInt32LE(c.timeoutMs ?? DEFAULT_TIMEOUT_MS, o + 20);
    o += IN_HEADER_BYTES;
    buf.set(c.code, o);
    o += c.code.length;
    for (const th of c.threads) {
      for (let r = 0; r < 16; r++) regStage[r] = th.regs[GPR_NAMES[r]];
      regStage[16] = th.rflags;
      buf.set(regStageBytes, o);
      o += THREAD_IN_BYTES;
    }
    buf.set(c.scratch, o);
    o += c.scratch.length;
  }
  return buf;
}

function decodeBatch(out: Buffer, cases: readonly NativeCase[]): NativeResult[] {
  const results: NativeResult[] = new Array<NativeResult>(cases.length);
  let o = 0;
  for (let i = 0; i < cases.length; i++) {
    const c = cases[i];
    const magic = out.readUInt32LE(o);
    const n = out.readUInt32LE(o + 4);
    if (magic !== OUT_MAGIC || n !== c.threads.length) {
      throw new Error(`native runner output out of sync at case #${i} (magic 0x${magic.toString(16)}, threads ${n})`);
    }
    o += OUT_HEADER_BYTES;
    const threads: NativeThreadResult[] = [];
    for (let t = 0; t < n; t++) {
      const statusCode = out.readUInt32LE(o);
      const status = STATUS_NAMES[statusCode];
      if (status === undefined) throw new Error(`native runner: case #${i} thread ${t}: bad status ${statusCode}`);
      // Copy to an aligned staging area: a BigUint64Array read is much
      // cheaper than Buffer.readBigUInt64LE, and the stream is not aligned.
      resultStageBytes.set(out.subarray(o, o + THREAD_OUT_BYTES));
      const q = resultStage; // q[k] = u64 at byte offset 8k of the thread record
      const regs = {
        rax: q[5], rcx: q[6], rdx: q[7], rbx: q[8], rsp: q[9], rbp: q[10], rsi: q[11], rdi: q[12],
        r8: q[13], r9: q[14], r10: q[15], r11: q[16], r12: q[17], r13: q[18], r14: q[19], r15: q[20],
      };
      const result: NativeThreadResult = {
        status,
        rip: q[4],
        regs,
        rflags: q[21],
        elapsedNs: Number(q[22]),
      };
      if (status === 'signal') {
        result.signal = out.readUInt32LE(o + 4);
        result.vector = Number(q[1]);
        result.errorCode = q[2];
        result.faultAddress = q[3];
      }
      threads.push(result);
      o += THREAD_OUT_BYTES;
    }
    const wallNs = Number(out.readBigUInt64LE(o));
    o += WALL_BYTES;
    const scratch = Uint8Array.prototype.slice.call(out, o, o + c.scratch.length);
    o += c.scratch.length;
    results[i] = { threads, wallNs, scratch };
  }
  return results;
}

/**
 * Runs the cases in order in one helper process and returns one result per
 * case.  Synchronous; throws (with the helper's stderr) if the helper fails
 * or does not finish within a bound derived from the cases' timeouts.
 */
export function runNativeBatch(cases: readonly NativeCase[]): NativeResult[] {
  if (cases.length === 0) return [];
  cases.forEach(validateCase);
  const binary = buildNativeRunner();
  const input = encodeBatch(cases);
  let expected = 0;
  let timeBudgetMs = 30_000; // startup, I/O and slack
  for (const c of cases) {
    expected += outputBytes(c);
    // A case never legitimately takes much longer than its timeout (the
    // watchdog overshoots by at most min(timeout/2, 100 ms)).
    timeBudgetMs += (c.timeoutMs ?? DEFAULT_TIMEOUT_MS) * 1.5 + 1;
  }
  const run = spawnSync(binary, [], {
    input,
    maxBuffer: expected + (1 << 20),
    timeout: Math.ceil(timeBudgetMs),
    killSignal: 'SIGKILL',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stderr = run.stderr ? run.stderr.toString('utf8').trim() : '';
  if (run.error) {
    throw new Error(`native runner failed: ${run.error.message}${stderr ? `\n${stderr}` : ''}`);
  }
  if (run.status !== 0) {
    throw new Error(`native runner exited with ${run.status ?? run.signal}${stderr ? `:\n${stderr}` : ''}`);
  }
  if (run.stdout.length !== expected) {
    throw new Error(`native runner produced ${run.stdout.length} bytes, expected ${expected}${stderr ? `\n${stderr}` : ''}`);
  }
  return decodeBatch(run.stdout, cases);
}
