/**
 * Goal: descriptor-table exits follow IntHandleDtrViolation: the bytes at RIP must still be a
 * descriptor-table instruction (else retry), a register operand is let through untouched, a
 * memory operand goes through the EPT memory-access hooks first — before any DTR hook, since the
 * exit comes before the CPU checked EPT and the hypervisor's emulation would not — and only an
 * LIDT/LGDT that changes an already set-up register reaches the DTR hooks, whose actions combine
 * by priority. Method: a tiny kernel whose own LIDT/LGDT/SGDT/LTR exit (ExitControl.dtr), GPA
 * hooks on the operand's page, DTR hooks through the scenario API, the vCPU's registers and
 * memory read afterwards.
 */
import test from 'ava';
import { ax, eax, ebx, ripRel, type Assembler } from '../../src/asm/index.ts';
import { DescriptorAccess, type DescriptorTable, type DtrLoad } from '../../src/intro/callbacks/register-hooks.ts';
import { ScenarioEngine } from '../../src/intro/extension.ts';
import { DEFAULT_FIXES } from '../../src/intro/fixes.ts';
import { IntStatus, IntroAction, type IntroActionName } from '../../src/intro/status.ts';
import { ExitControl } from '../../src/machine/layout.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import { DATA, DATA_GPA, KBASE, KGPA, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';
import { GDT, IDT } from '../support/test-machine.ts';

/** Where the guest's table operands live: a kernel data page the tests hook. */
const OPERAND = DATA + 0x10n;
const OPERAND_GPA = DATA_GPA + 0x10;
const IDT_LIMIT = 256 * 16 - 1;
const NEW_TABLE: DescriptorTable = { base: 0xfffff80000206000n, limit: 0x7ff };

interface DtrRun {
  readonly kernel: MiniKernel;
  readonly scenario: ScenarioEngine;
  /** Runs to the VMCALL; whether the guest went on past the instruction, and the replies to its DTR exits. */
  finish(): { readonly wentOn: boolean; readonly handled: string[] };
}

/** The guest: `body` (the instruction under test at label `dtr`), EBX = 1, VMCALL at `end`; NEW_TABLE at OPERAND. */
function dtrGuest(body: (a: Assembler) => void): DtrRun {
  const kernel = miniKernel((a) => {
    a.xor(ebx, ebx);
    body(a);
    a.mov(ebx, 1);
    a.label('end');
    a.vmcall();
  }, { exitControls: ExitControl.dtr });
  const memory = kernel.test.machine.memory;
  memory.write16(OPERAND_GPA, NEW_TABLE.limit);
  memory.write64(OPERAND_GPA + 2, NEW_TABLE.base);
  return {
    kernel,
    scenario: new ScenarioEngine(kernel.intro.engine, DEFAULT_FIXES),
    finish() {
      kernel.runToEnd();
      const state = kernel.test.state(0);
      return {
        wentOn: state.gpr('rbx') === 1n && state.rip === kernel.code.addressOf('end'),
        handled: kernel.events.flatMap((e) => (e.kind === 'handle' && e.reason === 'dtr' ? [e.action] : [])),
      };
    },
  };
}

function lidt(a: Assembler): void {
  a.label('dtr');
  a.lidt(ripRel(OPERAND));
}

function lgdt(a: Assembler): void {
  a.label('dtr');
  a.lgdt(ripRel(OPERAND));
}

function idtr(run: DtrRun): DescriptorTable {
  const state = run.kernel.test.state(0);
  return { base: state.get64('idtrBase'), limit: state.get32('idtrLimit') };
}

/** A write hook, then a read hook (read-only hooks alone are an EPT misconfiguration) on the operand. */
function hookOperand(run: DtrRun, read: () => IntroActionName, write: () => IntroActionName = () => 'allowed'): void {
  run.scenario.hook({ gpa: OPERAND_GPA, length: 10, type: 'write', owner: 'operand write', callback: write });
  run.scenario.hook({ gpa: OPERAND_GPA, length: 10, type: 'read', owner: 'operand read', callback: read });
  run.kernel.session.ept.flush();
}

const decisions = (run: DtrRun): unknown[] => run.kernel.notes('dtr').map((n) => n.decision);

