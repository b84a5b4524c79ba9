/**
 * Goal: the multi-address instruction of the catalogue (§13.3, PUSH [mem] reading a hooked page
 * and writing a protected one) is found with analyseEveryAddress off and never happens with it on
 * (scenario-suite.ts). Its first push is the bug whatever the schedule: every strategy finds it at
 * seed 1.
 */
import { pushTwoAddresses } from '../../scenarios/push-two-addresses.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: pushTwoAddresses, budgets: [['random', 2, 1], ['pct', 2, 1]], window: 'write-blocked' });
