/**
 * Goal: the EPT-violation pipeline follows HVMI's order and rules — TOCTOU retry for a freshly
 * cached instruction, every accessed address analysed, actions combined by priority, the icache
 * flushed by guest writes to cached code but not by the hypervisor's own writes, and hooks removed
 * inside callbacks only flagged until the commit. Method: a tiny kernel image on a real inline
 * session; the guest's own instructions raise the violations.
 */
import test from 'ava';
import { byte, dword, eax, ebx, qword, rax, ripRel } from '../../src/asm/index.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { HookType, type CallbackResult } from '../../src/intro/gpa-hooks.ts';
import { IntStatus, IntroAction } from '../../src/intro/status.ts';
import { ExitControl } from '../../src/machine/layout.ts';
import { DATA, DATA_GPA, KBASE, KGPA, STACK_TOP, TEXT, miniKernel } from '../support/mini-kernel.ts';

const allow: CallbackResult = { status: IntStatus.success, action: IntroAction.allowed };

/** Read-hooks the first data page (a write hook first: read-only hooks alone are an EPT misconfiguration). */
function hookDataReads(kernel: ReturnType<typeof miniKernel>, callback: () => CallbackResult = () => allow): void {
  const hooks = kernel.intro.engine.hooks;
  hooks.set(DATA_GPA, 0x1000, HookType.write, () => allow, 'test');
  hooks.set(DATA_GPA, 0x1000, HookType.read, callback, 'test');
  kernel.session.ept.flush();
}

test('an instruction just added to the icache is retried, and analysed on its next fault (TOCTOU rule)', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(eax, dword(ripRel(DATA)));
    a.mov(eax, dword(ripRel(DATA + 4n)));
    a.vmcall();
  });
  t.teardown(() => kernel.session.close());
  let calls = 0;
  hookDataReads(kernel, () => (calls++, allow));
  kernel.runToEnd();
  t.is(calls, 2, 'each load was analysed once');
  t.is(kernel.intro.engine.stats.retries.toctou, 2);
  t.deepEqual(kernel.notes('decode').map((n) => n.cached), [false, true, false, true]);
});

test('with the TOCTOU fix off, a freshly decoded instruction is analysed at once', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(eax, dword(ripRel(DATA)));
    a.vmcall();
  }, { fixes: fixesWithout(['toctouRetry']) });
  t.teardown(() => kernel.session.close());
  let calls = 0;
  hookDataReads(kernel, () => (calls++, allow));
  kernel.runToEnd();
  t.is(calls, 1);
  t.is(kernel.intro.engine.stats.retries.toctou, 0);
  t.deepEqual(kernel.notes('decode').map((n) => n.cached), [false]);
});

test('a guest write to a page with cached code flushes it; the hypervisor writing there does not', (t) => {
  const kernel = miniKernel((a) => {
    const top = a.newLabel('top');
    const done = a.newLabel('done');
    const scratch = a.newLabel('scratch');
    a.xor(ebx, ebx);
    a.bind(top);
    a.mov(eax, dword(ripRel(DATA)));
    a.inc(ebx);
    a.cmp(ebx, 2);
    a.je(done);
    a.mov(byte(ripRel(scratch)), 0x90); // the guest writes into its own (cached) code page
    a.jmp(top);
    a.bind(done);
    a.vmcall();
    a.bind(scratch);
    a.db(0);
  });
  t.teardown(() => kernel.session.close());
  hookDataReads(kernel);
  kernel.runToEnd();
  const engine = kernel.intro.engine;
  t.is(engine.icache.stats.writeHookFlushes, 1, 'the EPT write hook of the cached page fired once');
  const loads = kernel.notes('decode').filter((n) => n.ins === 'mov');
  // load (miss, hit), store (miss, hit → flushes the page), load again: miss, hit.
  t.deepEqual(loads.map((n) => n.cached), [false, true, false, true, false, true]);
  t.is(kernel.test.machine.memory.read(KGPA + 0x1000 + kernel.code.bytes.length - 1, 1)[0], 0x90, 'the write was allowed');

  // The hypervisor rewrites the cached load's displacement through its own mapping: no EPT write
  // hook fires, so the icache keeps the old instruction — stale.
  const top = kernel.code.addressOf('top');
  const cached = engine.icache.lookup(top, 0n);
  t.truthy(cached);
  const topGpa = KGPA + 0x1000 + Number(top - TEXT);
  kernel.session.memory.write(topGpa + 2, Uint8Array.of(0x42)); // 8b 05 <disp32>: low byte of disp
  t.is(engine.icache.stats.writeHookFlushes, 1, 'no flush');
  const again = engine.icache.lookup(top, 0n);
  t.is(again, cached, 'still the instruction decoded before the hypervisor wrote');
  t.notDeepEqual(Array.from(again!.bytes), Array.from(kernel.session.memory.read(topGpa, again!.length)), 'and memory now differs from it');
});

