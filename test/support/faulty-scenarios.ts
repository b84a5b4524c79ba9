import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import type { ScenarioDefinition } from '../../src/explore/scenario.ts';
import { NtGuest } from '../../src/guest/nt-guest.ts';

/**
 * Scenarios that go wrong on purpose, for the reliability tests of the rig and both CLIs (they
 * load this module with `--load`). Each is the mem-table scenario with one thing changed: a guest
 * built differently in every process, a window goal or setup() that throws, a bug whose named
 * oracle can never break, and guests whose vCPU 0 misbehaves (a triple fault, a spin with
 * interrupts off, an instruction vcpusim does not emulate).
 */

type Definition = ScenarioDefinition<NtGuest>;

const base = memtableStaleIcache;

/** Where a misbehaving vCPU 0 runs: a page of its own above the kernel stacks. */
const ROGUE_GVA = 0xfffff800006a0000n;
const ROGUE_GPA = 0x6a0000;

/** An NT guest whose vCPU 0 runs `code` instead of its worker thread. */
function rogueGuest(code: readonly number[], prepare: (guest: NtGuest) => void = () => {}): NtGuest {
  const guest = new NtGuest({ vcpus: 3, iterations: 24 });
  guest.machine.memory.write(ROGUE_GPA, Uint8Array.from(code));
  guest.tables.map(ROGUE_GVA, ROGUE_GPA, 0n);
  guest.machine.vcpu(0).rip = ROGUE_GVA;
  prepare(guest);
  return guest;
}

function littleEndian64(value: bigint): number[] {
  return Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(8 * i)) & 0xffn));
}

export const plantedRandom: Definition = {
  ...base,
  name: 'planted-random',
  title: 'Math.random in setup()',
  // Each process builds a guest whose vCPU 0 first slides down a NOP sled of its own length and
  // whose threads loop a count of their own: the same seed gives other traces (two processes
  // agree on both about once in 2^16 tries).
  setup: () => {
    const guest = new NtGuest({ vcpus: 3, iterations: 64 + Math.floor(Math.random() * 64) });
    const entry = guest.machine.vcpu(0).rip;
    const sled = Array<number>(Math.floor(Math.random() * 1024)).fill(0x90);
    const jumpToEntry = [0xff, 0x25, 0, 0, 0, 0, ...littleEndian64(entry)]; // jmp [rip+0]; dq entry
    guest.machine.memory.write(ROGUE_GPA, Uint8Array.from([...sled, ...jumpToEntry]));
    guest.tables.map(ROGUE_GVA, ROGUE_GPA, 0n);
    guest.machine.vcpu(0).rip = ROGUE_GVA;
    return guest;
  },
};

export const throwingWindow: Definition = {
  ...base,
  name: 'throwing-window',
  title: 'A window goal that throws',
  windows: [...base.windows, { name: 'broken-goal', description: 'throws', reached: () => { throw new Error('the goal has a bug'); } }],
};

export const throwingSetup: Definition = {
  ...base,
  name: 'throwing-setup',
  title: 'setup() throws',
  setup: () => {
    throw new Error('no guest today');
  },
};

export const wrongOracle: Definition = {
  ...base,
  name: 'wrong-oracle',
  title: 'A bug whose named oracle never breaks',
  bugs: [{ name: 'unpaused patch, watched by the wrong oracle', fixesOff: ['pauseWhilePatching'], caughtBy: 'never-breaks' }],
  oracles: [...base.oracles, { name: 'never-breaks', phase: 'end', description: 'always holds', check: () => null }],
};

export const tripleFault: Definition = {
  ...base,
  name: 'triple-fault',
  title: 'vCPU 0 triple-faults',
  // ud2 with an empty IDT: #UD cannot be delivered (#GP), nor can the #DF that follows.
  setup: () => rogueGuest([0x0f, 0x0b], (guest) => guest.machine.vcpu(0).set32('idtrLimit', 0)),
};

export const spinInterruptsOff: Definition = {
  ...base,
  name: 'spin-interrupts-off',
  title: 'vCPU 0 spins with interrupts off',
  bounds: { ...base.bounds, stepsMax: 60_000 },
  setup: () => rogueGuest([0xfa, 0xeb, 0xfe]), // cli; jmp $
};

export const unsupportedInstruction: Definition = {
  ...base,
  name: 'unsupported-instruction',
  title: 'vCPU 0 executes SSE',
  setup: () => rogueGuest([0x0f, 0x28, 0x04, 0x24]), // movaps xmm0, [rsp]
};
