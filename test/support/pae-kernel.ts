import { Introspection } from '../../actors/introspection.ts';
import { Session } from '../../actors/session.ts';
import type { ExitReply } from '../../actors/hypervisor.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import { Assembler, dword, ecx, edi, edx } from '../../src/asm/index.ts';
import { Scn } from '../../src/guest/pe-format.ts';
import { writeImage } from '../../src/guest/pe-image.ts';
import { DEFAULT_FIXES, type Fixes } from '../../src/intro/fixes.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { loadPdptes } from '../../src/machine/protected-mode.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { PaeMachine } from './pae-machine.ts';

/**
 * A 32-bit kernel on a PAE machine with the engine beside it, for tests of page-table writes the
 * way a PAE kernel makes them: its code loads EDI with the address of one PTE (through a window
 * on the identity map's first page table), ECX and EDX with the halves of a new entry, then runs
 * the stores a test emits, then VMCALL. The test steps the vCPU and hands its exits to the engine.
 */

export const KBASE32 = 0x80400000n;
const KGPA32 = 0x400000;
/** Where the kernel sees the identity map's first page table (covering 0..2 MiB). */
const PT_WINDOW = KBASE32 + 0x8000n;
/** The page whose PTE the kernel rewrites, and its new frame. */
export const PAE_PAGE = 0x5000;
export const PAE_FRAME = 0x250000;
/** The entry the kernel writes: PAE_FRAME, present, writable, NX (so both halves change). */
export const PAE_ENTRY = BigInt(PAE_FRAME) | Pte.present | Pte.writable | (1n << 63n);

/** One exit the engine handled: where, what it answered, and where the vCPU resumes. */
export interface HandledExit {
  readonly reason: number;
  readonly rip: bigint;
  readonly reply: ExitReply;
  readonly ripAfter: bigint;
}

export interface PaeKernel {
  readonly session: Session;
  readonly intro: Introspection;
  readonly events: RuntimeEvent[];
  readonly pteGpa: number;
  readonly tm: PaeMachine;
  /** Code addresses of the kernel's labels (`stores` may bind its own). */
  addressOf(label: string): bigint;
  /** Runs the vCPU, handing each exit to the engine, until VMCALL; `twice` delivers EPT exits twice. */
  runToEnd(twice?: boolean): HandledExit[];
}

export interface PaeKernelOptions {
  readonly fixes?: Fixes;
  /** The stores (EDI: the PTE, ECX: its low half, EDX: its high half); default low then high. */
  readonly stores?: (a: Assembler) => void;
}

/** The stores of a PAE kernel: the low half at label `low`, then the high half at `high`. */
export function lowThenHigh(a: Assembler): void {
  a.bind(a.newLabel('low'));
  a.mov(dword(edi), ecx);
  a.bind(a.newLabel('high'));
  a.mov(dword(edi, 4), edx);
}

export function paeKernel(options: PaeKernelOptions = {}): PaeKernel {
  const tm = new PaeMachine();
  const memory = tm.machine.memory;
  const pteGpa = tm.entries(PAE_PAGE)[1];
  const ptGpa = pteGpa - (pteGpa % 0x1000);
  const a = new Assembler(KBASE32 + 0x1000n, { bitness: 32 });
  a.mov(edi, Number(PT_WINDOW) + (PAE_PAGE >> 12) * 8);
  a.mov(ecx, Number(PAE_ENTRY & 0xffffffffn));
  a.mov(edx, Number(PAE_ENTRY >> 32n));
  (options.stores ?? lowThenHigh)(a);
  a.bind(a.newLabel('end'));
  a.vmcall();
  const code = a.assemble();
  writeImage(memory, KGPA32, {
    base: KBASE32,
    sizeOfImage: 0x4000,
    entryRva: 0x1000,
    sections: [{ name: '.text', virtualAddress: 0x1000, virtualSize: code.bytes.length, characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged, bytes: code.bytes }],
  });
  tm.tables.mapRange(KBASE32, KGPA32, 0x4000, Pte.writable);
  tm.tables.map(PT_WINDOW, ptGpa, Pte.writable);
  // The kernel's half needed a new PDPTE: the CPU takes it at a CR3 load, as hardware does.
  loadPdptes(tm.state(), memory, tm.tables.root);
  tm.state().rip = KBASE32 + 0x1000n;
  const events: RuntimeEvent[] = [];
  let intro: Introspection | null = null;
  const session = Session.open({
    machine: tm.machine,
    hosts: 'inline',
    handler: (context) => (context.exit.reason === ExitReason.vmcall ? { action: 'shutdown' } : intro!.handler(context)),
    afterHandler: (hv) => intro!.afterHandler(hv),
    events: (e) => events.push(e),
  });
  intro = new Introspection(session, {
    guest: { kernelBase: KBASE32, systemCr3: tm.tables.root, paging: 'pae', bits: 32, ssdt: 0n, ssdtEntries: 0, hookedApis: [], threads: null },
    fixes: options.fixes ?? DEFAULT_FIXES,
  });
  intro.start();
  return {
    session, intro, events, pteGpa, tm,
    addressOf: (label) => code.addressOf(label),
    runToEnd(twice = false) {
      // An instruction's first exit only caches it (the TOCTOU rule retries); the second is emulated — that one is delivered twice.
      const seen = new Set<bigint>();
      const handled: HandledExit[] = [];
      for (let k = 0; k < 1000; k++) {
        if (session.stateOf(0) === 'stopped') return handled;
        if (session.pendingExits().includes(0)) {
          const rip = tm.state().rip;
          const reason = session.pendingExitReason(0) ?? -1;
          const duplicate = twice && reason === ExitReason.eptViolation && seen.has(rip);
          seen.add(rip);
          const reply = session.handleExit(0, duplicate ? 'duplicate-exit' : undefined);
          handled.push({ reason, rip, reply, ripAfter: tm.state().rip });
        } else {
          session.runSlice(0, 1000);
        }
      }
      throw new Error(`the vCPU did not finish: ${session.describeVcpus()}`);
    },
  };
}

/** The details of the engine notes named `what`, in order. */
export const notesOf = (events: readonly RuntimeEvent[], what: string): Readonly<Record<string, unknown>>[] =>
  events.flatMap((e) => (e.kind === 'note' && e.what === what ? [e.detail] : []));
