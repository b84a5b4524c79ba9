import {
  defineScenario, emitCountdown, dword, eax, ecx, guestAlive, Hypercall, notesOf, NtGuest, r12d, rax, rbx, rcx, rdi, rsi,
  type NtGuestBuilder, type OrderingSide, type ScenarioEngine,
} from '../src/index.ts';

/**
 * An instruction swapped while the engine analyses it — TOCTOU (hvmi-notes §13.2). A thread on
 * vCPU 0 stores into a policy page the engine write-protects; its callback allows stores to the
 * log area and refuses stores to the critical area. The store instruction lives in a writable
 * code page, and a thread on vCPU 1 keeps rewriting its displacement: log, critical, log… An
 * exit decoded and judged on the log form can be carried out by the hypervisor on the critical
 * form. HVMI's rule (toctouRetry): an instruction just decoded into the icache is not analysed —
 * the vCPU retries, and by then the icache write-protects its page, so a rewrite must itself
 * exit, and the icache drops the stale decode before the next analysis.
 */

/** Stores the writer makes. */
const STORES = 24;
/** Rewrites the patcher makes (each: to critical, pause, back to log). */
const REWRITES = 40;
const LOG = 0x10;
const CRITICAL = 0x900;
/** Where the critical area starts: the callback refuses stores from here on. */
const CRITICAL_AREA = 0x800;

/** `mov dword [rbx+disp32], eax; ret` — the displacement is at +2. */
const storeBytes = (displacement: number): Uint8Array => {
  const bytes = Uint8Array.of(0x89, 0x83, 0, 0, 0, 0, 0xc3);
  new DataView(bytes.buffer).setUint32(2, displacement, true);
  return bytes;
};
const DISPLACEMENT_AT = 2;


