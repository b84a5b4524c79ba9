import type { PhysicalMemory } from '../cpu/ports.ts';
import { Header, PAGE_BYTES, PAGE_SHIFT, PAGE_WATCHES, PageMark, type ControlLayout } from './layout.ts';

/**
 * Guest physical memory plus the code-write tracking that keeps every vCPU's decoded-instruction
 * cache coherent (DESIGN.md, faithfulness rule 2).
 *
 * A page gets a *code mark* the first time any vCPU decodes instructions from it, and marks are
 * never cleared. Every write to a marked page — by a guest store or by the hypervisor through
 * `write*` below — bumps the page's generation and the global code epoch. A vCPU revalidates its
 * decoded blocks against page generations at serialising points (VM entry, serialising
 * instructions, its own stores to code), which is what x86 promises for cross-modifying code.
 *
 * Known limitation: the first decode of a page races with a concurrent plain store from another
 * worker in free-running mode (store-buffer reordering between the writer's store and its mark
 * check). x86 leaves unsynchronised cross-modifying code model-specific anyway; deterministic
 * mode never runs two vCPUs at once, and the hypervisor only patches with vCPUs paused.
 */
export class GuestMemory implements PhysicalMemory {
  /** Guest RAM, byte view. */
  readonly u8: Uint8Array;
  /** Guest RAM, int32 view for aligned 32-bit accesses and Atomics. */
  readonly i32: Int32Array;
  /** Guest RAM, int64 view for aligned 64-bit Atomics (LOCK ops, A/D bits are 32-bit). */
  readonly i64: BigInt64Array;
  /** Guest RAM, unaligned little-endian accesses. */
  readonly view: DataView;
  /** Per-page write generation (control buffer). */
  readonly pageGen: Int32Array;
  /** Per-page mark (control buffer): PageMark bits, nonzero when a write must be noted. */
  readonly codeMark: Uint8Array;
  /** Header words of the control buffer (code epoch, split-lock word). */
  readonly header: Int32Array;
  readonly bytes: number;
  readonly pages: number;
  readonly splitLockWords: Int32Array;
  readonly splitLockIndex = Header.splitLock;

  constructor(ram: SharedArrayBuffer, control: SharedArrayBuffer, layout: ControlLayout) {
    if (ram.byteLength !== layout.ramPages * PAGE_BYTES) {
      throw new RangeError(`RAM buffer is ${ram.byteLength} bytes but the layout says ${layout.ramPages} pages`);
    }
    this.u8 = new Uint8Array(ram);
    this.i32 = new Int32Array(ram);
    this.i64 = new BigInt64Array(ram);
    this.view = new DataView(ram);
    this.pageGen = new Int32Array(control, layout.pageGenBytes, layout.ramPages);
    this.codeMark = new Uint8Array(control, layout.codeMarkBytes, layout.ramPages);
    this.header = new Int32Array(control, 0, Header.words);
    this.splitLockWords = this.header;
    this.bytes = ram.byteLength;
    this.pages = layout.ramPages;
  }

  /** True when [gpa, gpa+length) lies inside guest RAM. */
  contains(gpa: number, length: number): boolean {
    return Number.isInteger(gpa) && gpa >= 0 && length >= 0 && gpa + length <= this.bytes;
  }

  private assertRange(gpa: number, length: number, what: string): void {
    if (!this.contains(gpa, length)) {
      throw new RangeError(
        `${what}: GPA range 0x${gpa.toString(16)}+${length} is outside guest RAM (0..0x${this.bytes.toString(16)})`,
      );
    }
  }

  /**
   * Records that [gpa, gpa+length) was written. Called by every writer, guest or hypervisor.
   * Returns true when the range held decoded code (the caller may need to stop its block).
   */
  noteWrite(gpa: number, length: number): boolean {
    const first = gpa >>> PAGE_SHIFT;
    const last = (gpa + length - 1) >>> PAGE_SHIFT;
    let code = false;
    for (let page = first; page <= last; page++) {
      const mark = this.codeMark[page];
      if ((mark & PAGE_WATCHES) !== 0) Atomics.and(this.codeMark, page, ~PAGE_WATCHES);
      if ((mark & PageMark.code) !== 0) {
        Atomics.add(this.pageGen, page, 1);
        code = true;
      }
    }
    if (code) Atomics.add(this.header, Header.codeEpoch, 1);
    return code;
  }

  /** Marks a page as holding decoded code and returns its generation, read after the mark. */
  markCode(page: number): number {
    if ((this.codeMark[page] & PageMark.code) === 0) Atomics.or(this.codeMark, page, PageMark.code);
    return Atomics.load(this.pageGen, page);
  }

  generation(page: number): number {
    return Atomics.load(this.pageGen, page);
  }

  codeEpoch(): number {
    return Atomics.load(this.header, Header.codeEpoch);
  }

  // --- Hypervisor-side physical access: bypasses EPT and paging, keeps decode caches coherent. ---

  /** Copies bytes out of guest RAM. */
  read(gpa: number, length: number): Uint8Array {
    this.assertRange(gpa, length, 'read');
    return this.u8.slice(gpa, gpa + length);
  }

  /** Copies bytes into guest RAM. */
  write(gpa: number, bytes: Uint8Array): void {
    this.assertRange(gpa, bytes.length, 'write');
    this.u8.set(bytes, gpa);
    if (bytes.length > 0) this.noteWrite(gpa, bytes.length);
  }

  /** Fills guest RAM with one byte value. */
  fill(gpa: number, length: number, value = 0): void {
    this.assertRange(gpa, length, 'fill');
    this.u8.fill(value, gpa, gpa + length);
    if (length > 0) this.noteWrite(gpa, length);
  }

  read8(gpa: number): number {
    this.assertRange(gpa, 1, 'read8');
    return this.u8[gpa];
  }

  read16(gpa: number): number {
    this.assertRange(gpa, 2, 'read16');
    return this.view.getUint16(gpa, true);
  }

  read32(gpa: number): number {
    this.assertRange(gpa, 4, 'read32');
    return this.view.getUint32(gpa, true);
  }

  read64(gpa: number): bigint {
    this.assertRange(gpa, 8, 'read64');
    return this.view.getBigUint64(gpa, true);
  }

  write8(gpa: number, value: number): void {
    this.assertRange(gpa, 1, 'write8');
    this.u8[gpa] = value;
    this.noteWrite(gpa, 1);
  }

  write16(gpa: number, value: number): void {
    this.assertRange(gpa, 2, 'write16');
    this.view.setUint16(gpa, value, true);
    this.noteWrite(gpa, 2);
  }

  write32(gpa: number, value: number): void {
    this.assertRange(gpa, 4, 'write32');
    this.view.setUint32(gpa, value >>> 0, true);
    this.noteWrite(gpa, 4);
  }

  write64(gpa: number, value: bigint): void {
    this.assertRange(gpa, 8, 'write64');
    this.view.setBigUint64(gpa, BigInt.asUintN(64, value), true);
    this.noteWrite(gpa, 8);
  }
}
