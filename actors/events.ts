import type { ExitAction } from './hypervisor.ts';

/**
 * Everything the runtime does that changes what happens next, as plain data. The trace records
 * these (with the virtual clock) and hashes them; replay compares them one by one.
 */

/** How a vCPU's command ended. */
export type StopName = 'budget' | 'exit' | 'halted' | 'paused' | 'shutdown';

/**
 * What a VM exit was about. `ticket` orders exits: the n-th exit of a run has ticket n (stable
 * under replay), and `Glue.ticket` tells a handler how many exits had happened when it placed a
 * hook — so "this exit happened before that hook existed" is a comparison of two numbers.
 */
export interface ExitFacts {
  readonly ticket: number;
  readonly gpa: bigint;
  readonly gla: bigint;
  /** ExitAccess bits of an EPT violation (read 1, write 2, execute 4); 0 for other exits. */
  readonly access: number;
}

export type RuntimeEvent =
  | { readonly kind: 'stop'; readonly vcpu: number; readonly stop: StopName; readonly reason: string; readonly rip: bigint; readonly retired: number; readonly exit: ExitFacts | null }
  | { readonly kind: 'handle'; readonly vcpu: number; readonly reason: string; readonly rip: bigint; readonly action: ExitAction; readonly inject: number; readonly ticket: number }
  | { readonly kind: 'pause'; readonly depth: number }
  | { readonly kind: 'resume'; readonly depth: number }
  | { readonly kind: 'ept'; readonly gpa: number; readonly rights: number; readonly pages: number }
  | { readonly kind: 'ept-commit'; readonly pages: number }
  | { readonly kind: 'timer' }
  /** The integrator's daemon runs a task it was given (an unload retry). */
  | { readonly kind: 'daemon'; readonly label: string }
  | { readonly kind: 'irq'; readonly vcpu: number; readonly vector: number }
  | { readonly kind: 'note'; readonly what: string; readonly detail: Readonly<Record<string, string | number | bigint | boolean>> }
  | { readonly kind: 'fail'; readonly reason: string };

/** Receives every runtime event with the virtual clock at which it happened. */
export type EventSink = (event: RuntimeEvent, clock: number) => void;
