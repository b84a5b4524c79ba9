/**
 * Goal: the page-table races of the catalogue (§13.7–10, hvmi-notes §8–9) are found with their
 * fixes off within the stated budgets and never happen with them on (scenario-suite.ts).
 */
import { pteCmpxchgAccessed } from '../../scenarios/pte-cmpxchg-accessed.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: pteCmpxchgAccessed, budgets: [['random', 2, 2], ['pct', 2, 10]], window: 'page-stolen' });