test('PUSH [mem] analyses both the read and the stack write; the denying callback wins', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(rax, DATA);
    a.push(qword(rax, 0));
    a.vmcall();
  });
  t.teardown(() => kernel.session.close());
  const calls: string[] = [];
  hookDataReads(kernel, () => (calls.push('read'), allow));
  const stackPage = Number(STACK_TOP - 0x1000n - KBASE) + KGPA;
  kernel.intro.engine.hooks.set(stackPage, 0x1000, HookType.write, () => (calls.push('stack write'), { status: IntStatus.success, action: IntroAction.notAllowed }), 'test');
  kernel.session.ept.flush();
  const rsp = kernel.test.state(0).gpr('rsp');
  kernel.runToEnd();
  t.deepEqual(calls, ['read', 'stack write']);
  t.is(kernel.test.state(0).gpr('rsp'), rsp, 'notAllowed skipped the PUSH: RSP unchanged');
  t.deepEqual(kernel.events.filter((e) => e.kind === 'handle' && e.reason === 'eptViolation').map((e) => (e.kind === 'handle' ? e.action : '')), ['retry', 'notAllowed']);
});

test('analyseEveryAddress off: only the exit\'s GLA is analysed, the PUSH is allowed and its stack write lands unchecked', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(rax, DATA);
    a.push(qword(rax, 0));
    a.vmcall();
  }, { fixes: fixesWithout(['analyseEveryAddress']) });
  t.teardown(() => kernel.session.close());
  const calls: string[] = [];
  hookDataReads(kernel, () => (calls.push('read'), allow));
  kernel.session.memory.write(DATA_GPA, Uint8Array.of(0x77));
  const stackPage = Number(STACK_TOP - 0x1000n - KBASE) + KGPA;
  kernel.intro.engine.hooks.set(stackPage, 0x1000, HookType.write, () => (calls.push('stack write'), { status: IntStatus.success, action: IntroAction.notAllowed }), 'test');
  kernel.session.ept.flush();
  const rsp = kernel.test.state(0).gpr('rsp');
  kernel.runToEnd();
  t.deepEqual(calls, ['read']);
  t.is(kernel.test.state(0).gpr('rsp'), rsp - 8n, 'the whole PUSH ran');
  t.is(kernel.session.memory.read(stackPage + Number((rsp - 8n) & 0xfffn), 1)[0], 0x77, 'into the write-protected stack page');
});

test('a callback removing its own hook and a sibling: the sibling is never called, both go at the commit', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(eax, dword(ripRel(DATA)));
    a.mov(eax, dword(ripRel(DATA + 8n)));
    a.vmcall();
  });
  t.teardown(() => kernel.session.close());
  const hooks = kernel.intro.engine.hooks;
  const calls: string[] = [];
  hooks.set(DATA_GPA, 0x1000, HookType.write, () => allow, 'test');
  const sibling = { hook: null as ReturnType<typeof hooks.set> | null };
  hooks.set(DATA_GPA, 0x1000, HookType.read, () => {
    calls.push('first');
    hooks.remove(sibling.hook!);
    return { status: IntStatus.removeHookOnRet, action: IntroAction.allowed };
  }, 'first');
  sibling.hook = hooks.set(DATA_GPA, 0x1000, HookType.read, () => (calls.push('sibling'), allow), 'sibling');
  kernel.session.ept.flush();
  kernel.runToEnd();
  t.deepEqual(calls, ['first'], 'flagged in the same walk: the sibling is skipped');
  t.is(hooks.liveHooks().filter((h) => h.type === HookType.read).length, 0);
  t.is(hooks.pendingRemovals(HookType.read), 0, 'the commit after that handler deleted both');
  t.is(kernel.intro.commitState, 'clean');
  // The second load ran without a read violation: the page is readable again.
  t.is(kernel.notes('decode').length, 2, 'only the first load faulted (miss, then analysed)');
});

test('commit deletes read hooks before write hooks; the other order would be write-without-read', (t) => {
  const kernel = miniKernel((a) => a.vmcall());
  t.teardown(() => kernel.session.close());
  const hooks = kernel.intro.engine.hooks;
  const write = hooks.set(DATA_GPA, 0x1000, HookType.write, () => allow, 'w');
  const read = hooks.set(DATA_GPA, 0x1000, HookType.read, () => allow, 'r');
  t.is(kernel.session.ept.rightsAt(DATA_GPA), HookType.execute);
  hooks.remove(write);
  hooks.remove(read);
  const rights: number[] = [];
  kernel.events.length = 0;
  kernel.intro.commit();
  for (const event of kernel.events) if (event.kind === 'ept' && event.gpa === DATA_GPA) rights.push(event.rights);
  t.deepEqual(rights, [HookType.read | HookType.execute, 7], 'read comes back first, then write');

  const w2 = hooks.set(DATA_GPA, 0x1000, HookType.write, () => allow, 'w');
  hooks.set(DATA_GPA, 0x1000, HookType.read, () => allow, 'r');
  hooks.remove(w2);
  t.throws(() => kernel.intro.commit(), { message: /write without read is an EPT misconfiguration/ });
});

