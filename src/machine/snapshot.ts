import { Header, PageMark, Vcpu, VCPU_RUNTIME_WORDS } from './layout.ts';
import type { Machine } from './machine.ts';
import { copyBackWrittenPages, markWordsOf } from './written-pages.ts';

/** Header words that are live host protocol, never restored. */
const LIVE_HEADER_WORDS: readonly number[] = [Header.doorbell, Header.sessionState, Header.exitTickets];

/** Which snapshot armed a machine's run watches last (a control buffer has one set of them). */
const armedBy = new WeakMap<SharedArrayBuffer, MachineSnapshot>();

/**
 * A copy of a machine's guest-visible state — RAM, EPT rights, page generations, code marks and
 * every vCPU block — to restore before each run of a campaign, so runs start from the same state
 * without new workers. The host-protocol words (each block's runtime words, the doorbell, the
 * session state and the exit-ticket counter) are live protocol state and are never written, not
 * even for a moment: an idle worker checking its command word would take a briefly restored old
 * value for a new command (it did: "unknown host command 0" with workers spinning longer).
 *
 * A restore copies back only the RAM pages written since the last one: every page's run watch
 * (`PageMark.runWatch`) is set in the saved marks, the first write to a page clears it, and
 * restoring the marks sets it again. Restoring a snapshot that did not arm the watches last (another
 * snapshot of the same machine did) copies all of RAM once. No vCPU may be running meanwhile.
 */
export class MachineSnapshot {
  private readonly ram: Uint8Array;
  private readonly control: Int32Array;
  /** Word ranges [start, end) of the control buffer that a restore copies back. */
  private readonly restored: readonly (readonly [number, number])[];
  private readonly marks: Uint8Array;
  private readonly markWords: Uint32Array;

  constructor(private readonly machine: Machine) {
    this.marks = machine.memory.codeMark;
    this.markWords = markWordsOf(this.marks);
    for (let page = 0; page < this.marks.length; page++) this.marks[page] |= PageMark.runWatch;
    armedBy.set(machine.descriptor.control, this);
    this.ram = new Uint8Array(machine.descriptor.ram).slice();
    this.control = new Int32Array(machine.descriptor.control).slice();
    const live = [...LIVE_HEADER_WORDS];
    for (let id = 0; id < machine.vcpuCount; id++) {
      const at = machine.layout.vcpuBlocksBytes / 4 + id * Vcpu.words + Vcpu.runtime;
      for (let k = 0; k < VCPU_RUNTIME_WORDS; k++) live.push(at + k);
    }
    this.restored = rangesAround(live, this.control.length);
  }

  /**
   * Writes the snapshot back into `machine` (its own machine, or one laid out alike) and returns how
   * many RAM pages it copied. vCPU caches must be reset afterwards (generations may repeat).
   */
  restore(machine: Machine): number {
    const liveRam = new Uint8Array(machine.descriptor.ram);
    let copied: number;
    if (machine === this.machine && armedBy.get(machine.descriptor.control) === this) {
      copied = copyBackWrittenPages(this.marks, this.markWords, PageMark.runWatch, liveRam, this.ram);
    } else {
      liveRam.set(this.ram);
      copied = machine.memory.pages;
      armedBy.set(machine.descriptor.control, this);
    }
    const control = new Int32Array(machine.descriptor.control);
    for (const [start, end] of this.restored) control.set(this.control.subarray(start, end), start);
    return copied;
  }
}

/** The ranges of [0, length) that hold none of `skipped`. */
function rangesAround(skipped: readonly number[], length: number): [number, number][] {
  const ranges: [number, number][] = [];
  let start = 0;
  for (const word of [...new Set(skipped)].sort((a, b) => a - b)) {
    if (word > start) ranges.push([start, word]);
    start = word + 1;
  }
  if (start < length) ranges.push([start, length]);
  return ranges;
}
