import { dword, ecx, eax, edx, ripRel, rax, rcx, rdx, r8, r8d, r9, r9d, r10, r12d, r13, r15d, type Assembler, type Gpr32, type Gpr64 } from '../asm/index.ts';

/**
 * Compiler-style switch functions, the way MSVC lays them out for x64 kernel code: a bounds
 * check, `lea base, [__ImageBase]`, a 4-byte load of the case's RVA from a jump table that lives
 * in the same code page (`mov dst, [base + idx*4 + table_rva]` — the instruction mem-tables
 * relocates), `add`, `jmp`, the case bodies, then the table of RVAs padded with INT3s. Each switch
 * uses different registers so relocation is exercised with and without REX bits.
 */

export interface SwitchSpec {
  readonly name: string;
  /** Number of table cases (the default takes index == cases and above). */
  readonly cases: number;
  /** Destination of the table load (32-bit) and its 64-bit form; index register; base register. */
  readonly dst32: Gpr32;
  readonly dst64: Gpr64;
  readonly index64: Gpr64;
  readonly index32: Gpr32;
  readonly base: Gpr64;
}

export const SWITCHES: readonly SwitchSpec[] = [
  { name: 'IopDispatchA', cases: 8, dst32: ecx, dst64: rcx, index64: rax, index32: eax, base: rdx },
  { name: 'PspDispatchB', cases: 12, dst32: r8d, dst64: r8, index64: r9, index32: r9d, base: r10 },
  { name: 'KiDispatchC', cases: 5, dst32: eax, dst64: rax, index64: rcx, index32: ecx, base: rdx },
];

/** The value case `k` of switch `fn` returns; the default returns `defaultValue(fn)`. */
export function caseValue(fn: number, k: number): number {
  return 0x1000 * (fn + 1) + 0x111 * k + 0x7;
}

export function defaultValue(fn: number): number {
  return (0xdead0000 | fn) >>> 0;
}

/** Label names the kernel exports for each switch. */
export const switchLabels = (spec: SwitchSpec): { entry: string; load: string; table: string } => ({
  entry: spec.name,
  load: `${spec.name}.load`,
  table: `${spec.name}.table`,
});

/**
 * Emits switch `fn` (input ECX = selector, result in EAX). `resolve` gives label addresses from a
 * first link pass (see image-builder.ts); `imageBase` is where the image is mapped.
 */
export function emitSwitch(a: Assembler, fn: number, spec: SwitchSpec, imageBase: bigint, resolve: (label: string) => bigint): void {
  const names = switchLabels(spec);
  const fallback = a.newLabel(`${spec.name}.default`);
  const cases = Array.from({ length: spec.cases }, (_, k) => a.newLabel(`${spec.name}.case${k}`));
  a.align(16, 0xcc);
  a.label(names.entry);
  a.cmp(ecx, spec.cases - 1);
  a.ja(fallback);
  a.mov(spec.index32, ecx);
  a.lea(spec.base, ripRel(imageBase));
  a.label(names.load);
  // The displacement is the table's RVA, resolved in the second pass (a disp32 either way).
  a.mov(spec.dst32, dword(spec.base, spec.index64, 4, Number(resolve(names.table) - imageBase)));
  a.add(spec.dst64, spec.base);
  a.jmp(spec.dst64);
  cases.forEach((label, k) => {
    a.bind(label);
    a.mov(eax, caseValue(fn, k));
    a.ret();
  });
  a.bind(fallback);
  a.mov(eax, defaultValue(fn) | 0);
  a.ret();
  a.align(4, 0xcc);
  a.label(names.table);
  for (let k = 0; k < spec.cases; k++) a.dd(Number(resolve(`${spec.name}.case${k}`) - imageBase) >>> 0);
  // INT3 padding ends the table: 0xCCCCCCCC is no RVA, which is how HVMI finds the length.
  a.db(0xcc, 0xcc, 0xcc, 0xcc);
}


/**
 * One worker step, shared by the per-vCPU and the threaded worker: EAX = switch_{i mod 3}((5i +
 * 3t) mod (cases + 1)), then i mod 3 advances. In: R12D = i, R13D = t (vCPU or thread index),
 * R15D = i mod 3. `storeResult` runs between the two, with the result in EAX. Clobbers ECX, EDX.
 */
export function emitWorkerStep(a: Assembler, prefix: string, resolve: (label: string) => bigint, storeResult: () => void): void {
  const secondFn = a.newLabel(`${prefix}.fnB`);
  const thirdFn = a.newLabel(`${prefix}.fnC`);
  const called = a.newLabel(`${prefix}.store`);
  const advanced = a.newLabel(`${prefix}.advanced`);
  a.imul(eax, r12d, 5);
  a.lea(ecx, dword(r13, r13, 2, 0));
  a.add(eax, ecx);
  a.xor(edx, edx);
  a.cmp(r15d, 1);
  a.je(secondFn);
  a.ja(thirdFn);
  SWITCHES.forEach((spec, fn) => {
    if (fn === 1) a.bind(secondFn);
    if (fn === 2) a.bind(thirdFn);
    a.mov(ecx, spec.cases + 1);
    a.div(ecx);
    a.mov(ecx, edx);
    a.call(resolve(switchLabels(spec).entry));
    if (fn < SWITCHES.length - 1) a.jmp(called);
  });
  a.bind(called);
  storeResult();
  a.inc(r15d);
  a.cmp(r15d, 3);
  a.jb(advanced);
  a.xor(r15d, r15d);
  a.bind(advanced);
}
