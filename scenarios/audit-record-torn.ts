import {
  CLOCK_VECTOR, defineScenario, guestAlive, dword, eventsBetween, handledOf, eax, edx, HOOKED_APIS, Hypercall, notesOf, NtGuest, PerCpu, PROCESSOR_BLOCK, qword, r8d, r9d, rax, rbx, rcx, rdx,
  type NtGuestBuilder, type OrderingSide, type ScenarioEngine,
} from '../src/index.ts';

/**
 * A scenario of the kind users write for their own engine logic (README, "Writing a scenario"):
 * the engine audits every call of a detoured kernel API by publishing a record in guest memory
 * — an 8-byte {sequence, check} word that an in-guest consumer reads with one load. Publishing it
 * is a guest write from the hypervisor, done byte by byte through the engine's own mapping; HVMI's
 * rule for such writes is to make them with every vCPU paused (hvmi-notes §11.17). That is this
 * scenario's own fix, `auditUnderPause`. With it off, a reader on another vCPU can load the record
 * half written: a new sequence number with an old check value.
 */

/** Calls of NtQueryTimerA are audited. */
const AUDITED_API = HOOKED_APIS[0];
/** vCPUs whose worker threads call the audited API; the reader runs on the next one. */
const WORKERS = 2;
/**
 * The reader stops when both workers are done, or after this many loads: a reader that waited
 * for them without a bound would starve them under a strict-priority schedule (PCT), which has
 * no notion of a spin loop.
 */
const READS_MAX = 3000;
/** Steps of other work between two loads (a countdown). */
const WORK = 16;
/** The check value of sequence `seq`: the record is whole when its low half is check(high half). */
const check = (seq: number): number => Math.imul(seq, 0x9e3779b1) >>> 0;

/**
 * The guest's additions: the record and a torn-load counter in .data, and a reader thread on
 * vCPU 2 that loads the record until both workers have completed all their iterations.
 */
function addAuditReader(guest: NtGuestBuilder): void {
  guest.data('.data', 'AuditRecord', 8, { align: 8 });
  guest.data('.data', 'AuditTornReads', 4, { align: 4 });
  guest.code('.text', 'AuditReader', (a, symbol) => {
    const loop = a.newLabel('AuditReader.loop');
    const whole = a.newLabel('AuditReader.whole');
    const work = a.newLabel('AuditReader.work');
    const done = a.newLabel('AuditReader.done');
    const completed = (vcpu: number): bigint => symbol(PROCESSOR_BLOCK) + BigInt(vcpu * PerCpu.bytes + PerCpu.completed);
    a.sti();
    a.mov(rbx, symbol('AuditRecord'));
    a.mov(r8d, READS_MAX);
    a.bind(loop);
    a.mov(r9d, WORK);
    a.bind(work);
    a.dec(r9d);
    a.jne(work);
    a.mov(rax, qword(rbx)); //                  one 8-byte load of the record
    a.mov(rdx, rax);
    a.shr(rdx, 32); //                          sequence
    a.imul(edx, edx, 0x9e3779b1 | 0); //        check(sequence)
    a.cmp(eax, edx);
    a.je(whole);
    a.inc(dword(rbx, Number(symbol('AuditTornReads') - symbol('AuditRecord'))));
    a.bind(whole);
    a.dec(r8d);
    a.je(done);
    for (let vcpu = 0; vcpu < WORKERS; vcpu++) {
      a.mov(rcx, completed(vcpu));
      a.cmp(dword(rcx), guest.iterations);
      a.jb(loop);
    }
    a.bind(done);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(WORKERS, 'AuditReader');
}

/** The engine's part: a callback on every call of the audited API that publishes the next record. */
function auditCalls(engine: ScenarioEngine<'auditUnderPause'>, guest: NtGuest): void {
  const record = guest.symbol('AuditRecord');
  const audit = engine.state({ sequence: 0 });
  engine.detour(guest.symbol(AUDITED_API), AUDITED_API, (call) => {
    const sequence = ++audit.sequence;
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, check(sequence), true);
    view.setUint32(4, sequence, true);
    const paused = engine.fixes.auditUnderPause;
    if (paused) engine.pauseVcpus();
    try {
      engine.note('audit-begin', { vcpu: call.vcpuId, sequence });
      engine.write(record, bytes, 'audit record');
      engine.note('audit', { vcpu: call.vcpuId, sequence });
    } finally {
      if (paused) engine.resumeVcpus();
    }
  });
}

/** A record being published, from its first byte to its last, by the vCPU whose call it audits. */
const publishing: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'audit-begin' ? { key: 'record', vcpu: Number(event.detail.vcpu) } : null),
  ends: (event, publish) => event.kind === 'note' && event.what === 'audit' && Number(event.detail.vcpu) === publish.vcpu,
};

