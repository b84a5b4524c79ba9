import {
  defineScenario, emitCountdown, guestAlive, Hypercall, notesOf, NtGuest, qword, r8, r12d, rax, rbx, SYSTEM_PRIVILEGES, SYSTEM_TOKEN, Token,
  type NtGuestBuilder, type OrderingSide, type RunMemory, type RuntimeEvent,
} from '../src/index.ts';

/**
 * The timer against a token being changed (hvmi-notes §13.14). A thread removes privileges from
 * the SYSTEM token the way Windows does: Present first, Enabled a moment later — and between
 * removals it enables and disables other privileges (Enabled only). The engine's timer checks
 * the token on every tick while the thread runs (TIMER_FRIENDLY: global state and memory only,
 * no pause). A tick that lands between the two steps sees Enabled ⊄ Present. HVMI tolerates
 * that one-bit difference once (privilegeTransientTolerance); without it the tick raises a
 * privilege-escalation alert for a guest that only ever gave privileges up. And a timer that
 * finds "the token in use" through a running vCPU's GS base (timerFriendly off) reads a register
 * it may not: the framework refuses the read and reports the run.
 */

/** Privileges removed, one per round. */
const ROUNDS = 12;
/** Steps between the two halves of a removal (the transient) and after a round (≥ 2 timer periods, so no two ticks see transients in a row). */
const TRANSIENT_SPINS = 50;
const ROUND_SPINS = 700;
const TIMER_STEPS = 600;
/** The privilege adjuster's vCPU. */
const ADJUSTER = 0;

const privilegeBits = (): bigint[] => {
  const bits: bigint[] = [];
  for (let bit = 0n; bit < 64n; bit++) if ((SYSTEM_PRIVILEGES >> bit) & 1n) bits.push(1n << bit);
  return bits;
};
const REMOVED = privilegeBits().slice(0, ROUNDS);
/** Kept but disabled; round i enables one for the removal and disables it after, so Enabled changes between ticks. */
const TOGGLED = privilegeBits().slice(ROUNDS, ROUNDS + 4);


