import {
  dword, eax, ecx, edx, gs, qword, r8, r9, r10, r10d, r11, r12, r12d, r13, r14, r14d, r15, r15d, rax, rbp, rbx, rcx, rdi, rdx, rsi,
  rsp, withSeg, type Assembler, type Gpr64,
} from '../asm/index.ts';
import type { ImageBuilder, SymbolResolver } from './image-builder.ts';
import { emitHookedApiCalls } from './kernel.ts';
import { Eprocess, Hypercall, Kthread, PerCpu, ThreadState, WaitReason } from './layout.ts';
import { emitWorkerStep } from './switch-functions.ts';

/**
 * The scheduler mode of the NT-like guest: more threads than vCPUs, each with its own kernel
 * stack and KTHREAD-like record, preempted by the clock interrupt. Quantum end saves the whole
 * context on the thread's own stack (its iret frame and every GPR), records the stack pointer in
 * KernelStack, marks the thread Ready with WaitReason WrQuantumEnd, and resumes the next Ready
 * thread — claimed with LOCK CMPXCHG into Standby, then Running once it is this vCPU's current
 * thread, so it may be one another vCPU just left: threads migrate.
 * A thread can therefore be preempted anywhere interrupts are on — inside a detour handler in
 * slack, inside a mem-table handler — which is what HVMI's thread-safeness check is for. The
 * process's thread list and every record are in guest memory, where the engine reads them.
 *
 * The worker thread t computes, for i < iterations, results[i] = switch_{i mod 3}((5i + 3t) mod
 * (n + 1)), calling NtQueryTimerA when i mod 4 = 3 and NtSetEventB when i mod 16 = 9, in its own
 * data block (the PerCpu layout); a scenario may have it call a function of its own after each
 * result (the callout, which may clobber RAX, RCX, RDX and R8–R11).
 */