test('LIDT allowed by a DTR hook loads IDTR once; the hook saw the old and new table', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  const seen: Array<Pick<DtrLoad, 'vcpuId' | 'register' | 'access' | 'oldValue' | 'newValue'>> = [];
  run.scenario.dtrHook({
    register: 'idtr',
    owner: 'log',
    callback: ({ vcpuId, register, access, oldValue, newValue }) => (seen.push({ vcpuId, register, access, oldValue, newValue }), 'allowed'),
  });
  const { wentOn, handled } = run.finish();
  t.deepEqual(idtr(run), NEW_TABLE);
  t.true(wentOn);
  t.deepEqual(handled, ['allowed'], 'one exit: the allowed LIDT was carried out, not re-run into the same exit');
  t.deepEqual(seen, [{ vcpuId: 0, register: 'idtr', access: DescriptorAccess.idtr | DescriptorAccess.write, oldValue: { base: IDT, limit: IDT_LIMIT }, newValue: NEW_TABLE }]);
});

test('LIDT and LGDT denied by their DTR hook are skipped and the register keeps its table', (t) => {
  for (const [register, body] of [['idtr', lidt], ['gdtr', lgdt]] as const) {
    const run = dtrGuest(body);
    const field = register === 'idtr' ? 'idtrBase' : 'gdtrBase';
    const before = run.kernel.test.state(0).get64(field);
    let calls = 0;
    run.scenario.dtrHook({ register, owner: 'deny', callback: () => (calls++, 'notAllowed') });
    const { wentOn, handled } = run.finish();
    run.kernel.session.close();
    t.is(run.kernel.test.state(0).get64(field), before, register);
    t.true(wentOn, `${register}: RIP moved past the load`);
    t.deepEqual(handled, ['notAllowed']);
    t.is(calls, 1);
  }
});

test('a hook on IDTR is not called for LGDT (hooks match the exit\'s access flags exactly)', (t) => {
  const run = dtrGuest(lgdt);
  t.teardown(() => run.kernel.session.close());
  let calls = 0;
  run.scenario.dtrHook({ register: 'idtr', owner: 'idtr only', callback: () => (calls++, 'notAllowed') });
  run.finish();
  t.is(calls, 0);
  t.is(run.kernel.test.state(0).get64('gdtrBase'), NEW_TABLE.base);
});

test('the EPT hooks on the operand run before the DTR hooks', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  const order: string[] = [];
  hookOperand(run, () => (order.push('memory read'), 'allowed'));
  run.scenario.dtrHook({ register: 'idtr', owner: 'dtr', callback: () => (order.push('dtr'), 'allowed') });
  run.finish();
  t.deepEqual(order, ['memory read', 'dtr']);
  t.deepEqual(idtr(run), NEW_TABLE, 'allowed by both: loaded, although the operand page is read-protected in EPT');
});

test('an EPT hook on the operand that denies the read decides: the DTR hooks are not asked', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  let dtrCalls = 0;
  hookOperand(run, () => 'notAllowed');
  run.scenario.dtrHook({ register: 'idtr', owner: 'dtr', callback: () => (dtrCalls++, 'allowed') });
  const { wentOn, handled } = run.finish();
  t.is(dtrCalls, 0);
  t.deepEqual(idtr(run), { base: IDT, limit: IDT_LIMIT });
  t.true(wentOn);
  t.deepEqual(handled, ['notAllowed']);
  t.deepEqual(decisions(run), ['memory']);
});

test('SGDT stores through the EPT write hooks of its operand: denied, memory is untouched; allowed, it is written', (t) => {
  for (const answer of ['notAllowed', 'allowed'] as const) {
    const run = dtrGuest((a) => {
      a.label('dtr');
      a.sgdt(ripRel(OPERAND));
    });
    let writes = 0;
    hookOperand(run, () => 'allowed', () => (writes++, answer));
    const gdtLimit = run.kernel.test.state(0).get32('gdtrLimit');
    const { wentOn } = run.finish();
    const memory = run.kernel.test.machine.memory;
    const stored = { base: memory.read64(OPERAND_GPA + 2), limit: memory.read16(OPERAND_GPA) };
    run.kernel.session.close();
    t.is(writes, 1, answer);
    t.true(wentOn, answer);
    t.deepEqual(stored, answer === 'allowed' ? { base: GDT, limit: gdtLimit } : NEW_TABLE, answer);
  }
});

