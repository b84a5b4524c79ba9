import {
  CLOCK_VECTOR, defineScenario, disassemble, guestAlive, handledOf, hooksRemoved, imageRestored, jumpPatch, notesOf, NtGuest, pendingExitsAt, tryReadGuestVirtual,
  type Occurrence, type OrderingSide, type RuntimeEvent, type TimedEvent, type World,
} from '../src/index.ts';

/**
 * The race the project exists for (hvmi-notes §13.1): three vCPUs run compiler switch code whose
 * jump tables share a page with hooked APIs, so every table load is a read violation. The 50th
 * relocates the load (MOV → JMP to a slack handler) with the vCPUs paused — while other vCPUs
 * have already faulted on that MOV and wait for the lock. HVMI then flushes the icache entry, so
 * their handlers decode the JMP and retry; and it skips entries already `Patched`. With both
 * mitigations off, a waiting handler decodes the stale cached MOV and relocates it again: a
 * second handler, a second overlapping cloak, leaked slack and hooks. A second bug lives in the
 * same code: patching without pausing lets a vCPU take the new JMP before its handler is written.
 */

type MemtableWorld = World<NtGuest>;

const hex = (value: bigint | number): string => `0x${value.toString(16)}`;

function switchName(world: MemtableWorld, rip: bigint): string {
  return world.guest.kernel.switchLoads.find((load) => load.rip === rip)?.name ?? 'unknown';
}

/** Per vCPU, the EPT violations handled at `rip` after its first relocation. */
function exitsAfterFirstPatch(events: readonly TimedEvent[], rip: bigint, vcpus: number): number[] {
  const counts = new Array<number>(vcpus).fill(0);
  const patched = notesOf(events, 'mtbl-patch').find((n) => n.event.detail.rip === rip);
  if (patched === undefined) return counts;
  for (const handled of handledOf(events, { reason: 'eptViolation', rip })) if (handled.index > patched.index) counts[handled.event.vcpu]++;
  return counts;
}

/** A relocation of the load at a RIP, by the vCPU whose exit did it (an instant: the mtbl-patch note). */
const relocated: OrderingSide = {
  begins: (event) => (event.kind === 'note' && event.what === 'mtbl-patch' ? { key: String(event.detail.rip), vcpu: Number(event.detail.vcpu) } : null),
};

const ripOf = (event: RuntimeEvent): Occurrence | null => (event.kind === 'stop' && event.exit !== null && event.reason === 'eptViolation' ? { key: String(event.rip), vcpu: event.vcpu } : null);

