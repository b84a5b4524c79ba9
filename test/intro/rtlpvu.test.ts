import test from 'ava';
import { al, byte, r8, rcx } from '../../src/asm/index.ts';
import { disassemble } from '../../src/asm/index.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { UNWIND_LAYOUT, UNWIND_SITE_KINDS, unwindHandlerTemplate, type UnwindSiteKind } from '../../src/intro/rtlpvu.ts';
import { runSnippet } from '../../src/machine/snippet.ts';
import { DATA, DATA_GPA, KGPA, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

/**
 * The RtlpVirtualUnwind cache handlers against HVMI's (winhkhnd.c, hvmi-notes §3), what each entry
 * does when it runs, and the engine's update with a peer vCPU inside the handler.
 */

const kind = (tag: number): UnwindSiteKind => UNWIND_SITE_KINDS.find((k) => k.tag === tag)!;

test('the "mov" handler (tag 1) is HVMI\'s byte for byte: CLI, 12 × {MOV al; CMP ecx; JZ 0x79}, STI at 0x79, JZ +2 at 0x7A', (t) => {
  const want = [0xfa];
  for (let e = 0; e < 12; e++) want.push(0xb0, 0x00, 0x81, 0xf9, 0, 0, 0, 0, 0x74, 0x79 - (1 + 10 * e + 10));
  want.push(0xfb, 0x74, 0x02);
  t.deepEqual([...unwindHandlerTemplate(kind(1)).code], want);
  t.is(want.length, 0x7c);
  t.is(want[9 + 1], 0x6e, 'entry 0 jumps to 0x79 as HVMI writes it (74 6E)');
});

test('the "cmp" handler (tag 5) is HVMI\'s byte for byte: PUSH rax; CLI, 8 × 16-byte entries, STI; POP rax at 0x82', (t) => {
  const want = [0x50, 0xfa];
  for (let e = 0; e < 8; e++) want.push(0x81, 0xfd, 0xbd, 0xbd, 0xbd, 0xbd, 0x75, 0x08, 0xb0, 0xbd, 0x3c, 0x48, 0xfb, 0x58, 0xeb, 0x88 - (2 + 16 * e + 16));
  want.push(0xfb, 0x58);
  t.deepEqual([...unwindHandlerTemplate(kind(5)).code], want);
  t.is(want.length, 0x84);
  t.is(want[2 + 15], 0x76, 'entry 0 jumps to 0x88 as HVMI writes it (EB 76)');
});

test('every tag: the entry offsets the update writes are the MOV\'s imm8 and the CMP\'s imm32 of that entry', (t) => {
  const base = 0xfffff80000403000n;
  for (const site of UNWIND_SITE_KINDS) {
    const layout = UNWIND_LAYOUT[site.variant];
    for (let e = 0; e < layout.entries; e++) {
      const code = unwindHandlerTemplate(site).code.slice();
      const entry = layout.first + e * layout.stride;
      code[entry + layout.valueAt] = 0x5a;
      new DataView(code.buffer).setUint32(entry + layout.addressAt, 0x12345678, true);
      const text = disassemble(code, base).map((line) => line.text.replace(/\s+/g, ' '));
      const register = site.base === 'rcx' ? 'ecx' : 'ebp';
      const load = site.operand === 0xb2 ? 'dl' : 'al';
      t.true(text.includes(`mov ${load},0x5a`), `tag ${site.tag} entry ${e}: ${text.join('; ')}`);
      t.true(text.includes(`cmp ${register},0x12345678`), `tag ${site.tag} entry ${e}`);
    }
  }
});

/** The handler with its relocated first instruction, run on its own: `base` holds the address. */
function runEntry(site: UnwindSiteKind, slot: number, cached: { value: number; address: number }, base: bigint, memoryByte: number) {
  const layout = UNWIND_LAYOUT[site.variant];
  const template = unwindHandlerTemplate(site).code;
  const code = new Uint8Array(template.length + site.bytes.length);
  code.set(template);
  code.set(site.bytes, template.length);
  const entry = layout.first + slot * layout.stride;
  code[entry + layout.valueAt] = cached.value;
  new DataView(code.buffer).setUint32(entry + layout.addressAt, cached.address, true);
  const data = 0x600000n;
  return runSnippet({
    code,
    regs: { [site.base]: base, rax: 0x1111n, rdx: 0x2222n },
    memory: [{ address: data, bytes: Uint8Array.from({ length: 16 }, () => memoryByte) }],
    maxSteps: 200,
  });
}

test('every slot of every handler: a hit returns the cached byte without reading memory; a miss reads it', (t) => {
  const address = 0x600004n;
  for (const site of UNWIND_SITE_KINDS) {
    const layout = UNWIND_LAYOUT[site.variant];
    for (let slot = 0; slot < layout.entries; slot++) {
      for (const hit of [true, false]) {
        const cachedValue = site.variant === 'cmp' ? site.operand : 0x5a; // cmp: a cached byte equal to the immediate sets ZF
        const memoryByte = 0x3c;
        const result = runEntry(site, slot, { value: cachedValue, address: hit ? Number(address) : 0x7777 }, address, memoryByte);
        const where = `tag ${site.tag} slot ${slot} ${hit ? 'hit' : 'miss'}`;
        t.is(result.stop.kind, 'end', where);
        const seen = hit ? cachedValue : memoryByte;
        if (site.variant === 'mov') {
          const register = site.operand === 0xb2 ? result.regs.rdx : result.regs.rax;
          t.is(Number(register & 0xffn), seen, where);
        } else {
          t.is(result.regs.rax, 0x1111n, `${where}: RAX restored`);
          t.is((result.rflags & 0x40n) !== 0n, seen === site.operand, `${where}: ZF as the original CMP would set it`);
        }
        t.is((result.rflags & 0x200n) !== 0n, true, `${where}: interrupts back on`);
      }
    }
  }
});

/** Two vCPUs reading DATA+0x40 through a tag-1 site; the DATA page is read-hooked by a cloak on its first bytes. */
function twoReaders(fixOff: boolean): { kernel: MiniKernel; handler: bigint; out: (vcpu: number) => number; real: number } {
  const kernel = miniKernel((a) => {
    a.label('site');
    a.mov(al, byte(rcx));
    a.mov(byte(r8), al);
    a.vmcall();
  }, { vcpus: 2, fixes: fixOff ? fixesWithout(['rtlpvuLiveRipCheck']) : undefined, unwindSites: [{ tag: 1, label: 'site' }], textBytes: 0x20 });
  const { test: machine, intro, session } = kernel;
  const engine = intro.engine;
  const target = DATA + 0x40n;
  const real = 0x9d;
  machine.machine.memory.write(DATA_GPA + 0x40, Uint8Array.of(real));
  engine.cloak.cloak(DATA, machine.tables.root, machine.machine.memory.read(DATA_GPA, 8), new Uint8Array(8).fill(0xcc), 'hooked page');
  session.ept.flush();
  for (let vcpu = 0; vcpu < 2; vcpu++) {
    machine.state(vcpu).setGpr('rcx', target);
    machine.state(vcpu).setGpr('r8', DATA + 0x1000n + BigInt(vcpu * 8));
  }
  const handler = engine.unwindCache.sites()[0].detour.handler;
  return { kernel, handler, out: (vcpu) => machine.machine.memory.read(DATA_GPA + 0x1000 + vcpu * 8, 1)[0], real };
}

/** vCPU 1 steps until it has run entry 0's MOV (old value) and not its CMP; then vCPU 0 misses, faults and is handled. */
function peerBetweenMovAndCmp(setup: ReturnType<typeof twoReaders>): void {
  const { kernel, handler } = setup;
  const { session, test: machine } = kernel;
  for (let k = 0; k < 10 && machine.state(1).rip !== handler + 3n; k++) session.runSlice(1, 1);
  if (machine.state(1).rip !== handler + 3n) throw new Error(`vCPU 1 did not reach entry 0's CMP: ${session.describeVcpus()}`);
  for (let k = 0; k < 50 && kernel.notes('rtlpvu-update').length + kernel.notes('rtlpvu-skip').length === 0; k++) {
    if (session.pendingExits().includes(0)) session.handleExit(0);
    else session.runSlice(0, 1);
  }
  if (machine.state(1).rip !== handler + 3n) throw new Error('vCPU 1 moved while vCPU 0 was handled');
}

/** Runs the vCPUs to their VMCALL, one instruction each in turn (or one after the other). */
function runBoth(kernel: MiniKernel, order: 'interleaved' | 'in-turn' = 'interleaved'): void {
  const { session } = kernel;
  const groups = order === 'interleaved' ? [[0, 1]] : [[0], [1]];
  for (const group of groups) {
    for (let k = 0; k < 400 && group.some((vcpu) => session.stateOf(vcpu) !== 'stopped'); k++) step(kernel, group);
  }
}

function step(kernel: MiniKernel, vcpus: readonly number[]): void {
  const { session } = kernel;
  for (const vcpu of vcpus) {
    if (session.stateOf(vcpu) === 'stopped') continue;
    if (session.pendingExits().includes(vcpu)) session.handleExit(vcpu);
    else session.runSlice(vcpu, 1);
  }
}

test('a peer between an entry\'s MOV and CMP: the update is skipped, and both vCPUs read the real byte', (t) => {
  const setup = twoReaders(false);
  t.teardown(() => setup.kernel.session.close());
  peerBetweenMovAndCmp(setup);
  t.deepEqual(setup.kernel.notes('rtlpvu-skip').map((n) => n.peer), [1]);
  t.is(setup.kernel.notes('rtlpvu-update').length, 0);
  runBoth(setup.kernel);
  t.is(setup.out(0), setup.real);
  t.is(setup.out(1), setup.real);
  t.true(setup.kernel.notes('rtlpvu-update').length > 0, 'the entry was filled later, with nobody inside');
});

test('rtlpvuLiveRipCheck off: the same peer pairs the old byte with the new address and reads code that is not there', (t) => {
  const setup = twoReaders(true);
  t.teardown(() => setup.kernel.session.close());
  peerBetweenMovAndCmp(setup);
  t.is(setup.kernel.notes('rtlpvu-skip').length, 0);
  t.like(setup.kernel.notes('rtlpvu-update')[0], { slot: 0, value: setup.real, vcpu: 0 });
  runBoth(setup.kernel);
  t.is(setup.out(0), setup.real);
  t.is(setup.out(1), 0x00, 'entry 0\'s old byte (the handler starts zeroed) for the new address');
});

test('a filled entry serves the next read of that address with no exit; the sites come back at uninit', (t) => {
  const setup = twoReaders(false);
  const { kernel } = setup;
  t.teardown(() => kernel.session.close());
  runBoth(kernel, 'in-turn');
  const exits = kernel.events.filter((e) => e.kind === 'handle' && e.vcpu === 1).length;
  t.is(setup.out(1), setup.real);
  t.is(kernel.notes('rtlpvu-update').length, 1, 'one update: the second reader hit the cache');
  t.true(exits <= 1, `vCPU 1 exited ${exits} times (its VMCALL only)`);
  const site = kernel.code.addressOf('site');
  t.is(kernel.test.machine.memory.read(KGPA + 0x1000, 1)[0], 0xe9, 'the site is a JMP to the handler');
  kernel.intro.unload({ ignoreSafeness: true });
  t.deepEqual([...kernel.test.machine.memory.read(KGPA + 0x1000 + Number(site - (site & ~0xfffn)), 2)], [0x8a, 0x01]);
  t.is(kernel.intro.engine.detours.detours().length, 0);
});
