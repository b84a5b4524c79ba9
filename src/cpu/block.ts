import type { Insn } from './decode.ts';

/**
 * A decoded, compiled run of instructions that starts at one linear address and ends at a branch,
 * a serialising or exiting instruction, a page boundary or the size limit. Plain data plus one
 * generated function; the dispatcher links successors directly so the common path never looks an
 * address up.
 */
export interface Block {
  /** Linear address (48-bit number) of the first instruction. */
  readonly ip: number;
  /** Instructions in the block; a fault in instruction k retires exactly k. */
  readonly count: number;
  /** Linear address and length of every instruction (fault RIPs and exit records). */
  readonly ips: readonly number[];
  readonly lengths: readonly number[];
  readonly insns: readonly Insn[];
  readonly fn: (cpu: unknown) => number;
  /** Guest-physical page base(s) the bytes came from, and their write generations at decode. */
  readonly page: number;
  readonly generation: number;
  /** Second page for a block whose last instruction crosses a page boundary, else -1. */
  readonly page2: number;
  readonly generation2: number;
  /** Linear page of page2 (for re-translation), -1 if none. */
  readonly linear2: number;
  /** MMU epoch at which the translation was last confirmed. */
  epoch: number;
  /** Code stamp at which the generations were last confirmed. */
  stamp: number;
  /** Successor cache (fall-through / taken), validated by `ip` on use. */
  next0: Block | null;
  next1: Block | null;
  /** False once invalidated; a stale successor pointer then forces a fresh lookup. */
  valid: boolean;
}

/** Blocks end after at most this many instructions (bounds fault rollback and pause latency). */
export const BLOCK_INSTRUCTIONS_MAX = 32;
