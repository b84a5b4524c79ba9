import type { PagingFormat } from '../machine/page-tables.ts';
import type { Glue, NoteDetail } from './glue.ts';
import { tryReadGuestVirtual, writeGuestVirtual } from './kernvm.ts';
import { IntStatus, IntroError } from './status.ts';

/**
 * Integrity regions (integrity.c: IntIntegrityAddRegion, IntIntegrityCheckAll): guest structures
 * EPT cannot guard — they share a page with data the kernel writes all the time — are compared
 * with a copy on every timer tick. TIMER_FRIENDLY: the comparison reads guest memory through the
 * system CR3 only, with the vCPUs running (the checks are read-only, as HVMI says). A region that
 * changed raises an alert and, when its owner asks for it, is written back — with every vCPU
 * paused, so no vCPU sees a half-restored structure.
 */

/** What the timer does when a region no longer holds its copy. */
export type IntegrityResponse = 'alert' | 'restore';

export interface IntegrityRegion {
  readonly id: number;
  readonly owner: string;
  readonly gva: bigint;
  readonly original: Uint8Array;
  readonly response: IntegrityResponse;
  /** Ticks that found it changed. */
  violations: number;
}

export interface IntegrityContext {
  readonly glue: Glue;
  readonly systemCr3: number;
  readonly paging: PagingFormat;
  readonly note: (what: string, detail: NoteDetail) => void;
}

export class IntegrityRegions {
  private readonly list: IntegrityRegion[] = [];
  private nextId = 1;

  constructor(private readonly ctx: IntegrityContext) {}

  regions(): readonly IntegrityRegion[] {
    return this.list;
  }

  /** Protects `length` bytes at `gva` as they are now. Throws when they are not mapped. */
  add(gva: bigint, length: number, owner: string, response: IntegrityResponse): IntegrityRegion {
    const original = tryReadGuestVirtual(this.ctx.glue.memory, this.ctx.systemCr3, gva, length, this.ctx.paging);
    if (original === null) throw new IntroError(IntStatus.pageNotPresent, `integrity region "${owner}": 0x${gva.toString(16)} + ${length} is not mapped`);
    const region: IntegrityRegion = { id: this.nextId++, owner, gva, original, response, violations: 0 };
    this.list.push(region);
    return region;
  }

  remove(region: IntegrityRegion): void {
    const at = this.list.indexOf(region);
    if (at >= 0) this.list.splice(at, 1);
  }

  /** One timer tick over every region. */
  checkAll(): void {
    const { glue, systemCr3 } = this.ctx;
    for (const region of this.list) {
      const now = tryReadGuestVirtual(glue.memory, systemCr3, region.gva, region.original.length, this.ctx.paging);
      if (now === null) continue; // paged out: nothing to compare this tick
      const at = now.findIndex((b, k) => b !== region.original[k]);
      if (at < 0) continue;
      region.violations++;
      this.ctx.note('integrity-violation', { owner: region.owner, gva: region.gva, offset: at, value: now[at], original: region.original[at] });
      if (region.response === 'restore') this.restore(region);
    }
  }

  private restore(region: IntegrityRegion): void {
    const { glue, systemCr3 } = this.ctx;
    glue.pauseVcpus();
    try {
      writeGuestVirtual(glue, systemCr3, region.gva, region.original, `restore ${region.owner}`, this.ctx.paging);
      this.ctx.note('integrity-restored', { owner: region.owner, gva: region.gva, pauseDepth: glue.pauseDepth });
    } finally {
      glue.resumeVcpus();
    }
  }

  /** IntIntegrityUninit. */
  clear(): void {
    this.list.length = 0;
  }
}
