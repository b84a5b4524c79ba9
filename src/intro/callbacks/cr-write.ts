import type { Introcore } from '../engine.ts';
import type { ExitEvent, VcpuAccess } from '../glue.ts';
import { actionName, statusName } from '../status.ts';
import type { RegisterExitResult } from './hook-list.ts';

/**
 * IntHandleCrWrite: a MOV to a control register goes to the hooks on that CR with its old and
 * new value; actions combine by priority. No hook on it: NOT_FOUND, and the write is allowed.
 */

/** The control registers that can exit on a write, and where each keeps its value. */
const CR_VALUES: ReadonlyMap<number, (self: VcpuAccess) => bigint> = new Map<number, (self: VcpuAccess) => bigint>([
  [0, (self) => self.get64('cr0')],
  [3, (self) => self.get64('cr3')],
  [4, (self) => self.get64('cr4')],
  [8, (self) => BigInt(self.get32('cr8'))],
]);

export function handleCrWrite(engine: Introcore, event: ExitEvent): RegisterExitResult {
  const cr = event.exit.info0;
  const read = CR_VALUES.get(cr);
  if (read === undefined) throw new RangeError(`vCPU ${event.vcpuId}: a CR write exit for CR${cr}, which cannot exit`);
  const newValue = event.exit.value;
  const result = engine.registerHooks.cr.call(cr, { vcpuId: event.vcpuId, exitTicket: event.exitTicket, self: event.self, cr, oldValue: read(event.self), newValue });
  engine.note('cr-write', { vcpu: event.vcpuId, cr, value: newValue, status: statusName(result.status), action: actionName(result.action) });
  return result;
}
