import type { DecodedInstruction } from './decoder.ts';
import type { Introcore } from './engine.ts';
import { MAX_INSTRUCTION, PAGE, pageOf } from './ept-special-cases.ts';
import { IC_ANY_VAS } from './icache.ts';
import { translateGva, tryReadGuestVirtual } from './kernvm.ts';

/**
 * IntDecDecodeInstructionAtRipWithCache: the instruction at a RIP, from the icache or decoded from
 * guest memory (and then added to the cache, which write-protects its page). The EPT pipeline, the
 * PAE second-store lookahead and the descriptor-table exits decode through here.
 */

/** The decoded instruction at RIP, and whether it came from the cache or was just added to it. */
export interface DecodeResult {
  readonly instruction: DecodedInstruction | null;
  readonly cached: boolean;
  /** Decoded now and put in the cache (the TOCTOU rule retries these). */
  readonly added: boolean;
  /** A page the instruction's bytes need is not mapped (HVMI's fetchfail: retry). */
  readonly fetchFailed: boolean;
}

const FETCH_FAILED: DecodeResult = { instruction: null, cached: false, added: false, fetchFailed: true };

/** IntDecDecodeInstructionAtRipWithCache. */
export function decodeAtRip(engine: Introcore, rip: bigint, cr3: bigint, useCache: boolean): DecodeResult {
  // User-mode code is cached only for known processes; this engine tracks none.
  const cache = useCache && rip >= engine.layout.kernelSpace;
  if (cache) {
    const hit = engine.icache.lookup(rip, IC_ANY_VAS);
    if (hit !== null) return { instruction: hit, cached: true, added: false, fetchFailed: false };
  }
  const root = engine.rootOf(cr3);
  const paging = engine.kernel.paging;
  const memory = engine.glue.memory;
  const firstGpa = translateGva(memory, root, rip, paging);
  if (firstGpa === null) return FETCH_FAILED;
  const inFirst = Math.min(MAX_INSTRUCTION, PAGE - (firstGpa % PAGE));
  const first = memory.read(firstGpa, inFirst);
  let bytes = first;
  let spillGpa: number | null = null;
  if (inFirst < MAX_INSTRUCTION) {
    const second = tryReadGuestVirtual(memory, root, rip + BigInt(inFirst), MAX_INSTRUCTION - inFirst, paging);
    if (second !== null) {
      bytes = new Uint8Array(MAX_INSTRUCTION);
      bytes.set(first);
      bytes.set(second, inFirst);
      spillGpa = translateGva(memory, root, rip + BigInt(inFirst), paging);
    }
  }
  const instruction = engine.decoder.decode(bytes, rip);
  // An instruction cut short by an unmapped next page cannot be analysed: retry (the vCPU will #PF).
  if (instruction === null) return spillGpa === null && inFirst < MAX_INSTRUCTION ? FETCH_FAILED : { instruction: null, cached: false, added: false, fetchFailed: false };
  if (!cache) return { instruction, cached: false, added: false, fetchFailed: false };
  const spills = instruction.length > inFirst && spillGpa !== null;
  engine.icache.add(rip, IC_ANY_VAS, true, instruction, { gpaPage: pageOf(firstGpa), spillGpaPage: spills && spillGpa !== null ? pageOf(spillGpa) : null });
  return { instruction, cached: false, added: true, fetchFailed: false };
}

