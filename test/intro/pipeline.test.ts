/**
 * Goal: the EPT-violation pipeline follows HVMI's order and rules — TOCTOU retry for a freshly
 * cached instruction, every accessed address analysed, actions combined by priority, the icache
 * flushed by guest writes to cached code but not by the hypervisor's own writes, and hooks removed
 * inside callbacks only flagged until the commit. Method: a tiny kernel image on a real inline
 * session; the guest's own instructions raise the violations.
 */
import test from 'ava';
import { al, byte, dword, eax, ebx, ecx, qword, rax, rdi, ripRel } from '../../src/asm/index.ts';
import { fixesWithout } from '../../src/intro/fixes.ts';
import { HookType, type CallbackResult } from '../../src/intro/gpa-hooks.ts';
import { IntStatus, IntroAction } from '../../src/intro/status.ts';
import { ExitControl } from '../../src/machine/layout.ts';
import { DATA, DATA_GPA, KBASE, KGPA, STACK_TOP, TEXT, miniKernel, type MiniKernel } from '../support/mini-kernel.ts';

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

test('an execute fault on an instruction that spills into a missing page: retried with the #PF for that page injected (step 13)', (t) => {
  const spillAt = KBASE + 0x3ffdn; //                         3 bytes before the last mapped page ends
  const kernel = miniKernel((a) => {
    a.mov(rax, spillAt);
    a.jmp(rax);
  });
  t.teardown(() => kernel.session.close());
  const spillGpa = KGPA + 0x3ffd;
  kernel.test.machine.memory.write(spillGpa, Uint8Array.of(0xb8, 0x01, 0x02)); // mov eax, imm32: 2 bytes short
  kernel.intro.engine.hooks.set(spillGpa & ~0xfff, 0x1000, HookType.execute, () => allow, 'test');
  kernel.session.ept.flush();
  kernel.session.runSlice(0, 10);
  t.true(kernel.session.pendingExits().includes(0));
  t.is(kernel.test.state(0).rip, spillAt);
  const reply = kernel.session.handleExit(0);
  t.deepEqual(reply, { action: 'retry', inject: { vector: 14, errorCode: 0x10 } });
  t.is(kernel.test.state(0).get64('cr2'), KBASE + 0x4000n);
});

test('an execute fault on a whole instruction at a page end injects nothing', (t) => {
  const at = KBASE + 0x3ffdn;
  const kernel = miniKernel((a) => {
    a.mov(rax, at);
    a.jmp(rax);
  });
  t.teardown(() => kernel.session.close());
  kernel.test.machine.memory.write(KGPA + 0x3ffd, Uint8Array.of(0x0f, 0x01, 0xc1)); // vmcall: fits
  kernel.intro.engine.hooks.set(KGPA + 0x3000, 0x1000, HookType.execute, () => allow, 'test');
  kernel.session.ept.flush();
  kernel.session.runSlice(0, 10);
  const reply = kernel.session.handleExit(0);
  t.is(reply.inject, undefined);
});

/** REP STOSB of 0x200 bytes from DATA+0x80 over a page whose bytes 0x100..0x1ff a write hook refuses; then one plain store. */
function repStore(fixesOff: string[]): { kernel: MiniKernel; refused: () => number } {
  const kernel = miniKernel((a) => {
    a.mov(rdi, DATA + 0x80n);
    a.mov(ecx, 0x200);
    a.mov(al, 0x5a);
    a.rep().stosb();
    a.mov(rax, DATA + 0x40n);
    a.mov(dword(rax, 0), eax);
    a.vmcall();
  }, { fixes: fixesWithout(fixesOff) });
  let refused = 0;
  kernel.intro.engine.hooks.set(DATA_GPA + 0x100, 0x100, HookType.write, () => (refused++, { status: IntStatus.success, action: IntroAction.notAllowed }), 'protected');
  kernel.session.ept.flush();
  return { kernel, refused: () => refused };
}

test('REP probe: a hook within RCX elements turns the REP optimisation off; one iteration at a time reaches the hook, which refuses', (t) => {
  const { kernel, refused } = repStore([]);
  t.teardown(() => kernel.session.close());
  kernel.runToEnd();
  const memory = kernel.test.machine.memory;
  t.is(kernel.notes('rep-probe-hit').length, 1);
  t.deepEqual(kernel.notes('rep-optimization'), [{ enabled: false }, { enabled: true }], 'off for the REP, on again at the next plain exit');
  t.is(refused(), 1);
  t.true(memory.read(DATA_GPA + 0x80, 0x80).every((b) => b === 0x5a), 'the iterations before the hook ran');
  t.true(memory.read(DATA_GPA + 0x100, 0x100).every((b) => b === 0), 'the protected bytes were never written');
  t.is(kernel.intro.engine.rep.disabledCount, 0);
});

test('repProbe off: the hypervisor carries out a page\'s worth on the strength of the first element, past the hook', (t) => {
  const { kernel, refused } = repStore(['repProbe']);
  t.teardown(() => kernel.session.close());
  kernel.runToEnd();
  t.is(refused(), 0);
  t.true(kernel.test.machine.memory.read(DATA_GPA + 0x100, 0x100).every((b) => b === 0x5a), 'the protected bytes were written unseen');
});
