import { PAGE_BYTES } from './layout.ts';

/**
 * Copies back, from `saved` into `live` RAM, every page whose `bit` in `marks` a write has cleared
 * since it was armed, and returns how many. `markWords` views the same marks four at a time: a word
 * whose four bits are all still set holds no written page (most words, in a short run).
 */
export function copyBackWrittenPages(marks: Uint8Array, markWords: Uint32Array, bit: number, live: Uint8Array, saved: Uint8Array): number {
  const whole = bit * 0x01010101;
  let copied = 0;
  for (let word = 0; word < markWords.length; word++) {
    if ((markWords[word] & whole) !== whole) copied += copyRange(marks, bit, live, saved, word * 4, word * 4 + 4);
  }
  return copied + copyRange(marks, bit, live, saved, markWords.length * 4, marks.length);
}

/** The marks as 32-bit words where they are aligned (pages past the last whole word are scanned one by one). */
export function markWordsOf(marks: Uint8Array): Uint32Array {
  return marks.byteOffset % 4 === 0 ? new Uint32Array(marks.buffer, marks.byteOffset, Math.floor(marks.length / 4)) : new Uint32Array(0);
}

function copyRange(marks: Uint8Array, bit: number, live: Uint8Array, saved: Uint8Array, from: number, to: number): number {
  let copied = 0;
  for (let page = from; page < to; page++) {
    if ((marks[page] & bit) !== 0) continue;
    const at = page * PAGE_BYTES;
    live.set(saved.subarray(at, at + PAGE_BYTES), at);
    copied++;
  }
  return copied;
}
