/**
 * Goal: a VMCALL goes to the engine first (IntHandleIntroCall: its own hypercalls, which
 * scenarios register) and only what the engine does not claim reaches the guest's hypercall
 * protocol; after the engine unloads, its hypercalls are gone. Method: a tiny kernel whose VMCALLs
 * go to the integrator with a guest protocol that records what it was asked.
 */
import test from 'ava';
import { eax } from '../../src/asm/index.ts';
import { handleIntroCall } from '../../src/intro/callbacks/intro-call.ts';
import { ScenarioEngine } from '../../src/intro/extension.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';
import { IntStatus } from '../../src/intro/status.ts';
import { miniKernel } from '../support/mini-kernel.ts';

const SHARED = 0x77;
const GUEST_ONLY = 0x78;
const STOP = 0x79;

function callingGuest(guestAsked: number[]): ReturnType<typeof miniKernel> {
  return miniKernel((a) => {
    for (const code of [SHARED, GUEST_ONLY, STOP]) {
      a.mov(eax, code);
      a.vmcall();
    }
  }, {
    guestCall: (event) => {
      const rax = Number(event.self.gpr('rax'));
      guestAsked.push(rax);
      return rax === STOP ? 'stop' : 'continue';
    },
  });
}

test('an engine hypercall wins over the guest\'s for the same RAX; the rest reach the guest', (t) => {
  const guestAsked: number[] = [];
  const kernel = callingGuest(guestAsked);
  t.teardown(() => kernel.session.close());
  const engineAsked: number[] = [];
  new ScenarioEngine(kernel.intro.engine, DEFAULT_FIXES).hypercall(BigInt(SHARED), 'engine', (call) => (engineAsked.push(Number(call.self.gpr('rax'))), 'continue'));
  kernel.runToEnd();
  t.deepEqual(engineAsked, [SHARED]);
  t.deepEqual(guestAsked, [GUEST_ONLY, STOP]);
});

test('IntHandleIntroCall is NOT_FOUND for a RAX no engine hypercall answers, and none are left after the unload', (t) => {
  const guestAsked: number[] = [];
  const kernel = callingGuest(guestAsked);
  t.teardown(() => kernel.session.close());
  const engine = kernel.intro.engine;
  new ScenarioEngine(engine, DEFAULT_FIXES).hypercall(BigInt(SHARED), 'engine', () => 'continue');
  while (!kernel.session.pendingExits().includes(0)) kernel.session.runSlice(0, 1000);
  const context = { vcpuId: 0, exit: kernel.test.state(0).exit(), exitTicket: 1, self: engine.glue.vcpu(0) };
  t.like(handleIntroCall(engine, context), { status: IntStatus.success, outcome: 'continue', claimedBy: 'engine hypercall' });
  context.self.setGpr('rax', BigInt(GUEST_ONLY));
  t.like(handleIntroCall(engine, context), { status: IntStatus.notFound, outcome: null });
  context.self.setGpr('rax', BigInt(SHARED));
  t.is(kernel.intro.unload().state, 'unloaded');
  t.like(handleIntroCall(engine, context), { status: IntStatus.notFound, outcome: null }, 'the engine\'s hypercalls went with it');
});
