import { PageMark } from './layout.ts';
import type { Machine } from './machine.ts';
import { copyBackWrittenPages, markWordsOf } from './written-pages.ts';

/** What one restore of a checkpoint copied. */
export interface CheckpointRestore {
  /** RAM pages written since the checkpoint (or its last restore), copied back. */
  readonly dirtyPages: number;
  readonly ramPages: number;
}

/** Which checkpoint armed a machine's write watches last (a control buffer has one set of them). */
const armedBy = new WeakMap<SharedArrayBuffer, MachineCheckpoint>();

/**
 * A machine's state at one moment of a run — RAM, EPT rights, page generations and marks, every
 * vCPU block and control word — to come back to many times: a branch point, or a walk's point. Unlike the
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
    this.markWords = markWordsOf(marks);
    for (let page = 0; page < memory.pages; page++) this.marks[page] |= PageMark.writeWatch;
    armedBy.set(machine.descriptor.control, this);
    this.liveRam = new Uint8Array(machine.descriptor.ram);
    this.liveControl = new Uint8Array(machine.descriptor.control);
    this.ram = this.liveRam.slice();
    this.control = this.liveControl.slice();
  }

  /**
   * Puts the machine back to the checkpoint, copying only the RAM pages written since — or every
   * page when another checkpoint of the machine was taken (or restored) since: one set of watch
   * bits serves the latest only. The bits come back armed with the control buffer.
   */
  restore(): CheckpointRestore {
    const control = this.machine.descriptor.control;
    const pages = this.machine.memory.pages;
    let dirtyPages = pages;
    if (armedBy.get(control) === this) dirtyPages = copyBackWrittenPages(this.marks, this.markWords, PageMark.writeWatch, this.liveRam, this.ram);
    else this.liveRam.set(this.ram);
    this.liveControl.set(this.control);
    armedBy.set(control, this);
    return { dirtyPages, ramPages: pages };
  }

  /** Stops watching writes (the machine keeps its current state); the watches of a later checkpoint stay. */
  release(): void {
    const control = this.machine.descriptor.control;
    if (armedBy.get(control) !== this) return;
    armedBy.delete(control);
    for (let page = 0; page < this.machine.memory.pages; page++) this.marks[page] &= ~PageMark.writeWatch;
  }
}
