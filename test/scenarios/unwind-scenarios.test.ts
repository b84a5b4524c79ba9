/**
 * Goal: the torn RtlpVirtualUnwind cache update (hvmi-notes §13.4) is found with the live-RIP check
 * off and never happens with it on (scenario-suite.ts), while updates are really skipped because a
 * peer is inside the handler. Random finds it within a few seeds; PCT does not: the peer must stop
 * between two instructions of one entry, a preemption PCT's few change points rarely place there.
 */
import { unwindCacheTorn } from '../../scenarios/unwind-cache-torn.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: unwindCacheTorn, budgets: [['random', 2, 20]], window: 'update-skipped-peer-inside' });
