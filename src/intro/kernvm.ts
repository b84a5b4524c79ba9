import { translateRange } from '../machine/guest-virtual.ts';
import type { PagingFormat } from '../machine/page-tables.ts';
import type { Glue } from './glue.ts';
import { IntStatus, IntroError } from './status.ts';

/**
 * Guest-virtual memory as the engine reaches it: a software walk of the guest's page tables,
 * then the engine's own host mapping of guest RAM — no EPT checks, no A/D updates, and no EPT
 * write hooks fire (HVMI's IntKernVirtMemRead/Write, IntTranslateVirtualAddress).
 */

export { cr3Root, translateGva, translateRange, tryReadGuestVirtual } from '../machine/guest-virtual.ts';

/**
 * Writes `bytes` at `gva` through the host mapping, one byte at a time like the engine's memcpy,
 * with a preemption point before every byte after the first: vCPUs that are not paused may run
 * (and fetch the half-written code) between any two stores. With every vCPU paused the points
 * are no-ops, which is the whole reason HVMI patches under IntPauseVcpus.
 */
export function writeGuestVirtual(glue: Glue, cr3: number, gva: bigint, bytes: Uint8Array, label: string, paging: PagingFormat = '4-level'): void {
  const pieces = translateRange(glue.memory, cr3, gva, bytes.length, paging);
  if (pieces === null) throw new IntroError(IntStatus.pageNotPresent, `writing ${bytes.length} bytes at 0x${gva.toString(16)}`);
  let offset = 0;
  for (const piece of pieces) {
    for (let k = 0; k < piece.bytes; k++, offset++) {
      if (offset > 0) glue.preemptionPoint(label);
      glue.memory.write8(piece.gpa + k, bytes[offset]!);
    }
  }
}
