import {
  defineScenario, dword, eax, ecx, emitCountdown, guestAlive, Hypercall, notesOf, NtGuest, qword, r12d, rax, rbx, rcx, rdx,
  type Assembler, type ManagedRange, type NtGuestBuilder, type OrderingSide, type ScenarioEngine, type SymbolResolver,
} from '../src/index.ts';

/**
 * A code page remapped under the instruction cache. A kernel function lives in a page the guest's
 * memory manager maps; a thread on vCPU 1 keeps remapping that page between two frames holding two
 * builds of the function (`mov eax,[rbx]` and `mov edx,[rbx]`, each then copied to ECX), taking a
 * lock the caller also holds, as a kernel patching live code would. The function reads a page the
 * engine cloaks: its read hook completes the load itself with the cloaked value, into the
 * destination register of the instruction it analysed — which comes from the icache.
 *
 * HVMI's icache watches the translation of every page it caches instructions from (a swap hook,
 * IntIcSwapHandler) and flushes the page when it is remapped (icacheSwapHook). Without that, the
 * remap goes unseen — no byte of either frame changes — and the engine completes `mov edx,[rbx]`
 * as the `mov eax,[rbx]` it cached: EAX gets the value, EDX keeps garbage.
 */

const CODE_GVA = 0xfffff800_40000000n;
/** Calls of the function; the page is remapped between each two (an even number of times). */
const CALLS = 21;
/** What the engine's cloak answers for the secret dword (memory holds 0). */
const CLOAKED = 0x5ec2e7;

/** The two builds: load into EAX or EDX, copy it to ECX, return. Same length, same layout. */
const BUILDS = [Uint8Array.of(0x8b, 0x03, 0x89, 0xc1, 0xc3, 0x90, 0x90, 0x90), Uint8Array.of(0x8b, 0x13, 0x89, 0xd1, 0xc3, 0x90, 0x90, 0x90)];

const rangeOf = (guest: { readonly ranges: ReadonlyMap<string, ManagedRange> }): ManagedRange => guest.ranges.get('remapped code')!;

/** Spin until the lock at `symbol('CodeLock')` is ours. */
function acquire(a: Assembler, symbol: SymbolResolver, name: string): void {
  const spin = a.newLabel(name);
  a.mov(rcx, symbol('CodeLock'));
  a.bind(spin);
  a.mov(eax, 1);
  a.xchg(dword(rcx), eax);
  a.test(eax, eax);
  a.jne(spin);
}

function release(a: Assembler, symbol: SymbolResolver): void {
  a.mov(rcx, symbol('CodeLock'));
  a.mov(dword(rcx), 0);
}

