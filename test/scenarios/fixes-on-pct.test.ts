/**
 * Goal: with every HVMI mitigation on, the memtable scenario never breaks an invariant over 500
 * PCT seeds (depths 1, 2 and 3 in turn), with the race window reached.
 */
import test from 'ava';
import { memtableStaleIcache } from '../../scenarios/memtable-stale-icache.ts';
import { exploreScenario } from '../../src/ava.ts';

test('fixes on: 500 PCT seeds (d = 1, 2, 3), no invariant broken, the race window reached', async (t) => {
  const { windows } = await exploreScenario(t, memtableStaleIcache, { seeds: 500, strategy: (seed) => ({ strategy: 'pct', depth: 1 + (seed % 3) }), expect: 'no-failure' });
  t.true(windows['peer-waiting-at-patch'] > 50);
  t.is(windows['stale-icache-decode'], 0);
});
