import {
  Assembler, dword, eax, ebx, ecx, edx, gs, qword, r8, r10, r10d, r11, r11d, r12, r12d, r13, r13d, r14d, r15d, rax, rbx, rcx, rdx, ripRel, rsp, withSeg,
  type AssembledCode,
} from '../asm/index.ts';
import { Scn } from './pe-format.ts';
import { writeImage, type ImageSection } from './pe-image.ts';
import { CLOCK_VECTOR, Hypercall, KERNEL_BASE, PerCpu } from './layout.ts';
import { SWITCHES, emitSwitch, switchLabels } from './switch-functions.ts';
import { assembleTwice } from './two-pass.ts';
import { pushesErrorCode } from '../cpu/stop.ts';
import type { GuestMemory } from '../machine/memory.ts';

/**
 * The NT-like kernel image: ntoskrnl's shape in miniature. Sections (RVA):
 *
 *   0x0000 headers
 *   0x1000 .text   page 1: the worker thread (KiWorkerThread), the system-service dispatcher,
 *                  exception stubs and the bug-check path, the clock ISR
 *          .text   page 2: the "hooked page" — two exported APIs the engine detours (so the
 *                  page is read-protected in EPT) next to three compiler switch functions whose
 *                  jump tables live in the same page, and the SSDT (KiServiceTable)
 *          .text   page 3: the system services; the rest of the page is slack
 *   0x4000 INITKDBG  executable, but never used for slack
 *   0x5000 PAGE      executable and pageable: no slack either
 *   0x6000 .rdata
 *   0x7000 .data   (2 pages) the per-vCPU blocks, reached through GS
 *
 * Every address in here is final: the image is written at KERNEL_BASE's physical pages and the
 * code is assembled for KERNEL_BASE.
 */

export const Rva = {
  text: 0x1000,
  hookedPage: 0x2000,
  services: 0x3000,
  initkdbg: 0x4000,
  page: 0x5000,
  rdata: 0x6000,
  data: 0x7000,
  sizeOfImage: 0x9000,
} as const;

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
  /** Every exported label's address (functions, tables, loads, SSDT…). */
  readonly symbols: ReadonlyMap<string, bigint>;
  readonly sections: readonly ImageSection[];
  /** The switch-table loads: their RIP, table address and number of cases. */
  readonly switchLoads: readonly { readonly name: string; readonly rip: bigint; readonly table: bigint; readonly cases: number }[];
  readonly ssdt: bigint;
  readonly entry: bigint;
  /** IDT entry point per vector (exception stubs, the clock ISR). */
  readonly vectors: ReadonlyMap<number, bigint>;
  /** Listing of the code sections (for reports). */
  readonly listing: string;
}

function symbolsOf(code: AssembledCode, names: readonly string[], into: Map<string, bigint>): void {
  for (const name of names) into.set(name, code.addressOf(name));
}

function pageBytes(code: AssembledCode, what: string): Uint8Array {
  if (code.bytes.length > 0x1000) throw new Error(`${what} is ${code.bytes.length} bytes: it must fit in one page`);
  return code.bytes;
}

/** Page 3: the system services (each returns serviceValue(s, vcpu index from GS)). */
function buildServices(base: bigint): AssembledCode {
  const a = new Assembler(base);
  for (let s = 0; s < SERVICE_COUNT; s++) {
    a.align(16, 0xcc);
    a.label(`NtService${s}`);
    a.mov(eax, withSeg(gs, dword(null, PerCpu.index)));
    a.add(eax, serviceValue(s, 0));
    a.ret();
  }
  return a.assemble();
}

