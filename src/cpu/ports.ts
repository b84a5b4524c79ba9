/**
 * What the CPU needs from the machine it runs on, as interfaces the CPU owns. `machine/`
 * implements them over its SharedArrayBuffers (DESIGN.md: the CPU is the bottom layer and imports
 * nothing above it).
 */

/** Guest physical memory plus the code-write tracking that keeps decoded blocks coherent. */
export interface PhysicalMemory {
  /** RAM size in bytes, and in 4 KiB pages. */
  readonly bytes: number;
  readonly pages: number;
  readonly u8: Uint8Array;
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly view: DataView;
  /** Per-page flag: some vCPU decoded instructions from this page. */
  readonly codeMark: Uint8Array;
  /** Records a write to [gpa, gpa+length); true when it hit decoded code. */
  noteWrite(gpa: number, length: number): boolean;
  /** Marks a page as holding code and returns its write generation (read after the mark). */
  markCode(page: number): number;
  /** Current write generation of a page. */
  generation(page: number): number;
  /** Global counter bumped by every write to code (checked at serialising points). */
  codeEpoch(): number;
  /** Spinlock word for LOCKed accesses that cross an 8-byte boundary: `words[index]`. */
  readonly splitLockWords: Int32Array;
  readonly splitLockIndex: number;
}

/** The committed EPT rights, which a vCPU copies into its own view at VM entry. */
export interface EptSource {
  /** One byte per guest page: R=1 W=2 X=4. */
  readonly rights: Uint8Array;
  /** Changes whenever any page's committed rights change. */
  epoch(): number;
}

/** Everything one vCPU is attached to. */
export interface CpuPort {
  readonly id: number;
  readonly vcpuCount: number;
  /** The vCPU's state block (int32 words, indexes from `state-block.ts`). */
  readonly words: Int32Array;
  readonly memory: PhysicalMemory;
  readonly ept: EptSource;
}
