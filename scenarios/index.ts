import type { ScenarioDefinition, ScenarioGuest } from '../src/index.ts';
import { auditRecordTorn } from './audit-record-torn.ts';
import { memtableStaleIcache } from './memtable-stale-icache.ts';
import { staleViolation } from './stale-violation.ts';

/**
 * The built-in scenarios. A new race adds its module here; the CLIs (run.ts, campaign.ts) load
 * this list, and the tests take it from here.
 */
export const SCENARIOS: readonly ScenarioDefinition<ScenarioGuest>[] = Object.freeze([memtableStaleIcache, staleViolation, auditRecordTorn]);
