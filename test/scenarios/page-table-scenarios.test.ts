/**
 * Goal: the page-table races of the catalogue (§13.7–10, hvmi-notes §8–9) are found with their
 * fixes off within the stated budgets and never happen with them on (scenario-suite.ts).
 */
import { icacheRemap } from '../../scenarios/icache-remap.ts';
import { pteCmpxchgAccessed } from '../../scenarios/pte-cmpxchg-accessed.ts';
import { scenarioSuite } from './scenario-suite.ts';

scenarioSuite({ definition: pteCmpxchgAccessed, budgets: [['random', 2, 2], ['pct', 2, 10]], window: 'page-stolen' });

/** A remapped code page: every remap after a cached load is the bug, so every strategy finds it at once. */
scenarioSuite({ definition: icacheRemap, budgets: [['random', 2, 1], ['pct', 2, 1]], window: 'both-builds-completed' });
