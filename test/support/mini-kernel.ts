import { Introspection, type IntrospectionOptions } from '../../actors/introspection.ts';
import { Session } from '../../actors/session.ts';
import type { ExitHandler } from '../../actors/hypervisor.ts';
import { Assembler, type AssembledCode } from '../../src/asm/index.ts';
import { Scn } from '../../src/guest/pe-format.ts';
import { writeImage } from '../../src/guest/pe-image.ts';
import type { RuntimeEvent } from '../../actors/events.ts';
import { DEFAULT_FIXES, type Fixes } from '../../src/intro/fixes.ts';
import type { RandomSource } from '../../src/intro/glue.ts';
import type { GuestDescription } from '../../src/guest/description.ts';
import { Pte } from '../../src/machine/page-tables.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { TestMachine } from './test-machine.ts';

/**
 * A tiny kernel image for engine tests: a PE image at a canonical kernel address on a test
 * machine, with a code page, a "data" page the test hooks, and slack. The code is assembled by
 * the test; the engine runs over a real inline session. VMCALL ends the vCPU, unless the test
 * gives the guest a hypercall protocol (`guestCall`): then VMCALLs go to the engine, as in a run.
 *
 *   KBASE+0x0000 headers   KBASE+0x1000 .text (code page, then slack)   KBASE+0x2000 .data (2 pages)
 */
export const KBASE = 0xfffff80000200000n;
export const KGPA = 0x200000;
export const TEXT = KBASE + 0x1000n;
export const DATA = KBASE + 0x2000n;
export const DATA_GPA = KGPA + 0x2000;
export const STACK_TOP = KBASE + 0x4000n;

export interface MiniKernel {
  readonly test: TestMachine;
  readonly session: Session;
  readonly intro: Introspection;
  readonly code: AssembledCode;
  readonly events: RuntimeEvent[];
  /** Notes of kind `what`, in order. */
  notes(what: string): Readonly<Record<string, unknown>>[];
  /** Runs vCPU 0 and handles its exits until it stops for good (bounded). */
  runToEnd(maxChoices?: number): void;
}

export interface MiniKernelOptions {
  fixes?: Fixes;
  textBytes?: number;
  vcpus?: number;
  exitControls?: number;
  /** RtlpVirtualUnwind sites the engine detours at init (tag and label in the test's code). */
  unwindSites?: readonly { tag: number; label: string }[];
  /** The engine's random source (default: always 0). */
  random?: RandomSource;
  /** The guest's own VMCALLs, asked after the engine's hypercalls (default: every VMCALL ends the vCPU). */
  guestCall?: IntrospectionOptions['guestCall'];
  /** A token whose privileges the timer checks (GuestDescription.systemToken). */
  systemToken?: GuestDescription['systemToken'];
}

export function miniKernel(build: (a: Assembler) => void, options: MiniKernelOptions = {}): MiniKernel {
  const test = new TestMachine({ vcpus: options.vcpus ?? 1, exitControls: options.exitControls ?? 0 });
  const a = new Assembler(TEXT);
  build(a);
  const code = a.assemble();
  const textSize = options.textBytes ?? code.bytes.length;
  writeImage(test.machine.memory, KGPA, {
    base: KBASE,
    sizeOfImage: 0x4000,
    entryRva: 0x1000,
    sections: [
      { name: '.text', virtualAddress: 0x1000, virtualSize: textSize, characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged, bytes: code.bytes },
      { name: '.data', virtualAddress: 0x2000, virtualSize: 0x2000, characteristics: Scn.initializedData | Scn.read | Scn.write | Scn.notPaged, bytes: new Uint8Array(0) },
    ],
  });
  for (let page = 0; page < 4; page++) test.tables.map(KBASE + BigInt(page * 0x1000), KGPA + page * 0x1000, Pte.writable);
  for (let vcpu = 0; vcpu < (options.vcpus ?? 1); vcpu++) {
    test.state(vcpu).rip = TEXT;
    test.state(vcpu).setGpr('rsp', STACK_TOP - BigInt(0x400 * vcpu));
  }
  const events: RuntimeEvent[] = [];
  let intro: Introspection | null = null;
  const handler: ExitHandler = (context) => {
    if (context.exit.reason === ExitReason.vmcall && options.guestCall === undefined) return { action: 'shutdown' };
    return intro!.handler(context);
  };
  const session = Session.open({ machine: test.machine, hosts: 'inline', handler, afterHandler: (hv) => intro!.afterHandler(hv), events: (e) => events.push(e), random: options.random });
  intro = new Introspection(session, {
    guest: {
      kernelBase: KBASE, systemCr3: test.tables.root, ssdt: 0n, ssdtEntries: 0, hookedApis: [], threads: null,
      unwindSites: (options.unwindSites ?? []).map((site) => ({ tag: site.tag, gva: code.addressOf(site.label) })),
      systemToken: options.systemToken,
    },
    fixes: options.fixes ?? DEFAULT_FIXES,
    ...(options.guestCall !== undefined ? { guestCall: options.guestCall } : {}),
  });
  intro.start();
  const kernel: MiniKernel = {
    test,
    session,
    intro,
    code,
    events,
    notes: (what) => events.flatMap((e) => (e.kind === 'note' && e.what === what ? [e.detail] : [])),
    runToEnd(maxChoices = 10_000) {
      for (let k = 0; k < maxChoices; k++) {
        if (session.stateOf(0) === 'stopped') return;
        if (session.pendingExits().includes(0)) session.handleExit(0);
        else session.runSlice(0, 1000);
      }
      throw new Error(`vCPU 0 did not finish in ${maxChoices} choices: ${session.describeVcpus()}`);
    },
  };
  return kernel;
}
