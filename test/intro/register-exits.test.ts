/**
 * Goal: MSR, CR and XCR write exits go through HVMI's handlers (IntHandleMsrViolation,
 * IntHandleCrWrite, IntHandleXcrWrite): the hooks on that register are called in order with the
 * write, their actions combine by priority, allowed lets the write happen once (the instruction
 * does not exit again on the same control), notAllowed skips it, a callback can remove its own
 * hook (deleted after the walk), and a register nobody hooks is NOT_FOUND and written. Method: a
 * tiny kernel on a real inline session whose own WRMSR / MOV CR4 / XSETBV raise the exits; hooks
 * placed through the scenario API; the vCPU's registers read after it ran to its VMCALL.
 */
import test from 'ava';
import { cr4, eax, ebx, ecx, edx, rax, type Assembler } from '../../src/asm/index.ts';
import type { CallbackResult } from '../../src/intro/gpa-hooks.ts';
import { ScenarioEngine, type RegisterWriteCallback } from '../../src/intro/extension.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';
import type { CrWrite, MsrWrite, XcrWrite } from '../../src/intro/callbacks/register-hooks.ts';
import { IntStatus, IntroAction, type IntroActionName } from '../../src/intro/status.ts';
import { ExitControl } from '../../src/machine/layout.ts';
import type { Field64 } from '../../src/machine/vcpu-state.ts';
import { miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

const LSTAR = 0xc0000082;
const LSTAR_BEFORE = 0xfffff80000200000n;
const LSTAR_AFTER = 0xfffff80000201234n;
const CR4_PAE = 0x20n;
const CR4_PGE = 0x80n;
const CR4_OSXSAVE = 0x40000n;

/** One kind of register write, as the tests below exercise it. */
interface WriteKind<W> {
  readonly name: string;
  readonly exitControls: number;
  readonly reason: string;
  readonly field: Field64;
  readonly before: bigint;
  readonly after: bigint;
  /** The guest: the write `times` times, then EBX = 1 (it went on past them), then VMCALL at label `end`. */
  readonly guest: (a: Assembler, times: number) => void;
  readonly hook: (engine: ScenarioEngine, owner: string, callback: RegisterWriteCallback<W>) => { readonly disabled: boolean; readonly deleted: boolean };
  /** The register and values a callback must see. */
  readonly seen: (write: W) => unknown;
  readonly expectedSeen: unknown;
  readonly note: string;
}

const msrKind: WriteKind<MsrWrite> = {
  name: 'WRMSR IA32_LSTAR',
  exitControls: ExitControl.msrWrite,
  reason: 'msrWrite',
  field: 'lstar',
  before: LSTAR_BEFORE,
  after: LSTAR_AFTER,
  guest: (a, times) => {
    for (let k = 0; k < times; k++) {
      a.mov(ecx, LSTAR);
      a.mov(eax, Number(LSTAR_AFTER & 0xffffffffn));
      a.mov(edx, Number(LSTAR_AFTER >> 32n) | 0);
      a.wrmsr();
    }
  },
  hook: (engine, owner, callback) => engine.msrHook({ msr: LSTAR, owner, callback }),
  seen: (write) => ({ vcpu: write.vcpuId, msr: write.msr, oldValue: write.oldValue, newValue: write.newValue }),
  expectedSeen: { vcpu: 0, msr: LSTAR, oldValue: LSTAR_BEFORE, newValue: LSTAR_AFTER },
  note: 'msr-write',
};

const crKind: WriteKind<CrWrite> = {
  name: 'MOV CR4 (PGE set)',
  exitControls: ExitControl.crWrite4,
  reason: 'crWrite',
  field: 'cr4',
  before: CR4_PAE,
  after: CR4_PAE | CR4_PGE,
  guest: (a, times) => {
    for (let k = 0; k < times; k++) {
      a.mov(rax, cr4);
      a.or(eax, Number(CR4_PGE));
      a.mov(cr4, rax);
    }
  },
  hook: (engine, owner, callback) => engine.crHook({ cr: 4, owner, callback }),
  seen: (write) => ({ vcpu: write.vcpuId, cr: write.cr, oldValue: write.oldValue, newValue: write.newValue }),
  expectedSeen: { vcpu: 0, cr: 4, oldValue: CR4_PAE, newValue: CR4_PAE | CR4_PGE },
  note: 'cr-write',
};

const xcrKind: WriteKind<XcrWrite> = {
  name: 'XSETBV XCR0',
  exitControls: ExitControl.xcrWrite,
  reason: 'xcrWrite',
  field: 'xcr0',
  before: 0n,
  after: 1n,
  guest: (a, times) => {
    // XSETBV needs CR4.OSXSAVE; MOV CR4 does not exit here (only XSETBV is intercepted).
    a.mov(rax, cr4);
    a.or(eax, Number(CR4_OSXSAVE));
    a.mov(cr4, rax);
    for (let k = 0; k < times; k++) {
      a.xor(ecx, ecx);
      a.mov(eax, 1);
      a.xor(edx, edx);
      a.xsetbv();
    }
  },
  hook: (engine, owner, callback) => engine.xcrHook({ owner, callback }),
  seen: (write) => ({ vcpu: write.vcpuId, xcr: write.xcr, oldValue: write.oldValue, newValue: write.newValue }),
  expectedSeen: { vcpu: 0, xcr: 0, oldValue: 0n, newValue: 1n },
  note: 'xcr-write',
};

interface Run {
  readonly kernel: MiniKernel;
  readonly scenario: ScenarioEngine;
}

function writeGuest<W>(kind: WriteKind<W>, times = 1): Run {
  const kernel = miniKernel((a) => {
    a.xor(ebx, ebx);
    kind.guest(a, times);
    a.mov(ebx, 1);
    a.label('end');
    a.vmcall();
  }, { exitControls: kind.exitControls });
  kernel.test.state(0).set64('lstar', LSTAR_BEFORE);
  return { kernel, scenario: new ScenarioEngine(kernel.intro.engine, DEFAULT_FIXES) };
}

function finish<W>(run: Run, kind: WriteKind<W>): { readonly value: bigint; readonly wentOn: boolean; readonly exits: number; readonly handled: string[] } {
  run.kernel.runToEnd();
  const state = run.kernel.test.state(0);
  return {
    value: state.get64(kind.field),
    wentOn: state.gpr('rbx') === 1n && state.rip === run.kernel.code.addressOf('end'),
    exits: run.kernel.events.filter((e) => e.kind === 'stop' && e.reason === kind.reason).length,
    handled: run.kernel.events.flatMap((e) => (e.kind === 'handle' && e.reason === kind.reason ? [e.action] : [])),
  };
}

function registerTests<W>(kind: WriteKind<W>): void {
  test(`${kind.name}: a hook that allows it lets the write happen once, without a second exit`, (t) => {
    const run = writeGuest(kind);
    t.teardown(() => run.kernel.session.close());
    let calls = 0;
    kind.hook(run.scenario, 'allow', () => (calls++, 'allowed'));
    const result = finish(run, kind);
    t.is(result.value, kind.after, 'the register holds the new value');
    t.true(result.wentOn, 'the guest went on to its VMCALL');
    t.is(result.exits, 1, 'the allowed instruction was carried out, not re-run into the same exit');
    t.deepEqual(result.handled, ['allowed']);
    t.is(calls, 1);
  });

  test(`${kind.name}: a hook that denies it skips the instruction and the register keeps its value`, (t) => {
    const run = writeGuest(kind);
    t.teardown(() => run.kernel.session.close());
    kind.hook(run.scenario, 'deny', () => 'notAllowed');
    const result = finish(run, kind);
    t.is(result.value, kind.before);
    t.true(result.wentOn, 'RIP moved past the write');
    t.deepEqual(result.handled, ['notAllowed']);
  });

  test(`${kind.name}: the callback sees the vCPU, the register, and its old and new value`, (t) => {
    const run = writeGuest(kind);
    t.teardown(() => run.kernel.session.close());
    const seen: unknown[] = [];
    kind.hook(run.scenario, 'log', (write) => (seen.push(kind.seen(write)), 'allowed'));
    finish(run, kind);
    t.deepEqual(seen, [kind.expectedSeen]);
    t.like(run.kernel.notes(kind.note)[0], { vcpu: 0, status: 'success (0x0)', action: 'allowed' });
  });

  test(`${kind.name}: two hooks are both called in order and the stronger action wins`, (t) => {
    for (const answers of [['allowed', 'notAllowed'], ['notAllowed', 'allowed']] as const) {
      const run = writeGuest(kind);
      const order: string[] = [];
      answers.forEach((answer, k) => kind.hook(run.scenario, `hook ${k}`, () => (order.push(`${k}:${answer}`), answer as IntroActionName)));
      const result = finish(run, kind);
      run.kernel.session.close();
      t.deepEqual(order, [`0:${answers[0]}`, `1:${answers[1]}`]);
      t.is(result.value, kind.before, `${answers.join(' + ')}: denied`);
      t.deepEqual(result.handled, ['notAllowed']);
    }
  });

  test(`${kind.name}: a callback that removes its own hook is not called again; the hook leaves its list after the walk`, (t) => {
    const run = writeGuest(kind, 2);
    t.teardown(() => run.kernel.session.close());
    let selfCalls = 0;
    let otherCalls = 0;
    const duringWalk: Array<{ readonly disabled: boolean; readonly deleted: boolean }> = [];
    const removeOnReturn: CallbackResult = { status: IntStatus.removeHookOnRet, action: IntroAction.allowed };
    const self = kind.hook(run.scenario, 'once', () => (selfCalls++, removeOnReturn));
    kind.hook(run.scenario, 'after', () => {
      otherCalls++;
      duringWalk.push({ disabled: self.disabled, deleted: self.deleted });
      return 'allowed';
    });
    const result = finish(run, kind);
    t.is(selfCalls, 1);
    t.is(otherCalls, 2);
    t.deepEqual(duringWalk[0], { disabled: true, deleted: false }, 'flagged, still in the list while its walk goes on');
    t.true(self.deleted, 'deleted once the walk was over');
    t.is(result.value, kind.after);
  });

  test(`${kind.name}: with no hook on the register the exit is NOT_FOUND and the write happens`, (t) => {
    const run = writeGuest(kind);
    t.teardown(() => run.kernel.session.close());
    const result = finish(run, kind);
    t.is(result.value, kind.after);
    t.deepEqual(result.handled, ['allowed']);
    t.like(run.kernel.notes(kind.note)[0], { status: 'notFound (0xe1000507)', action: 'allowed' });
  });
}

registerTests(msrKind);
registerTests(crKind);
registerTests(xcrKind);

test('CR4 bit changes: a hook can let one bit change through and refuse another', (t) => {
  // Method: the guest sets PGE, then SMEP; the hook refuses any write that turns SMEP on.
  const kernel = miniKernel((a) => {
    a.mov(rax, cr4);
    a.or(eax, Number(CR4_PGE));
    a.mov(cr4, rax);
    a.or(eax, 0x100000);
    a.mov(cr4, rax);
    a.vmcall();
  }, { exitControls: ExitControl.crWrite4 });
  t.teardown(() => kernel.session.close());
  const scenario = new ScenarioEngine(kernel.intro.engine, DEFAULT_FIXES);
  const changes: bigint[] = [];
  scenario.crHook({
    cr: 4,
    owner: 'smep guard',
    callback: (write) => {
      changes.push(write.oldValue ^ write.newValue);
      return (write.newValue & 0x100000n) !== 0n ? 'notAllowed' : 'allowed';
    },
  });
  kernel.runToEnd();
  t.deepEqual(changes, [CR4_PGE, 0x100000n], 'each write showed the bit it flips');
  t.is(kernel.test.state(0).get64('cr4'), CR4_PAE | CR4_PGE);
});

test('register hooks a scenario placed are removed when the engine unloads', (t) => {
  const run = writeGuest(msrKind);
  t.teardown(() => run.kernel.session.close());
  const hooks = [
    run.scenario.msrHook({ msr: LSTAR, owner: 'msr', callback: () => 'allowed' }),
    run.scenario.crHook({ cr: 4, owner: 'cr', callback: () => 'allowed' }),
    run.scenario.xcrHook({ owner: 'xcr', callback: () => 'allowed' }),
    run.scenario.dtrHook({ register: 'idtr', owner: 'dtr', callback: () => 'allowed' }),
  ];
  t.is(run.kernel.intro.engine.registerHooks.liveHooks().length, 4);
  run.kernel.runToEnd();
  t.is(run.kernel.intro.unload().state, 'unloaded');
  t.deepEqual(run.kernel.intro.engine.registerHooks.liveHooks(), []);
  t.true(hooks.every((hook) => hook.disabled && hook.deleted));
});

test('a register hook removed through the scenario API outside a walk leaves its list at once', (t) => {
  const run = writeGuest(msrKind);
  t.teardown(() => run.kernel.session.close());
  let calls = 0;
  const hook = run.scenario.msrHook({ msr: LSTAR, owner: 'gone', callback: () => (calls++, 'notAllowed') });
  run.scenario.removeRegisterHook(hook);
  t.true(hook.deleted);
  const result = finish(run, msrKind);
  t.is(calls, 0);
  t.is(result.value, LSTAR_AFTER);
});
