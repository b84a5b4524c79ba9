/**
 * Goal: with every HVMI mitigation on, the memtable scenario never breaks an invariant — over 500
 * random-strategy seeds (the PCT half of the 1,000 is in fixes-on-pct.test.ts) — while the race
 * window itself (a peer waiting on the instruction being patched) is reached again and again.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { exploreScenario } from '../../src/ava.ts';

test('fixes on: 500 random seeds, no invariant broken, the race window reached', async (t) => {
  const { windows } = await exploreScenario(t, memtableStaleIcache, { seeds: 500, strategy: 'random', expect: 'no-failure' });
  t.true(windows['peer-waiting-at-patch'] > 50, 'a peer was waiting on the patched load in many runs');
  t.true(windows['redecode-after-flush'] > 50, 'and decoded the fresh JMP after the flush');
  t.is(windows['stale-icache-decode'], 0, 'the flush leaves nothing stale');
});
