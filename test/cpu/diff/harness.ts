import iced from 'iced-x86';
import { disassemble } from '../../../src/asm/disasm.ts';
import { ARITH, DF } from '../../../src/cpu/flags.ts';
import { undefinedEffects } from '../../../src/cpu/undefined-flags.ts';
import { Prng, type Seed } from '../../../src/explore/prng.ts';
import { SnippetMachine, type SnippetResult } from '../../../src/machine/snippet.ts';
import { GPR_NAMES } from '../../../src/machine/vcpu-state.ts';
import { runNativeBatch, type NativeResult, type NativeThreadResult } from './native/native-runner.ts';
import { differentialForms, type Bits } from './forms.ts';
import { buildCase, CODE_ADDRESS, formPicker, SCRATCH_ADDRESS, SCRATCH_BYTES, type DiffCase } from './generator.ts';

/**
 * The differential harness: the same instruction, registers, flags and memory on the host CPU
 * (through the native runner, at ring 3) and in the emulator (SnippetMachine at ring 3), then a
 * comparison of registers, flags (minus the architecturally undefined ones), memory, and how
 * the run stopped (end, or which exception with which error code and address).
 *
 * 32-bit cases run in compatibility mode on the host and in 32-bit protected mode with PAE
 * paging in the emulator: with flat segments and identity-mapped pages the two execute 32-bit
 * code alike. All 64 bits of every register are compared, so what 32-bit code leaves in the
 * high halves (zero-extended results, untouched R8–R15) is checked against the host as well.
 */

export interface Mismatch {
  readonly seed: string;
  readonly case: DiffCase;
  readonly report: string;
}

export interface DifferentialResult {
  readonly cases: number;
  readonly mismatches: Mismatch[];
  /** Cases per family, and per iced Code name. */
  readonly byFamily: Map<string, number>;
  readonly byCode: Map<string, number>;
  /** Cases where the host raised an exception (#DE, #GP...) and the emulator had to match it. */
  readonly exceptions: number;
  /** Cases the host could not observe ('host-interrupted': non-canonical RSP on a host that
   *  cannot return to it); not compared. The generator keeps RSP canonical, so 0 is expected. */
  readonly unobservable: number;
  readonly elapsedMs: number;
}

export interface DifferentialOptions {
  seed: Seed;
  cases: number;
  /** 64-bit cases (default) or 32-bit cases. */
  bits?: Bits;
  /** Where the emulator runs 32-bit cases: 32-bit PAE protected mode (default) or compatibility mode. */
  mode32?: 'protected-pae' | 'compat';
  /** Cases per native batch. */
  batch?: number;
  /** Stop after this many mismatches (default 1). */
  maxMismatches?: number;
  onProgress?: (done: number, total: number) => void;
}

const COMPARED_FLAGS = ARITH | DF;