function addCallerAndRemapper(guest: NtGuestBuilder): void {
  const range = guest.managedRange('remapped code', { gva: CODE_GVA, frames: 2, mapped: 1, executable: true });
  const secret = guest.pages('secret', 1, { writable: true });
  guest.data('.rdata', 'CodeBuilds', Uint8Array.from([...BUILDS[0], ...BUILDS[1]]), { align: 8 });
  guest.data('.data', 'CodeLock', 4, { align: 4 });
  guest.data('.data', 'WrongLoads', 4, { align: 4 });
  guest.data('.data', 'CodeCalls', 4, { align: 4 });
  guest.data('.data', 'CodeRemaps', 4, { align: 4 });
  // vCPU 0: put both builds in their frames, then call the function CALLS times under the lock,
  // each time (but the last) waiting for the remapper to have moved the page once more.
  guest.code('.text', 'CodeCaller', (a, symbol) => {
    const call = a.newLabel('CodeCaller.call');
    const right = a.newLabel('CodeCaller.right');
    const wait = a.newLabel('CodeCaller.wait');
    const done = a.newLabel('CodeCaller.done');
    a.sti();
    a.mov(rcx, symbol('CodeBuilds'));
    a.mov(rax, qword(rcx));
    a.mov(rdx, range.frames.gva);
    a.mov(qword(rdx), rax);
    a.mov(rax, qword(rcx, 8));
    a.mov(qword(rdx, 0x1000), rax);
    a.xor(r12d, r12d);
    a.bind(call);
    acquire(a, symbol, 'CodeCaller.lock');
    a.mov(rax, CODE_GVA);
    a.invlpg(qword(rax));
    a.mov(rbx, secret.gva);
    a.xor(ecx, ecx);
    a.mov(rdx, 0xbadn);
    a.call(rax);
    a.cmp(ecx, CLOAKED);
    a.je(right);
    a.mov(rax, symbol('WrongLoads'));
    a.add(dword(rax), 1);
    a.bind(right);
    a.mov(rax, symbol('CodeCalls'));
    a.add(dword(rax), 1);
    release(a, symbol);
    emitCountdown(a, 'CodeCaller.work', 8);
    a.add(r12d, 1);
    a.cmp(r12d, CALLS);
    a.jae(done);
    a.mov(rax, symbol('CodeRemaps'));
    a.bind(wait);
    a.pause();
    a.cmp(dword(rax), r12d);
    a.jb(wait);
    a.jmp(call);
    a.bind(done);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  // vCPU 1: after each call, remap the code page to the other build, under the lock.
  guest.code('.text', 'CodeRemapper', (a, symbol) => {
    const flip = a.newLabel('CodeRemapper.flip');
    a.sti();
    a.xor(r12d, r12d);
    a.bind(flip);
    for (const frame of [1, 0]) {
      const called = a.newLabel(`CodeRemapper.called${frame}`);
      a.add(r12d, 1);
      a.mov(rax, symbol('CodeCalls'));
      a.bind(called);
      a.pause();
      a.cmp(dword(rax), r12d);
      a.jb(called);
      acquire(a, symbol, `CodeRemapper.lock${frame}`);
      a.mov(rbx, range.tables.gva);
      a.mov(rdx, BigInt(range.frames.gpa + frame * 0x1000) | range.leafFlags);
      a.mov(qword(rbx), rdx);
      a.mov(rax, symbol('CodeRemaps'));
      a.add(dword(rax), 1);
      release(a, symbol);
    }
    a.cmp(r12d, CALLS - 1);
    a.jb(flip);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'CodeCaller');
  guest.thread(1, 'CodeRemapper');
}

/** The engine cloaks the secret dword: a read is completed with CLOAKED, into the analysed instruction's destination. */
function cloakSecret(engine: ScenarioEngine, guest: NtGuest): void {
  const secret = guest.pools.get('secret')!;
  engine.hook({ gpa: secret.gpa, length: 4, type: 'write', owner: 'secret (write)', callback: () => 'allowed' });
  engine.hook({
    gpa: secret.gpa,
    length: 4,
    type: 'read',
    owner: 'secret (read)',
    callback: (access) => {
      const ins = access.instruction;
      const destination = ins?.operands[0]?.register ?? null;
      if (ins === null || ins.mnemonic !== 'mov' || destination === null || destination.size !== 4) return 'allowed';
      engine.note('cloaked-load', { vcpu: access.vcpuId, rip: ins.ip, ins: ins.text });
      access.emulate(() => access.self.setGpr(destination.gpr, BigInt(CLOAKED)));
      return 'allowedVirtual';
    },
  });
}

const inCodePage = (gva: string | number | bigint | boolean): boolean => typeof gva === 'bigint' && (gva & ~0xfffn) === CODE_GVA;
const ICACHE_FLUSHES = new Set(['icache-swap-flush', 'icache-write-flush', 'icache-remap-flush']);

/** The function's instruction in the icache: from the decode that filled it until its page is flushed or the entry evicted. */
const cachedCode: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'decode' && event.detail.cached === false && inCodePage(event.detail.rip) ? { key: 'code', vcpu: Number(event.detail.vcpu) } : null),
  ends: (event) => event.kind === 'note' && ((ICACHE_FLUSHES.has(event.what) && inCodePage(event.detail.page)) || (event.what === 'icache-evict' && inCodePage(event.detail.gva))),
};

export const icacheRemap = defineScenario({
  name: 'icache-remap',
  title: 'A code page remapped under the instruction cache',
  description:
    'A kernel function\'s page is remapped between two builds of it while the engine completes its loads from a cloaked ' +
    'page using the instruction it analysed. The icache must drop a page\'s instructions when its translation changes, ' +
    'or the engine completes the new build as the old one.',
  vcpus: 2,
  bugs: [{ name: 'remapped page analysed as its old code', fixesOff: ['icacheSwapHook'], caughtBy: 'loads-complete-right' }],
  // Both threads spin on a lock the other holds: fairness keeps PCT from starving the holder.
  bounds: { stepsMax: 400_000, choicesMax: 80_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 600 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addCallerAndRemapper] }),
  engine: { start: cloakSecret },
  oracles: [
    {
      name: 'loads-complete-right',
      phase: 'end',
      description: 'every cloaked load the engine completed reached the register the instruction loads',
      check(world) {
        const wrong = new DataView(world.guest.read(world.guest.symbol('WrongLoads'), 4).buffer).getUint32(0, true);
        if (wrong === 0) return null;
        const page = rangeOf(world.guest).gva;
        const flushes = notesOf(world.events, 'icache-swap-flush').length;
        return `${wrong} call(s) of the function at 0x${page.toString(16)} got the wrong value: the engine completed a load into the register of an instruction the page no longer held (${flushes} swap flush(es))`;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the caller and the remapper finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
    guestAlive(),
  ],
  orderings: [
    {
      // Unhooked, the remap itself leaves no event: the remapper running is what can be seen of it.
      name: 'cached-code-vs-remapper',
      description: "A: the function's load in the icache, from the decode that filled it until its page is flushed; B: another vCPU (the remapper) executing guest code. A during B is the window: the page can be remapped while its old instruction is cached — harmless only if the swap hook flushes it",
      a: cachedCode,
      b: { begins: (event) => (event.kind === 'stop' && event.retired > 0 ? { key: 'code', vcpu: event.vcpu } : null) },
    },
  ],
  windows: [
    {
      name: 'both-builds-completed',
      description: 'the engine completed loads of both builds',
      reached: (world) => new Set(notesOf(world.events, 'cloaked-load').map(({ event }) => String(event.detail.ins))).size > 1,
    },
  ],
});