export const memtableStaleIcache = defineScenario({
  name: 'memtable-stale-icache',
  title: 'Stale icache during mem-table patching',
  description:
    'Switch-table loads in a read-protected code page storm the engine with EPT read violations; the 50th ' +
    'relocates the MOV into slack while peers wait on the same instruction. HVMI flushes the patched RIP from ' +
    'its instruction cache and skips entries already patched; without both, a peer decodes the stale MOV and ' +
    'relocates it a second time.',
  vcpus: 3,
  bugs: [
    { name: 'stale icache: double relocation', fixesOff: ['icacheFlushOnPatch', 'patchedGuard'], caughtBy: 'relocated-at-most-once' },
    { name: 'patching unpaused: JMP before its handler', fixesOff: ['pauseWhilePatching'], caughtBy: 'guest-alive' },
  ],
  bounds: { stepsMax: 400_000, choicesMax: 50_000, slice: 200, pctEvents: 600, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  clockVector: CLOCK_VECTOR,
  setup: () => new NtGuest({ vcpus: 3, iterations: 96 }),
  oracles: [
    {
      name: 'results-correct',
      phase: 'end',
      description: "every thread finished and stored exactly what the original code computes",
      check(world) {
        const { guest } = world;
        for (let vcpu = 0; vcpu < guest.vcpus; vcpu++) {
          const got = guest.report(vcpu);
          const want = guest.expected(vcpu);
          if (got.completed !== want.completed) return `vCPU ${vcpu} completed ${got.completed} of ${want.completed} iterations`;
          const bad = got.results.findIndex((value, i) => value !== want.results[i]);
          if (bad >= 0) return `vCPU ${vcpu} iteration ${bad}: stored ${hex(got.results[bad])}, the original code computes ${hex(want.results[bad])}`;
          if (got.serviceSum !== want.serviceSum) return `vCPU ${vcpu}: system services summed to ${hex(got.serviceSum)}, expected ${hex(want.serviceSum)}`;
          if (got.apiCalls !== want.apiCalls) return `vCPU ${vcpu} made ${got.apiCalls} hooked-API calls, expected ${want.apiCalls}`;
        }
        return null;
      },
    },
    guestAlive((world, crash) => {
      const where = world.engine.memtables.handlerContaining(crash.rip);
      return where === null ? null : `inside the mem-table handler of ${hex(where.rip)}`;
    }),
    {
      name: 'relocated-at-most-once',
      phase: 'continuous',
      description: 'each table-load instruction is relocated at most once',
      check(world) {
        for (const entry of world.engine.memtables.entries()) {
          if (entry.relocations <= 1) continue;
          const handlers = entry.handlers.map((h) => `${hex(h.address)} (vCPU ${h.vcpu})`).join(', ');
          return `the table load at ${hex(entry.rip)} (${switchName(world, entry.rip)}) was relocated ${entry.relocations} times: handlers ${handlers}`;
        }
        return null;
      },
    },
    {
      name: 'no-overlapping-patches',
      phase: 'continuous',
      description: 'no two live cloaked patches cover the same bytes',
      check(world) {
        // Sorted by start, a region overlaps an earlier one exactly when it starts before the
        // furthest end so far (the pairwise check was quadratic, after every handler).
        const regions = [...world.engine.cloak.liveRegions()].sort((a, b) => (a.gva < b.gva ? -1 : a.gva > b.gva ? 1 : 0));
        let furthest = regions[0];
        for (let k = 1; k < regions.length; k++) {
          const region = regions[k];
          if (region.gva < furthest.gva + BigInt(furthest.size)) {
            return `patches overlap: "${furthest.owner}" [${hex(furthest.gva)}, +${furthest.size}) and "${region.owner}" [${hex(region.gva)}, +${region.size})`;
          }
          if (region.gva + BigInt(region.size) > furthest.gva + BigInt(furthest.size)) furthest = region;
        }
        return null;
      },
    },
    {
      name: 'no-slack-leak',
      phase: 'continuous',
      description: 'every slack allocation belongs to a live relocation or detour',
      check(world) {
        const { engine } = world;
        const allocations = engine.slack.allocations();
        if (allocations.length === 0) return null;
        const owned = new Set<bigint>();
        for (const entry of engine.memtables.entries()) if (entry.slackSize > 0) owned.add(entry.slackAddress);
        for (const detour of engine.detours.detours()) owned.add(detour.handler);
        const leaked = allocations.filter((a) => !owned.has(a.gva));
        if (leaked.length === 0) return null;
        return `slack leaked: ${leaked.map((a) => `${hex(a.gva)}+${a.size} (${a.owner})`).join(', ')} — allocated, but no live relocation points at it`;
      },
    },
    {
      name: 'every-vcpu-runs-the-jmp',
      phase: 'end',
      description: 'a relocated load is a JMP to its live handler, and no vCPU keeps faulting on it',
      check(world) {
        const { engine, guest } = world;
        const root = engine.kernel.systemCr3;
        for (const entry of engine.memtables.entries()) {
          if (!entry.patched) continue;
          const length = entry.insCloak?.size ?? 0;
          const bytes = tryReadGuestVirtual(guest.machine.memory, root, entry.rip, length);
          const want = jumpPatch(entry.rip, entry.slackAddress, length);
          if (bytes === null || !bytes.every((b, k) => b === want[k])) {
            const now = bytes === null ? 'unmapped' : disassemble(bytes, entry.rip, { maxInstructions: 1 })[0]?.text;
            return `${hex(entry.rip)} holds "${now}", not a JMP to its handler ${hex(entry.slackAddress)}`;
          }
          const counts = exitsAfterFirstPatch(world.events, entry.rip, guest.vcpus);
          const stuck = counts.findIndex((count) => count > 1);
          if (stuck >= 0) return `vCPU ${stuck} took ${counts[stuck]} EPT violations at ${hex(entry.rip)} after it was relocated (at most the one already pending)`;
        }
        return null;
      },
    },
    {
      name: 'hooked-api-calls-seen',
      phase: 'end',
      description: 'every call of a hooked API reached the engine through its detour',
      check(world) {
        const seen = world.engine.detours.detours().reduce((sum, d) => sum + d.hits, 0);
        let made = 0;
        for (let vcpu = 0; vcpu < world.guest.vcpus; vcpu++) made += world.guest.report(vcpu).apiCalls;
        return seen === made ? null : `the guest called hooked APIs ${made} times, the engine saw ${seen}`;
      },
    },
    {
      name: 'timer-integrity',
      phase: 'continuous',
      description: "the timer's integrity check found every cloaked patch intact",
      check(world) {
        const bad = world.engine.stats.integrityViolations;
        return bad === 0 ? null : `the timer found ${bad} cloaked patch(es) whose bytes are no longer in memory`;
      },
    },
    imageRestored(),
    hooksRemoved(),
  ],
  orderings: [
    {
      name: 'patch-vs-waiting-peer',
      description: 'A: a table load relocated; B: another vCPU stopped at that load, from its exit until its handler ran. A during B is the stale-icache window',
      a: relocated,
      b: { begins: ripOf, ends: (event, waiting) => event.kind === 'handle' && event.vcpu === waiting.vcpu },
    },
    {
      name: 'patch-vs-peer-decode',
      description: "A: a table load relocated; B: another vCPU's handler decoding the instruction at that RIP. A before B decodes the JMP — or, with the flush off, the stale MOV from the icache",
      a: relocated,
      b: { begins: (event) => (event.kind === 'note' && event.what === 'decode' ? { key: String(event.detail.rip), vcpu: Number(event.detail.vcpu) } : null) },
    },
    {
      name: 'patch-vs-running-peer',
      description: 'A: the JMP and its handler being written (from the first cloak to the end of the patch); B: any vCPU stopping after a slice. A during B: a vCPU ran while the patch was half written — what pausing prevents',
      a: {
        begins: (event) => (event.kind === 'note' && event.what === 'cloak' && String(event.detail.owner).startsWith('memtable ins') ? { key: 'patch', vcpu: -1 } : null),
        ends: (event) => event.kind === 'note' && (event.what === 'mtbl-patch' || event.what === 'mtbl-patch-failed'),
      },
      b: { begins: (event) => (event.kind === 'stop' ? { key: 'patch', vcpu: event.vcpu } : null) },
    },
  ],
  windows: [
    {
      name: 'peer-waiting-at-patch',
      description: 'another vCPU was stopped at the same table load when it was relocated',
      reached(world) {
        return notesOf(world.events, 'mtbl-patch').some(({ index, event: { detail } }) => {
          const pending = pendingExitsAt(world.events, index);
          return [...pending].some(([vcpu, exit]) => vcpu !== detail.vcpu && exit.event.rip === detail.rip);
        });
      },
    },
    {
      name: 'stale-icache-decode',
      description: 'a handler decoded a relocated load from the icache as the old MOV',
      reached(world) {
        const patches = notesOf(world.events, 'mtbl-patch');
        return notesOf(world.events, 'decode').some(
          (d) => d.event.detail.cached === true && d.event.detail.ins === 'mov' && patches.some((p) => p.event.detail.rip === d.event.detail.rip && p.index < d.index),
        );
      },
    },
    {
      name: 'peer-patched-retry',
      description: 'a handler found the JMP a peer had just written and retried',
      reached: (world) => notesOf(world.events, 'peer-patched-retry').length > 0,
    },
    {
      name: 'redecode-after-flush',
      description: 'a vCPU pending on a relocated load decoded the fresh JMP after the flush',
      reached(world) {
        const patches = notesOf(world.events, 'mtbl-patch');
        return notesOf(world.events, 'decode').some(
          (d) => d.event.detail.cached === false && d.event.detail.ins === 'jmp' && patches.some((p) => p.event.detail.rip === d.event.detail.rip && p.index < d.index),
        );
      },
    },
    {
      name: 'vcpu-ran-mid-patch',
      description: 'a vCPU executed guest code after a load became a JMP and before its handler was written',
      reached(world) {
        const cloaks = notesOf(world.events, 'cloak');
        const uncloaks = notesOf(world.events, 'uncloak');
        return cloaks.some((jump) => {
          const owner = String(jump.event.detail.owner);
          if (!owner.startsWith('memtable ins ')) return false;
          // Until the handler for the same instruction is written — or the JMP is taken out again.
          const handler = cloaks.find((c) => c.index > jump.index && c.event.detail.owner === owner.replace('memtable ins ', 'memtable handler '));
          const undone = uncloaks.find((u) => u.index > jump.index && u.event.detail.owner === owner);
          const end = Math.min(handler?.index ?? world.events.length, undone?.index ?? world.events.length);
          return world.events.slice(jump.index, end).some(({ event }) => event.kind === 'stop' && event.retired > 0);
        });
      },
    },
  ],
});
