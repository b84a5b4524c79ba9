/**
 * The one source of randomness of a run: xoshiro128** seeded through splitmix64.
 *
 * Every choice in deterministic mode comes from a `Prng` derived from the run's seed; independent
 * streams (scheduler, workload, each vCPU, the introspection engine's random replacement) are
 * split off with `fork(label)`, so adding a draw to one stream never shifts another.
 * Pure 32-bit integer arithmetic: the same seed gives the same numbers on every machine.
 */

/**
 * A seed: a non-negative integer; or a string — decimal digits or "0x" hex are that number (what
 * traces and command lines hold), anything else (a commit hash, a label) is hashed to one.
 */
export type Seed = number | bigint | string;

const MASK64 = (1n << 64n) - 1n;

/** Normalises any seed to an unsigned 64-bit bigint. */
export function seedValue(seed: Seed): bigint {
  if (typeof seed === 'bigint') {
    if (seed < 0n) throw new RangeError(`seed must be non-negative, got ${seed}`);
    return seed & MASK64;
  }
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
    return BigInt(seed);
  }
  if (/^\d{1,20}$/.test(seed)) return BigInt(seed) & MASK64;
  if (/^0x[0-9a-f]{1,16}$/i.test(seed)) return BigInt(`0x${seed.slice(2)}`);
  // FNV-1a 64 over the UTF-8 bytes: stable for git hashes and arbitrary labels.
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(seed)) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & MASK64;
  return hash;
}

function splitmix64(state: bigint): [bigint, bigint] {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [next, z ^ (z >> 31n)];
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** The seed this generator was built from (for messages and replay). */
  readonly seed: bigint;

  constructor(seed: Seed) {
    this.seed = seedValue(seed);
    let state = this.seed;
    let x: bigint;
    [state, x] = splitmix64(state);
    this.a = Number(x & 0xffffffffn) | 0;
    this.b = Number(x >> 32n) | 0;
    [state, x] = splitmix64(state);
    this.c = Number(x & 0xffffffffn) | 0;
    this.d = Number(x >> 32n) | 0;
    if ((this.a | this.b | this.c | this.d) === 0) this.d = 1;
  }

  /** Next 32 random bits as an unsigned number. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9);
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result >>> 0;
  }

  /** Uniform integer in [0, bound) for bound ≤ 2^32, without modulo bias. */
  below(bound: number): number {
    if (!Number.isInteger(bound) || bound <= 0 || bound > 4294967296) throw new RangeError(`bound must be in 1..2^32, got ${bound}`);
    const limit = 4294967296 - (4294967296 % bound);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % bound;
    }
  }

  /** Uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.nextU32() < p * 4294967296;
  }

  /** A uniformly chosen element. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.below(items.length)];
  }

  /** 64 random bits as an unsigned bigint. */
  nextU64(): bigint {
    return (BigInt(this.nextU32()) << 32n) | BigInt(this.nextU32());
  }

  /** A float in [0, 1) with 32 bits of randomness. */
  nextFloat(): number {
    return this.nextU32() / 4294967296;
  }

  /** An independent generator for a named purpose, derived from this one's seed (not its state). */
  fork(label: string): Prng {
    return new Prng((this.seed ^ seedValue(`fork:${label}`)) & MASK64);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
