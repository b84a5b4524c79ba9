import type { Introcore } from './engine.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import { IntStatus, IntroError, type IntStatusCode } from './status.ts';
import type { GuestThreads } from '../guest/description.ts';

/**
 * IntThrSafeCheckThreads, check-only: may the engine's code leave the guest? With every vCPU
 * paused, it looks at each vCPU's live RIP and at every thread's stack for a value pointing into
 * the engine's regions of guest code (detour handlers, mem-table handlers) — a thread inside one,
 * or one that will return into one. Running threads are scanned from the lowest of RSP and
 * KernelStack that lies in [StackLimit, StackBase) up to StackBase (or 16 pages from RSP when
 * none does: an interrupt stack); waiting threads only when they were preempted involuntarily
 * (WrQuantumEnd, WrDispatchInt), from KernelStack. The structures are read from guest memory,
 * with the offsets the guest description gives (HVMI's CAMI data).
 */

/** Which regions to look for (IntThrSafeCheckThreads option bits). */
export const ThsOption = {
  checkOnly: 0x1,
  detours: 0x10,
  memtables: 0x20,
} as const;
// HVMI has no bit of its own for the RtlpVirtualUnwind caches: they are detours, found under
// THS_CHECK_DETOURS (IntDetIsPtrInHandler), and named by their tag in the report.

/** The options the unload uses (IntGuestIsSafeToDisable). */
export const UNLOAD_CHECK = ThsOption.checkOnly | ThsOption.detours | ThsOption.memtables;

/** A region of engine code in the guest. */
export interface IntroRegion {
  readonly kind: 'detour' | 'memtable';
  readonly owner: string;
  readonly start: bigint;
  readonly size: number;
}

/** What made the check fail: the thread, where it runs, the stack slot, the pointer and the region it points into. */
export interface UnsafeThread {
  /** The thread's index and record, when the guest has threads the engine knows. */
  readonly thread: { readonly index: number; readonly record: bigint } | null;
  /** The vCPU it runs on (null for a waiting thread). */
  readonly vcpu: number | null;
  /** A live RIP, or a value on the stack. */
  readonly where: 'rip' | 'stack';
  /** The stack address holding the pointer (stack findings). */
  readonly slot: bigint | null;
  readonly pointer: bigint;
  readonly region: IntroRegion;
}

export interface ThreadScan {
  /** success, or CANNOT_UNLOAD. */
  readonly status: IntStatusCode;
  readonly unsafe: UnsafeThread | null;
  /** Threads (running and waiting) looked at, and stack words tested. */
  readonly threads: number;
  readonly words: number;
}

const KERNEL_SPACE = 0xffff800000000000n;
const THREAD_STATE = { running: 2, terminated: 4 } as const;
const INVOLUNTARY = new Set([30, 31]); // WrQuantumEnd, WrDispatchInt
const PAGE = 0x1000n;
const INTERRUPT_STACK_PAGES = 16n;
const MAX_THREADS = 4096;

/** The engine's regions the options select. */
export function introRegions(engine: Introcore, options: number): IntroRegion[] {
  const regions: IntroRegion[] = [];
  if ((options & ThsOption.detours) !== 0) {
    for (const d of engine.detours.detours()) if (d.handlerCloak !== null) regions.push({ kind: 'detour', owner: d.tag === 'api' ? `detour handler ${d.name}` : `${d.tag} cache handler`, start: d.handler, size: d.handlerSize });
  }
  if ((options & ThsOption.memtables) !== 0) {
    for (const e of engine.memtables.entries()) if (e.slackSize > 0) regions.push({ kind: 'memtable', owner: `mem-table handler of 0x${e.rip.toString(16)}`, start: e.slackAddress, size: e.slackSize });
  }
  return regions;
}

