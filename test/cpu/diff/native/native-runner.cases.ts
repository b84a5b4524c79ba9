/**
 * The native runner's behaviour, registered by two test files: one with the runner's own choice
 * of FS/GS path, one with the no-FSGSBASE path forced (VCPUSIM_NATIVE_NO_FSGSBASE=1), so a
 * machine with FSGSBASE also checks the path machines without it take.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildNativeRunner,
  CODE_BASE,
  EXIT_PAGE_BASE,
  FORCE_NO_FSGSBASE_ENV,
  GPR_NAMES,
  type GprName,
  type NativeCase,
  type NativeThreadResult,
  nativeRunnerConfig,
  runNativeBatch,
  SCRATCH_BASE,
  SIG,
} from './native-runner.ts';

// RFLAGS bits
const CF = 0x1n, PF = 0x4n, AF = 0x10n, ZF = 0x40n, SF = 0x80n, DF = 0x400n, OF = 0x800n;
const STATUS_FLAGS = CF | PF | AF | ZF | SF | OF;
const ALWAYS = 0x202n; // IF + reserved bit 1, as pushfq reports them in user mode
const AC = 0x40000n;

const WINDOW = SCRATCH_BASE + 0x100n;

/** A canonical, unmapped default RSP: some hosts cannot interrupt a case whose RSP is
 *  non-canonical (see the test of that), and these tests are not about RSP. */
const DEFAULT_RSP = 0x0000_1111_0000_0004n;
const NON_CANONICAL = 0x1111_0000_0000_0004n;

function regs(partial: Partial<Record<GprName, bigint>> = {}): Record<GprName, bigint> {
  const r = {} as Record<GprName, bigint>;
  GPR_NAMES.forEach((name, i) => {
    // Distinct, recognisable defaults so that clobbering shows up.
    r[name] = partial[name] ?? (name === 'rsp' ? DEFAULT_RSP : 0x1111_0000_0000_0000n + BigInt(i));
  });
  return r;
}

/** AT_HWCAP2 bit 1 (HWCAP2_FSGSBASE) from this process's auxiliary vector. */
function kernelOffersFsgsbase(): boolean {
  const auxv = readFileSync('/proc/self/auxv');
  for (let o = 0; o + 16 <= auxv.length; o += 16) {
    if (auxv.readBigUInt64LE(o) === 26n) return (auxv.readBigUInt64LE(o + 8) & 2n) !== 0n; // AT_HWCAP2
  }
  return false;
}

