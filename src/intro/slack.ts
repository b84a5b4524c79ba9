import type { PagingFormat } from '../machine/page-tables.ts';
import { Scn, type SectionHeader } from '../guest/pe-format.ts';
import type { GuestMemory } from '../machine/memory.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import type { ParsedImage } from './pe.ts';
import { IntStatus, type IntStatusCode } from './status.ts';

/**
 * Slack space (slack.c): the zero padding after each eligible section's VirtualSize, up to the
 * end of its last page, handed out by a bump allocator per section. Eligible sections are
 * executable, not writable, not discardable and non-paged, and INITKDBG is skipped. The next
 * allocation starts at "highest allocation + its size", so freeing a block below others leaves a
 * hole until those are freed too. An allocation over bytes that are not zero is refused with an
 * integrity alert: someone else (the guest, or a leaked handler) is using that space.
 */

export interface SlackRegion {
  readonly section: string;
  /** First slack byte (image base + VirtualAddress + VirtualSize). */
  readonly start: bigint;
  /** Just past the section's last page. */
  readonly end: bigint;
}

export interface SlackAllocation {
  readonly gva: bigint;
  readonly size: number;
  readonly section: string;
  /** Who asked for it ("memtable 0x…", "detour NtFoo"): for leak reports. */
  readonly owner: string;
}

export type SlackResult = { readonly status: IntStatusCode; readonly gva: bigint | null; readonly detail: string };

const PAGE = 0x1000;

/** Whether a section's padding may hold engine code (IntSlackAllocWindows' rules). */
export function isSlackEligible(section: SectionHeader): boolean {
  const c = section.characteristics;
  return (c & Scn.execute) !== 0 && (c & Scn.write) === 0 && (c & Scn.discardable) === 0 && (c & Scn.notPaged) !== 0 && section.name !== 'INITKDBG';
}

export class SlackAllocator {
  readonly regions: readonly SlackRegion[];
  /** Lowest address first: oracles ask for them after every handler; allocations are rare. */
  private readonly live: SlackAllocation[] = [];
  /** Allocations refused because the bytes were not zero. */
  integrityAlerts = 0;

  constructor(
    image: ParsedImage,
    private readonly memory: GuestMemory,
    private readonly cr3: number,
    private readonly paging: PagingFormat = '4-level',
  ) {
    this.regions = image.sections.filter(isSlackEligible).map((section) => {
      const used = section.virtualAddress + section.virtualSize;
      const pageEnd = Math.ceil(used / PAGE) * PAGE;
      return { section: section.name, start: image.base + BigInt(used), end: image.base + BigInt(pageEnd) };
    });
  }

  /** IntSlackAlloc: `size` bytes in the first section with room, bytes verified zero. */
  alloc(size: number, owner: string): SlackResult {
    if (!Number.isInteger(size) || size < 1) return { status: IntStatus.notSupported, gva: null, detail: `bad slack size ${size}` };
    for (const region of this.regions) {
      const next = this.live.filter((a) => a.section === region.section).reduce((top, a) => (a.gva + BigInt(a.size) > top ? a.gva + BigInt(a.size) : top), region.start);
      if (next + BigInt(size) > region.end) continue;
      const bytes = tryReadGuestVirtual(this.memory, this.cr3, next, size, this.paging);
      if (bytes === null) return { status: IntStatus.pageNotPresent, gva: null, detail: `slack of ${region.section} at 0x${next.toString(16)} is not mapped` };
      const dirty = bytes.findIndex((b) => b !== 0);
      if (dirty >= 0) {
        this.integrityAlerts++;
        return {
          status: IntStatus.invalidInternalState,
          gva: null,
          detail: `slack of ${region.section} at 0x${(next + BigInt(dirty)).toString(16)} is not zero (0x${bytes[dirty].toString(16)}): integrity alert`,
        };
      }
      const above = this.live.findIndex((a) => a.gva > next);
      this.live.splice(above < 0 ? this.live.length : above, 0, { gva: next, size, section: region.section, owner });
      return { status: IntStatus.success, gva: next, detail: region.section };
    }
    return { status: IntStatus.insufficientResources, gva: null, detail: `no section has ${size} bytes of slack left` };
  }

  /** IntSlackFree: forgets the allocation at `gva` (the caller restored its zeros first). */
  free(gva: bigint): IntStatusCode {
    const index = this.live.findIndex((a) => a.gva === gva);
    if (index < 0) return IntStatus.notFound;
    this.live.splice(index, 1);
    return IntStatus.success;
  }

  /** Live allocations, lowest address first (the allocator's own list: read it, keep a copy to hold it). */
  allocations(): readonly SlackAllocation[] {
    return this.live;
  }

  /** IntSlackUninit: drops every record (memtable handlers are never freed one by one). */
  clear(): void {
    this.live.length = 0;
  }
}
