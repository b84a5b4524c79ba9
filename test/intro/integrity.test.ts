import test from 'ava';
import { DATA, DATA_GPA, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';
import type { IntegrityResponse } from '../../src/intro/integrity.ts';

/**
 * Integrity regions on the timer (IntIntegrityCheckAll): a structure compared with its copy every
 * tick without pausing, an alert when it changed, and — when its owner asks — the copy written
 * back with every vCPU paused.
 */

const STRUCTURE = DATA + 0x200n;
const STRUCTURE_GPA = DATA_GPA + 0x200;

function protectedKernel(response: IntegrityResponse): MiniKernel {
  const kernel = miniKernel((a) => {
    a.nop();
    a.vmcall();
  });
  kernel.test.machine.memory.write64(STRUCTURE_GPA, 0x1122334455667788n);
  kernel.intro.engine.integrity.add(STRUCTURE, 8, 'dispatch table', response);
  return kernel;
}

test('an unchanged region raises nothing', (t) => {
  const kernel = protectedKernel('restore');
  t.teardown(() => kernel.session.close());
  kernel.intro.engine.handleTimer();
  t.deepEqual(kernel.notes('integrity-violation'), []);
});

test('a changed region is an alert and is written back with every vCPU paused', (t) => {
  const kernel = protectedKernel('restore');
  t.teardown(() => kernel.session.close());
  kernel.test.machine.memory.write8(STRUCTURE_GPA + 3, 0xcc);
  kernel.intro.engine.handleTimer();
  t.like(kernel.notes('integrity-violation')[0], { owner: 'dispatch table', offset: 3, value: 0xcc, original: 0x55 });
  t.like(kernel.notes('integrity-restored')[0], { owner: 'dispatch table', pauseDepth: 1 });
  t.is(kernel.test.machine.memory.read64(STRUCTURE_GPA), 0x1122334455667788n);
  t.is(kernel.session.pauseDepth, 0, 'resumed after');
});

test("'alert' only reports: the change stays, and is reported every tick it stays", (t) => {
  const kernel = protectedKernel('alert');
  t.teardown(() => kernel.session.close());
  kernel.test.machine.memory.write8(STRUCTURE_GPA, 0);
  kernel.intro.engine.handleTimer();
  kernel.intro.engine.handleTimer();
  t.is(kernel.notes('integrity-violation').length, 2);
  t.deepEqual(kernel.notes('integrity-restored'), []);
  t.is(kernel.test.machine.memory.read8(STRUCTURE_GPA), 0);
});

test('the regions go when the engine unloads', (t) => {
  const kernel = protectedKernel('restore');
  t.teardown(() => kernel.session.close());
  kernel.intro.unload({ ignoreSafeness: true });
  t.is(kernel.intro.engine.integrity.regions().length, 0);
});
