import { IntStatus, type IntStatusCode } from './status.ts';

/**
 * Whole-entry page-table writes out of partial ones (IntHookPtwProcessWrite, hvmi-notes §8). A
 * guest may write an 8-byte entry with two 4-byte stores — a 32-bit PAE kernel always does — and
 * an entry half old and half new maps a frame nobody chose. Each hooked entry keeps the value
 * being assembled and which bytes of it are written; callbacks run only once every byte is.
 *
 * The duplicate-write rule (32-bit guests, a Xen workaround): a 4-byte write from the same RIP
 * (its low 23 bits) as the entry's previous write is taken for the same event delivered twice and
 * dropped. Two vCPUs running the same store back to back with different values trip it too —
 * HVMI's known false positive.
 */

/** HVMI keeps 23 bits of the last writer's RIP (the header's "low 32 bits" is stale). */
export const LAST_WRITE_RIP_MASK = (1n << 23n) - 1n;

/** HOOK_PTEWS: one entry's write state. */
export interface PteWriteState {
  /** The entry's value as the engine last knew it whole. */
  curEntry: bigint;
  /** The value being assembled from partial writes. */
  intEntry: bigint;
  /** Bit k: byte k of the entry is written. */
  writtenMask: number;
  /** Masked RIP of the last write, or -1n before any. */
  lastWriteRip: bigint;
  /** Whether the last write was 8 bytes (HVMI's one-bit LastWriteSize). */
  lastWriteWhole: boolean;
}

export function newWriteState(curEntry: bigint): PteWriteState {
  return { curEntry, intEntry: 0n, writtenMask: 0, lastWriteRip: -1n, lastWriteWhole: false };
}

/** The per-vCPU emulation buffer (PtEmuBuffer) the EPT handler filled for this exit. */
export interface PtEmuBuffer {
  valid: boolean;
  /** The engine carried the store out itself (off: the hypervisor will). */
  emulated: boolean;
  partial: boolean;
  /** The whole entry before the write. */
  old: bigint;
  /** The written operand (size bytes at the written offset). */
  new: bigint;
  /** Bytes written and their offset inside the entry. */
  size: number;
  /** GPA of the first written byte. */
  gpa: number;
  /** RIP of the instruction whose store this is (the duplicate-write rule compares it). */
  rip: bigint;
}

/** The per-vCPU cache of the last whole entry written this exit (PtWriteCache). */
export interface PtWriteCache {
  valid: boolean;
  pteAddress: number;
  value: bigint;
}

/** The rules this engine applies (each a fix; off is the naive engine). */
export interface WriteRules {
  /** Assemble partial writes into whole entries (off: every write is taken as a whole entry). */
  readonly assemble: boolean;
  /** Drop a second 4-byte write from the same masked RIP on a 32-bit guest (off: process it). */
  readonly dropDuplicates: boolean;
  readonly guest32: boolean;
}

export type WriteResult =
  | { readonly status: typeof IntStatus.success; readonly old: bigint; readonly new: bigint }
  | { readonly status: IntStatusCode; readonly old?: undefined; readonly new?: undefined };

const maskOf = (bytes: number): bigint => (1n << BigInt(bytes * 8)) - 1n;

/**
 * IntHookPtwProcessWrite: merges this pass's write (`buffer`, with the writer's RIP) into the
 * entry's state. PARTIAL_WRITE until all `entrySize` bytes are written; then the old and new whole
 * entries, the state reset, and the vCPU's write cache filled.
 */
export function processPtWrite(
  state: PteWriteState,
  buffer: PtEmuBuffer,
  cache: PtWriteCache,
  entrySize: number,
  rules: WriteRules,
): WriteResult {
  const pteAddress = buffer.gpa - (buffer.gpa % entrySize);
  if (cache.valid && cache.pteAddress === pteAddress && cache.value === state.curEntry) return { status: IntStatus.notNeededHint };
  if (!buffer.valid) return { status: IntStatus.notInitialized };
  const size = buffer.size;
  if (rules.guest32 && rules.dropDuplicates) {
    const masked = buffer.rip & LAST_WRITE_RIP_MASK;
    if (masked === state.lastWriteRip && !state.lastWriteWhole) return { status: IntStatus.notNeededHint };
    state.lastWriteRip = masked;
    state.lastWriteWhole = size === 8;
  }
  const offset = buffer.gpa % entrySize;
  if (!rules.assemble) {
    // The naive engine: the written bytes over the entry as it was before this write, taken as whole.
    const bits = maskOf(size) << BigInt(offset * 8);
    const whole = (buffer.old & ~bits) | ((buffer.new << BigInt(offset * 8)) & bits);
    const old = state.curEntry;
    state.curEntry = whole;
    fillCache(cache, pteAddress, whole);
    return { status: IntStatus.success, old, new: whole };
  }
  const byteMask = ((1 << size) - 1) << offset;
  const bitMask = maskOf(size) << BigInt(offset * 8);
  if (state.writtenMask === 0) state.curEntry = buffer.old;
  state.writtenMask |= byteMask;
  state.intEntry = (state.intEntry & ~bitMask) | ((buffer.new << BigInt(offset * 8)) & bitMask);
  if (state.writtenMask !== (1 << entrySize) - 1) return { status: IntStatus.partialWrite };
  buffer.partial = false;
  const result = { status: IntStatus.success, old: state.curEntry, new: state.intEntry } as const;
  state.curEntry = state.intEntry;
  state.intEntry = 0n;
  state.writtenMask = 0;
  fillCache(cache, pteAddress, result.new);
  return result;
}

function fillCache(cache: PtWriteCache, pteAddress: number, value: bigint): void {
  cache.valid = true;
  cache.pteAddress = pteAddress;
  cache.value = value;
}