test('a read hook placed before any write hook is refused as an EPT misconfiguration', (t) => {
  const kernel = miniKernel((a) => a.vmcall());
  t.teardown(() => kernel.session.close());
  t.throws(() => kernel.intro.engine.hooks.set(DATA_GPA, 16, HookType.read, () => allow, 'r'), { message: /write without read/ });
});

test('an INT3 exit whose breakpoint was removed while it waited re-runs what is there; a real INT3 goes back to the guest', (t) => {
  const kernel = miniKernel((a) => {
    a.label('removed');
    a.int3();
    a.label('real');
    a.int3();
    a.mov(eax, 7);
    a.vmcall();
    a.label('guestBreakpointHandler');
    a.mov(ebx, 0x33);
    a.iretq();
  }, { exitControls: ExitControl.int3 });
  t.teardown(() => kernel.session.close());
  kernel.test.setGate(3, kernel.code.addressOf('guestBreakpointHandler'));
  t.is(kernel.session.runSlice(0, 100), 'exit');
  // The engine (on another vCPU, say) removed the breakpoint before this exit got the lock.
  kernel.session.memory.write(KGPA + 0x1000, Uint8Array.of(0x90));
  t.is(kernel.session.handleExit(0).action, 'retry');
  t.deepEqual(kernel.notes('breakpoint-gone').map((n) => n.rip), [kernel.code.addressOf('removed')]);
  kernel.runToEnd();
  t.deepEqual(kernel.notes('breakpoint-reinject').map((n) => n.rip), [kernel.code.addressOf('real')]);
  t.is(kernel.test.state(0).gpr('rbx'), 0x33n, "the guest's own #BP handler ran");
  t.is(kernel.test.state(0).gpr('rax'), 7n, 'and returned past the INT3');
});

test('an exit on a page with no hook re-applies its rights (none first, then the accessed ones): a lost rights change heals', (t) => {
  const kernel = miniKernel((a) => {
    a.mov(rax, DATA + 0x10n);
    a.mov(qword(rax, 0), rax);
    a.vmcall();
  });
  t.teardown(() => kernel.session.close());
  kernel.session.ept.setRights(DATA_GPA, 0b101);
  kernel.session.ept.flush();
  kernel.runToEnd();
  t.deepEqual(kernel.notes('page-rights-revalidated'), [{ vcpu: 0, gpa: DATA_GPA, rights: 7 }]);
  t.is(kernel.session.ept.rightsAt(DATA_GPA), 7);
  t.is(kernel.test.machine.memory.read64(DATA_GPA + 0x10), DATA + 0x10n, 'the write went through');
});

test('no re-validation on RIP\'s own page: the hypervisor may be re-executing there with rights of its own', (t) => {
  const kernel = miniKernel((a) => {
    a.label('store');
    a.mov(dword(ripRel(TEXT + 0x100n)), eax);
    a.vmcall();
  }, { textBytes: 0x200 });
  t.teardown(() => kernel.session.close());
  kernel.session.ept.setRights(KGPA + 0x1000, 0b101);
  kernel.session.ept.flush();
  kernel.session.runSlice(0, 10);
  t.true(kernel.session.pendingExits().includes(0), 'the store faulted on its own page');
  kernel.session.handleExit(0);
  t.true(kernel.events.some((e) => e.kind === 'handle' && e.reason === 'eptViolation'));
  t.deepEqual(kernel.notes('page-rights-revalidated'), []);
});

for (const atReply of [false, true]) {
  test(`an allowed read is carried out ${atReply ? 'within the handling of its exit (emulateAtReply)' : 'at the vCPU\'s next slice'}`, (t) => {
    const kernel = miniKernel((a) => {
      a.label('load');
      a.mov(eax, dword(ripRel(DATA)));
      a.vmcall();
    });
    t.teardown(() => kernel.session.close());
    hookDataReads(kernel);
    kernel.session.ept.flush();
    if (atReply) kernel.session.restart({ emulateAtReply: true });
    const load = kernel.code.addressOf('load');
    // The first exit decodes into the icache and retries (TOCTOU); the second is analysed and allowed.
    for (let k = 0; k < 2; k++) {
      kernel.session.runSlice(0, 10);
      kernel.session.handleExit(0);
    }
    const after = kernel.test.state(0).rip;
    t.is(after === load, !atReply, `RIP 0x${after.toString(16)} after the allowed exit`);
  });
}
