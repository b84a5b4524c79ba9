import { al, byte, eax, edx, r8, r9d, rbp, rcx, type Assembler } from '../asm/index.ts';

/**
 * Windows 7's unwinder in miniature: two kernel functions that read code one byte at a time, the
 * way RtlpVirtualUnwind scans a function's bytes for opcodes. Each holds one of the reads HVMI
 * replaces by a cache handler (its tag says which): called on a read-protected code page, every
 * byte would otherwise be an EPT violation.
 *
 *   RtlpUnwindCopyBytes(RCX = from, EDX = count, R8 = to): copies the bytes   (site: mov al, [rcx] — tag 1)
 *   RtlpUnwindCountRex(RCX = from, EDX = count) → EAX: bytes equal to 48h     (site: cmp byte [rbp+0], 48h — tag 5)
 *
 * Both clobber RAX, RCX, RDX, R8, R9 only.
 */

/** The functions' symbols. */
export const UnwindFunction = { copyBytes: 'RtlpUnwindCopyBytes', countRex: 'RtlpUnwindCountRex' } as const;

/** The reads the engine detours: HVMI's tag and the label of the instruction. */
export const UNWIND_SITES: readonly { readonly tag: number; readonly label: string }[] = [
  { tag: 1, label: `${UnwindFunction.copyBytes}.site` },
  { tag: 5, label: `${UnwindFunction.countRex}.site` },
];

/** The byte RtlpUnwindCountRex counts (a REX.W prefix). */
export const REX_W = 0x48;

export function emitUnwindFunctions(a: Assembler): void {
  const copyDone = a.newLabel('RtlpUnwindCopyBytes.done');
  a.align(16, 0xcc);
  a.label(UnwindFunction.copyBytes);
  a.test(edx, edx);
  a.je(copyDone);
  // The detour replaces the first five bytes (the read and the store) by a JMP: the loop comes back to it.
  const copySite = a.label(`${UnwindFunction.copyBytes}.site`);
  a.mov(al, byte(rcx));
  a.mov(byte(r8), al);
  a.add(rcx, 1);
  a.add(r8, 1);
  a.sub(edx, 1);
  a.jne(copySite);
  a.bind(copyDone);
  a.ret();

  const countDone = a.newLabel('RtlpUnwindCountRex.done');
  a.align(16, 0xcc);
  a.label(UnwindFunction.countRex);
  a.push(rbp);
  a.mov(rbp, rcx);
  a.xor(r9d, r9d);
  a.test(edx, edx);
  a.je(countDone);
  const countSite = a.label(`${UnwindFunction.countRex}.site`);
  a.cmp(byte(rbp, 0), REX_W);
  a.setcc('e', al);
  a.movzx(eax, al);
  a.add(r9d, eax);
  a.add(rbp, 1);
  a.sub(edx, 1);
  a.jne(countSite);
  a.bind(countDone);
  a.mov(eax, r9d);
  a.pop(rbp);
  a.ret();
}
