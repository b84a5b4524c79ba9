import test from 'ava';
import { Assembler, dword, ecx, edi, edx, esi, qword, rdi, rsi } from '../../src/asm/index.ts';
import * as Flag from '../../src/cpu/flags.ts';
import { EngineDecoder } from '../../src/intro/decoder.ts';
import type { VcpuAccess } from '../../src/intro/glue.ts';
import { emulatePtWrite, predictPtWrite } from '../../src/intro/pt-write.ts';
import { Prng } from '../../src/explore/prng.ts';
import { Machine } from '../../src/machine/machine.ts';
import { runSnippet, SnippetMachine } from '../../src/machine/snippet.ts';
import type { GprName } from '../../src/machine/vcpu-state.ts';

/**
 * Page-table write emulation, form by form, against the emulated CPU running the same instruction
 * on the same memory and registers (the CPU itself is checked against the host by the
 * differential harness): the memory it leaves, the registers, and the flags the form defines.
 */

const ENTRY = 0x300000;
const CODE = 0x200000n;
const [CF, PF, ZF, SF, OF, ALL] = [Flag.CF, Flag.PF, Flag.ZF, Flag.SF, Flag.OF, Flag.ARITH].map(BigInt);
/** AF is undefined after a logic instruction. */
const LOGIC = CF | PF | ZF | SF | OF;
const REGS: readonly GprName[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi'];

interface Form {
  readonly name: string;
  readonly emit: (a: Assembler) => void;
  /** Flags the form defines (compared); the others are undefined or untouched. */
  readonly flags: bigint;
  /** Byte offset of the store inside the 8-byte entry. */
  readonly offset?: number;
  /** Make the comparand equal to memory half of the time. */
  readonly compare?: 'rax' | 'edx:eax';
}

const FORMS: readonly Form[] = [
  { name: 'mov qword [rdi], rsi', emit: (a) => a.mov(qword(rdi), rsi), flags: 0n },
  { name: 'mov dword [rdi], esi', emit: (a) => a.mov(dword(rdi), esi), flags: 0n },
  { name: 'mov dword [rdi+4], esi', emit: (a) => a.mov(dword(rdi, 4), esi), flags: 0n, offset: 4 },
  { name: 'mov qword [rdi], imm32', emit: (a) => a.mov(qword(rdi), -0x7edcba99), flags: 0n },
  { name: 'xchg qword [rdi], rsi', emit: (a) => a.xchg(qword(rdi), rsi), flags: 0n },
  { name: 'xchg dword [rdi+4], esi', emit: (a) => a.xchg(dword(rdi, 4), esi), flags: 0n, offset: 4 },
  { name: 'lock cmpxchg qword [rdi], rsi', emit: (a) => a.lock().cmpxchg(qword(rdi), rsi), flags: ALL, compare: 'rax' },
  { name: 'lock cmpxchg dword [rdi], esi', emit: (a) => a.lock().cmpxchg(dword(rdi), esi), flags: ALL, compare: 'rax' },
  { name: 'lock cmpxchg8b qword [rdi]', emit: (a) => a.lock().cmpxchg8b(qword(rdi)), flags: ZF, compare: 'edx:eax' },
  { name: 'lock or qword [rdi], rsi', emit: (a) => a.lock().or(qword(rdi), rsi), flags: LOGIC },
  { name: 'lock and qword [rdi], rsi', emit: (a) => a.lock().and(qword(rdi), rsi), flags: LOGIC },
  { name: 'xor dword [rdi], esi', emit: (a) => a.xor(dword(rdi), esi), flags: LOGIC },
  { name: 'or qword [rdi], 0x60', emit: (a) => a.or(qword(rdi), 0x60), flags: LOGIC },
  { name: 'lock bts qword [rdi], 63', emit: (a) => a.lock().bts(qword(rdi), 63), flags: CF },
  { name: 'lock btr qword [rdi], 0', emit: (a) => a.lock().btr(qword(rdi), 0), flags: CF },
  { name: 'stosq', emit: (a) => a.stosq(), flags: 0n },
  { name: 'stosd', emit: (a) => a.stosd(), flags: 0n },
];

const assemble = (form: Form): Uint8Array => {
  const a = new Assembler(CODE);
  form.emit(a);
  return a.assemble().bytes;
};

/** Registers of a stopped vCPU, for the engine side. */
function registers(values: Record<GprName, bigint>, rflags: bigint): VcpuAccess & { readonly values: Map<GprName, bigint>; flags: bigint } {
  const map = new Map<GprName, bigint>(Object.entries(values) as [GprName, bigint][]);
  const access = {
    id: 0,
    values: map,
    flags: rflags,
    gpr: (name: GprName) => map.get(name) ?? 0n,
    setGpr: (name: GprName, value: bigint) => void map.set(name, BigInt.asUintN(64, value)),
    rip: () => CODE,
    setRip: () => undefined,
    rflags: () => access.flags,
    setRflags: (value: bigint) => void (access.flags = value),
    get64: () => 0n,
    set64: () => undefined,
    get32: () => 0,
  };
  return access;
}

const decoder = new EngineDecoder();
const machine = Machine.create({ ramBytes: 0x400000, vcpus: 1 });
const memory = machine.memory;

function u64(prng: Prng): bigint {
  return (BigInt(prng.below(0x10000)) << 48n) | (BigInt(prng.below(0x1000000)) << 24n) | BigInt(prng.below(0x1000000));
}

for (const form of FORMS) {
  test(`page-table write emulation: ${form.name} leaves memory, registers and flags as the CPU does`, (t) => {
    const bytes = assemble(form);
    const ins = decoder.decode(bytes, CODE);
    if (ins === null) throw new Error(`${form.name} does not decode`);
    const prng = new Prng(`pt-write ${form.name}`);
    for (let round = 0; round < 64; round++) {
      const entry = u64(prng);
      const regs = Object.fromEntries(REGS.map((r) => [r, u64(prng)])) as Record<GprName, bigint>;
      regs.rdi = BigInt(ENTRY);
      if (form.compare === 'rax' && prng.below(2) === 0) regs.rax = form.name.includes('dword') ? (regs.rax & ~0xffffffffn) | (entry & 0xffffffffn) : entry;
      if (form.compare === 'edx:eax' && prng.below(2) === 0) {
        regs.rax = (regs.rax & ~0xffffffffn) | (entry & 0xffffffffn);
        regs.rdx = (regs.rdx & ~0xffffffffn) | (entry >> 32n);
      }
      const rflags = 0x2n | (BigInt(prng.below(2)) * CF) | (BigInt(prng.below(2)) * ZF);
      const entryBytes = new Uint8Array(8);
      new DataView(entryBytes.buffer).setBigUint64(0, entry, true);
      const cpu = runSnippet({ code: bytes, regs: { ...regs }, rflags, memory: [{ address: BigInt(ENTRY), bytes: entryBytes }] });
      t.is(cpu.stop.kind, 'end', `${form.name}: the CPU ran it`);
      const cpuEntry = new DataView(cpu.readMemory(BigInt(ENTRY), 8).buffer).getBigUint64(0, true);

      memory.write64(ENTRY, entry);
      const engine = registers(regs, rflags);
      const outcome = emulatePtWrite(memory, ins, engine, ENTRY + (form.offset ?? 0));
      const context = `${form.name}, round ${round}: entry 0x${entry.toString(16)}, regs ${REGS.map((r) => `${r}=0x${regs[r].toString(16)}`).join(' ')}`;
      t.is(memory.read64(ENTRY), cpuEntry, `memory — ${context}`);
      for (const r of REGS) t.is(engine.gpr(r), cpu.regs[r], `${r} — ${context}`);
      t.is(engine.flags & form.flags, cpu.rflags & form.flags, `flags — ${context}`);
      t.is(outcome.retries, 0);
    }
  });
}

test('a CMPXCHG beaten by an A-bit update between decode and emulation: the emulation fails as the CPU would; the decode-time judgement says it succeeded', (t) => {
  const form = FORMS.find((f) => f.name === 'lock cmpxchg qword [rdi], rsi')!;
  const bytes = assemble(form);
  const ins = decoder.decode(bytes, CODE)!;
  const pte = 0x0000000000123007n; // P, R/W, U/S; A clear
  const stolen = 0x0000000000456007n;
  const regs = { rax: pte, rbx: 0n, rcx: 0n, rdx: 0n, rsi: stolen, rdi: BigInt(ENTRY) } as Record<GprName, bigint>;
  memory.write64(ENTRY, pte);
  const engine = registers(regs, 0x2n);
  // The naive engine judges at decode: the exchange will happen.
  t.is(predictPtWrite(memory, ins, engine, ENTRY).value, stolen);
  // Another CPU's page walk sets A (no exit: the hypervisor assists A/D updates).
  Atomics.or(memory.i64, ENTRY / 8, 0x20n);
  const outcome = emulatePtWrite(memory, ins, engine, ENTRY);
  t.is(outcome.value, pte | 0x20n, 'the value handed to the callbacks is what memory holds: the exchange did not happen');
  t.is(memory.read64(ENTRY), pte | 0x20n, 'memory keeps the accessed entry');
  t.is(engine.gpr('rax'), pte | 0x20n, 'RAX gets the entry, as CMPXCHG loads it on failure');
  t.is(engine.flags & ZF, 0n, 'ZF clear: the guest sees the failure and retries');
  // The CPU agrees, on the memory as it is after the A-bit update.
  const entryBytes = new Uint8Array(8);
  new DataView(entryBytes.buffer).setBigUint64(0, pte | 0x20n, true);
  const cpu = runSnippet({ code: bytes, regs: { ...regs }, memory: [{ address: BigInt(ENTRY), bytes: entryBytes }] });
  t.is(cpu.regs.rax, engine.gpr('rax'));
  t.is(cpu.rflags & ALL, engine.flags & ALL);
});

test('a MOV whose entry changes between the emulator\'s read and its compare-exchange retries and stores its value', (t) => {
  const bytes = assemble(FORMS[0]);
  const ins = decoder.decode(bytes, CODE)!;
  memory.write64(ENTRY, 0x1000n | 7n);
  const engine = registers({ rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0x2000n | 7n, rdi: BigInt(ENTRY) } as Record<GprName, bigint>, 2n);
  // A page walk sets A once, while the first compare-exchange is being prepared.
  const i64 = memory.i64;
  let raced = false;
  const original = Atomics.compareExchange;
  const patched = ((array: BigInt64Array, index: number, expected: bigint, replacement: bigint): bigint => {
    if (!raced && array === i64) {
      raced = true;
      Atomics.or(i64, index, 0x20n);
    }
    return original(array, index, expected, replacement);
  }) as typeof Atomics.compareExchange;
  Atomics.compareExchange = patched;
  try {
    const outcome = emulatePtWrite(memory, ins, engine, ENTRY);
    t.is(outcome.retries, 1);
    t.is(outcome.value, 0x2000n | 7n);
  } finally {
    Atomics.compareExchange = original;
  }
  t.is(memory.read64(ENTRY), 0x2000n | 7n);
});

test('forms the engine does not emulate are refused with the instruction named', (t) => {
  const a = new Assembler(CODE);
  a.add(qword(rdi), rsi);
  const ins = decoder.decode(a.assemble().bytes, CODE)!;
  const engine = registers({ rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 1n, rdi: BigInt(ENTRY) } as Record<GprName, bigint>, 2n);
  t.throws(() => emulatePtWrite(memory, ins, engine, ENTRY), { message: /add \[rdi\],rsi: not a page-table store/ });

});

/** A 32-bit PAE kernel's stores: the two halves of an entry, and CMPXCHG on one, decoded as 32-bit code. */
const FORMS32: readonly Form[] = [
  { name: 'mov dword [edi], ecx (32-bit code)', emit: (a) => a.mov(dword(edi), ecx), flags: 0n },
  { name: 'mov dword [edi+4], edx (32-bit code)', emit: (a) => a.mov(dword(edi, 4), edx), flags: 0n, offset: 4 },
  { name: 'lock cmpxchg dword [edi], ecx (32-bit code)', emit: (a) => a.lock().cmpxchg(dword(edi), ecx), flags: ALL, compare: 'rax' },
  { name: 'xchg dword [edi+4], edx (32-bit code)', emit: (a) => a.xchg(dword(edi, 4), edx), flags: 0n, offset: 4 },
];

test('32-bit code (a PAE kernel writing an entry in halves): the engine decodes it as 32-bit and emulates it as the CPU in PAE protected mode runs it', (t) => {
  const decoder32 = new EngineDecoder(32);
  t.teardown(() => decoder32.free());
  const snippets = new SnippetMachine({ mode: 'protected-pae' });
  const prng = new Prng('pt-write 32-bit');
  for (const form of FORMS32) {
    const a = new Assembler(CODE, { bitness: 32 });
    form.emit(a);
    const bytes = a.assemble().bytes;
    const ins = decoder32.decode(bytes, CODE);
    if (ins === null) throw new Error(`${form.name} does not decode in 32-bit mode`);
    for (let round = 0; round < 32; round++) {
      const entry = u64(prng);
      const regs = Object.fromEntries(REGS.map((r) => [r, u64(prng) & 0xffffffffn])) as Record<GprName, bigint>;
      regs.rdi = BigInt(ENTRY);
      if (form.compare === 'rax' && prng.below(2) === 0) regs.rax = entry & 0xffffffffn;
      const entryBytes = new Uint8Array(8);
      new DataView(entryBytes.buffer).setBigUint64(0, entry, true);
      const cpu = snippets.run({ code: bytes, regs: { ...regs }, rflags: 2n, memory: [{ address: BigInt(ENTRY), bytes: entryBytes }] });
      t.is(cpu.stop.kind, 'end', `${form.name}: the CPU ran it`);
      memory.write64(ENTRY, entry);
      const engine = registers(regs, 2n);
      emulatePtWrite(memory, ins, engine, ENTRY + (form.offset ?? 0));
      const context = `${form.name}, round ${round}: entry 0x${entry.toString(16)}`;
      t.is(memory.read64(ENTRY), new DataView(cpu.readMemory(BigInt(ENTRY), 8).buffer).getBigUint64(0, true), `memory — ${context}`);
      for (const r of REGS) t.is(engine.gpr(r), cpu.regs[r], `${r} — ${context}`);
      t.is(engine.flags & form.flags, cpu.rflags & form.flags, `flags — ${context}`);
    }
  }
});