export const auditRecordTorn = defineScenario({
  name: 'audit-record-torn',
  title: 'Audit record published under the readers’ feet',
  description:
    'A detour callback publishes an {sequence, check} record in guest memory on every call of NtQueryTimerA, while a ' +
    'thread on another vCPU reads it with one 8-byte load. Written with the vCPUs paused (auditUnderPause), every ' +
    'load sees a whole record; written while they run, a load can land between the bytes.',
  vcpus: 3,
  fixes: [{ name: 'auditUnderPause', description: 'publish the audit record with every vCPU paused (off: a reader can load it half written)' }],
  bugs: [{ name: 'torn audit record', fixesOff: ['auditUnderPause'], caughtBy: 'audit-records-whole' }],
  bounds: { stepsMax: 400_000, choicesMax: 50_000, slice: 200, pctEvents: 400, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  clockVector: CLOCK_VECTOR,
  setup: () => new NtGuest({ vcpus: 3, iterations: 48, extensions: [addAuditReader] }),
  engine: { start: auditCalls },
  oracles: [
    {
      name: 'audit-records-whole',
      phase: 'end',
      description: 'the reader never loaded a half-written audit record',
      check(world) {
        const torn = world.guest.read32(world.guest.symbol('AuditTornReads'));
        return torn === 0 ? null : `the reader on vCPU 2 loaded a half-written audit record ${torn} time(s)`;
      },
    },
    {
      name: 'every-call-audited',
      phase: 'end',
      description: 'the last record carries one sequence number per call of the audited API',
      check(world) {
        const { guest } = world;
        let calls = 0;
        for (let vcpu = 0; vcpu < WORKERS; vcpu++) for (let i = 0; i < guest.iterations; i++) if ((i & 3) === 3) calls++;
        const sequence = Number(guest.read64(guest.symbol('AuditRecord')) >> 32n);
        return sequence === calls ? null : `the last audit record has sequence ${sequence}; the workers called ${AUDITED_API} ${calls} times`;
      },
    },
    {
      name: 'workers-correct',
      phase: 'end',
      description: 'the two worker threads finished with exactly the results the original code computes',
      check(world) {
        const { guest } = world;
        for (let vcpu = 0; vcpu < WORKERS; vcpu++) {
          const got = guest.report(vcpu);
          const want = guest.expected(vcpu);
          if (got.completed !== want.completed || got.results.some((value, i) => value !== want.results[i])) return `vCPU ${vcpu}'s thread did not compute its results`;
        }
        return guest.finished.has(WORKERS) ? null : 'the reader thread did not finish';
      },
    },
    guestAlive(),
  ],
  orderings: [
    {
      name: 'publish-vs-reader',
      description: 'A: a record being published, first byte to last; B: the reader (vCPU 2) executing guest code. A during B is the window: the reader ran while the record was half written — what auditUnderPause prevents',
      a: publishing,
      b: { begins: (event) => (event.kind === 'stop' && event.vcpu === WORKERS && event.retired > 0 ? { key: 'record', vcpu: event.vcpu } : null) },
    },
  ],
  windows: [
    {
      name: 'published-while-reading',
      description: 'a record was published while the reader thread was still reading',
      reached(world) {
        const readerDone = handledOf(world.events, { reason: 'vmcall', vcpu: 2 }).at(-1)?.index ?? world.events.length;
        return notesOf(world.events, 'audit').some((audit) => audit.index < readerDone);
      },
    },
    {
      name: 'reader-ran-mid-publish',
      description: 'the reader executed guest code between the first and the last byte of a record',
      reached(world) {
        const ends = notesOf(world.events, 'audit');
        return notesOf(world.events, 'audit-begin').some((begin) => {
          const end = ends.find((e) => e.index > begin.index)?.index ?? world.events.length;
          return eventsBetween(world.events, begin.index, end, (event) => event.kind === 'stop' && event.vcpu === 2 && event.retired > 0).length > 0;
        });
      },
    },
  ],
});
