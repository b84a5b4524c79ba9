/**
 * Goal: the icache has HVMI's shape and rules — 512 page-indexed lines × 16 ways, exact GVA + CR3
 * tags (kernel entries global), seeded random replacement, one reference-counted EPT write hook
 * per cached page, and flushes by address (NOT_FOUND when absent), page, address space and all.
 * Method: a cache over a real engine's hook table; decoded instructions from the engine decoder.
 */
import test from 'ava';
import { EngineDecoder, type DecodedInstruction } from '../../src/intro/decoder.ts';
import { HookType } from '../../src/intro/gpa-hooks.ts';
import { IC_ANY_VAS, ICACHE_LINES, ICACHE_WAYS, InstructionCache } from '../../src/intro/icache.ts';
import { IntStatus } from '../../src/intro/status.ts';
import { Prng } from '../../src/explore/prng.ts';
import { miniKernel } from '../support/mini-kernel.ts';

function setup(seed = 1) {
  const kernel = miniKernel((a) => a.vmcall());
  const decoder = new EngineDecoder();
  const cache = new InstructionCache(kernel.intro.engine.hooks, new Prng(seed), () => undefined);
  const nop = (ip: bigint): DecodedInstruction => decoder.decode(Uint8Array.of(0x90), ip)!;
  return { kernel, decoder, cache, nop, hooks: kernel.intro.engine.hooks };
}

test(`${ICACHE_LINES} lines × ${ICACHE_WAYS} ways, indexed by page: the 17th instruction of one page evicts a seeded-random way`, (t) => {
  const evicted = (seed: number): number => {
    const { kernel, decoder, cache, nop } = setup(seed);
    try {
      const base = 0xfffff80000300000n;
      for (let k = 0; k < 17; k++) cache.add(base + BigInt(k), IC_ANY_VAS, true, nop(base + BigInt(k)), { gpaPage: 0x300000, spillGpaPage: null });
      t.is(cache.size, 16);
      t.is(cache.stats.evictions, 1);
      const gone = Array.from({ length: 16 }, (_, k) => k).filter((k) => cache.lookup(base + BigInt(k), IC_ANY_VAS) === null);
      t.is(gone.length, 1);
      // Another page in another line is unaffected.
      return gone[0];
    } finally {
      decoder.free();
      void kernel.session.close();
    }
  };
  const picks = [1, 2, 3, 4, 5, 6, 7, 8].map(evicted);
  t.deepEqual(picks, [1, 2, 3, 4, 5, 6, 7, 8].map(evicted), 'the same seed evicts the same way');
  t.true(new Set(picks).size > 1, `different seeds pick different ways (${picks.join(', ')})`);
});

test('tags: exact GVA; kernel entries match any CR3, user entries only their own', (t) => {
  const { kernel, decoder, cache, nop } = setup();
  t.teardown(() => (decoder.free(), kernel.session.close()));
  const kernelIp = 0xfffff80000300010n;
  const userIp = 0x400010n;
  cache.add(kernelIp, IC_ANY_VAS, true, nop(kernelIp), { gpaPage: 0x300000, spillGpaPage: null });
  cache.add(userIp, 0x5000n, false, nop(userIp), { gpaPage: 0x301000, spillGpaPage: null });
  t.truthy(cache.lookup(kernelIp, 0x7000n));
  t.is(cache.lookup(kernelIp + 1n, IC_ANY_VAS), null, 'exact address only');
  t.truthy(cache.lookup(userIp, 0x5000n));
  t.is(cache.lookup(userIp, 0x6000n), null, 'another address space');
  t.is(cache.flushVaSpace(0x5000n), 1);
  t.truthy(cache.lookup(kernelIp, 0x5000n), 'a VA-space flush leaves global entries');
});

test('one write hook per cached page, released with its last instruction; flushes by address, page and all', (t) => {
  const { kernel, decoder, cache, nop, hooks } = setup();
  t.teardown(() => (decoder.free(), kernel.session.close()));
  const page = 0xfffff80000300000n;
  const writeHooks = (): number => hooks.liveHooks().filter((h) => h.type === HookType.write && h.owner === 'icache').length;
  const before = writeHooks();
  cache.add(page + 1n, IC_ANY_VAS, true, nop(page + 1n), { gpaPage: 0x300000, spillGpaPage: null });
  cache.add(page + 2n, IC_ANY_VAS, true, nop(page + 2n), { gpaPage: 0x300000, spillGpaPage: null });
  cache.add(page + 0xfffn, IC_ANY_VAS, true, nop(page + 0xfffn), { gpaPage: 0x300000, spillGpaPage: 0x301000 });
  t.is(writeHooks() - before, 2, 'the page, and the page the last instruction spills into');
  t.is(cache.flushAddress(page + 1n, IC_ANY_VAS), IntStatus.success);
  t.is(cache.flushAddress(page + 1n, IC_ANY_VAS), IntStatus.notFound, 'absent: NOT_FOUND, an error status');
  t.is(writeHooks() - before, 2, 'page still referenced');
  t.is(cache.flushGvaPage(page + 0x1000n, IC_ANY_VAS, true), 1, 'flushing the next page with spill takes the spilling instruction');
  t.is(writeHooks() - before, 1);
  t.is(cache.flushAll(), 1);
  t.is(writeHooks() - before, 0, 'last reference gone: the hook is flagged for removal');
  t.is(cache.flushAll(), 0, 'nothing cached since: a clean cache is not walked');
});
