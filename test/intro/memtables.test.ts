/**
 * Goal: mem-tables relocates exactly what HVMI relocates, into exactly HVMI's handler layout, and
 * the handler computes what the original MOV would. Method: the handler bytes against HVMI's
 * documented example; the handler executed by the emulator for every index; the detection rules
 * one by one on decoded instructions against a real engine instance.
 */
import test from 'ava';
import { EngineDecoder } from '../../src/intro/decoder.ts';
import { Introcore } from '../../src/intro/engine.ts';
import { MAX_MEM_TABLE_SIZE, MEM_TABLE_ENTRY_SIZE, MEM_TABLE_HEADER_SIZE, buildMemtableHandler, jumpPatch } from '../../src/intro/memtable-handler.ts';
import { MEM_TABLE_PATCH_HITS } from '../../src/intro/memtables.ts';
import { IntStatus } from '../../src/intro/status.ts';
import type { VcpuAccess } from '../../src/intro/glue.ts';
import { runSnippet, SNIPPET_STACK_TOP } from '../../src/machine/snippet.ts';
import type { GprName } from '../../src/machine/vcpu-state.ts';
import { KBASE, KGPA, TEXT, miniKernel } from '../support/mini-kernel.ts';

const le32 = (v: bigint | number): number[] => {
  const n = Number(BigInt.asUintN(32, BigInt(v)));
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
};

test("the handler is HVMI's byte layout: 47-byte header, 11-byte blocks (memtables.c example)", (t) => {
  // HVMI's comment: MOV ecx, [rdx+rax*4+0x4ea91c] at 0xFFFF800012340000 (7 bytes), slack at
  // 0xFFFF800056780000, table 0x1000..0x4000.
  const slack = 0xffff800056780000n;
  const values = [0x1000, 0x2000, 0x3000, 0x4000];
  const bytes = buildMemtableHandler({ address: slack, dst: 1, index: 0, values, returnTo: 0xffff800012340007n });
  const header = [
    0x9c, 0x48, 0x51, 0x48, 0x50,
    0xc7, 0x44, 0x24, 0x08, ...le32(0x5678002f),
    0xc7, 0x44, 0x24, 0x0c, ...le32(0xffff8000),
    0x48, 0x6b, 0xc0, 0x0b,
    0x48, 0x01, 0x44, 0x24, 0x08,
    0x48, 0x58, 0x48, 0x59,
    0x48, 0xc7, 0x44, 0x24, 0xf8, 0, 0, 0, 0,
    0x9d,
    0x40, 0xff, 0xe1,
  ];
  t.is(header.length, MEM_TABLE_HEADER_SIZE);
  t.deepEqual(Array.from(bytes.subarray(0, MEM_TABLE_HEADER_SIZE)), header);
  values.forEach((value, k) => {
    const at = MEM_TABLE_HEADER_SIZE + MEM_TABLE_ENTRY_SIZE * k;
    const rel = 0xffff800012340007n - (slack + BigInt(at + MEM_TABLE_ENTRY_SIZE));
    t.deepEqual(Array.from(bytes.subarray(at, at + MEM_TABLE_ENTRY_SIZE)), [0x40, 0xb9, ...le32(value), 0xe9, ...le32(rel)], `block ${k}`);
  });
  t.deepEqual(Array.from(jumpPatch(0xffff800012340000n, slack, 7)), [0xe9, ...le32(slack - 0xffff800012340005n), 0x90, 0x90]);
});