test('LTR with a register operand touches no memory: it is let through without asking any hook', (t) => {
  const run = dtrGuest((a) => {
    a.mov(eax, Selector.tss);
    a.label('dtr');
    a.ltr(ax);
  });
  t.teardown(() => run.kernel.session.close());
  let calls = 0;
  run.kernel.intro.engine.registerHooks.dtr.set(DescriptorAccess.tr | DescriptorAccess.write, () => (calls++, { status: IntStatus.success, action: IntroAction.notAllowed }), 'tr');
  const { wentOn, handled } = run.finish();
  t.is(calls, 0);
  t.true(wentOn);
  t.deepEqual(handled, ['allowed']);
  t.deepEqual(decisions(run), ['register-operand']);
  t.is((run.kernel.test.read64(GDT + BigInt(Selector.tss)) >> 40n) & 0xfn, 0xbn, 'LTR ran: its TSS descriptor is busy');
});

test('a first load over a null IDTR is its initialisation: allowed without asking the DTR hooks', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  run.kernel.test.state(0).set64('idtrBase', 0n);
  run.kernel.test.state(0).set32('idtrLimit', 0);
  let calls = 0;
  run.scenario.dtrHook({ register: 'idtr', owner: 'deny', callback: () => (calls++, 'notAllowed') });
  run.finish();
  t.is(calls, 0);
  t.deepEqual(idtr(run), NEW_TABLE);
  t.deepEqual(decisions(run), ['initialisation']);
});

test('reloading the table a register already holds is allowed without asking the DTR hooks', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  run.kernel.test.state(0).set64('idtrBase', NEW_TABLE.base);
  run.kernel.test.state(0).set32('idtrLimit', NEW_TABLE.limit);
  let calls = 0;
  run.scenario.dtrHook({ register: 'idtr', owner: 'deny', callback: () => (calls++, 'notAllowed') });
  const { handled } = run.finish();
  t.is(calls, 0);
  t.deepEqual(handled, ['allowed']);
  t.deepEqual(decisions(run), ['unchanged']);
});

test('two DTR hooks are both called in order and the stronger action wins', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  const order: string[] = [];
  run.scenario.dtrHook({ register: 'idtr', owner: 'deny', callback: () => (order.push('deny'), 'notAllowed') });
  run.scenario.dtrHook({ register: 'idtr', owner: 'allow', callback: () => (order.push('allow'), 'allowed') });
  const { handled } = run.finish();
  t.deepEqual(order, ['deny', 'allow']);
  t.deepEqual(handled, ['notAllowed']);
  t.deepEqual(idtr(run), { base: IDT, limit: IDT_LIMIT });
});

test('a DTR hook that removes itself is not called again and leaves its list after the walk', (t) => {
  const run = dtrGuest((a) => {
    lidt(a);
    a.lidt(ripRel(OPERAND + 0x10n)); // a second, different table
  });
  t.teardown(() => run.kernel.session.close());
  const memory = run.kernel.test.machine.memory;
  memory.write16(OPERAND_GPA + 0x10, 0xff);
  memory.write64(OPERAND_GPA + 0x12, 0xfffff80000207000n);
  let calls = 0;
  const hook = run.scenario.dtrHook({ register: 'idtr', owner: 'once', callback: () => (calls++, { status: IntStatus.removeHookOnRet, action: IntroAction.allowed }) });
  const { handled } = run.finish();
  t.is(calls, 1);
  t.true(hook.deleted);
  t.deepEqual(handled, ['allowed', 'allowed']);
  t.deepEqual(idtr(run), { base: 0xfffff80000207000n, limit: 0xff });
});

test('with no DTR hook a load is allowed (HVMI\'s DTR handler has no NOT_FOUND)', (t) => {
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  const { handled } = run.finish();
  t.deepEqual(handled, ['allowed']);
  t.deepEqual(idtr(run), NEW_TABLE);
  t.like(run.kernel.notes('dtr')[0], { decision: 'hooks', action: 'allowed' });
});

test('an exit whose bytes are no longer a descriptor-table instruction is retried', (t) => {
  // Method: stop the vCPU at its LIDT exit, overwrite the LIDT with NOPs (as another vCPU could
  // while the exit waits), then hand the exit to the engine.
  const run = dtrGuest(lidt);
  t.teardown(() => run.kernel.session.close());
  const { session, code } = run.kernel;
  while (!session.pendingExits().includes(0)) session.runSlice(0, 1000);
  run.kernel.test.machine.memory.write(Number(code.addressOf('dtr') - KBASE) + KGPA, new Uint8Array(7).fill(0x90));
  const { wentOn, handled } = run.finish();
  t.deepEqual(handled, ['retry']);
  t.deepEqual(decisions(run), ['not-descriptor']);
  t.true(wentOn);
  t.deepEqual(idtr(run), { base: IDT, limit: IDT_LIMIT }, 'the NOPs ran instead');
});
