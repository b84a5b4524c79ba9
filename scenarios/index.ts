import type { ScenarioDefinition, ScenarioGuest } from '../src/index.ts';
import { auditRecordTorn } from './audit-record-torn.ts';
import { disableFromCallback } from './disable-from-callback.ts';
import { hookRemovedInCallback } from './hook-removed-in-callback.ts';
import { icacheRemap } from './icache-remap.ts';
import { instructionSwapped } from './instruction-swapped.ts';
import { memtableStaleIcache } from './memtable-stale-icache.ts';
import { pteCmpxchgAccessed } from './pte-cmpxchg-accessed.ts';
import { paeDuplicateEvent } from './pae-duplicate-event.ts';
import { paeFalseDuplicate } from './pae-false-duplicate.ts';
import { paeHalfWritten } from './pae-half-written.ts';
import { pteHalfWritten } from './pte-half-written.ts';
import { pushTwoAddresses } from './push-two-addresses.ts';
import { staleViolation } from './stale-violation.ts';
import { timerTokenTransient } from './timer-token-transient.ts';
import { unloadDeadSlot } from './unload-dead-slot.ts';
import { unloadInDetour } from './unload-in-detour.ts';
import { unloadNestedPause } from './unload-nested-pause.ts';
import { unwindCacheTorn } from './unwind-cache-torn.ts';
import { vasHookLate } from './vas-hook-late.ts';

/**
 * The built-in scenarios. A new race adds its module here; the CLIs (run.ts, campaign.ts) load
 * this list, and the tests take it from here.
 */
export const SCENARIOS: readonly ScenarioDefinition<ScenarioGuest>[] = Object.freeze([memtableStaleIcache, staleViolation, auditRecordTorn, unloadInDetour, unloadDeadSlot, unloadNestedPause, hookRemovedInCallback, disableFromCallback, unwindCacheTorn, pushTwoAddresses, timerTokenTransient, instructionSwapped, pteCmpxchgAccessed, icacheRemap, vasHookLate, pteHalfWritten, paeDuplicateEvent, paeHalfWritten, paeFalseDuplicate]);