test('executed, the handler loads table[idx] into the destination and leaves flags, index and stack as they were', (t) => {
  const cases: { dst: number; index: number; dstName: GprName; indexName: GprName }[] = [
    { dst: 1, index: 0, dstName: 'rcx', indexName: 'rax' },
    { dst: 8, index: 9, dstName: 'r8', indexName: 'r9' },
    { dst: 0, index: 0, dstName: 'rax', indexName: 'rax' }, // destination == index, as compilers may emit
  ];
  const values = [0x1234, 0x8000_0001, 0, 0xffff_ffff, 0x77];
  for (const { dst, index, dstName, indexName } of cases) {
    for (let k = 0; k < values.length; k++) {
      const address = 0x200000n;
      const length = MEM_TABLE_HEADER_SIZE + MEM_TABLE_ENTRY_SIZE * values.length;
      const code = buildMemtableHandler({ address, dst, index, values, returnTo: address + BigInt(length) });
      const regs: Partial<Record<GprName, bigint>> = { [dstName]: 0xdead_beef_cafe_f00dn };
      regs[indexName] = BigInt(k);
      const result = runSnippet({ code, codeAddress: address, regs, rflags: 0x8d5n, memory: [{ address: SNIPPET_STACK_TOP - 0x40n, bytes: new Uint8Array(0x40).fill(0xaa) }] });
      t.deepEqual(result.stop, { kind: 'end' }, `${dstName}/${indexName} k=${k}`);
      t.is(result.regs[dstName], BigInt(values[k]), `${dstName} = table[${k}] (zero-extended)`);
      if (dstName !== indexName) t.is(result.regs[indexName], BigInt(k), 'the index register is restored');
      t.is(result.rflags, 0x8d7n, 'flags preserved (bit 1 always set)');
      t.is(result.regs.rsp, SNIPPET_STACK_TOP);
      t.deepEqual(Array.from(result.readMemory(SNIPPET_STACK_TOP - 16n, 8)), [0, 0, 0, 0, 0, 0, 0, 0], 'the dead pointer into the handler is zeroed');
    }
  }
});

/** Registers for the rule checks: the table load's base register is the image base. */
function registers(values: Partial<Record<GprName, bigint>>, rip: bigint): VcpuAccess {
  const regs = new Map(Object.entries(values) as [GprName, bigint][]);
  return {
    id: 0,
    gpr: (name) => regs.get(name) ?? 0n,
    setGpr: (name, value) => void regs.set(name, value),
    rip: () => rip,
    setRip: () => undefined,
    rflags: () => 2n,
    setRflags: () => undefined,
    get64: () => 0n,
    set64: () => undefined,
    get32: () => 0,
  };
}

test('detection: only a 4-byte MOV reg ← [base + index*scale + disp] of ≥ 5 bytes, inside the image, outside the SSDT', (t) => {
  const kernel = miniKernel((a) => a.vmcall());
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const decoder = new EngineDecoder();
  t.teardown(() => decoder.free());
  const rip = TEXT + 0x100n;
  const table = KBASE + 0x2000n;
  const regs = registers({ rdx: KBASE, rax: 1n }, rip);
  const check = (hex: string, gla = table + 4n): number => {
    const instruction = decoder.decode(Uint8Array.from(hex.split(' ').map((h) => parseInt(h, 16))), rip);
    if (instruction === null) throw new Error(`cannot decode ${hex}`);
    return engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla });
  };
  // mov ecx,[rdx+rax*4+0x2000]: the shape compilers emit.
  t.is(check('8b 8c 82 00 20 00 00'), IntStatus.success);
  t.is(engine.memtables.entries().length, 1);
  t.is(engine.memtables.entries()[0].tableGva, table, 'keyed by base + displacement, not by RIP');
  t.is(check('8b 4c 82 10'), IntStatus.notNeededHint, 'mov ecx,[rdx+rax*4+0x10]: 4 bytes, no room for a JMP');
  t.is(check('48 8b 8c 82 00 20 00 00'), IntStatus.notNeededHint, '8-byte load');
  t.is(check('8b 8a 00 20 00 00'), IntStatus.notNeededHint, 'no index register');
  t.is(check('89 8c 82 00 20 00 00'), IntStatus.notNeededHint, 'a store');
  t.is(check('03 8c 82 00 20 00 00'), IntStatus.notNeededHint, 'ADD, not MOV');
  t.is(check('0f b6 8c 82 00 20 00 00'), IntStatus.notNeededHint, 'MOVZX, not MOV');
  t.is(check('8b 8c 82 00 20 00 00', KBASE + 0x10000n), IntStatus.notNeededHint, 'GLA outside the image');
  t.is(engine.memtables.entries().length, 1, 'none of those made an entry');
  t.is(engine.memtables.entries()[0].hits, 1);
});

