import { Assembler, type AssembledCode } from '../asm/index.ts';

/**
 * Assembles code whose immediates or data need addresses that are only known after layout
 * (jump-table RVAs, displacements to labels in the same section): the build runs once with
 * `resolve` returning a placeholder, then again with the real addresses. The build must choose
 * the same encoding sizes either way (a placeholder that forces 32-bit fields does that).
 */
export function assembleTwice(base: bigint, build: (a: Assembler, resolve: (label: string) => bigint) => void): AssembledCode {
  const placeholder = base + 0x7fff_0000n;
  const first = new Assembler(base);
  build(first, () => placeholder);
  const layout = first.assemble();
  const second = new Assembler(base);
  build(second, (label) => layout.addressOf(label));
  const code = second.assemble();
  if (code.bytes.length !== layout.bytes.length) {
    throw new Error(`two-pass assembly at 0x${base.toString(16)} changed size (${layout.bytes.length} → ${code.bytes.length}): use 32-bit fields for resolved values`);
  }
  return code;
}