export function checkThreads(engine: Introcore, options: number, threads: GuestThreads | null): ThreadScan {
  const glue = engine.glue;
  if (glue.pauseDepth === 0) {
    throw new IntroError(IntStatus.invalidInternalState, 'IntThrSafeCheckThreads: the vCPUs are not paused (a consistent snapshot of every thread needs them stopped)');
  }
  const regions = introRegions(engine, options);
  const cr3 = engine.kernel.systemCr3;
  const read64 = (gva: bigint): bigint | null => {
    const bytes = tryReadGuestVirtual(glue.memory, cr3, gva, 8, engine.kernel.paging);
    return bytes === null ? null : new DataView(bytes.buffer).getBigUint64(0, true);
  };
  const read32 = (gva: bigint): number | null => {
    const value = read64(gva);
    return value === null ? null : Number(value & 0xffffffffn);
  };
  const regionOf = (value: bigint): IntroRegion | null => regions.find((r) => value >= r.start && value < r.start + BigInt(r.size)) ?? null;
  let words = 0;
  let scannedThreads = 0;
  const scan = (from: bigint, to: bigint, found: (slot: bigint, pointer: bigint, region: IntroRegion) => UnsafeThread): UnsafeThread | null => {
    for (let slot = (from + 7n) & ~7n; slot + 8n <= to; slot += 8n) {
      const value = read64(slot);
      if (value === null) return null; // the stack ends at an unmapped page
      words++;
      const region = regionOf(value);
      if (region !== null) return found(slot, value, region);
    }
    return null;
  };
  const threadOf = (record: bigint): { index: number; record: bigint } | null => {
    if (threads === null || record === 0n) return null;
    return { index: read32(record + BigInt(threads.kthread.index)) ?? -1, record };
  };
  const verdict = (unsafe: UnsafeThread | null): ThreadScan => ({ status: unsafe === null ? IntStatus.success : IntStatus.cannotUnload, unsafe, threads: scannedThreads, words });
  const running = new Set<bigint>();

  // Running threads: each vCPU's live RIP and its current stack.
  for (let vcpu = 0; vcpu < glue.vcpuCount; vcpu++) {
    const regs = glue.vcpu(vcpu);
    if (regs.get64('cr3') === 0n) continue;
    const rip = regs.rip();
    if (rip < KERNEL_SPACE) continue;
    scannedThreads++;
    const record = threads === null ? 0n : (read64(regs.get64('gsBase') + BigInt(threads.currentThread)) ?? 0n);
    if (record !== 0n) running.add(record);
    const thread = threadOf(record);
    const ripRegion = regionOf(rip);
    if (ripRegion !== null) return verdict({ thread, vcpu, where: 'rip', slot: null, pointer: rip, region: ripRegion });
    const rsp = regs.gpr('rsp');
    let from = rsp;
    let to = (rsp & ~(PAGE - 1n)) + INTERRUPT_STACK_PAGES * PAGE;
    if (threads !== null && record !== 0n) {
      const base = read64(record + BigInt(threads.kthread.stackBase)) ?? 0n;
      const limit = read64(record + BigInt(threads.kthread.stackLimit)) ?? 0n;
      const saved = read64(record + BigInt(threads.kthread.kernelStack)) ?? 0n;
      const inStack = [rsp, saved].filter((c) => c >= limit && c < base).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (inStack.length > 0) {
        from = inStack[0];
        to = base;
      }
    }
    const found = scan(from, to, (slot, pointer, region) => ({ thread, vcpu, where: 'stack', slot, pointer, region }));
    if (found !== null) return verdict(found);
  }

  // Waiting threads preempted involuntarily: from KernelStack to StackBase.
  if (threads !== null) {
    const head = threads.process + BigInt(threads.eprocess.threadListHead);
    let link = read64(head);
    for (let k = 0; link !== null && link !== head && k < MAX_THREADS; k++, link = read64(link)) {
      const record = link - BigInt(threads.kthread.threadListEntry);
      if (running.has(record)) continue;
      const state = read32(record + BigInt(threads.kthread.state));
      if (state === THREAD_STATE.running || state === THREAD_STATE.terminated) continue;
      if (!INVOLUNTARY.has(read32(record + BigInt(threads.kthread.waitReason)) ?? -1)) continue;
      scannedThreads++;
      const base = read64(record + BigInt(threads.kthread.stackBase)) ?? 0n;
      const saved = read64(record + BigInt(threads.kthread.kernelStack)) ?? 0n;
      const thread = threadOf(record);
      const found = scan(saved, base, (slot, pointer, region) => ({ thread, vcpu: null, where: 'stack', slot, pointer, region }));
      if (found !== null) return verdict(found);
    }
  }
  return verdict(null);
}