/** Page 2: the hooked APIs, the switch functions with their tables, the SSDT. */
function buildHookedPage(base: bigint, services: AssembledCode): AssembledCode {
  return assembleTwice(base, (a, resolve) => {
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
    SWITCHES.forEach((spec, fn) => emitSwitch(a, fn, spec, KERNEL_BASE, resolve));
    a.align(16, 0xcc);
    a.label('KiServiceTable');
    for (let s = 0; s < SERVICE_COUNT; s++) a.dd(Number(services.addressOf(`NtService${s}`) - KERNEL_BASE));
    a.db(0xcc, 0xcc, 0xcc, 0xcc);
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
 * then VMCALL threadDone.
 */
function buildTextPage(base: bigint, hooked: AssembledCode, vectors: Map<number, bigint>): AssembledCode {
  const a = new Assembler(base);
  const loop = a.newLabel('KiWorkerThread.loop');
  const store = a.newLabel('KiWorkerThread.store');
  const callB = a.newLabel('KiWorkerThread.fnB');
  const callC = a.newLabel('KiWorkerThread.fnC');
  const noApiA = a.newLabel('KiWorkerThread.noApiA');
  const noApiB = a.newLabel('KiWorkerThread.noApiB');
  const noService = a.newLabel('KiWorkerThread.noService');
  const next = a.newLabel('KiWorkerThread.next');
  const finished = a.newLabel('KiWorkerThread.finished');
  const systemService = a.newLabel('KiSystemService');
  const bugCheck = a.newLabel('KiBugCheckDispatch');
  const idle = a.newLabel('KiIdleLoop');
  const fnAddress = (fn: number): bigint => hooked.addressOf(switchLabels(SWITCHES[fn]).entry);

  a.label('KiWorkerThread');
  a.sti();
  a.xor(r12d, r12d); //                                       i
  a.mov(r13d, withSeg(gs, dword(null, PerCpu.index))); //     v
  a.mov(r14d, withSeg(gs, dword(null, PerCpu.iterations)));
  a.xor(r15d, r15d); //                                       i mod 3
  a.test(r14d, r14d);
  a.je(finished);
  a.bind(loop);
  a.imul(eax, r12d, 5);
  a.lea(ecx, dword(r13, r13, 2, 0));
  a.add(eax, ecx);
  a.xor(edx, edx);
  a.cmp(r15d, 1);
  a.je(callB);
  a.ja(callC);
  a.mov(ecx, SWITCHES[0].cases + 1);
  a.div(ecx);
  a.mov(ecx, edx);
  a.call(fnAddress(0));
  a.jmp(store);
  a.bind(callB);
  a.mov(ecx, SWITCHES[1].cases + 1);
  a.div(ecx);
  a.mov(ecx, edx);
  a.call(fnAddress(1));
  a.jmp(store);
  a.bind(callC);
  a.mov(ecx, SWITCHES[2].cases + 1);
  a.div(ecx);
  a.mov(ecx, edx);
  a.call(fnAddress(2));
  a.bind(store);
  a.mov(withSeg(gs, dword(null, r12, 4, PerCpu.results)), eax);
  // i mod 3, carried in r15
  a.inc(r15d);
  a.cmp(r15d, 3);
  a.jb(noApiA);
  a.xor(r15d, r15d);
  a.bind(noApiA);
  a.mov(ebx, r12d);
  a.and(ebx, 3);
  a.cmp(ebx, 3);
  a.jne(noApiB);
  a.call(hooked.addressOf(HOOKED_APIS[0]));
  a.bind(noApiB);
  a.mov(ebx, r12d);
  a.and(ebx, 15);
  a.cmp(ebx, 9);
  a.jne(noService);
  a.call(hooked.addressOf(HOOKED_APIS[1]));
  a.bind(noService);
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
  a.mov(r11d, dword(r10, rax, 4, Number(hooked.addressOf('KiServiceTable') - KERNEL_BASE)));
  a.add(r11, r10);
  a.call(r11);
  a.ret();

  // Exception stubs: every vector bug-checks with (vector, error code, faulting RIP).
  for (let vector = 0; vector < 32; vector++) {
    a.align(8, 0xcc);
    vectors.set(vector, a.here());
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
  vectors.set(CLOCK_VECTOR, a.here());
  a.label('KiClockInterrupt');
  a.inc(withSeg(gs, dword(null, PerCpu.clockTicks)));
  a.iretq();
  return a.assemble();
}

function smallSection(base: bigint, name: string): AssembledCode {
  const a = new Assembler(base);
  a.label(name);
  a.xor(eax, eax);
  a.ret();
  return a.assemble();
}

/** Builds the kernel image and writes it at `gpa` (its pages must be mapped at KERNEL_BASE). */
export function buildKernelImage(memory: GuestMemory, gpa: number): KernelImage {
  const at = (rva: number): bigint => KERNEL_BASE + BigInt(rva);
  const vectors = new Map<number, bigint>();
  const services = buildServices(at(Rva.services));
  const hooked = buildHookedPage(at(Rva.hookedPage), services);
  const text = buildTextPage(at(Rva.text), hooked, vectors);
  const initkdbg = smallSection(at(Rva.initkdbg), 'KdInitSystem');
  const pageSection = smallSection(at(Rva.page), 'MmPageableRoutine');
  const symbols = new Map<string, bigint>();
  symbolsOf(text, ['KiWorkerThread', 'KiSystemService', 'KiSystemService.load', 'KiBugCheckDispatch', 'KiIdleLoop', 'KiClockInterrupt'], symbols);
  symbolsOf(hooked, [...HOOKED_APIS, 'KiServiceTable', ...SWITCHES.flatMap((spec) => Object.values(switchLabels(spec)))], symbols);
  symbolsOf(services, Array.from({ length: SERVICE_COUNT }, (_, s) => `NtService${s}`), symbols);
  symbols.set('KdInitSystem', initkdbg.addressOf('KdInitSystem'));
  symbols.set('MmPageableRoutine', pageSection.addressOf('MmPageableRoutine'));

  const textBytes = new Uint8Array(0x2000 + services.bytes.length);
  textBytes.set(pageBytes(text, '.text page 1'));
  textBytes.set(pageBytes(hooked, 'the hooked page'), 0x1000);
  textBytes.set(pageBytes(services, '.text page 3'), 0x2000);
  const rdata = new TextEncoder().encode('vcpusim NT-like kernel\0');
  const code = Scn.code | Scn.execute | Scn.read;
  const sections: ImageSection[] = [
    { name: '.text', virtualAddress: Rva.text, virtualSize: textBytes.length, characteristics: code | Scn.notPaged, bytes: textBytes },
    { name: 'INITKDBG', virtualAddress: Rva.initkdbg, virtualSize: initkdbg.bytes.length, characteristics: code | Scn.notPaged, bytes: initkdbg.bytes },
    { name: 'PAGE', virtualAddress: Rva.page, virtualSize: pageSection.bytes.length, characteristics: code, bytes: pageSection.bytes },
    { name: '.rdata', virtualAddress: Rva.rdata, virtualSize: rdata.length, characteristics: Scn.initializedData | Scn.read | Scn.notPaged, bytes: rdata },
    {
      name: '.data', virtualAddress: Rva.data, virtualSize: Rva.sizeOfImage - Rva.data,
      characteristics: Scn.initializedData | Scn.read | Scn.write | Scn.notPaged, bytes: new Uint8Array(0),
    },
  ];
  const entry = symbols.get('KiWorkerThread')!;
  writeImage(memory, gpa, { base: KERNEL_BASE, sizeOfImage: Rva.sizeOfImage, entryRva: Number(entry - KERNEL_BASE), sections });
  const switchLoads = SWITCHES.map((spec) => {
    const names = switchLabels(spec);
    return { name: spec.name, rip: hooked.addressOf(names.load), table: hooked.addressOf(names.table), cases: spec.cases };
  });
  return {
    base: KERNEL_BASE,
    sizeOfImage: Rva.sizeOfImage,
    symbols,
    sections,
    switchLoads,
    ssdt: symbols.get('KiServiceTable')!,
    entry,
    vectors,
    listing: [text.listing(), hooked.listing(), services.listing()].join('\n'),
  };
}
