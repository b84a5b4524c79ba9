import type { DecodedInstruction } from '../decoder.ts';
import type { VcpuAccess } from '../glue.ts';
import type { IntStatusCode } from '../status.ts';
import { RegisterHookList, type RegisterHook, type RegisterHookBase, type RegisterHookKind, type RegisterHookListControl } from './hook-list.ts';

/**
 * The engine's register hooks: write hooks on MSRs, control registers, XCRs and the descriptor
 * table registers, each kind in its own list, and what their callbacks are told about a write.
 * Only writes are hooked, as in HVMI (read hooks would exit far too often).
 */

/** The exit a register write comes from. */
export interface RegisterExit {
  readonly vcpuId: number;
  readonly exitTicket: number;
  /** The writing vCPU's registers (it is stopped at the exit). */
  readonly self: VcpuAccess;
}

/** A WRMSR, before it happens. */
export interface MsrWrite extends RegisterExit {
  readonly msr: number;
  /** The MSR's value now; null for an MSR this CPU does not have (the write would #GP). */
  readonly oldValue: bigint | null;
  /** EDX:EAX. */
  readonly newValue: bigint;
}

/** A MOV to CR0, CR3, CR4 or CR8, before it happens. */
export interface CrWrite extends RegisterExit {
  readonly cr: number;
  readonly oldValue: bigint;
  readonly newValue: bigint;
}

/** An XSETBV, before it happens. */
export interface XcrWrite extends RegisterExit {
  readonly xcr: number;
  /** The XCR's value now; null for an XCR this CPU does not have. */
  readonly oldValue: bigint | null;
  /** EDX:EAX. */
  readonly newValue: bigint;
}

/** A descriptor-table register's value: the table's linear base and its limit. */
export interface DescriptorTable {
  readonly base: bigint;
  readonly limit: number;
}

/** An LGDT or LIDT that changes a set-up table register, before it happens. */
export interface DtrLoad extends RegisterExit {
  /** DescriptorAccess flags of the exit (which register, read or write). */
  readonly access: number;
  readonly register: 'idtr' | 'gdtr';
  readonly oldValue: DescriptorTable;
  /** What the instruction's operand holds. */
  readonly newValue: DescriptorTable;
  readonly instruction: DecodedInstruction;
}

/** IG_DESC_ACCESS: which descriptor-table register an exit touches, and how. DTR hooks match these flags exactly. */
export const DescriptorAccess = { idtr: 0x01, gdtr: 0x02, tr: 0x04, ldtr: 0x08, read: 0x10, write: 0x20 } as const;

export type MsrHook = RegisterHook<MsrWrite>;
export type CrHook = RegisterHook<CrWrite>;
export type XcrHook = RegisterHook<XcrWrite>;
export type DtrHook = RegisterHook<DtrLoad>;

export class RegisterHooks {
  readonly msr: RegisterHookList<MsrWrite>;
  readonly cr: RegisterHookList<CrWrite>;
  readonly xcr: RegisterHookList<XcrWrite>;
  readonly dtr: RegisterHookList<DtrLoad>;
  private readonly lists: Readonly<Record<RegisterHookKind, RegisterHookListControl>>;

  constructor(ticket: () => number) {
    this.msr = new RegisterHookList('msr', ticket);
    this.cr = new RegisterHookList('cr', ticket);
    this.xcr = new RegisterHookList('xcr', ticket);
    this.dtr = new RegisterHookList('dtr', ticket);
    this.lists = { msr: this.msr, cr: this.cr, xcr: this.xcr, dtr: this.dtr };
  }

  /** Removes a hook of any kind from its own list. */
  remove(hook: RegisterHookBase): IntStatusCode {
    return this.lists[hook.kind].remove(hook);
  }

  /** IntGuestUninit's order: MSR, DTR, CR, then XCR hooks. */
  uninit(): void {
    for (const kind of ['msr', 'dtr', 'cr', 'xcr'] as const) this.lists[kind].removeAll();
  }

  /** Hooks not removed, of every kind (for oracles and reports). */
  liveHooks(): RegisterHookBase[] {
    return Object.values(this.lists).flatMap((list) => [...list.liveHooks()]);
  }
}
