import {
  dword, eax, ebx, gs, qword, r8, r10, r11, r11d, r12, r12d, r13d, r14d, r15d, rax, rbx, rcx, rdx, ripRel, rsp, withSeg,
  type Assembler, type Gpr32,
} from '../asm/index.ts';
import { ImageBuilder, type SectionSpec, type SymbolResolver } from './image-builder.ts';
import { Scn } from './pe-format.ts';
import { writeImage, type ImageSection } from './pe-image.ts';
import { CLOCK_VECTOR, Hypercall, KERNEL_BASE, MAX_VCPUS, PerCpu, SYSTEM_PRIVILEGES, Token } from './layout.ts';
import { SWITCHES, emitSwitch, emitWorkerStep, switchLabels } from './switch-functions.ts';
import { emitUnwindFunctions } from './unwind.ts';
import { pushesErrorCode } from '../cpu/stop.ts';
import type { GuestMemory } from '../machine/memory.ts';

/**
 * The NT-like kernel image: ntoskrnl's shape in miniature, built from parts by the image builder
 * (so a scenario adds its own code and data the same way). Sections, each on page boundaries:
 *
 *   headers (one page)
 *   .text     page 1: the worker thread (KiWorkerThread), the system-service dispatcher,
 *             exception stubs and the bug-check path, the clock ISR
 *             page 2: the "hooked page" (a part on its own page) — two exported APIs the engine
 *             detours (so the page is read-protected in EPT) next to three compiler switch
 *             functions whose jump tables live in the same page, and the SSDT (KiServiceTable)
 *             page 3: the system services, the unwinder's byte readers (RtlpVirtualUnwind),
 *             then scenario code; the rest of the page is slack
 *   INITKDBG  executable, but never used for slack
 *   PAGE      executable and pageable: no slack either
 *   .rdata    strings, then scenario constants
 *   .data     the per-vCPU blocks (KiProcessorBlock, reached through GS), then scenario variables
 */

/** Sections of the kernel image, in layout order, with their characteristics. */
export const KERNEL_SECTIONS: readonly SectionSpec[] = [
  { name: '.text', characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged },
  { name: 'INITKDBG', characteristics: Scn.code | Scn.execute | Scn.read | Scn.notPaged },
  { name: 'PAGE', characteristics: Scn.code | Scn.execute | Scn.read },
  { name: '.rdata', characteristics: Scn.initializedData | Scn.read | Scn.notPaged },
  { name: '.data', characteristics: Scn.initializedData | Scn.read | Scn.write | Scn.notPaged },
];

/** Symbol of the per-vCPU blocks in .data (vCPU v's block is at KiProcessorBlock + v × PerCpu.bytes). */
export const PROCESSOR_BLOCK = 'KiProcessorBlock';

/** System services in KiServiceTable. */
export const SERVICE_COUNT = 4;

/** What system service `s` returns on vCPU `vcpu`. */
export function serviceValue(s: number, vcpu: number): number {
  return 0x5000 + 0x10 * s + vcpu;
}

/** The hooked APIs (detoured by the engine): name → label. */
export const HOOKED_APIS = ['NtQueryTimerA', 'NtSetEventB'] as const;


export interface KernelImage {
  readonly base: bigint;
  readonly sizeOfImage: number;
  /** Every named label of every part (functions, tables, loads, SSDT, scenario additions…). */
  readonly symbols: ReadonlyMap<string, bigint>;
  readonly sections: readonly ImageSection[];
  /** The switch-table loads: their RIP, table address and number of cases. */
  readonly switchLoads: readonly { readonly name: string; readonly rip: bigint; readonly table: bigint; readonly cases: number }[];
  readonly ssdt: bigint;
  readonly entry: bigint;
  /** IDT entry point per vector (exception stubs, the clock ISR). */
  readonly vectors: ReadonlyMap<number, bigint>;
  /** Listing of the code (for reports). */
  readonly listing: string;
}

/** Page 3: the system services (each returns serviceValue(s, vcpu index from GS)). */
function emitServices(a: Assembler): void {
  for (let s = 0; s < SERVICE_COUNT; s++) {
    a.align(16, 0xcc);
    a.label(`NtService${s}`);
    a.mov(eax, withSeg(gs, dword(null, PerCpu.index)));
    a.add(eax, serviceValue(s, 0));
    a.ret();
  }
}

