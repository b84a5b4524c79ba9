/**
 * Where the NT-like guest lives: guest-virtual (canonical kernel half) and guest-physical
 * addresses, the per-vCPU block (a KPCR stand-in reached through GS), vectors and the guest's
 * own hypercalls. One place, so the image builder, the kernel code and the checks agree.
 */

/** ntoskrnl-like image: GVA base (as on Windows x64) and where its pages sit in RAM. */
export const KERNEL_BASE = 0xfffff80000400000n;
export const KERNEL_GPA = 0x400000;

/** Descriptor tables (IDT, GDT, TSS): one page each. */
export const TABLES_GVA = 0xfffff80000600000n;
export const TABLES_GPA = 0x600000;
export const IDT_OFFSET = 0x0000;
export const GDT_OFFSET = 0x1000;
export const TSS_OFFSET = 0x2000;

/** Kernel stacks, one per vCPU. */
export const STACKS_GVA = 0xfffff80000680000n;
export const STACKS_GPA = 0x680000;
export const STACK_BYTES = 0x4000;
export const MAX_VCPUS = 8;

/** Guest RAM and the region reserved for page tables. */
export const RAM_BYTES = 0x800000;
export const PAGE_TABLES_GPA = 0x700000;

/** The per-vCPU block (in .data), addressed through GS like the KPCR. */
export const PerCpu = {
  /** results[i] of iteration i (dwords). */
  results: 0x000,
  maxIterations: 128,
  /** Iterations completed. */
  completed: 0x200,
  /** Calls of the hooked APIs the thread made. */
  apiCalls: 0x204,
  /** Clock interrupts taken. */
  clockTicks: 0x208,
  /** Sum of the system-service results. */
  serviceSum: 0x20c,
  /** This vCPU's index and the thread's iteration count (set up by the loader). */
  index: 0x210,
  iterations: 0x214,
  /** Scheduler mode: the KTHREAD running on this vCPU (0 when idle), like KPRCB.CurrentThread. */
  currentThread: 0x218,
  /** Scheduler mode: top of this vCPU's idle stack. */
  idleStack: 0x220,
  /** The token of the process this vCPU runs (a shortcut for CurrentThread → process → token). */
  processToken: 0x228,
  bytes: 0x400,
} as const;

/** A TOKEN-like record: `_TOKEN.Privileges` (SEP_TOKEN_PRIVILEGES) where Windows 7 x64 has it. */
export const Token = { present: 0x40, enabled: 0x48, enabledByDefault: 0x50, bytes: 0x60 } as const;

/** The SYSTEM token's privileges at boot (Present = Enabled). */
export const SYSTEM_PRIVILEGES = 0x1ff2ffffbcn;

/**
 * A KTHREAD-like record, for the scheduler mode (offsets are this guest's "CAMI" data: the engine
 * is told them, and reads the records themselves from guest memory).
 */
export const Kthread = {
  /** Saved RSP while the thread is not running (the frame of its last switch). */
  kernelStack: 0x00,
  /** Highest address of its kernel stack (exclusive) and the lowest. */
  stackBase: 0x08,
  stackLimit: 0x10,
  /** ThreadState (u32) and KWAIT_REASON (u32). */
  state: 0x18,
  waitReason: 0x1c,
  /** LIST_ENTRY in its process's thread list (Flink, Blink). */
  threadListEntry: 0x20,
  /** Thread index (u32) and the vCPU it last ran on (u32). */
  index: 0x30,
  vcpu: 0x34,
  /** Its data block (results, completed…: the PerCpu layout, per thread). */
  data: 0x38,
  bytes: 0x80,
} as const;

/** KTHREAD_STATE values (Windows numbering). */
export const ThreadState = { initialized: 0, ready: 1, running: 2, standby: 3, terminated: 4, waiting: 5 } as const;

/** KWAIT_REASON values HVMI's thread-safeness cares about (Windows numbering). */
export const WaitReason = { executive: 0, wrQuantumEnd: 30, wrDispatchInt: 31 } as const;

/** An EPROCESS-like record: the head of its thread list (Flink, Blink) and its thread count. */
export const Eprocess = { threadListHead: 0x00, threadCount: 0x10, bytes: 0x40 } as const;

/** The clock interrupt vector (NT's CLOCK_LEVEL vector). */
export const CLOCK_VECTOR = 0xd1;

/** The guest's own hypercalls (VMCALL with RAX = code): not the engine's business. */
export const Hypercall = {
  /** The vCPU's thread finished all its iterations. */
  threadDone: 0x7663_7075_0001n,
  /** KeBugCheck: RCX = vector, RDX = faulting RIP, R8 = error code. */
  bugCheck: 0x7663_7075_00bcn,
  /** Scheduler mode: thread RCX terminated (the vCPU goes on with another thread). */
  threadExit: 0x7663_7075_0002n,
  /** Scheduler mode: every thread terminated; this vCPU has nothing left to run. */
  processorDone: 0x7663_7075_0003n,
} as const;
