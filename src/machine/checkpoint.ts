import { PAGE_BYTES, PageMark } from './layout.ts';
import type { Machine } from './machine.ts';

const WATCHED_WORD = PageMark.writeWatch * 0x01010101;

/** What one restore of a checkpoint copied. */
export interface CheckpointRestore {
  /** RAM pages written since the checkpoint (or its last restore), copied back. */
  readonly dirtyPages: number;
  readonly ramPages: number;
}

/**
 * A machine's state at one moment of a run — RAM, EPT rights, page generations and marks, every
 * vCPU block and control word — to come back to many times: a branch point. Unlike the
 * per-run `MachineSnapshot`, every control word comes back (the session and its hosts are
 * restored to the same moment by the object-graph snapshot), and a restore copies back only the
 * RAM pages written since: every page is write-watched (`PageMark.writeWatch`), the first write to
 * a page clears its watch bit, and restoring the control buffer arms every page again.
 *
 * Deterministic mode only: a write watch is cleared by the writer, so no vCPU may be running
 * while the checkpoint is taken or restored.
 */
export class MachineCheckpoint {
  private readonly ram: Uint8Array;
  private readonly control: Uint8Array;
  private readonly marks: Uint8Array;
  private readonly liveRam: Uint8Array;
  private readonly liveControl: Uint8Array;

  /** The marks as 32-bit words, for the restore's scan (pages past the last whole word are scanned one by one). */
  private readonly markWords: Uint32Array;

  constructor(private readonly machine: Machine) {
    const memory = machine.memory;
    this.marks = memory.codeMark;
    const marks = this.marks;
    this.markWords = marks.byteOffset % 4 === 0 ? new Uint32Array(marks.buffer, marks.byteOffset, Math.floor(marks.length / 4)) : new Uint32Array(0);
    for (let page = 0; page < memory.pages; page++) this.marks[page] |= PageMark.writeWatch;
    this.liveRam = new Uint8Array(machine.descriptor.ram);
    this.liveControl = new Uint8Array(machine.descriptor.control);
    this.ram = this.liveRam.slice();
    this.control = this.liveControl.slice();
  }

  /** Puts the machine back to the checkpoint, copying only the RAM pages written since. */
  restore(): CheckpointRestore {
    const pages = this.machine.memory.pages;
    const words = this.markWords;
    let dirtyPages = 0;
    // Four marks at a time: a word whose four watch bits are all still set holds no dirty page.
    for (let word = 0; word < words.length; word++) {
      if ((words[word] & WATCHED_WORD) !== WATCHED_WORD) dirtyPages += this.restorePages(word * 4, word * 4 + 4);
    }
    dirtyPages += this.restorePages(words.length * 4, pages);
    this.liveControl.set(this.control);
    return { dirtyPages, ramPages: pages };
  }

  /** Copies back the pages of [from, to) written since: how many. */
  private restorePages(from: number, to: number): number {
    let restored = 0;
    for (let page = from; page < to; page++) {
      if ((this.marks[page] & PageMark.writeWatch) !== 0) continue;
      const at = page * PAGE_BYTES;
      this.liveRam.set(this.ram.subarray(at, at + PAGE_BYTES), at);
      restored++;
    }
    return restored;
  }

  /** Stops watching writes (the machine keeps its current state). */
  release(): void {
    for (let page = 0; page < this.machine.memory.pages; page++) this.marks[page] &= ~PageMark.writeWatch;
  }
}
