/**
 * Goal: a cloaked patch is invisible to the guest — reads see the original bytes, writes are
 * refused — and uncloaking restores memory and removes the hooks. Method: a tiny kernel whose
 * code reads and writes a cloaked region of its own code page.
 */
import test from 'ava';
import { byte, qword, rax, rbx, ripRel } from '../../src/asm/index.ts';
import { KGPA, TEXT, miniKernel } from '../support/mini-kernel.ts';

test('reads of a cloaked region see the original bytes; writes to it are refused; uncloak restores', (t) => {
  const kernel = miniKernel((a) => {
    const region = a.newLabel('region');
    a.mov(rax, qword(ripRel(region)));
    a.mov(byte(ripRel(region)), 0x55);
    a.mov(rbx, qword(ripRel(region)));
    a.vmcall();
    a.bind(region);
    a.dq(0x1122334455667788n);
  });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const region = kernel.code.addressOf('region');
  const regionGpa = KGPA + 0x1000 + Number(region - TEXT);
  const original = kernel.test.machine.memory.read(regionGpa, 8);
  const cloak = engine.cloak.cloak(region, kernel.test.tables.root, original, Uint8Array.from([0xe9, 1, 2, 3, 4, 0x90, 0x90, 0x90]), 'test patch');
  kernel.session.ept.flush();
  t.deepEqual(Array.from(kernel.test.machine.memory.read(regionGpa, 8)), [0xe9, 1, 2, 3, 4, 0x90, 0x90, 0x90], 'the patch is in memory');
  kernel.runToEnd();
  const state = kernel.test.state(0);
  t.is(state.gpr('rax'), 0x1122334455667788n, 'the load saw the original bytes');
  t.is(state.gpr('rbx'), 0x1122334455667788n, 'so did the second load, after the refused write');
  t.is(engine.cloak.hiddenReads, 2);
  t.is(engine.cloak.deniedWrites, 1);
  t.is(kernel.test.machine.memory.read(regionGpa, 1)[0], 0xe9, 'the guest write did not land');
  engine.cloak.uncloak(cloak);
  kernel.intro.commit();
  t.deepEqual(kernel.test.machine.memory.read(regionGpa, 8), original);
  t.is(engine.hooks.liveHooks().filter((h) => h.owner === 'memcloak test patch').length, 0);
  t.is(engine.cloak.liveRegions().length, 0);
  t.throws(() => engine.cloak.uncloak(cloak), { message: /already removed/ });
});

test('the engine unload uncloaks a region its owner left behind, restoring the bytes and noting the leak', (t) => {
  const kernel = miniKernel((a) => {
    const region = a.newLabel('region');
    a.vmcall();
    a.bind(region);
    a.dq(0x1122334455667788n);
  });
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  const region = kernel.code.addressOf('region');
  const regionGpa = KGPA + 0x1000 + Number(region - TEXT);
  const original = kernel.test.machine.memory.read(regionGpa, 8);
  engine.cloak.cloak(region, kernel.test.tables.root, original, Uint8Array.from([0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc]), 'forgotten patch');
  kernel.session.ept.flush();
  kernel.runToEnd();
  t.is(kernel.test.machine.memory.read(regionGpa, 1)[0], 0xcc);
  const report = kernel.intro.unload({ ignoreSafeness: true });
  t.is(report.state, 'unloaded');
  t.deepEqual(kernel.test.machine.memory.read(regionGpa, 8), original);
  t.is(engine.cloak.liveRegions().length, 0);
  t.true(kernel.events.some((e) => e.kind === 'note' && e.what === 'cloak-leaked' && e.detail.owner === 'forgotten patch'));
});
