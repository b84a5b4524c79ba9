import { assign, setup } from 'xstate';

/**
 * One vCPU's lifecycle as the hypervisor side sees it, mirrored from its host's control words:
 *
 *   running ──EXITED──▶ exited ──REPLIED──▶ running
 *   running ──PAUSED──▶ paused ──RESUMED──▶ running
 *   running ──HALTED──▶ halted ──WOKEN───▶ running   (halted ──PAUSED──▶ paused)
 *   any     ──SHUT_DOWN──▶ stopped (final)       any ──FAILED──▶ failed (final)
 *
 * "running" includes a deterministic vCPU waiting for its next slice: it is in guest mode, so its
 * registers may not be read (HVMI's TIMER_FRIENDLY rule); exited, paused and stopped vCPUs may.
 */

export interface VcpuContext {
  readonly id: number;
  /** Why the vCPU stopped for good, or failed. */
  reason: string | null;
}

/** The exit itself stays in the state block; the actor tracks only where the vCPU is. */
export type VcpuEvent =
  | { type: 'EXITED' }
  | { type: 'REPLIED' }
  | { type: 'PAUSED' }
  | { type: 'RESUMED' }
  | { type: 'HALTED' }
  | { type: 'WOKEN' }
  | { type: 'SHUT_DOWN'; reason: string }
  | { type: 'FAILED'; reason: string };

export const vcpuMachine = setup({
  types: {
    context: {} as VcpuContext,
    events: {} as VcpuEvent,
    input: {} as { id: number },
  },
  actions: {
    recordReason: assign(({ event }) => (event.type === 'SHUT_DOWN' || event.type === 'FAILED' ? { reason: event.reason } : {})),
  },
}).createMachine({
  id: 'vcpu',
  context: ({ input }) => ({ id: input.id, reason: null }),
  initial: 'running',
  on: {
    SHUT_DOWN: { target: '.stopped', actions: 'recordReason' },
    FAILED: { target: '.failed', actions: 'recordReason' },
  },
  states: {
    running: {
      on: {
        EXITED: 'exited',
        PAUSED: 'paused',
        HALTED: 'halted',
      },
    },
    exited: {
      on: { REPLIED: 'running' },
    },
    paused: {
      on: { RESUMED: 'running' },
    },
    halted: {
      on: { WOKEN: 'running', PAUSED: 'paused', EXITED: 'exited' },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type VcpuStateName = 'running' | 'exited' | 'paused' | 'halted' | 'stopped' | 'failed';

/** States in which another party may read and write the vCPU's registers. */
export const ACCESSIBLE_STATES: ReadonlySet<VcpuStateName> = new Set(['exited', 'paused', 'stopped', 'failed']);
