import {
  Assembler,
  dword,
  eax,
  edi,
  qword,
  rax,
  rbx,
  rcx,
  rdi,
  rdx,
  ripRel,
  rsi,
  rsp,
  type AssembledCode,
} from '../src/asm/index.ts';

/**
 * The benchmark guest: a loop shaped like the scenarios' guest code — a compiler-style switch
 * through a jump table of 32-bit offsets, a little arithmetic per case, stack traffic (push, call,
 * ret, pop) and one LOCKed increment of a shared counter per iteration. Position-independent, so
 * the same bytes run in the emulator and natively (the native runner puts them at CODE_BASE).
 *
 * Inputs: RCX = iterations, RSI = address of the shared counter, RDI = start index, RBX = 0.
 */
export function assembleGuestLoop(base: bigint): AssembledCode {
  const a = new Assembler(base);
  const top = a.newLabel('loop');
  const table = a.newLabel('table');
  const next = a.newLabel('next');
  const fn = a.newLabel('fn');
  const done = a.newLabel('done');
  const cases = Array.from({ length: 8 }, (_, k) => a.newLabel(`case${k}`));
  a.bind(top);
  a.mov(eax, edi);
  a.and(eax, 7);
  a.lea(rdx, ripRel(table));
  a.movsxd(rax, dword(rdx, rax, 4));
  a.add(rax, rdx);
  a.jmp(rax);
  const bodies: Array<(asm: Assembler) => void> = [
    (x) => x.add(rbx, rdi),
    (x) => x.sub(rbx, 3),
    (x) => x.xor(rbx, rdi),
    (x) => x.lea(rbx, qword(rbx, rbx, 2)),
    (x) => x.shl(rbx, 1),
    (x) => x.inc(rbx),
    (x) => x.add(rbx, 7),
    (x) => x.not(rbx),
  ];
  bodies.forEach((body, k) => {
    a.bind(cases[k]);
    body(a);
    a.jmp(next);
  });
  a.bind(next);
  a.push(rbx);
  a.push(rdi);
  a.call(fn);
  a.pop(rdi);
  a.pop(rbx);
  a.add(rbx, rax);
  a.lock().inc(qword(rsi));
  a.inc(edi);
  a.dec(rcx);
  a.jne(top);
  a.jmp(done);
  a.bind(fn);
  a.mov(rax, qword(rsp, 8));
  a.add(rax, qword(rsp, 16));
  a.ret();
  a.align(4, 0xcc);
  a.bind(table);
  for (const label of cases) a.ddLabelDelta(label, table);
  a.bind(done);
  return a.assemble();
}