/** vCPU 0's thread; vCPU 1's worker has no iterations (it ends at once, so only the adjuster moves time). */
function addPrivilegeAdjuster(guest: NtGuestBuilder): void {
  const table = new Uint8Array(ROUNDS * 16);
  const view = new DataView(table.buffer);
  REMOVED.forEach((bit, round) => {
    view.setBigUint64(round * 16, bit, true);
    view.setBigUint64(round * 16 + 8, TOGGLED[round % TOGGLED.length], true);
  });
  guest.data('.rdata', 'PrivilegeRounds', table, { align: 16 });
  guest.code('.text', 'PrivilegeAdjuster', (a, symbol) => {
    const round = a.newLabel('PrivilegeAdjuster.round');
    a.sti();
    a.mov(r8, symbol(SYSTEM_TOKEN));
    a.mov(rbx, symbol('PrivilegeRounds'));
    // The toggled privileges start disabled (present, not enabled).
    a.mov(rax, ~TOGGLED.reduce((all, bit) => all | bit, 0n));
    a.and(qword(r8, Token.enabled), rax);
    a.xor(r12d, r12d);
    a.bind(round);
    // Enable a privilege the token keeps: Enabled differs from what the last tick saw.
    a.mov(rax, qword(rbx, 8));
    a.or(qword(r8, Token.enabled), rax);
    // Remove one: Present, then — a moment later — Enabled.
    a.mov(rax, qword(rbx, 0));
    a.not(rax);
    a.and(qword(r8, Token.present), rax);
    emitCountdown(a, 'PrivilegeAdjuster.transient', TRANSIENT_SPINS);
    a.and(qword(r8, Token.enabled), rax);
    // Disable the one enabled above.
    a.mov(rax, qword(rbx, 8));
    a.not(rax);
    a.and(qword(r8, Token.enabled), rax);
    emitCountdown(a, 'PrivilegeAdjuster.rest', ROUND_SPINS);
    a.add(rbx, 16);
    a.add(r12d, 1);
    a.cmp(r12d, ROUNDS);
    a.jb(round);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  guest.thread(ADJUSTER, 'PrivilegeAdjuster');
}

/**
 * Where the adjuster's two stores are, in instructions it has retired: its code is straight-line
 * but for the countdowns, and nothing else runs on its vCPU (no clock interrupt, no exit before its
 * last), so the instructions it retired say exactly where it is. Keep in step with
 * addPrivilegeAdjuster: 6 before the first round; per round 5 up to and including the Present
 * store, the transient countdown (MOV + 2 per spin), the Enabled store, 3 to disable the toggled
 * privilege, the rest countdown and 4 to loop.
 */
const PROLOGUE = 6;
const PRESENT_STORED = 5;
const ENABLED_STORED = PRESENT_STORED + 1 + 2 * TRANSIENT_SPINS + 1;
const ROUND_LENGTH = ENABLED_STORED + 3 + 1 + 2 * ROUND_SPINS + 4;

/** Whether the adjuster, having retired `retired` instructions, is between the two halves of a removal. */
function inTransient(retired: number): boolean {
  const at = retired - PROLOGUE;
  if (at < 0 || at >= ROUNDS * ROUND_LENGTH) return false;
  const offset = at % ROUND_LENGTH;
  return offset >= PRESENT_STORED && offset < ENABLED_STORED;
}

const retiredOf = (memory: RunMemory): number => (memory.get('retired') as number | undefined) ?? 0;

/** Counts the adjuster's retired instructions and stops (the pairs' `learn`). */
function learnAdjuster(event: RuntimeEvent, memory: RunMemory): void {
  if (event.kind !== 'stop' || event.vcpu !== ADJUSTER) return;
  memory.set('retired', retiredOf(memory) + event.retired);
  memory.set('stops', ((memory.get('stops') as number | undefined) ?? 0) + 1);
}

/** A timer tick: the token check runs then, without pausing anyone. */
const tick: OrderingSide = { begins: (event) => (event.kind === 'timer' ? { key: 'token', vcpu: -1 } : null) };

/** The adjuster between a Present store and its Enabled store, from the stop that left it there until its next stop. */
const removalHalfDone: OrderingSide = {
  begins: (event, memory) => (event.kind === 'stop' && event.vcpu === ADJUSTER && inTransient(retiredOf(memory)) ? { key: 'token', vcpu: ADJUSTER } : null),
  ends: (event) => event.kind === 'stop' && event.vcpu === ADJUSTER,
};

/** The adjuster's thread running: from its vCPU's first stop until its threadDone VMCALL. */
const adjusterRunning: OrderingSide = {
  begins: (event, memory) => (event.kind === 'stop' && event.vcpu === ADJUSTER && memory.get('stops') === 1 ? { key: 'token', vcpu: ADJUSTER } : null),
  ends: (event) => event.kind === 'stop' && event.vcpu === ADJUSTER && event.reason === 'vmcall',
};

export const timerTokenTransient = defineScenario({
  name: 'timer-token-transient',
  title: 'Timer token check against Windows’ two-step privilege removal',
  description:
    'A thread removes privileges from the SYSTEM token Present first, Enabled a moment later, while the engine\'s timer ' +
    'checks the token every tick without pausing. A tick between the two steps sees Enabled ⊄ Present: HVMI tolerates ' +
    'that one-bit transient once; without the tolerance it alerts on a guest that only gave privileges up. A timer ' +
    'that reads a running vCPU\'s registers to find the token breaks TIMER_FRIENDLY, and the framework reports it.',
  vcpus: 2,
  bugs: [
    { name: 'false privilege alert', fixesOff: ['privilegeTransientTolerance'], caughtBy: 'no-false-privilege-alert' },
    { name: 'timer reads a running vCPU', fixesOff: ['timerFriendly'], caughtBy: 'engine-runs' },
  ],
  bounds: { stepsMax: 200_000, choicesMax: 40_000, slice: 200, pctEvents: 300, timerSteps: TIMER_STEPS, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  setup: () => new NtGuest({ vcpus: 2, iterations: 0, extensions: [addPrivilegeAdjuster] }),
  oracles: [
    {
      name: 'no-false-privilege-alert',
      phase: 'end',
      description: 'no privilege-escalation alert: the guest only ever removed, enabled or disabled privileges it had',
      check(world) {
        const alerts = notesOf(world.events, 'token-privileges-alert');
        if (alerts.length === 0) return null;
        const first = alerts[0].event.detail;
        const hex = (value: unknown): string => `0x${BigInt(value as bigint).toString(16)}`;
        return `${alerts.length} alert(s); the first at clock ${alerts[0].clock}: Enabled ${hex(first.enabled)} ⊄ Present ${hex(first.present)} — a tick between the two halves of a removal`;
      },
    },
    {
      name: 'privileges-removed',
      phase: 'end',
      description: 'the thread finished and the token holds exactly the privileges it kept',
      check(world) {
        const { guest } = world;
        if (!guest.finished.has(0)) return 'the privilege adjuster did not finish';
        const token = guest.symbol(SYSTEM_TOKEN);
        const present = REMOVED.reduce((left, bit) => left & ~bit, SYSTEM_PRIVILEGES);
        const enabled = TOGGLED.reduce((left, bit) => left & ~bit, present);
        const got = { present: guest.read64(token + BigInt(Token.present)), enabled: guest.read64(token + BigInt(Token.enabled)) };
        if (got.present === present && got.enabled === enabled) return null;
        return `Present 0x${got.present.toString(16)}, Enabled 0x${got.enabled.toString(16)}; expected 0x${present.toString(16)}, 0x${enabled.toString(16)}`;
      },
    },
    guestAlive(),
  ],
  orderings: [
    {
      name: 'tick-vs-removal-half-done',
      description: 'A: a timer tick; B: the adjuster between the Present and the Enabled store of a removal (known from the instructions it retired). A during B is the window: the tick sees Enabled ⊄ Present',
      learn: learnAdjuster,
      a: tick,
      b: removalHalfDone,
    },
    {
      name: 'tick-vs-running-adjuster',
      description: "A: a timer tick; B: the adjuster's thread running on its vCPU. A during B: the tick meets a running vCPU — whose registers a timer that is not TIMER_FRIENDLY reads",
      learn: learnAdjuster,
      a: tick,
      b: adjusterRunning,
    },
  ],
  windows: [
    {
      name: 'tick-in-transient',
      description: 'a timer tick found the token between the two halves of a removal',
      reached: (world) => notesOf(world.events, 'token-transient-tolerated').length + notesOf(world.events, 'token-privileges-alert').length > 0,
    },
  ],
});