/** Page 2: the hooked APIs, the switch functions with their tables, the SSDT. */
function emitHookedPage(a: Assembler, symbol: SymbolResolver): void {
  // Hooked APIs: a 5-byte prologue (PUSH RBX; SUB RSP, 0x20) the detour relocates.
  for (const name of HOOKED_APIS) {
    a.align(16, 0xcc);
    a.label(name);
    a.push(rbx);
    a.sub(rsp, 0x20);
    a.inc(withSeg(gs, dword(null, PerCpu.apiCalls)));
    a.add(rsp, 0x20);
    a.pop(rbx);
    a.ret();
  }
  SWITCHES.forEach((spec, fn) => emitSwitch(a, fn, spec, KERNEL_BASE, symbol));
  a.align(16, 0xcc);
  a.label('KiServiceTable');
  for (let s = 0; s < SERVICE_COUNT; s++) a.dd(Number(symbol(`NtService${s}`) - KERNEL_BASE));
  a.db(0xcc, 0xcc, 0xcc, 0xcc);
}

/** The exception vectors (IDT entry points) and their symbols. */
const TRAP_VECTORS = Array.from({ length: 32 }, (_, vector) => vector);
const trapSymbol = (vector: number): string => `KiTrap${vector.toString(16).padStart(2, '0')}`;

/** The worker's API calls for iteration R12D = i: NtQueryTimerA when i mod 4 = 3, NtSetEventB when i mod 16 = 9. */
export function emitHookedApiCalls(a: Assembler, prefix: string, resolve: SymbolResolver, scratch: Gpr32): void {
  const calls = [{ mask: 3, equals: 3 }, { mask: 15, equals: 9 }];
  calls.forEach(({ mask, equals }, k) => {
    const skip = a.newLabel(`${prefix}.noApi${k}`);
    a.mov(scratch, r12d);
    a.and(scratch, mask);
    a.cmp(scratch, equals);
    a.jne(skip);
    a.call(resolve(HOOKED_APIS[k]));
    a.bind(skip);
  });
}

/**
 * Page 1: the worker thread, the service dispatcher, exception stubs and the clock ISR.
 *
 * KiWorkerThread (one per vCPU, GS = its per-vCPU block), for i in 0..iterations-1:
 *   fn  = i mod 3;  n = SWITCHES[fn].cases
 *   idx = (5i + 3v) mod (n + 1)                 (n selects the default case)
 *   results[i] = switch_fn(idx)
 *   i mod 4 == 3:  NtQueryTimerA()              i mod 16 == 9: NtSetEventB()
 *   i mod 8 == 5:  serviceSum += KiSystemService((i >> 3) mod 4)
 *   completed = i + 1
 * then KiThreadExit: VMCALL threadDone, and idle.
 */
function emitTextPage(a: Assembler, symbol: SymbolResolver): void {
  const loop = a.newLabel('KiWorkerThread.loop');
  const next = a.newLabel('KiWorkerThread.next');
  const finished = a.newLabel('KiThreadExit');
  const systemService = a.newLabel('KiSystemService');
  const bugCheck = a.newLabel('KiBugCheckDispatch');
  const idle = a.newLabel('KiIdleLoop');

  a.label('KiWorkerThread');
  a.sti();
  a.xor(r12d, r12d); //                                       i
  a.mov(r13d, withSeg(gs, dword(null, PerCpu.index))); //     v
  a.mov(r14d, withSeg(gs, dword(null, PerCpu.iterations)));
  a.xor(r15d, r15d); //                                       i mod 3
  a.test(r14d, r14d);
  a.je(finished);
  a.bind(loop);
  emitWorkerStep(a, 'KiWorkerThread', symbol, () => a.mov(withSeg(gs, dword(null, r12, 4, PerCpu.results)), eax));
  emitHookedApiCalls(a, 'KiWorkerThread', symbol, ebx);
  a.mov(ebx, r12d);
  a.and(ebx, 7);
  a.cmp(ebx, 5);
  a.jne(next);
  a.mov(eax, r12d);
  a.shr(eax, 3);
  a.and(eax, SERVICE_COUNT - 1);
  a.call(systemService);
  a.add(withSeg(gs, dword(null, PerCpu.serviceSum)), eax);
  a.bind(next);
  a.inc(r12d);
  a.mov(withSeg(gs, dword(null, PerCpu.completed)), r12d);
  a.cmp(r12d, r14d);
  a.jb(loop);
  a.bind(finished);
  a.mov(rax, Hypercall.threadDone);
  a.vmcall();
  a.bind(idle);
  a.hlt();
  a.jmp(idle);

  // KiSystemService: EAX = service number; the table read is a SIB load from a read-protected
  // page that mem-tables must leave alone (the GLA is inside the SSDT).
  a.align(16, 0xcc);
  a.bind(systemService);
  a.lea(r10, ripRel(KERNEL_BASE));
  a.label('KiSystemService.load');
  a.mov(r11d, dword(r10, rax, 4, Number(symbol('KiServiceTable') - KERNEL_BASE)));
  a.add(r11, r10);
  a.call(r11);
  a.ret();

  // Exception stubs: every vector bug-checks with (vector, error code, faulting RIP).
  for (const vector of TRAP_VECTORS) {
    a.align(8, 0xcc);
    a.label(trapSymbol(vector));
    if (!pushesErrorCode(vector)) a.push(0);
    a.push(vector);
    a.jmp(bugCheck);
  }
  a.align(16, 0xcc);
  a.bind(bugCheck);
  a.mov(rcx, qword(rsp, 0));
  a.mov(r8, qword(rsp, 8));
  a.mov(rdx, qword(rsp, 16));
  a.mov(rax, Hypercall.bugCheck);
  a.vmcall();
  a.jmp(idle);

  // The clock interrupt: count the tick, return (IRETQ serialises: stale code is refetched).
  a.align(16, 0xcc);
  a.label('KiClockInterrupt');
  a.inc(withSeg(gs, dword(null, PerCpu.clockTicks)));
  a.iretq();
}

