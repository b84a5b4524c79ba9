import {
  defineScenario, guestAlive, Hypercall, notesOf, NtGuest, qword, r12, r12d, r15, rax, rsp,
  type NtGuestBuilder, type ScenarioEngine,
} from '../src/index.ts';

/**
 * One instruction, two addresses (hvmi-notes §13.3). `PUSH qword [rax]` reads a page the engine
 * read-hooks with a benign callback and writes the stack — which a thread has pivoted into a
 * structure the engine write-protects. The read faults first, so the exit's GLA is the source.
 * HVMI decodes every address the instruction touches and hands each to its hooks, because once
 * the instruction is allowed the hypervisor emulates all of it and its other accesses never
 * fault (analyseEveryAddress). Looking at the exit's GLA alone allows the read, and the push
 * lands in the protected structure unchecked.
 */

/** Pushes the pivoting thread makes. */
const PUSHES = 12;
/** Where the pivoted stack starts inside the protected page. */
const PIVOT = 0x200;

/**
 * vCPU 0's thread: with interrupts off (an interrupt frame would land on the pivoted stack too),
 * point RSP into the protected page, PUSH a qword of the source page, put RSP back. vCPU 1 runs
 * the ordinary worker.
 */
function addPivotingThread(guest: NtGuestBuilder): void {
  // The source: a page of the image's data holding values that are not zero.
  const values = new Uint8Array(0x1000);
  for (let k = 0; k < PUSHES; k++) new DataView(values.buffer).setBigUint64(k * 8, 0x5a5a000000000000n + BigInt(k + 1), true);
  guest.data('.data', 'PushSource', values, { align: 0x1000 });
  const target = guest.pages('protected-table', 1, { writable: true });
  guest.code('.text', 'PivotPush', (a, symbol) => {
    const loop = a.newLabel('PivotPush.loop');
    a.xor(r12d, r12d);
    a.bind(loop);
    a.mov(rax, symbol('PushSource'));
    a.lea(rax, qword(rax, r12, 8, 0));
    a.cli();
    a.mov(r15, rsp);
    a.mov(rsp, target.gva + BigInt(PIVOT));
    a.push(qword(rax)); //                    reads push-source, writes protected-table
    a.mov(rsp, r15);
    a.sti();
    a.add(r12d, 1);
    a.cmp(r12d, PUSHES);
    a.jb(loop);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(0, 'PivotPush');
}

/** The engine's hooks: the source page read-hooked (a write hook first, as HVMI requires), the table write-protected. */
function protectTable(engine: ScenarioEngine, guest: NtGuest): void {
  const source = guest.gpaOf(guest.symbol('PushSource'));
  const table = guest.gpaOf(guest.pools.get('protected-table')!.gva);
  engine.hook({ gpa: source, length: PUSHES * 8, type: 'write', owner: 'source (write)', callback: () => 'allowed' });
  engine.hook({
    gpa: source,
    length: PUSHES * 8,
    type: 'read',
    owner: 'source (read)',
    callback: (access) => {
      engine.note('source-read', { vcpu: access.vcpuId, gla: access.gla });
      return 'allowed';
    },
  });
  engine.hook({
    gpa: table,
    length: 0x1000,
    type: 'write',
    owner: 'protected table',
    callback: (access) => {
      engine.note('protected-write-blocked', { vcpu: access.vcpuId, gla: access.gla, rip: access.self.rip() });
      return 'notAllowed';
    },
  });
}

export const pushTwoAddresses = defineScenario({
  name: 'push-two-addresses',
  title: 'PUSH [mem]: allowed for its read, its stack write goes unchecked',
  description:
    'A thread pivots RSP into a write-protected table and pushes a qword from a read-hooked data page. The read faults ' +
    'first; analysing every address the instruction accesses blocks the stack write, analysing only the exit\'s ' +
    'address lets the hypervisor emulate the whole push into the protected table.',
  vcpus: 2,
  bugs: [{ name: 'second address unchecked', fixesOff: ['analyseEveryAddress'], caughtBy: 'protected-table-unchanged' }],
  bounds: { stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 300, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 24, extensions: [addPivotingThread] }),
  engine: { start: protectTable },
  oracles: [
    {
      name: 'protected-table-unchanged',
      phase: 'end',
      description: 'no byte of the write-protected table changed',
      check(world) {
        const { guest } = world;
        const table = guest.pools.get('protected-table')!.gva;
        const bytes = guest.read(table, 0x1000);
        const changed = bytes.findIndex((b) => b !== 0);
        if (changed < 0) return null;
        const blocked = notesOf(world.events, 'protected-write-blocked').length;
        return `protected-table+0x${changed.toString(16)} was written (0x${bytes[changed].toString(16)}): a PUSH allowed for its read of PushSource wrote it through the emulator; the write hook saw ${blocked} write(s)`;
      },
    },
    {
      name: 'pushes-judged',
      phase: 'end',
      description: 'the engine judged every push: its read and its write each reached a hook',
      check(world) {
        if (!world.guest.finished.has(0)) return 'the pivoting thread did not finish';
        const reads = notesOf(world.events, 'source-read').length;
        return reads >= PUSHES ? null : `only ${reads} of ${PUSHES} pushes reached the source page's read hook`;
      },
    },
    guestAlive(),
  ],
  // The bug needs no second vCPU (one PUSH alone lands in the table): the pair records what the
  // other vCPU did while a judged push waited to be carried out at its vCPU's next entry.
  orderings: [
    {
      name: 'judged-push-vs-peer',
      description: "A: a PUSH judged on its read (the source page's hook), until its vCPU's next stop — the hypervisor carries it out at the next entry; B: the other vCPU executing guest code. A during B: the peer ran while a push whose stack write nobody judged (analyseEveryAddress off) was pending",
      a: {
        begins: (event) => (event.kind === 'note' && event.what === 'source-read' ? { key: 'push', vcpu: Number(event.detail.vcpu) } : null),
        ends: (event, push) => event.kind === 'stop' && event.vcpu === push.vcpu,
      },
      b: { begins: (event) => (event.kind === 'stop' && event.retired > 0 ? { key: 'push', vcpu: event.vcpu } : null) },
    },
  ],
  windows: [
    {
      name: 'write-blocked',
      description: 'a push was refused for its stack write into the table',
      reached: (world) => notesOf(world.events, 'protected-write-blocked').length > 0,
    },
  ],
});
