import type { PagingFormat } from '../machine/page-tables.ts';

/**
 * What the introspection engine is told about a guest when it starts — the facts HVMI reads from
 * its guest-specific tables (CAMI) and the kernel itself. The guest describes itself in these
 * terms so that it never needs the engine's types: the engine depends on the guest, not back.
 */

/** Where the engine finds the guest's threads (offsets of HVMI's Windows structures, for this guest). */
export interface GuestThreads {
  readonly process: bigint;
  readonly eprocess: { readonly threadListHead: number; readonly threadCount: number };
  readonly kthread: {
    readonly kernelStack: number; readonly stackBase: number; readonly stackLimit: number; readonly state: number;
    readonly waitReason: number; readonly threadListEntry: number; readonly index: number;
  };
  /** Offset of CurrentThread in the block GS points to. */
  readonly currentThread: number;
}

/** What OS detection found about the guest (HVMI reads these from the kernel and CAMI). */
export interface GuestDescription {
  readonly kernelBase: bigint;
  /** GPA of the kernel's page-table root (gGuest.Mm.SystemCr3; under PAE, the PDPT's). */
  readonly systemCr3: number;
  /** The guest's paging (gGuest.PaeEnabled) and code width (gGuest.Guest64): default 4-level, 64-bit. */
  readonly paging?: PagingFormat;
  readonly bits?: 32 | 64;
  readonly ssdt: bigint;
  readonly ssdtEntries: number;
  /** Kernel functions to hook with detours (their pages become read-protected). */
  readonly hookedApis: readonly { readonly name: string; readonly gva: bigint }[];
  /**
   * The RtlpVirtualUnwind code reads the engine replaces by cache handlers (HVMI finds them by
   * pattern on Windows 7): each site's tag (1..8, which of HVMI's eight instructions) and address.
   */
  readonly unwindSites?: readonly { readonly tag: number; readonly gva: bigint }[];
  /**
   * The SYSTEM token whose privileges the timer checks (HVMI follows each process's token; this
   * guest has one process), and where each vCPU's block keeps the token of the process it runs.
   */
  readonly systemToken?: { readonly gva: bigint; readonly presentOffset: number; readonly enabledOffset: number; readonly perCpuOffset: number };
  /** Where the guest's threads are (process list, record offsets); null: thread safeness sees only the vCPUs. */
  readonly threads: GuestThreads | null;
}