export function registerNativeRunnerTests(forceNoFsgsbase: boolean): void {
if (forceNoFsgsbase) process.env[FORCE_NO_FSGSBASE_ENV] = '1';
else delete process.env[FORCE_NO_FSGSBASE_ENV];

test('the runner takes the FS/GS path this host and the environment call for', (t) => {
  const config = nativeRunnerConfig();
  t.log(`runner config: ${JSON.stringify(config)}`);
  t.is(config.forced, forceNoFsgsbase);
  t.is(config.fsgs, kernelOffersFsgsbase() && !forceNoFsgsbase ? 'wrfsbase' : 'arch_prctl');
});


function oneThread(
  code: number[],
  r: Partial<Record<GprName, bigint>> = {},
  rflags = 0n,
  extra: Partial<NativeCase> = {},
): NativeCase {
  return {
    code: Uint8Array.from(code),
    threads: [{ regs: regs(r), rflags }],
    scratchAddress: WINDOW,
    scratch: new Uint8Array(0x40),
    ...extra,
  };
}

function only(c: NativeCase): NativeThreadResult {
  const [res] = runNativeBatch([c]);
  return res.threads[0];
}

test('builds the runner and emits a correctly encoded exit stub', (t) => {
  const bin = buildNativeRunner();
  t.is(buildNativeRunner(), bin, 'cached');
  const stub = spawnSync(bin, ['--print-stub'], { encoding: 'utf8' });
  t.is(stub.status, 0, stub.stderr);
  const hex = stub.stdout.trim();
  // jmp qword ptr [0x7ffff000]
  t.is(hex, 'ff242500f0ff7f');
  // Cross-check the encoding with a real disassembler when one is installed.
  if (spawnSync('objdump', ['--version']).status === 0) {
    const dir = mkdtempSync(join(tmpdir(), 'vcpusim-stub-'));
    try {
      const file = join(dir, 'stub.bin');
      writeFileSync(file, Buffer.from(hex, 'hex'));
      const dis = spawnSync('objdump', ['-D', '-b', 'binary', '-mi386:x86-64', file], { encoding: 'utf8' });
      t.regex(dis.stdout, /0:\s+ff 24 25 00 f0 ff 7f\s+jmp\s+\*0x7ffff000\s*$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('add rax, rbx: sum and all six status flags', (t) => {
  const add = [0x48, 0x01, 0xd8];
  const a = only(oneThread(add, { rax: 0x7fff_ffff_ffff_ffffn, rbx: 1n }));
  t.is(a.status, 'end');
  t.is(a.rip, CODE_BASE + 3n);
  t.is(a.regs.rax, 0x8000_0000_0000_0000n);
  t.is(a.regs.rbx, 1n);
  t.is(a.rflags & STATUS_FLAGS, OF | SF | AF | PF); // low byte 0x00: even parity
  t.is(a.rflags & ALWAYS, ALWAYS);

  const b = only(oneThread(add, { rax: 0xffff_ffff_ffff_ffffn, rbx: 1n }));
  t.is(b.regs.rax, 0n);
  t.is(b.rflags & STATUS_FLAGS, CF | ZF | AF | PF);

  const c = only(oneThread(add, { rax: 2n, rbx: 1n }, STATUS_FLAGS));
  t.is(c.regs.rax, 3n);
  t.is(c.rflags & STATUS_FLAGS, PF, 'stale input flags are overwritten'); // 3 = 0b11: even parity

  // Every other register is passed through untouched.
  for (const name of GPR_NAMES) {
    if (name !== 'rax') t.is(c.regs[name], regs({ rbx: 1n })[name], name);
  }
});

test('input flags are honoured: adc with CF, DF passes through', (t) => {
  const adc = [0x48, 0x11, 0xd8];
  t.is(only(oneThread(adc, { rax: 5n, rbx: 6n }, 0n)).regs.rax, 11n);
  t.is(only(oneThread(adc, { rax: 5n, rbx: 6n }, CF)).regs.rax, 12n);
  const nop = only(oneThread([0x90], {}, STATUS_FLAGS | DF));
  t.is(nop.rflags, STATUS_FLAGS | DF | ALWAYS);
  // cld clears it again inside the case
  t.is(only(oneThread([0xfc], {}, DF)).rflags & DF, 0n);
});

test('memory operands read and write the scratch window', (t) => {
  // mov rax, [rbx] ; add [rbx+8], rax
  const init = new Uint8Array(16);
  new DataView(init.buffer).setBigUint64(0, 0x0102_0304_0506_0708n, true);
  new DataView(init.buffer).setBigUint64(8, 0x10n, true);
  const [res] = runNativeBatch([oneThread([0x48, 0x8b, 0x03, 0x48, 0x01, 0x43, 0x08], { rbx: WINDOW }, 0n, { scratch: init })]);
  const th = res.threads[0];
  t.is(th.status, 'end');
  t.is(th.regs.rax, 0x0102_0304_0506_0708n);
  const view = new DataView(res.scratch.buffer, res.scratch.byteOffset, res.scratch.byteLength);
  t.is(view.getBigUint64(0, true), 0x0102_0304_0506_0708n);
  t.is(view.getBigUint64(8, true), 0x0102_0304_0506_0718n);
  t.is(res.scratch.length, 16);
});

test('push rax; pop rbx leaves the value below RSP in scratch', (t) => {
  const rsp = WINDOW + 0x40n;
  const [res] = runNativeBatch([oneThread([0x50, 0x5b], { rax: 0xdead_beef_cafe_f00dn, rsp })]);
  const th = res.threads[0];
  t.is(th.status, 'end');
  t.is(th.regs.rbx, 0xdead_beef_cafe_f00dn);
  t.is(th.regs.rsp, rsp);
  const view = new DataView(res.scratch.buffer, res.scratch.byteOffset, res.scratch.byteLength);
  t.is(view.getBigUint64(0x38, true), 0xdead_beef_cafe_f00dn);
  t.true(res.scratch.subarray(0, 0x38).every((b) => b === 0));
});

test('div by zero: SIGFPE, vector 0, registers unchanged at the faulting RIP', (t) => {
  const input = { rax: 1234n, rdx: 0n, rcx: 0n };
  const r = only(oneThread([0x90, 0x48, 0xf7, 0xf1], input, CF | ZF)); // nop; div rcx
  t.is(r.status, 'signal');
  t.is(r.signal, SIG.SIGFPE);
  t.is(r.vector, 0);
  t.is(r.rip, CODE_BASE + 1n);
  t.is(r.faultAddress, CODE_BASE + 1n);
  t.deepEqual(r.regs, regs(input));
  t.is(r.rflags & STATUS_FLAGS, CF | ZF);
  t.log(`rflags at #DE: 0x${r.rflags.toString(16)}`);
});

test('ud2: SIGILL vector 6', (t) => {
  const r = only(oneThread([0x0f, 0x0b]));
  t.is(r.status, 'signal');
  t.is(r.signal, SIG.SIGILL);
  t.is(r.vector, 6);
  t.is(r.rip, CODE_BASE);
});

test('unmapped accesses: #PF with address and error code, #GP for non-canonical', (t) => {
  const [read, write, fetch, gp] = runNativeBatch([
    oneThread([0x48, 0x8b, 0x03], { rbx: 0x100008n }), // mov rax, [rbx]
    oneThread([0x48, 0x89, 0x03], { rbx: 0x1234_5678n }), // mov [rbx], rax
    oneThread([0xff, 0xe3], { rbx: SCRATCH_BASE }), // jmp rbx (scratch is not executable)
    oneThread([0x48, 0x8b, 0x03], { rbx: 0x8000_0000_0000_0000n }),
  ]).map((r) => r.threads[0]);

  t.is(read.signal, SIG.SIGSEGV);
  t.is(read.vector, 14);
  t.is(read.faultAddress, 0x100008n);
  t.is(read.errorCode, 0x4n); // user, read, not present
  t.is(read.rip, CODE_BASE);
  t.is(read.regs.rbx, 0x100008n);

  t.is(write.vector, 14);
  t.is(write.faultAddress, 0x1234_5678n);
  t.is(write.errorCode, 0x6n); // user, write, not present

  t.is(fetch.vector, 14);
  t.is(fetch.rip, SCRATCH_BASE);
  t.is(fetch.faultAddress, SCRATCH_BASE);
  t.is(fetch.errorCode, 0x15n); // user, instruction fetch, present

  t.is(gp.signal, SIG.SIGSEGV);
  t.is(gp.vector, 13);
  t.is(gp.faultAddress, 0n);
});

test('int3: SIGTRAP vector 3, RIP reported after the int3', (t) => {
  const r = only(oneThread([0x90, 0xcc, 0x90]));
  t.is(r.status, 'signal');
  t.is(r.signal, SIG.SIGTRAP);
  t.is(r.vector, 3);
  t.is(r.rip, CODE_BASE + 2n);
});

test('AC flag: misaligned load raises #AC (SIGBUS, vector 17)', (t) => {
  const r = only(oneThread([0x48, 0x8b, 0x03], { rbx: WINDOW + 1n }, AC));
  t.is(r.status, 'signal');
  t.is(r.signal, SIG.SIGBUS);
  t.is(r.vector, 17);
  // and without AC the same load is fine
  t.is(only(oneThread([0x48, 0x8b, 0x03], { rbx: WINDOW + 1n })).status, 'end');
});

test('cases run with FS and GS bases 0, and may change them', (t) => {
  const init = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const readBases = [0xf3, 0x48, 0x0f, 0xae, 0xc0, 0xf3, 0x48, 0x0f, 0xae, 0xc9]; // rdfsbase rax; rdgsbase rcx
  const fsLoad = [0x64, 0x48, 0x8b, 0x03]; // mov rax, fs:[rbx]
  const [fs, gs, base, own, after, selector, afterSelector] = runNativeBatch([
    oneThread(fsLoad, { rbx: WINDOW }, 0n, { scratch: init }),
    oneThread([0x65, 0x48, 0x8b, 0x43, 0x08], { rbx: WINDOW }, 0n, { scratch: init }), // mov rax, gs:[rbx+8]
    oneThread(readBases),
    // wrfsbase rbx; mov rax, fs:[0]; wrgsbase rbx
    oneThread([0xf3, 0x48, 0x0f, 0xae, 0xd3, 0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xf3, 0x48, 0x0f, 0xae, 0xdb],
      { rbx: WINDOW }, 0n, { scratch: init }),
    oneThread(fsLoad, { rbx: WINDOW }, 0n, { scratch: init }),
    // mov ecx, ss; mov fs, ecx; mov gs, ecx; mov rax, fs:[rbx]: a segment load the runner must undo
    oneThread([0x8c, 0xd1, 0x8e, 0xe1, 0x8e, 0xe9, ...fsLoad], { rbx: WINDOW }, 0n, { scratch: init }),
    oneThread(fsLoad, { rbx: WINDOW }, 0n, { scratch: init }),
  ]).map((r) => r.threads[0]);
  t.is(fs.regs.rax, 0x0807_0605_0403_0201n);
  t.is(gs.regs.rax, 0x100f_0e0d_0c0b_0a09n);
  t.is(selector.status, 'end');
  t.is(selector.regs.rax, 0x0807_0605_0403_0201n);
  t.is(afterSelector.regs.rax, 0x0807_0605_0403_0201n, 'FS base is 0 after a case loaded FS');
  if (base.status === 'signal') {
    // A CPU without FSGSBASE: the instructions are undefined in user mode.
    t.log('rdfsbase/wrfsbase raise #UD on this CPU');
    t.is(base.vector, 6);
    t.is(own.vector, 6);
  } else {
    t.is(base.regs.rax, 0n);
    t.is(base.regs.rcx, 0n);
    t.is(own.status, 'end');
    t.is(own.regs.rax, 0x0807_0605_0403_0201n);
  }
  t.is(after.status, 'end');
  t.is(after.regs.rax, 0x0807_0605_0403_0201n, 'FS base is 0 again for the next case');
  const [reread] = runNativeBatch([oneThread(readBases)]).map((r) => r.threads[0]);
  if (reread.status === 'end') t.deepEqual([reread.regs.rax, reread.regs.rcx], [0n, 0n], 'both bases 0 in a fresh runner');
});

test('a non-canonical RSP: faults are the case\'s own; an interruption the host cannot return from is said so', (t) => {
  const config = nativeRunnerConfig();
  const [pageFault, loop] = runNativeBatch([
    oneThread([0x48, 0x8b, 0x03], { rbx: 0x10n, rsp: NON_CANONICAL }), // mov rax, [rbx]
    oneThread([0xeb, 0xfe], { rsp: NON_CANONICAL }, 0n, { timeoutMs: 50 }), // jmp $
  ]).map((r) => r.threads[0]);
  t.is(pageFault.status, 'signal');
  t.is(pageFault.vector, 14);
  t.is(pageFault.faultAddress, 0x10n);
  t.is(loop.rip, CODE_BASE);
  t.is(loop.regs.rsp, NON_CANONICAL);
  // Only a host that cannot return to such a context reports 'host-interrupted', and the loop
  // is interrupted by the timer long before its 50 ms are over.
  t.is(loop.status, config.nonCanonicalRsp === 'ok' ? 'timeout' : 'host-interrupted');
  t.log(`non-canonical RSP on this host: ${config.nonCanonicalRsp}`);
});

test('syscalls from case code are blocked with SIGSYS', (t) => {
  // rax = 39 (getpid); 1 = write(1, ...) must not reach the protocol pipe
  const [a, b] = runNativeBatch([
    oneThread([0x0f, 0x05], { rax: 39n }),
    oneThread([0x0f, 0x05], { rax: 1n, rdi: 1n, rsi: WINDOW, rdx: 16n }),
  ]).map((r) => r.threads[0]);
  t.is(a.signal, SIG.SIGSYS);
  t.is(a.rip, CODE_BASE + 2n);
  t.is(b.signal, SIG.SIGSYS);
});

test('an infinite loop times out and the batch continues', (t) => {
  const started = process.hrtime.bigint();
  const [loop, fault, next] = runNativeBatch([
    oneThread([0x48, 0xff, 0xc0, 0xeb, 0xfb], { rax: 0n }, 0n, { timeoutMs: 100 }), // inc rax; jmp $-5
    oneThread([0x0f, 0x0b]),
    oneThread([0x48, 0x01, 0xd8], { rax: 40n, rbx: 2n }),
  ]);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const l = loop.threads[0];
  t.is(l.status, 'timeout');
  t.true(l.rip >= CODE_BASE && l.rip < CODE_BASE + 5n);
  t.true(l.regs.rax > 1000n, 'it was really running');
  t.true(l.elapsedNs >= 100e6 && l.elapsedNs < 400e6, `elapsed ${l.elapsedNs} ns`);
  t.is(fault.threads[0].vector, 6);
  t.is(next.threads[0].status, 'end');
  t.is(next.threads[0].regs.rax, 42n);
  t.log(`batch with a 100 ms timeout took ${ms.toFixed(0)} ms`);
});

test('scratch outside the window and stale code are zero in later cases', (t) => {
  // Case 1 stores into its window and has long code; case 2 has its window
  // elsewhere and short code, and reads case 1's window and code area.
  const [, scratchRead, codeRead] = runNativeBatch([
    oneThread([0x48, 0x89, 0x03, ...new Array<number>(64).fill(0x90)], { rbx: WINDOW, rax: 0x77n }),
    {
      ...oneThread([0x48, 0x8b, 0x03], { rbx: WINDOW, rax: 5n }), // mov rax, [rbx]
      scratchAddress: SCRATCH_BASE + 0x1000n,
      scratch: new Uint8Array(8),
    },
    oneThread([0x48, 0x8b, 0x43, 0x10], { rbx: CODE_BASE }), // mov rax, [rbx+16]: past code + stub
  ]);
  t.is(scratchRead.threads[0].regs.rax, 0n);
  t.is(codeRead.threads[0].regs.rax, 0n);
});

test('jumping past the end address into the exit stub cannot hurt the runner', (t) => {
  // Found by fuzzing: lea eax, [rbp-0x4f]; ja +4 lands inside the stub, whose
  // bytes decode as `and eax, 0x7ffff000` followed by `add [rax], al` on the
  // zero bytes: a store to the (read-only) exit page.
  const [jump, next] = runNativeBatch([
    oneThread([0x8d, 0x45, 0xb1, 0x77, 0x04, 0x1f, 0x9b], { rbp: 6n }, PF),
    oneThread([0x48, 0x01, 0xd8], { rax: 1n, rbx: 2n }),
  ]).map((r) => r.threads[0]);
  t.is(jump.status, 'signal');
  t.is(jump.signal, SIG.SIGSEGV);
  t.is(jump.vector, 14);
  t.is(jump.errorCode, 0x7n); // user, write, present
  t.is(jump.faultAddress, EXIT_PAGE_BASE);
  t.is(next.status, 'end');
  t.is(next.regs.rax, 3n);
});

test('two threads: lock inc on shared scratch gives exactly 2N', (t) => {
  const N = 1_000_000n;
  // loop: lock inc qword [rbx] ; dec rcx ; jnz loop
  const code = [0xf0, 0x48, 0xff, 0x03, 0x48, 0xff, 0xc9, 0x75, 0xf7];
  const input = { regs: regs({ rbx: WINDOW, rcx: N }), rflags: 0n };
  const [res] = runNativeBatch([{
    code: Uint8Array.from(code),
    threads: [input, { regs: regs({ rbx: WINDOW, rcx: N, rdx: 1n }), rflags: 0n }],
    scratchAddress: WINDOW,
    scratch: new Uint8Array(8),
    timeoutMs: 5000,
  }]);
  t.is(res.threads.length, 2);
  for (const th of res.threads) {
    t.is(th.status, 'end');
    t.is(th.regs.rcx, 0n);
    t.is(th.rip, CODE_BASE + BigInt(code.length));
    t.true(th.elapsedNs > 0);
  }
  t.is(res.threads[1].regs.rdx, 1n, 'each thread keeps its own registers');
  t.is(res.threads[0].regs.rdx, regs().rdx);
  const view = new DataView(res.scratch.buffer, res.scratch.byteOffset, 8);
  t.is(view.getBigUint64(0, true), 2n * N);
  t.true(res.wallNs >= Math.max(...res.threads.map((th) => th.elapsedNs)));
  t.log(`2 x ${N} lock inc: thread ns ${res.threads.map((th) => th.elapsedNs).join(', ')}, wall ${res.wallNs}`);
});

test('two threads: one faults, the other finishes; faults are per thread', (t) => {
  const [res, after] = runNativeBatch([
    {
      // thread 0: rbx valid -> ends; thread 1: rbx unmapped -> #PF
      code: Uint8Array.from([0x48, 0x8b, 0x03]),
      threads: [
        { regs: regs({ rbx: WINDOW }), rflags: 0n },
        { regs: regs({ rbx: 0x10n }), rflags: 0n },
      ],
      scratchAddress: WINDOW,
      scratch: new Uint8Array(8).fill(3),
    },
    {
      code: Uint8Array.from([0xeb, 0xfe]),
      threads: [{ regs: regs(), rflags: 0n }, { regs: regs(), rflags: 0n }],
      scratchAddress: WINDOW,
      scratch: new Uint8Array(0),
      timeoutMs: 50,
    },
  ]);
  t.is(res.threads[0].status, 'end');
  t.is(res.threads[0].regs.rax, 0x0303_0303_0303_0303n);
  t.is(res.threads[1].status, 'signal');
  t.is(res.threads[1].faultAddress, 0x10n);
  t.deepEqual(after.threads.map((th) => th.status), ['timeout', 'timeout']);
});

test('random machine code (fuzzer-style) never takes the runner down', (t) => {
  // Deterministic xorshift; registers point into scratch, at random values
  // or at small numbers; RSP mostly in scratch; DF/AC/TF sometimes set.
  let seed = 0x2545f491;
  const rnd = (): number => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed;
  };
  const value = (): bigint => {
    switch (rnd() % 4) {
      case 0: return SCRATCH_BASE + 0x800n + BigInt(rnd() % 0x100);
      case 1: return BigInt(rnd());
      case 2: return (BigInt(rnd()) << 32n) | BigInt(rnd());
      default: return BigInt(rnd() % 16);
    }
  };
  const thread = (): NativeCase['threads'][number] => {
    const r: Partial<Record<GprName, bigint>> = {};
    for (const name of GPR_NAMES) r[name] = value();
    if (rnd() % 4 !== 0) r.rsp = SCRATCH_BASE + 0x800n;
    const flags = BigInt(rnd() & 0x8d5) | (rnd() % 8 === 0 ? DF : 0n) | (rnd() % 16 === 0 ? AC : 0n)
      | (rnd() % 64 === 0 ? 0x100n : 0n);
    return { regs: regs(r), rflags: flags };
  };
  const cases: NativeCase[] = [];
  for (let i = 0; i < 5000; i++) {
    const code = new Uint8Array(1 + (rnd() % 32)).map(() => rnd() & 0xff);
    cases.push({
      code,
      threads: rnd() % 50 === 0 ? [thread(), thread()] : [thread()],
      scratchAddress: SCRATCH_BASE,
      scratch: new Uint8Array(0x1000),
      timeoutMs: 20,
      fullClear: true,
    });
  }
  const results = runNativeBatch(cases);
  const tally = new Map<string, number>();
  for (const r of results) {
    for (const th of r.threads) {
      const key = th.status === 'signal' ? `sig${th.signal}/#${th.vector}` : th.status;
      tally.set(key, (tally.get(key) ?? 0) + 1);
    }
  }
  t.is(results.length, cases.length);
  t.log([...tally].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`).join(', '));
});

test('a batch of 10,000 trivial cases runs fast', (t) => {
  const cases: NativeCase[] = [];
  for (let i = 0; i < 10_000; i++) {
    cases.push(oneThread([0x48, 0x01, 0xd8], { rax: BigInt(i), rbx: 1n }, 0n, { scratch: new Uint8Array(16) }));
  }
  const started = process.hrtime.bigint();
  const results = runNativeBatch(cases);
  const s = Number(process.hrtime.bigint() - started) / 1e9;
  results.forEach((r, i) => {
    if (r.threads[0].regs.rax !== BigInt(i + 1)) t.fail(`case ${i}`);
  });
  const rate = Math.round(cases.length / s);
  t.log(`${cases.length} cases in ${(s * 1000).toFixed(0)} ms: ${rate} cases/s`);
  t.true(s < 5);
});

test('the empty case calibrates the entry/exit overhead', (t) => {
  const res = runNativeBatch(Array.from({ length: 1000 }, () => oneThread([])));
  const ns = res.map((r) => r.threads[0].elapsedNs).sort((a, b) => a - b);
  t.true(res.every((r) => r.threads[0].status === 'end' && r.threads[0].rip === CODE_BASE));
  t.log(`empty case elapsed: median ${ns[500]} ns, min ${ns[0]} ns`);
});

test('32-bit cases run in compatibility mode: 32-bit results zero-extend, 0x48 is DEC EAX, R8–R15 keep their values', (t) => {
  const rsp = WINDOW + 0x20n;
  // inc eax ; dec ecx (48 + 49 would be REX prefixes in 64-bit code) ; mov dx, 7 ; mov [ebx], eax ; push esi ; pop edi
  const code = [0x40, 0x49, 0x66, 0xba, 0x07, 0x00, 0x89, 0x03, 0x56, 0x5f];
  const input = { rax: 0xaaaa_aaaa_0000_0001n, rcx: 0xbbbb_bbbb_0000_0001n, rdx: 0xcccc_cccc_dddd_ddddn, rbx: WINDOW, rsi: 0xffff_ffff_1234_5678n, rsp };
  const [res, after] = runNativeBatch([
    oneThread(code, input, 0n, { compat32: true }),
    oneThread([0x48, 0xff, 0xc0], { rax: 0xaaaa_aaaa_0000_0001n }), // inc rax: a 64-bit case again
  ]);
  const th = res.threads[0];
  t.is(th.status, 'end');
  t.is(th.rip, CODE_BASE + BigInt(code.length));
  t.is(th.regs.rax, 2n, 'INC EAX zero-extends into RAX');
  t.is(th.regs.rcx, 0n, 'DEC ECX likewise');
  t.is(th.regs.rdx, 0xcccc_cccc_dddd_0007n, 'a 16-bit write keeps the rest');
  t.is(th.regs.rdi, 0x1234_5678n, 'POP EDI zero-extends');
  t.is(th.regs.rsp, rsp);
  t.is(th.regs.r8, regs().r8, 'R8 untouched by 32-bit code');
  t.is(new DataView(res.scratch.buffer, res.scratch.byteOffset).getUint32(0, true), 2, 'a store through DS');
  t.is(after.threads[0].regs.rax, 0xaaaa_aaaa_0000_0002n);
});

test('32-bit cases: faults and timeouts are reported and the runner comes back to 64-bit mode', (t) => {
  const [ud, pf, loop, next] = runNativeBatch([
    oneThread([0x90, 0x0f, 0x0b], {}, 0n, { compat32: true }),
    oneThread([0x8b, 0x03], { rbx: 0x1234_5678n }, 0n, { compat32: true }), // mov eax, [ebx]
    oneThread([0x40, 0xeb, 0xfd], { rax: 0n }, 0n, { compat32: true, timeoutMs: 50 }), // inc eax ; jmp $-3
    oneThread([0x48, 0x01, 0xd8], { rax: 40n, rbx: 2n }),
  ]).map((r) => r.threads[0]);
  t.is(ud.vector, 6);
  t.is(ud.rip, CODE_BASE + 1n);
  t.is(pf.vector, 14);
  t.is(pf.faultAddress, 0x1234_5678n);
  t.is(pf.errorCode, 0x4n);
  t.is(loop.status, 'timeout');
  t.true(loop.regs.rax > 1000n, 'it was really running');
  t.is(next.status, 'end');
  t.is(next.regs.rax, 42n);
});

test('random 32-bit machine code never takes the runner down', (t) => {
  let seed = 0x9e3779b9;
  const rnd = (): number => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed;
  };
  const cases: NativeCase[] = [];
  for (let i = 0; i < 2000; i++) {
    const code = Array.from({ length: 1 + (rnd() % 24) }, () => rnd() & 0xff);
    const r: Partial<Record<GprName, bigint>> = {};
    for (const name of GPR_NAMES) r[name] = rnd() % 2 === 0 ? SCRATCH_BASE + 0x800n + BigInt(rnd() % 0x100) : BigInt(rnd());
    r.rsp = SCRATCH_BASE + 0x800n;
    cases.push(oneThread(code, r, BigInt(rnd() & 0x8d5), { compat32: true, timeoutMs: 20, fullClear: true, scratchAddress: SCRATCH_BASE, scratch: new Uint8Array(0x1000) }));
  }
  const results = runNativeBatch(cases);
  t.is(results.length, cases.length);
  const last = only(oneThread([0x48, 0x01, 0xd8], { rax: 1n, rbx: 2n }));
  t.is(last.regs.rax, 3n);
});

test('invalid cases are rejected before running', (t) => {
  t.throws(() => runNativeBatch([{ ...oneThread([0x90], {}, 0n, { compat32: true }), threads: [{ regs: regs(), rflags: 0n }, { regs: regs(), rflags: 0n }] }]), { message: /one thread/ });
  t.throws(() => runNativeBatch([{ ...oneThread([0x90]), threads: [] }]), { message: /1 or 2/ });
  t.throws(() => runNativeBatch([{ ...oneThread([0x90]), scratchAddress: SCRATCH_BASE + 0xfff8n, scratch: new Uint8Array(16) }]), { message: /outside/ });
  t.throws(() => runNativeBatch([oneThread([0x90], { rax: -1n })]), { message: /rax/ });
  t.throws(() => runNativeBatch([oneThread([0x90], {}, 0n, { timeoutMs: 0 })]), { message: /timeoutMs/ });
});

test('the helper rejects malformed input with a message and non-zero exit', (t) => {
  const bin = buildNativeRunner();
  const bad = spawnSync(bin, [], { input: Buffer.from('garbage-garbage-garbage-garbage') });
  t.not(bad.status, 0);
  t.regex(bad.stderr.toString(), /bad magic/);
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0x31435356, 0);
  header.writeUInt32LE(1, 4);
  header.writeUInt32LE(100, 8); // promises 100 code bytes, delivers none
  header.writeUInt32LE(0x300000, 12);
  header.writeUInt32LE(1000, 20);
  const short = spawnSync(bin, [], { input: header });
  t.not(short.status, 0);
  t.regex(short.stderr.toString(), /truncated/);
  const empty = spawnSync(bin, [], { input: Buffer.alloc(0) });
  t.is(empty.status, 0);
  t.is(empty.stdout.length, 0);
});
}
