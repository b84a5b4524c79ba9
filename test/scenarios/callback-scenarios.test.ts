/**
 * Goal: the re-entrancy races of the catalogue (§13.5 hook removed in its own callback, §13.19
 * disable asked for inside a callback) are found with their fix off and never happen with every
 * fix on (scenario-suite.ts). Both are found by every strategy at seed 1: the first one-shot hook,
 * or the first unexpected value, runs into them whatever the schedule.
 */
import { disableFromCallback } from '../../scenarios/disable-from-callback.ts';
import { hookRemovedInCallback } from '../../scenarios/hook-removed-in-callback.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: hookRemovedInCallback, budgets: [['random', 2, 1], ['pct', 2, 1]], window: 'one-shot-fired' });
scenarioSuite({ definition: disableFromCallback, budgets: [['random', 2, 1], ['pct', 2, 1]], window: 'unloaded-mid-run' });