test('the SSDT is never a mem-table, whatever the instruction looks like', (t) => {
  const kernel = miniKernel((a) => a.vmcall());
  t.teardown(() => kernel.session.close());
  const decoder = new EngineDecoder();
  t.teardown(() => decoder.free());
  // A second engine over the same guest, told the SSDT is at .data.
  const rip = TEXT + 0x100n;
  const ssdt = KBASE + 0x2000n;
  const engine = new Introcore(kernel.session, { kernelBase: KBASE, systemCr3: kernel.test.tables.root, ssdt, ssdtEntries: 4, hookedApis: [], threads: null });
  t.teardown(() => engine.free());
  const instruction = decoder.decode(Uint8Array.from([0x45, 0x8b, 0x9c, 0x82, 0x00, 0x20, 0x00, 0x00]), rip)!;
  const regs = registers({ r10: KBASE, rax: 2n }, rip);
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla: ssdt + 8n }), IntStatus.notNeededHint);
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla: ssdt + 4n * 8n }), IntStatus.success, 'past entries × word size it is an ordinary table');
});

test(`the ${MEM_TABLE_PATCH_HITS}th hit relocates; a table of 257 RVA-like dwords cannot be sized and is ignored for good`, (t) => {
  // .text is 0x100 bytes (the relocated MOV sits inside it); slack starts after it.
  const kernel = miniKernel((a) => a.vmcall(), { textBytes: 0x100 });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const decoder = new EngineDecoder();
  t.teardown(() => decoder.free());
  const memory = kernel.test.machine.memory;
  // .data+0x000: a table of 3 RVAs ended by INT3 padding; .data+0x400: 257 small dwords.
  const tableGpa = KGPA + 0x2000;
  [0x1010, 0x1020, 0x1030].forEach((rva, k) => memory.write32(tableGpa + 4 * k, rva));
  memory.write32(tableGpa + 12, 0xcccccccc | 0);
  for (let k = 0; k < MAX_MEM_TABLE_SIZE + 1; k++) memory.write32(tableGpa + 0x400 + 4 * k, 0x100 + k);
  // The relocated instruction must exist in memory (the patch cloaks its bytes).
  const rip = TEXT + 0x10n;
  const bytes = Uint8Array.from([0x8b, 0x8c, 0x82, 0x00, 0x20, 0x00, 0x00]);
  memory.write(KGPA + 0x1010, bytes);
  const instruction = decoder.decode(bytes, rip)!;
  const regs = registers({ rdx: KBASE, rax: 0n }, rip);
  // As after a real decode: the instruction is in the icache (the patch flushes that entry).
  engine.icache.add(rip, 0n, true, instruction, { gpaPage: KGPA + 0x1000, spillGpaPage: null });
  for (let hit = 1; hit < MEM_TABLE_PATCH_HITS; hit++) t.is(engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla: KBASE + 0x2000n }), IntStatus.success);
  t.false(engine.memtables.entries()[0].patched);
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla: KBASE + 0x2000n }), IntStatus.instructionPatched);
  const entry = engine.memtables.entries()[0];
  t.true(entry.patched);
  t.is(entry.slackSize, MEM_TABLE_HEADER_SIZE + 3 * MEM_TABLE_ENTRY_SIZE, 'three entries: the INT3 padding ended the table');
  t.deepEqual(Array.from(memory.read(KGPA + 0x1010, 7)), Array.from(jumpPatch(rip, entry.slackAddress, 7)));
  t.true(engine.memtables.insRelocated(rip));
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: regs, instruction, gla: KBASE + 0x2000n }), IntStatus.success, 'Patched: skipped');
  t.is(entry.relocations, 1);

  const big = registers({ rdx: KBASE + 0x400n, rax: 0n }, rip);
  for (let hit = 0; hit < MEM_TABLE_PATCH_HITS - 1; hit++) engine.memtables.checkAccess({ vcpuId: 0, self: big, instruction, gla: KBASE + 0x2400n });
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: big, instruction, gla: KBASE + 0x2400n }), IntStatus.notSupported);
  t.true(engine.memtables.entries()[1].ignored);
  t.is(engine.memtables.checkAccess({ vcpuId: 0, self: big, instruction, gla: KBASE + 0x2400n }), IntStatus.success, 'ignored for good');

  engine.memtables.disable();
  t.deepEqual(Array.from(memory.read(KGPA + 0x1010, 7)), Array.from(bytes), 'disable puts the MOV back');
  t.not(memory.read(Number(entry.slackAddress - KBASE) + KGPA, 1)[0], 0, 'the handler stays for threads inside it');
  engine.memtables.uninit();
  t.true(memory.read(Number(entry.slackAddress - KBASE) + KGPA, entry.slackSize).every((b) => b === 0), 'uninit zeroes the handler');
});
