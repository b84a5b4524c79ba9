import {
  CLOCK_VECTOR, dword, eax, ecx, gs, Hypercall, NtGuest, PerCpu, qword, r12, r12d, rax, rbx, withSeg,
  type NtGuestBuilder, type Oracle, type OrderingSide, type RunMemory, type RuntimeEvent,
} from '../src/index.ts';

/**
 * A guest part several scenarios share: a configuration page, and on every vCPU a writer thread
 * that stores into its own 8-byte slot of it `writes` times (slot[v] = 1, 2, …, writes) — a
 * stream of EPT write violations once the engine hooks the page.
 */

export const SLOT_BYTES = 8;

/** Vcpus, bounds, clock and guest of a scenario whose three vCPUs run only the writers. */
export function writersOnly(writes: number) {
  return {
    vcpus: 3,
    bounds: { stepsMax: 200_000, choicesMax: 50_000, slice: 120, pctEvents: 300, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
    clockVector: CLOCK_VECTOR,
    setup: (): NtGuest => new NtGuest({ vcpus: 3, iterations: 0, extensions: [configWriters(writes)] }),
  } as const;
}

/** The page and the writers (`writes` stores each). */
export function configWriters(writes: number): (guest: NtGuestBuilder) => void {
  return (guest) => {
    const base = guest.pages('config', 1, { writable: true }).gva;
    guest.code('.text', 'ConfigWriter', (a) => {
      const loop = a.newLabel('ConfigWriter.loop');
      a.sti();
      a.mov(r12d, withSeg(gs, dword(null, PerCpu.index)));
      a.mov(rbx, base);
      a.xor(ecx, ecx);
      a.bind(loop);
      a.mov(eax, ecx);
      a.inc(eax);
      a.mov(qword(rbx, r12, SLOT_BYTES, 0), rax); //   the hooked write: slot[v] = i + 1
      a.inc(ecx);
      a.cmp(ecx, writes);
      a.jb(loop);
      a.mov(rax, Hypercall.threadDone);
      a.vmcall();
    });
    for (let vcpu = 0; vcpu < guest.vcpus; vcpu++) guest.thread(vcpu, 'ConfigWriter');
  };
}

/** GPA of the configuration page. */
export function configGpa(guest: NtGuest): number {
  return guest.gpaOf(guest.pools.get('config')!.gva);
}

/** `writes-landed` (end): every writer finished and its slot holds its last value. */
export function writesLanded<F extends string>(writes: number): Oracle<NtGuest, F> {
  return {
    name: 'writes-landed',
    phase: 'end',
    description: 'every writer finished and its slot holds its last value',
    check(world) {
      const { guest } = world;
      const base = guest.pools.get('config')!.gva;
      for (let vcpu = 0; vcpu < guest.vcpus; vcpu++) {
        const value = guest.read64(base + BigInt(vcpu * SLOT_BYTES));
        if (value !== BigInt(writes)) return `vCPU ${vcpu}'s slot holds ${value}, not ${writes}`;
        if (!guest.finished.has(vcpu)) return `vCPU ${vcpu}'s writer did not finish`;
      }
      return null;
    },
  };
}

/** What the configuration pairs tie together: every exit on the page meets the same hooks. */
export const CONFIG = 'config';

const pageOf = (gpa: number | bigint): number => Number(BigInt(gpa) & ~0xfffn);

/**
 * A pair's `learn` for the configuration scenarios: the page (the engine's write hooks on it, owners
 * "config …") and whose EPT exit the engine is handling (its `decode` note opens every EPT handler,
 * and handlers run one at a time).
 */
export function learnConfig(event: RuntimeEvent, memory: RunMemory): void {
  if (event.kind !== 'note') return;
  if (event.what === 'hook' && String(event.detail.owner).startsWith('config')) memory.set('config page', pageOf(event.detail.gpa as number));
  if (event.what === 'decode') memory.set('handling', Number(event.detail.vcpu));
}

/** The vCPU whose EPT exit is being handled (−1 before the first). */
export const handlingVcpu = (memory: RunMemory): number => (memory.get('handling') as number | undefined) ?? -1;

/** A writer's EPT write exit on the configuration page, from the exit until its handler returned (`learnConfig`). */
export const configWriteExit: OrderingSide = {
  begins: (event, memory) =>
    event.kind === 'stop' && event.exit !== null && event.reason === 'eptViolation' && (event.exit.access & 2) !== 0 && pageOf(event.exit.gpa) === memory.get('config page')
      ? { key: CONFIG, vcpu: event.vcpu }
      : null,
  ends: (event, exit) => event.kind === 'handle' && event.vcpu === exit.vcpu,
};
