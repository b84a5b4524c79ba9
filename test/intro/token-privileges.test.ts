import test from 'ava';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { Token } from '../../src/guest/layout.ts';
import { DATA, DATA_GPA, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

/**
 * The timer's token-privileges check after HVMI's IntWinTokenCheckCurrentPrivileges: what alerts,
 * what the one-bit tolerance lets pass once, and the TIMER_FRIENDLY rule on how the token is found.
 */

const PRIVILEGES = 0xf0n;
const PER_CPU_TOKEN = 0x100;

function tokenKernel(fixesOff: string[] = []): MiniKernel {
  const kernel = miniKernel((a) => {
    a.nop();
    a.vmcall();
  }, { fixes: fixesWithout(fixesOff), systemToken: { gva: DATA, presentOffset: Token.present, enabledOffset: Token.enabled, perCpuOffset: PER_CPU_TOKEN } });
  return kernel;
}

/** Sets the token's words; the engine took its reference values when it started. */
function setToken(kernel: MiniKernel, present: bigint, enabled: bigint): void {
  kernel.test.machine.memory.write64(DATA_GPA + Token.present, present);
  kernel.test.machine.memory.write64(DATA_GPA + Token.enabled, enabled);
}

function started(fixesOff: string[] = []): MiniKernel {
  // The reference is read at engine start: put the boot token there first, then restart the engine.
  const kernel = tokenKernel(fixesOff);
  setToken(kernel, PRIVILEGES, PRIVILEGES);
  kernel.intro.stop();
  kernel.intro.start();
  return kernel;
}

const alerts = (kernel: MiniKernel): number => kernel.notes('token-privileges-alert').length;

test('enabling and disabling privileges the token has raises nothing', (t) => {
  const kernel = started();
  t.teardown(() => kernel.session.close());
  for (const enabled of [0x70n, 0xf0n, 0x30n, 0xb0n]) {
    setToken(kernel, PRIVILEGES, enabled);
    kernel.intro.engine.handleTimer();
  }
  t.is(alerts(kernel), 0);
});

test('a tick between the two halves of a removal is tolerated once; the removal completes with no alert', (t) => {
  const kernel = started();
  t.teardown(() => kernel.session.close());
  setToken(kernel, PRIVILEGES, 0x70n); //      a privilege disabled: Enabled changed since the last tick
  kernel.intro.engine.handleTimer();
  setToken(kernel, 0xd0n, 0xf0n); //           another enabled, then its removal half done: Enabled ⊄ Present by 0x20
  kernel.intro.engine.handleTimer();
  t.is(kernel.notes('token-transient-tolerated').length, 1);
  setToken(kernel, 0xd0n, 0xd0n); //           the second half
  kernel.intro.engine.handleTimer();
  t.is(alerts(kernel), 0);
});

test('privilegeTransientTolerance off: the same tick alerts', (t) => {
  const kernel = started(['privilegeTransientTolerance']);
  t.teardown(() => kernel.session.close());
  setToken(kernel, PRIVILEGES, 0x70n);
  kernel.intro.engine.handleTimer();
  setToken(kernel, 0xd0n, 0xf0n);
  kernel.intro.engine.handleTimer();
  t.is(alerts(kernel), 1);
  t.like(kernel.notes('token-privileges-alert')[0], { enabledIncreased: true, presentIncreased: false });
});

test('an Enabled bit outside Present that stays is an alert on the next tick; two bits at once alert at once', (t) => {
  const kernel = started();
  t.teardown(() => kernel.session.close());
  setToken(kernel, PRIVILEGES, PRIVILEGES | 0x1n);
  kernel.intro.engine.handleTimer();
  t.is(alerts(kernel), 0, 'one bit: tolerated once');
  kernel.intro.engine.handleTimer();
  t.is(alerts(kernel), 1, 'still there: an escalation');
  setToken(kernel, PRIVILEGES, PRIVILEGES | 0x3n);
  kernel.intro.engine.handleTimer();
  t.is(alerts(kernel), 2, 'a new two-bit excess alerts at once');
});

test('Present gaining a bit is an alert', (t) => {
  const kernel = started();
  t.teardown(() => kernel.session.close());
  setToken(kernel, PRIVILEGES | 0x100n, PRIVILEGES);
  kernel.intro.engine.handleTimer();
  t.like(kernel.notes('token-privileges-alert')[0], { presentIncreased: true });
});

test('timerFriendly off: finding the token through a running vCPU\'s GS base is refused; with every vCPU paused it is allowed', (t) => {
  const kernel = started(['timerFriendly']);
  t.teardown(() => kernel.session.close());
  kernel.session.runSlice(0, 1);
  t.throws(() => kernel.intro.engine.handleTimer(), { name: 'VcpuAccessError', message: /TIMER_FRIENDLY/ });
  kernel.session.pauseVcpus();
  t.notThrows(() => kernel.intro.engine.handleTimer());
  kernel.session.resumeVcpus();
});
