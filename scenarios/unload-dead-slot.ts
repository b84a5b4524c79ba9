import { CLOCK_VECTOR, defineScenario, ecx, notesOf, NtGuest, rbp, rsp, type NtGuestBuilder } from '../src/index.ts';
import { scanVsThreadInHandler, THREADED_BOUNDS, UNLOAD_WINDOWS, unloadOnCall, unloadOracles } from './unload-common.ts';

/**
 * A dead stack slot that blocks the unload (hvmi-notes §13.12). The mem-table handler pushes the
 * relocated instruction's registers, computes the address of its block in slack into one of
 * those slots, and pops: the slot just below RSP is dead but still points into the handler —
 * which is why HVMI's handler ends with `MOV qword [rsp-8], 0`. Here every worker thread, after
 * each switch call, stalls in a function whose uninitialised locals cover that slot (and only the
 * two slots the handler's pushes used, so no dead interrupt frame shows through); preempted there,
 * its stack holds the dead pointer inside the range thread safeness scans. Without the zeroing
 * (memtableZeroStackSlot off) the unload is refused over and over until the daemon gives up.
 */

/** Iterations of the stall loop (a busy wait with 16 bytes of uninitialised locals). */
const STALL = 200;

function addStall(guest: NtGuestBuilder): void {
  guest.code('.text', 'KiStallExecution', (a) => {
    const spin = a.newLabel('KiStallExecution.spin');
    a.push(rbp);
    a.mov(rbp, rsp);
    a.sub(rsp, 0x10);
    a.mov(ecx, STALL);
    a.bind(spin);
    a.dec(ecx);
    a.jne(spin);
    a.mov(rsp, rbp);
    a.pop(rbp);
    a.ret();
  });
}

export const unloadDeadSlot = defineScenario({
  name: 'unload-dead-slot',
  title: 'A dead stack slot into a mem-table handler blocks the unload',
  description:
    'Worker threads run relocated switch loads, then stall in a function whose locals are never written. Without ' +
    'the handler\'s MOV [rsp-8], 0 the dead slot keeps a pointer into the handler, inside the stack range thread ' +
    'safeness scans, and every unload attempt is refused until the daemon gives up.',
  vcpus: 3,
  bugs: [{ name: 'dead slot blocks unload', fixesOff: ['memtableZeroStackSlot'], caughtBy: 'unload-succeeds' }],
  bounds: { ...THREADED_BOUNDS, stepsMax: 1_500_000, choicesMax: 150_000, unloadTries: 30, unloadRetrySteps: 1500 },
  clockVector: CLOCK_VECTOR,
  setup: () => new NtGuest({ vcpus: 3, iterations: 64, threads: 6, workerCallout: 'KiStallExecution', extensions: [addStall] }),
  engine: { start: unloadOnCall(60) },
  oracles: unloadOracles(),
  // B before A is where the dead slot matters: the thread left the handler, its [rsp-8] still points in.
  orderings: [scanVsThreadInHandler('scan-vs-thread-in-memtable-handler', 'memtable handler', 'a mem-table handler')],
  windows: [
    ...UNLOAD_WINDOWS,
    {
      name: 'pointer-into-memtable-handler',
      description: 'a check found a stack value pointing into a mem-table handler',
      reached: (world) => notesOf(world.events, 'thread-safeness').some((c) => String(c.event.detail.region ?? '').startsWith('mem-table handler')),
    },
  ],
});
