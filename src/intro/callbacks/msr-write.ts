import { MSR } from '../../cpu/ops/msr.ts';
import type { Field64 } from '../../machine/vcpu-state.ts';
import type { Introcore } from '../engine.ts';
import type { ExitEvent, VcpuAccess } from '../glue.ts';
import { actionName, statusName } from '../status.ts';
import type { RegisterExitResult } from './hook-list.ts';

/**
 * IntHandleMsrViolation: a WRMSR exit goes to the hooks on that MSR, in order; their actions
 * combine by priority (allowed: the write happens; notAllowed: the instruction is skipped and
 * the MSR keeps its value). No hook on it: NOT_FOUND, and the write is allowed.
 */

const U64 = (1n << 64n) - 1n;

/** Where each MSR this CPU has keeps its value (the TSC is computed: see msrValue). */
const MSR_FIELDS: ReadonlyMap<number, Field64> = new Map<number, Field64>([
  [MSR.APIC_BASE, 'apicBase'], [MSR.SYSENTER_CS, 'sysenterCs'], [MSR.SYSENTER_ESP, 'sysenterEsp'], [MSR.SYSENTER_EIP, 'sysenterEip'],
  [MSR.PAT, 'pat'], [MSR.EFER, 'efer'], [MSR.STAR, 'star'], [MSR.LSTAR, 'lstar'], [MSR.CSTAR, 'cstar'], [MSR.FMASK, 'fmask'],
  [MSR.FS_BASE, 'fsBase'], [MSR.GS_BASE, 'gsBase'], [MSR.KERNEL_GS_BASE, 'kernelGsBase'], [MSR.TSC_AUX, 'tscAux'],
]);

/** The value RDMSR would read now, or null for an MSR this CPU does not have. */
function msrValue(self: VcpuAccess, msr: number): bigint | null {
  // The virtual TSC: the vCPU's retired steps before the exiting WRMSR plus its offset.
  if (msr === MSR.TSC) return (self.get64('retired') + self.get64('tscOffset')) & U64;
  const field = MSR_FIELDS.get(msr);
  return field === undefined ? null : self.get64(field);
}

export function handleMsrWrite(engine: Introcore, event: ExitEvent): RegisterExitResult {
  const msr = event.exit.info0 >>> 0;
  const oldValue = msrValue(event.self, msr);
  const newValue = event.exit.value;
  const result = engine.registerHooks.msr.call(msr, { vcpuId: event.vcpuId, exitTicket: event.exitTicket, self: event.self, msr, oldValue, newValue });
  engine.note('msr-write', { vcpu: event.vcpuId, msr, value: newValue, status: statusName(result.status), action: actionName(result.action) });
  return result;
}
