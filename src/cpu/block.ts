import type { Insn } from './decode.ts';

/**
 * A decoded, compiled run of instructions that starts at one linear address and ends at a branch,
 * a serialising or exiting instruction, a page boundary or the size limit. Plain data plus one
 * generated function; the dispatcher links successors directly so the common path never looks an
 * address up. A class, so a snapshot of a run can tell a block by its prototype (`isBlock`).
 */
export class Block {
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
  next0: Block | null = null;
  next1: Block | null = null;
  /** False once invalidated; a stale successor pointer then forces a fresh lookup. */
  valid = true;

  constructor(ip: number, code: BlockCode, pages: BlockPages, epoch: number, stamp: number) {
    this.ip = ip;
    this.count = code.ips.length;
    this.ips = code.ips;
    this.lengths = code.lengths;
    this.insns = code.insns;
    this.fn = code.fn;
    this.page = pages.page;
    this.generation = pages.generation;
    this.page2 = pages.page2;
    this.generation2 = pages.generation2;
    this.linear2 = pages.linear2;
    this.epoch = epoch;
    this.stamp = stamp;
  }
}

/** What compiling a block produced: its instructions and their function. */
export type BlockCode = Pick<Block, 'ips' | 'lengths' | 'insns' | 'fn'>;
/** Where a block's bytes came from, and their write generations at decode. */
export type BlockPages = Pick<Block, 'page' | 'generation' | 'page2' | 'generation2' | 'linear2'>;

/** Blocks end after at most this many instructions (bounds fault rollback and pause latency). */
export const BLOCK_INSTRUCTIONS_MAX = 32;

/**
 * The fields of a block that change after it is made: all a snapshot of a run needs to save of
 * one (the rest — addresses, pages, generations, code — is fixed when the block is compiled).
 */
export const BLOCK_MUTABLE_FIELDS: readonly (keyof Block)[] = Object.freeze(['epoch', 'stamp', 'next0', 'next1', 'valid']);

/** Whether `value` is a block made by the compiler: only its BLOCK_MUTABLE_FIELDS change. */
export function isBlock(value: object): boolean {
  return value instanceof Block;
}

const blockCaches = new WeakSet<object>();

/**
 * Registers an array that only caches lookups in a CPU's block maps (a hit is checked against the
 * block's address and validity): emptying it never changes what runs, only how fast.
 */
export function markBlockCache<T extends unknown[]>(cache: T): T {
  blockCaches.add(cache);
  return cache;
}

/** Whether `value` is a block cache (see `markBlockCache`): a snapshot restores it empty instead of saving it. */
export function isBlockCache(value: object): boolean {
  return blockCaches.has(value);
}
