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
  /** Exits taken so far. */
  exits: number;
  /** The pending exit while in `exited`. */
  exit: { reason: number; rip: bigint } | null;
  /** Why the vCPU stopped for good, or failed. */
  reason: string | null;
}

export type VcpuEvent =
  | { type: 'EXITED'; reason: number; rip: bigint }
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
    recordExit: assign(({ context, event }) =>
      event.type === 'EXITED' ? { exits: context.exits + 1, exit: { reason: event.reason, rip: event.rip } } : {},
    ),
    clearExit: assign({ exit: null }),
    recordReason: assign(({ event }) => (event.type === 'SHUT_DOWN' || event.type === 'FAILED' ? { reason: event.reason } : {})),
  },
}).createMachine({
  id: 'vcpu',
  context: ({ input }) => ({ id: input.id, exits: 0, exit: null, reason: null }),
  initial: 'running',
  on: {
    SHUT_DOWN: { target: '.stopped', actions: 'recordReason' },
    FAILED: { target: '.failed', actions: 'recordReason' },
  },
  states: {
    running: {
      on: {
        EXITED: { target: 'exited', actions: 'recordExit' },
        PAUSED: 'paused',
        HALTED: 'halted',
      },
    },
    exited: {
      on: { REPLIED: { target: 'running', actions: 'clearExit' } },
    },
    paused: {
      on: { RESUMED: 'running' },
    },
    halted: {
      on: { WOKEN: 'running', PAUSED: 'paused', EXITED: { target: 'exited', actions: 'recordExit' } },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type VcpuStateName = 'running' | 'exited' | 'paused' | 'halted' | 'stopped' | 'failed';

/** States in which another party may read and write the vCPU's registers. */
export const ACCESSIBLE_STATES: ReadonlySet<VcpuStateName> = new Set(['exited', 'paused', 'stopped', 'failed']);