/** GPRs the switch saves, in push order (the frame at KernelStack holds them reversed, then the iret frame). */
const SAVED: readonly Gpr64[] = [rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
/** Bytes of a saved context: the GPRs and the 5-qword iret frame. */
export const SWITCH_FRAME_BYTES = (SAVED.length + 5) * 8;

export interface SchedulerLayout {
  readonly threads: number;
  /** A function every worker calls after storing each result (a symbol), if any. */
  readonly callout?: string;
}

const restoreAndReturn = (a: Assembler): void => {
  for (let k = SAVED.length - 1; k >= 0; k--) a.pop(SAVED[k]);
  a.iretq();
};

/** The thread records and the process that lists them (every mode: the engine reads them). */
export function addThreadRecords(builder: ImageBuilder, threads: number): void {
  builder.data('.data', 'KiThreadTable', threads * Kthread.bytes, { align: 64 });
  builder.data('.data', 'PsInitialSystemProcess', Eprocess.bytes, { align: 16 });
}

/** The scheduler's code and data, added to the kernel image. */
export function addSchedulerParts(builder: ImageBuilder, layout: SchedulerLayout): void {
  const n = layout.threads;
  builder.data('.data', 'KiThreadData', n * PerCpu.bytes, { align: 64 });
  builder.data('.data', 'KiTerminatedCount', 4, { align: 4 });

  // KiDispatchNext: r10d = the thread index to try first; IF = 0; uses no stack until it has
  // switched (the old thread may already run on another vCPU, on the stack RSP still points to).
  builder.code('.text', 'KiDispatchNext', (a, symbol) => {
    const attempt = a.newLabel('KiDispatchNext.attempt');
    const inRange = a.newLabel('KiDispatchNext.inRange');
    const claimed = a.newLabel('KiDispatchNext.claimed');
    a.mov(r8, symbol('KiThreadTable'));
    a.mov(ecx, n);
    a.bind(attempt);
    a.cmp(r10d, n);
    a.jb(inRange);
    a.xor(r10d, r10d);
    a.bind(inRange);
    a.imul(eax, r10d, Kthread.bytes);
    a.lea(r9, qword(r8, rax, 1, 0));
    a.mov(eax, ThreadState.ready);
    a.mov(edx, ThreadState.standby);
    a.lock().cmpxchg(dword(r9, Kthread.state), edx);
    a.je(claimed);
    a.inc(r10d);
    a.dec(ecx);
    a.jne(attempt);
    a.jmp(symbol('KiIdle'));
    // Claimed: Standby (chosen, not yet running) until it is this vCPU's current thread on its
    // own stack — a thread is never in neither category for an observer that pauses us here.
    a.bind(claimed);
    a.mov(withSeg(gs, qword(null, PerCpu.currentThread)), r9);
    a.mov(eax, withSeg(gs, dword(null, PerCpu.index)));
    a.mov(dword(r9, Kthread.vcpu), eax);
    a.mov(rsp, qword(r9, Kthread.kernelStack));
    a.mov(dword(r9, Kthread.state), ThreadState.running);
    restoreAndReturn(a);
  });

  // KiIdle: no thread to run. The vCPU leaves the stack of the thread it ran last for its own idle
  // stack (as the idle thread runs on its own), then: when every thread has terminated it is done;
  // otherwise it halts until the next clock interrupt dispatches again. (Left on the last thread's
  // stack, a finished vCPU made the engine's stack scan — which for a vCPU with no current thread
  // reads 16 pages up from RSP — read the dead frames of other threads' stacks.)
  builder.code('.text', 'KiIdle', (a, symbol) => {
    const done = a.newLabel('KiIdle.done');
    const halt = a.newLabel('KiIdle.halt');
    a.mov(withSeg(gs, qword(null, PerCpu.currentThread)), 0);
    a.mov(rsp, withSeg(gs, qword(null, PerCpu.idleStack)));
    a.mov(rax, symbol('KiTerminatedCount'));
    a.cmp(dword(rax), n);
    a.je(done);
    a.sti();
    a.bind(halt);
    a.hlt();
    a.jmp(halt);
    a.bind(done);
    a.mov(rax, Hypercall.processorDone);
    a.vmcall();
    a.jmp(halt);
  });

  // The clock interrupt in scheduler mode: count the tick; quantum end for the running thread.
  builder.code('.text', 'KiSchedulerTick', (a, symbol) => {
    const idle = a.newLabel('KiSchedulerTick.idle');
    a.inc(withSeg(gs, dword(null, PerCpu.clockTicks)));
    for (const register of SAVED) a.push(register);
    a.mov(r9, withSeg(gs, qword(null, PerCpu.currentThread)));
    a.test(r9, r9);
    a.je(idle);
    a.mov(qword(r9, Kthread.kernelStack), rsp);
    a.mov(dword(r9, Kthread.waitReason), WaitReason.wrQuantumEnd);
    a.mov(r10d, dword(r9, Kthread.index));
    a.inc(r10d);
    // Ready last: from this store on, another vCPU may resume the thread from its saved frame.
    a.mov(dword(r9, Kthread.state), ThreadState.ready);
    a.jmp(symbol('KiDispatchNext'));
    a.bind(idle);
    a.mov(r10d, withSeg(gs, dword(null, PerCpu.index)));
    a.jmp(symbol('KiDispatchNext'));
  });

  // A vCPU starts here on its idle stack and takes its first thread.
  builder.code('.text', 'KiStartDispatch', (a, symbol) => {
    a.cli();
    a.mov(r10d, withSeg(gs, dword(null, PerCpu.index)));
    a.jmp(symbol('KiDispatchNext'));
  });

  // A thread that returns from its work: Terminated, counted, reported; the vCPU goes on.
  builder.code('.text', 'KiTerminateThread', (a, symbol) => {
    a.cli();
    a.mov(r9, withSeg(gs, qword(null, PerCpu.currentThread)));
    a.mov(dword(r9, Kthread.state), ThreadState.terminated);
    a.mov(rax, symbol('KiTerminatedCount'));
    a.lock().inc(dword(rax));
    a.mov(ecx, dword(r9, Kthread.index));
    a.mov(rax, Hypercall.threadExit);
    a.vmcall();
    a.xor(r10d, r10d);
    a.jmp(symbol('KiDispatchNext'));
  });

  // The worker: RBX = its data block, R13 = thread index, R14 = iterations (set in its first frame).
  builder.code('.text', 'KiThreadWorker', (a, symbol) => emitThreadWorker(a, symbol, layout.callout));
}

function emitThreadWorker(a: Assembler, symbol: SymbolResolver, callout: string | undefined): void {
  const loop = a.newLabel('KiThreadWorker.loop');
  const finished = a.newLabel('KiThreadWorker.finished');
  a.sti();
  a.xor(r12d, r12d); //                                   i
  a.xor(r15d, r15d); //                                   i mod 3
  a.test(r14d, r14d);
  a.je(finished);
  a.bind(loop);
  emitWorkerStep(a, 'KiThreadWorker', symbol, () => {
    a.mov(dword(rbx, r12, 4, PerCpu.results), eax);
    if (callout !== undefined) a.call(symbol(callout));
  });
  emitHookedApiCalls(a, 'KiThreadWorker', symbol, eax);
  a.inc(r12d);
  a.mov(dword(rbx, PerCpu.completed), r12d);
  a.cmp(r12d, r14d);
  a.jb(loop);
  a.bind(finished);
  a.jmp(symbol('KiTerminateThread'));
}

/** Where one thread lives: its record, data block and stack. */
export interface ThreadPlacement {
  readonly record: bigint;
  readonly data: bigint;
  readonly stackBase: bigint;
  readonly stackLimit: bigint;
}

/** Registers the worker starts with. */
export interface ThreadStart {
  readonly entry: bigint;
  readonly index: number;
  readonly iterations: number;
  readonly codeSelector: number;
  readonly dataSelector: number;
}

/**
 * Writes a thread's record and its first frame: the context KiDispatchNext restores, as if the
 * thread had been preempted at its entry point. `write64(gva, value)` writes guest memory.
 */
export function writeThread(write64: (gva: bigint, value: bigint) => void, write32: (gva: bigint, value: number) => void, where: ThreadPlacement, start: ThreadStart): void {
  const frame = where.stackBase - 0x40n - BigInt(SWITCH_FRAME_BYTES);
  const saved = new Map<Gpr64, bigint>([[rbx, where.data], [r13, BigInt(start.index)], [r14, BigInt(start.iterations)]]);
  SAVED.forEach((register, k) => write64(frame + BigInt((SAVED.length - 1 - k) * 8), saved.get(register) ?? 0n));
  const iret = frame + BigInt(SAVED.length * 8);
  write64(iret, start.entry);
  write64(iret + 8n, BigInt(start.codeSelector));
  write64(iret + 16n, 0x202n);
  write64(iret + 24n, where.stackBase - 0x48n);
  write64(iret + 32n, BigInt(start.dataSelector));
  write64(where.record + BigInt(Kthread.kernelStack), frame);
  write64(where.record + BigInt(Kthread.stackBase), where.stackBase);
  write64(where.record + BigInt(Kthread.stackLimit), where.stackLimit);
  write32(where.record + BigInt(Kthread.state), ThreadState.ready);
  write32(where.record + BigInt(Kthread.waitReason), WaitReason.executive);
  write32(where.record + BigInt(Kthread.index), start.index);
  write32(where.record + BigInt(Kthread.vcpu), 0xffffffff);
  write64(where.record + BigInt(Kthread.data), where.data);
  write32(where.data + BigInt(PerCpu.index), start.index);
  write32(where.data + BigInt(PerCpu.iterations), start.iterations);
}

/** Links the records into the process's thread list (LIST_ENTRY at Kthread.threadListEntry). */
export function linkThreadList(write64: (gva: bigint, value: bigint) => void, write32: (gva: bigint, value: number) => void, process: bigint, records: readonly bigint[]): void {
  const head = process + BigInt(Eprocess.threadListHead);
  const entries = records.map((r) => r + BigInt(Kthread.threadListEntry));
  const nodes = [head, ...entries];
  nodes.forEach((node, k) => {
    write64(node, nodes[(k + 1) % nodes.length]);
    write64(node + 8n, nodes[(k - 1 + nodes.length) % nodes.length]);
  });
  write32(process + BigInt(Eprocess.threadCount), records.length);
}
