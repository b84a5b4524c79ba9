import type { Introcore } from '../engine.ts';
import type { ExitEvent, VcpuAccess } from '../glue.ts';
import { actionName, statusName } from '../status.ts';
import type { RegisterExitResult } from './hook-list.ts';

/**
 * IntHandleXcrWrite: an XSETBV goes to the hooks on the XCR it writes (ECX); actions combine by
 * priority. Only XCR0 exists; HVMI watches it to know when to turn protection on, not to guard
 * it. No hook on it: NOT_FOUND, and the write is allowed.
 */

/** The XCRs this CPU has, and where each keeps its value. */
const XCR_VALUES: ReadonlyMap<number, (self: VcpuAccess) => bigint> = new Map<number, (self: VcpuAccess) => bigint>([
  [0, (self) => self.get64('xcr0')],
]);

export function handleXcrWrite(engine: Introcore, event: ExitEvent): RegisterExitResult {
  const xcr = event.exit.info0 >>> 0;
  const oldValue = XCR_VALUES.get(xcr)?.(event.self) ?? null;
  const newValue = event.exit.value;
  const result = engine.registerHooks.xcr.call(xcr, { vcpuId: event.vcpuId, exitTicket: event.exitTicket, self: event.self, xcr, oldValue, newValue });
  engine.note('xcr-write', { vcpu: event.vcpuId, xcr, value: newValue, status: statusName(result.status), action: actionName(result.action) });
  return result;
}