function addWriterAndPatcher(guest: NtGuestBuilder): void {
  const policy = guest.pages('policy', 1, { writable: true });
  const code = guest.pages('patchable-code', 1, { writable: true, executable: true });
  guest.data('.rdata', 'StoreTemplate', storeBytes(LOG), { align: 8 });
  guest.data('.data', 'PatcherReady', 4, { align: 4 });
  // vCPU 0: copy the store into the code page, tell the patcher, then call it STORES times.
  guest.code('.text', 'PolicyWriter', (a, symbol) => {
    const copy = a.newLabel('PolicyWriter.copy');
    const store = a.newLabel('PolicyWriter.store');
    a.sti();
    a.mov(rsi, symbol('StoreTemplate'));
    a.mov(rdi, code.gva);
    a.mov(ecx, 8);
    a.bind(copy);
    a.mov(eax, dword(rsi));
    a.mov(dword(rdi), eax);
    a.add(rsi, 4);
    a.add(rdi, 4);
    a.sub(ecx, 4);
    a.jne(copy);
    a.mov(rax, symbol('PatcherReady'));
    a.mov(dword(rax), 1);
    a.mov(rbx, policy.gva);
    a.xor(r12d, r12d);
    a.bind(store);
    a.mov(eax, r12d);
    a.add(eax, 1);
    a.mov(rcx, code.gva);
    a.call(rcx);
    emitCountdown(a, 'PolicyWriter.work', 20);
    a.add(r12d, 1);
    a.cmp(r12d, STORES);
    a.jb(store);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  // vCPU 1: once the code is there, flip the displacement to the critical area and back.
  guest.code('.text', 'CodePatcher', (a, symbol) => {
    const wait = a.newLabel('CodePatcher.wait');
    const flip = a.newLabel('CodePatcher.flip');
    a.sti();
    a.mov(rax, symbol('PatcherReady'));
    a.bind(wait);
    a.cmp(dword(rax), 0);
    a.je(wait);
    a.mov(rbx, code.gva + BigInt(DISPLACEMENT_AT));
    a.xor(r12d, r12d);
    a.bind(flip);
    a.mov(dword(rbx), CRITICAL);
    emitCountdown(a, 'CodePatcher.critical', 6);
    a.mov(dword(rbx), LOG);
    emitCountdown(a, 'CodePatcher.log', 30);
    a.add(r12d, 1);
    a.cmp(r12d, REWRITES);
    a.jb(flip);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'PolicyWriter');
  guest.thread(1, 'CodePatcher');
}

/** The engine's part: the policy page write-protected; stores to its critical area refused. */
function protectPolicy(engine: ScenarioEngine, guest: NtGuest): void {
  const policy = guest.gpaOf(guest.pools.get('policy')!.gva);
  engine.hook({
    gpa: policy,
    length: 0x1000,
    type: 'write',
    owner: 'policy',
    callback: (access) => {
      const offset = access.gpa - policy;
      const refused = offset >= CRITICAL_AREA;
      engine.note(refused ? 'policy-store-refused' : 'policy-store', { vcpu: access.vcpuId, offset, ins: access.instruction?.text ?? '?' });
      return refused ? 'notAllowed' : 'allowed';
    },
  });
}

const pageOf = (gva: bigint): string => String(gva & ~0xfffn);

/**
 * A rewrite of cached code carried out (the icache's write flush, in the patcher's handler: the
 * hypervisor writes at the reply), keyed by the code page; its vCPU is the one whose EPT exit is
 * handled (the pair's `learn` remembers it from the `decode` note that opens every EPT handler).
 */
const rewrite: OrderingSide = {
  begins: (event, memory) => (event.kind === 'note' && event.what === 'icache-write-flush' ? { key: pageOf(BigInt(event.detail.page as bigint)), vcpu: (memory.get('handling') as number | undefined) ?? -1 } : null),
};

/** A write exit raised by an instruction, keyed by its code page, from the exit until its handler returned. */
const storeExit: OrderingSide = {
  begins: (event) => (event.kind === 'stop' && event.exit !== null && event.reason === 'eptViolation' && (event.exit.access & 2) !== 0 ? { key: pageOf(event.rip), vcpu: event.vcpu } : null),
  ends: (event, exit) => event.kind === 'handle' && event.vcpu === exit.vcpu,
};

export const instructionSwapped = defineScenario({
  name: 'instruction-swapped',
  title: 'Instruction swapped between its analysis and its emulation (TOCTOU)',
  description:
    'A thread stores into a write-protected policy page through an instruction in a writable code page, while a thread ' +
    'on another vCPU rewrites that instruction\'s displacement from the allowed log area to the refused critical area ' +
    'and back. The engine must never let the critical form run on the strength of the log form it analysed.',
  vcpus: 2,
  bugs: [{ name: 'analysed one instruction, emulated another', fixesOff: ['toctouRetry'], caughtBy: 'critical-area-untouched' }],
  // The patcher spins until the writer's code is in place: fairness keeps PCT from starving the writer.
  bounds: { stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000, fairnessSteps: 3000 },
  // HVMI's rule assumes the instruction it analysed is the one carried out: true when the
  // hypervisor emulates it on the exiting CPU at once. With 'at-next-entry' a rewrite can still
  // slip in between (README, "Instruction swapped").
  hypervisor: { emulation: 'at-reply' },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addWriterAndPatcher] }),
  engine: { start: protectPolicy },
  oracles: [
    {
      name: 'critical-area-untouched',
      phase: 'end',
      description: 'no store reached the policy page\'s critical area',
      check(world) {
        const { guest } = world;
        const policy = guest.pools.get('policy')!.gva;
        const critical = guest.read(policy + BigInt(CRITICAL_AREA), 0x1000 - CRITICAL_AREA);
        const at = critical.findIndex((b) => b !== 0);
        if (at < 0) return null;
        const judged = notesOf(world.events, 'policy-store').length;
        return `policy+0x${(CRITICAL_AREA + at).toString(16)} holds 0x${critical[at].toString(16)}: a store the engine judged as a log store (${judged} judged so) ran as a critical one`;
      },
    },
    {
      name: 'threads-finished',
      phase: 'end',
      description: 'the writer and the patcher finished',
      check: (world) => (world.guest.finished.has(0) && world.guest.finished.has(1) ? null : 'a thread did not finish'),
    },
    guestAlive(),
  ],
  orderings: [
    {
      name: 'rewrite-vs-pending-store',
      description: "A: the patcher's rewrite of the store's code carried out; B: a store's EPT exit, from the exit until its handler returned. A during B is the TOCTOU window: the instruction changed while its exit waited to be analysed and carried out",
      learn: (event, memory) => {
        if (event.kind === 'note' && event.what === 'decode') memory.set('handling', Number(event.detail.vcpu));
      },
      a: rewrite,
      b: storeExit,
    },
  ],
  windows: [
    {
      name: 'rewrite-trapped',
      description: 'the patcher\'s rewrite of a cached instruction exited and flushed the icache',
      reached: (world) => notesOf(world.events, 'icache-write-flush').length > 0,
    },
  ],
});
