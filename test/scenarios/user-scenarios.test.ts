/**
 * Goal: the two scenarios written only against the public API behave like the built-in race
 * (scenario-suite.ts). Budgets (measured over seeds 1..100): stale-violation random 100%, PCT d=1
 * 0%, d=2 16%, d=3 32% (first at seed 3); audit-record-torn random 100%, PCT d=1 0%, d=2 2%, d=3 2%
 * (first at seed 8: PCT does not count the engine's preemption points inside a handler as events,
 * so it seldom preempts the callback between two byte writes), free-running about 30%.
 */
import { auditRecordTorn } from '../../scenarios/audit-record-torn.ts';
import { staleViolation } from '../../scenarios/stale-violation.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: staleViolation, budgets: [['random', 2, 3], ['pct', 2, 40]], window: 'exit-pending-across-renewal' });
scenarioSuite({ definition: auditRecordTorn, budgets: [['random', 2, 3], ['pct', 2, 20]], window: 'published-while-reading' });
