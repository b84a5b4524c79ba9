import type { EptTable } from '../src/machine/ept.ts';
import { PAGE_SHIFT } from '../src/machine/layout.ts';
import type { EptAccess } from './hypervisor.ts';

/**
 * The integrator's batching of EPT changes (HVMI notes §0: "the integrator may cache requests…
 * on each VCPU resume, all EPT access rights are committed"). Requests collect here; `commit`
 * writes them to the machine's committed table, which each vCPU copies into its own view at its
 * next VM entry — so a running vCPU keeps the rights it entered with.
 */
export class PendingEpt implements EptAccess {
  private readonly pending = new Map<number, number>();

  constructor(
    private readonly table: EptTable,
    private readonly onRequest: (gpa: number, rights: number, pages: number) => void,
    private readonly onCommit: (pages: number) => void,
    /** Makes running vCPUs take the committed rights now (see `flush`). */
    private readonly onFlush: () => void = () => undefined,
  ) {}

  rightsAt(gpa: number): number {
    const page = Math.floor(gpa / (1 << PAGE_SHIFT));
    return this.pending.get(page) ?? this.table.rightsAt(gpa);
  }

  setRights(gpa: number, rights: number, pages = 1): void {
    const first = Math.floor(gpa / (1 << PAGE_SHIFT));
    if (first < 0 || first + pages > this.table.pages || pages < 1) {
      throw new RangeError(`EPT request for GPA 0x${gpa.toString(16)} × ${pages} pages is outside guest RAM`);
    }
    if ((rights & 2) !== 0 && (rights & 1) === 0) {
      throw new RangeError(`EPT request for GPA 0x${gpa.toString(16)}: write without read is an EPT misconfiguration`);
    }
    for (let page = first; page < first + pages; page++) this.pending.set(page, rights);
    this.onRequest(gpa, rights, pages);
  }

  /** Number of pages waiting to be committed. */
  get size(): number {
    return this.pending.size;
  }

  /**
   * IntFlushEPTPermissions: commits pending rights and makes every vCPU go through a VM entry so it
   * uses them (the integrator's pause/resume fallback), instead of waiting for its next exit.
   */
  flush(): void {
    this.commit();
    this.onFlush();
  }

  /** Drops every pending request (a new run starts). */
  discard(): void {
    this.pending.clear();
  }

  /** Writes every pending request to the committed table, in page order (deterministic). */
  commit(): void {
    if (this.pending.size === 0) return;
    const pages = [...this.pending.keys()].sort((a, b) => a - b);
    for (const page of pages) this.table.setRights(page << PAGE_SHIFT, this.pending.get(page)!);
    this.pending.clear();
    this.onCommit(pages.length);
  }
}
