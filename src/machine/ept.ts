import type { EptSource } from '../cpu/ports.ts';
import { EptBits, Header, PAGE_SHIFT, type ControlLayout } from './layout.ts';

/** EPT rights of one guest page: any combination of EptBits.read/write/execute. */
export type EptRights = number;

/** Formats rights as "rwx" / "r-x" / "---" for messages and traces. */
export function formatRights(rights: EptRights): string {
  return (
    (rights & EptBits.read ? 'r' : '-') + (rights & EptBits.write ? 'w' : '-') + (rights & EptBits.execute ? 'x' : '-')
  );
}

/**
 * The committed EPT rights of every guest page (one byte each, in the control buffer).
 *
 * Only the hypervisor side writes here. A vCPU does not read this table on every access: it keeps
 * its own view, refreshed at VM entry when `epoch` moved, which is exactly the laziness HVMI
 * assumes ("on each VCPU resume, all EPT access rights are committed").
 */
export class EptTable implements EptSource {
  readonly rights: Uint8Array;
  private readonly header: Int32Array;

  constructor(control: SharedArrayBuffer, layout: ControlLayout) {
    this.rights = new Uint8Array(control, layout.eptRightsBytes, layout.ramPages);
    this.header = new Int32Array(control, 0, Header.words);
  }

  get pages(): number {
    return this.rights.length;
  }

  /** Epoch of the committed table; changes whenever any page's rights change. */
  epoch(): number {
    return Atomics.load(this.header, Header.eptEpoch);
  }

  /** Rights of the page holding `gpa`. GPAs outside RAM have no rights (an EPT violation). */
  rightsAt(gpa: number): EptRights {
    const page = Math.floor(gpa / (1 << PAGE_SHIFT));
    return page >= 0 && page < this.rights.length ? this.rights[page] : 0;
  }

  /**
   * Sets the rights of `count` pages starting at the page holding `gpa`. Write-without-read is
   * an EPT misconfiguration on real hardware, so it is refused here.
   */
  setRights(gpa: number, rights: EptRights, count = 1): void {
    if ((rights & ~EptBits.all) !== 0) throw new RangeError(`EPT rights must be a subset of rwx (0..7), got ${rights}`);
    if ((rights & EptBits.write) !== 0 && (rights & EptBits.read) === 0) {
      throw new RangeError(
        `EPT rights ${formatRights(rights)} for GPA 0x${gpa.toString(16)}: write without read is an EPT misconfiguration`,
      );
    }
    const first = Math.floor(gpa / (1 << PAGE_SHIFT));
    if (first < 0 || first + count > this.rights.length || count < 1) {
      throw new RangeError(`EPT page range 0x${gpa.toString(16)} × ${count} is outside guest RAM`);
    }
    let changed = false;
    for (let page = first; page < first + count; page++) {
      if (this.rights[page] !== rights) {
        Atomics.store(this.rights, page, rights);
        changed = true;
      }
    }
    if (changed) Atomics.add(this.header, Header.eptEpoch, 1);
  }
}