function emitStub(a: Assembler): void {
  a.xor(eax, eax);
  a.ret();
}

/** The kernel's own parts, added to `builder` (which must have KERNEL_SECTIONS). */
export function addKernelParts(builder: ImageBuilder): void {
  builder.code('.text', 'KiSystemStartup', (a, symbol) => emitTextPage(a, symbol));
  builder.code('.text', 'KiHookedPage', (a, symbol) => emitHookedPage(a, symbol), { ownPage: true });
  builder.code('.text', 'KiServices', (a) => emitServices(a));
  builder.code('.text', 'RtlpVirtualUnwind', (a) => emitUnwindFunctions(a));
  builder.code('INITKDBG', 'KdInitSystem', (a) => emitStub(a));
  builder.code('PAGE', 'MmPageableRoutine', (a) => emitStub(a));
  builder.data('.rdata', 'KiBanner', new TextEncoder().encode('vcpusim NT-like kernel\0'), { align: 1 });
  builder.data('.data', PROCESSOR_BLOCK, MAX_VCPUS * PerCpu.bytes, { align: PerCpu.bytes });
  builder.data('.data', SYSTEM_TOKEN, systemToken(), { align: 16 });
}

/** The SYSTEM process's token (the engine checks its privileges on every timer tick). */
export const SYSTEM_TOKEN = 'SeSystemToken';

function systemToken(): Uint8Array {
  const bytes = new Uint8Array(Token.bytes);
  const view = new DataView(bytes.buffer);
  for (const field of [Token.present, Token.enabled, Token.enabledByDefault]) view.setBigUint64(field, SYSTEM_PRIVILEGES, true);
  return bytes;
}

/** A new image builder for the kernel, with its sections and its own parts. */
export function kernelImageBuilder(): ImageBuilder {
  const builder = new ImageBuilder(KERNEL_BASE);
  for (const section of KERNEL_SECTIONS) builder.section(section);
  addKernelParts(builder);
  return builder;
}

/** Links the image (kernel and scenario parts) and writes it at `gpa` (its pages must be mapped at KERNEL_BASE). */
export function writeKernelImage(memory: GuestMemory, gpa: number, builder: ImageBuilder, entry = 'KiWorkerThread'): KernelImage {
  const linked = builder.link();
  const symbol = (name: string): bigint => {
    const address = linked.symbols.get(name);
    if (address === undefined) throw new Error(`kernel symbol ${name} is missing`);
    return address;
  };
  const hookedPage = linked.parts.get('KiHookedPage')!;
  if (linked.parts.get('KiSystemStartup')!.size > 0x1000 || (hookedPage.address & 0xfffn) !== 0n) {
    throw new Error('.text page 1 outgrew its page: the hooked page must stay the second page of .text');
  }
  writeImage(memory, gpa, { base: KERNEL_BASE, sizeOfImage: linked.sizeOfImage, entryRva: Number(symbol(entry) - KERNEL_BASE), sections: linked.sections });
  const vectors = new Map<number, bigint>(TRAP_VECTORS.map((vector) => [vector, symbol(trapSymbol(vector))]));
  vectors.set(CLOCK_VECTOR, symbol('KiClockInterrupt'));
  const switchLoads = SWITCHES.map((spec) => {
    const names = switchLabels(spec);
    return { name: spec.name, rip: symbol(names.load), table: symbol(names.table), cases: spec.cases };
  });
  return {
    base: KERNEL_BASE,
    sizeOfImage: linked.sizeOfImage,
    symbols: linked.symbols,
    sections: linked.sections,
    switchLoads,
    ssdt: symbol('KiServiceTable'),
    entry: symbol(entry),
    vectors,
    listing: linked.listing,
  };
}