export function runDifferential(options: DifferentialOptions): DifferentialResult {
  const started = performance.now();
  const prng = new Prng(options.seed);
  const bits = options.bits ?? 64;
  const pick = formPicker(differentialForms(bits));
  const machine = new SnippetMachine({ ramBytes: 0x800000, ring: 3, mode: bits === 64 ? 'long' : (options.mode32 ?? 'protected-pae') });
  const batchSize = options.batch ?? 2000;
  const maxMismatches = options.maxMismatches ?? 1;
  const mismatches: Mismatch[] = [];
  const byFamily = new Map<string, number>();
  const byCode = new Map<string, number>();
  let exceptions = 0;
  let unobservable = 0;
  let done = 0;
  while (done < options.cases && mismatches.length < maxMismatches) {
    const batch: DiffCase[] = [];
    while (batch.length < Math.min(batchSize, options.cases - done)) {
      const form = pick(prng);
      const built = buildCase(prng, form, done + batch.length, bits);
      if (built !== null) batch.push(built);
    }
    const native = runNativeBatch(
      batch.map((c) => ({
        code: c.code,
        threads: [{ regs: c.regs, rflags: c.rflags }],
        scratchAddress: SCRATCH_ADDRESS,
        scratch: c.scratch,
        timeoutMs: 1000,
        compat32: bits === 32,
      })),
    );
    for (let i = 0; i < batch.length && mismatches.length < maxMismatches; i++) {
      const c = batch[i];
      if (native[i].threads[0].status === 'host-interrupted') {
        unobservable++;
        continue;
      }
      const emulated = machine.run({
        code: c.code,
        codeAddress: CODE_ADDRESS,
        regs: c.regs,
        rflags: c.rflags,
        memory: [{ address: SCRATCH_ADDRESS, bytes: c.scratch }],
        maxSteps: 10_000,
        ring: 3,
      });
      const report = compare(c, native[i], emulated);
      if (native[i].threads[0].status === 'signal') exceptions++;
      byFamily.set(c.form.family, (byFamily.get(c.form.family) ?? 0) + 1);
      byCode.set(c.form.name, (byCode.get(c.form.name) ?? 0) + 1);
      if (report !== null) mismatches.push({ seed: String(options.seed), case: c, report });
    }
    done += batch.length;
    options.onProgress?.(done, options.cases);
  }
  return { cases: done, mismatches, byFamily, byCode, exceptions, unobservable, elapsedMs: performance.now() - started };
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** Returns null when both sides agree, else a readable report of every difference. */
export function compare(c: DiffCase, native: NativeResult, emulated: SnippetResult): string | null {
  const host = native.threads[0];
  const undefinedHere = undefinedEffects(c.form.mnemonic, c.operandSize, c.count);
  const differences: string[] = [];
  const stopDifference = compareStop(host, emulated);
  if (stopDifference !== null) differences.push(stopDifference);
  if (stopDifference === null) {
    for (const [n, name] of GPR_NAMES.entries()) {
      if (undefinedHere.result && c.destination === n) continue;
      const a = host.regs[name];
      const b = emulated.regs[name];
      if (a !== b) differences.push(`${name}: host ${hex(a)} emulator ${hex(b)}`);
    }
    const mask = BigInt(COMPARED_FLAGS & ~undefinedHere.flags);
    if ((host.rflags & mask) !== (emulated.rflags & mask)) {
      differences.push(`rflags (compared bits ${hex(mask)}): host ${hex(host.rflags & mask)} emulator ${hex(emulated.rflags & mask)}`);
    }
    if (!(undefinedHere.result && c.destination === 'memory')) {
      const mine = emulated.readMemory(SCRATCH_ADDRESS, SCRATCH_BYTES);
      for (let k = 0; k < SCRATCH_BYTES; k++) {
        if (mine[k] !== native.scratch[k]) {
          differences.push(`memory at ${hex(SCRATCH_ADDRESS + BigInt(k))}: host ${native.scratch[k].toString(16)} emulator ${mine[k].toString(16)}`);
          if (differences.length > 12) break;
        }
      }
    }
  }
  if (differences.length === 0) return null;
  return describe(c, host, emulated, differences);
}

function compareStop(host: NativeThreadResult, emulated: SnippetResult): string | null {
  const stop = emulated.stop;
  if (host.status === 'end') {
    return stop.kind === 'end' ? null : `host ran to the end, emulator stopped: ${JSON.stringify(stop, bigintJson)}`;
  }
  if (host.status === 'timeout') return stop.kind === 'maxSteps' ? null : 'host timed out, emulator did not';
  if (stop.kind !== 'exception') return `host raised vector ${host.vector} (signal ${host.signal}), emulator stopped: ${JSON.stringify(stop, bigintJson)}`;
  const d = stop.detail;
  if (d.vector !== host.vector) return `host raised vector ${host.vector}, emulator vector ${d.vector}`;
  if (d.rip !== host.rip) return `vector ${d.vector} at host rip ${hex(host.rip)}, emulator rip ${hex(d.rip)}`;
  if (d.vector === 13 || d.vector === 14 || d.vector === 12 || d.vector === 17) {
    if (BigInt(d.errorCode ?? -1) !== host.errorCode) return `vector ${d.vector} error code: host ${host.errorCode}, emulator ${d.errorCode}`;
  }
  if (d.vector === 14 && d.address !== host.faultAddress) return `#PF address: host ${hex(host.faultAddress ?? 0n)}, emulator ${hex(d.address ?? 0n)}`;
  return null;
}

function bigintJson(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? hex(value) : value;
}

function describe(c: DiffCase, host: NativeThreadResult, emulated: SnippetResult, differences: string[]): string {
  const lines = disassemble(c.code, CODE_ADDRESS, { bitness: c.bits }).map((l) => `  ${l.ip.toString(16)}  ${l.bytesHex.padEnd(30)} ${l.text}`);
  const inputs = GPR_NAMES.map((name) => `${name}=${hex(c.regs[name])}`).join(' ');
  const hostRegs = GPR_NAMES.map((name) => `${name}=${hex(host.regs[name])}`).join(' ');
  const emuRegs = GPR_NAMES.map((name) => `${name}=${hex(emulated.regs[name])}`).join(' ');
  return [
    `case ${c.index}: ${c.form.name} (${iced.Mnemonic[c.form.mnemonic]}, family ${c.form.family})`,
    `bytes: ${Array.from(c.code, (b) => b.toString(16).padStart(2, '0')).join(' ')}`,
    ...lines,
    `inputs: ${inputs} rflags=${hex(c.rflags)}`,
    `host (${host.status}${host.status === 'signal' ? ` vector ${host.vector}` : ''}): ${hostRegs} rflags=${hex(host.rflags)}`,
    `emulator (${emulated.stop.kind}): ${emuRegs} rflags=${hex(emulated.rflags)} steps=${emulated.steps}`,
    'differences:',
    ...differences.map((d) => `  ${d}`),
  ].join('\n');
}
