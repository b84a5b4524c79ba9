import type { RuntimeEvent } from '../../actors/events.ts';
import type { HypervisorFault } from '../../actors/hypervisor.ts';

/**
 * What a scheduler can choose, and what it chooses from. A run's schedule is the list of its
 * choices; with the seed and the code it reproduces the run exactly.
 */

/** One scheduling decision. */
export type Choice =
  /** Run vCPU `vcpu` for up to `steps` steps. */
  | { readonly kind: 'run'; readonly vcpu: number; readonly steps: number }
  /** Hand vCPU `vcpu`'s pending exit to the exit handler — with a hypervisor fault, if one is given. */
  | { readonly kind: 'handle'; readonly vcpu: number; readonly fault?: HypervisorFault }
  /** Fire the periodic timer callback. */
  | { readonly kind: 'timer' }
  /** Let the integrator's daemon run its due task (an unload retry). */
  | { readonly kind: 'daemon' }
  /** Inject external interrupt `vector` into vCPU `vcpu`. */
  | { readonly kind: 'irq'; readonly vcpu: number; readonly vector: number }
  /** At a preemption point inside a handler: let the handler go on (no vCPU runs now). */
  | { readonly kind: 'proceed' }
  /** vCPU `vcpu` sees the code written since it last looked, from its next instruction on (else it may run the old bytes until it serialises). */
  | { readonly kind: 'see-code'; readonly vcpu: number };

export type { HypervisorFault };
export const HYPERVISOR_FAULTS: readonly HypervisorFault[] = ['duplicate-exit', 'late-flush'];

/**
 * A point inside a handler where vCPUs that are not paused may run before the handler goes on
 * (the engine wrote guest memory, or resumed the vCPUs). Only `run` and `proceed` are possible
 * there (and `see-code`: a vCPU's view of memory is not the engine's lock): the handler lock is
 * held, so no other exit is handled and the timer cannot fire.
 */
export interface PreemptionPoint {
  readonly label: string;
  /** The vCPU whose exit the handler is working on, or -1 for the timer. */
  readonly handlerVcpu: number;
}

/** Everything that could happen next. */
export interface Enabled {
  /** vCPUs that can be given a slice. */
  readonly runnable: readonly number[];
  /** vCPUs stopped at an exit, in arrival order. */
  readonly pendingExits: readonly number[];
  readonly timerDue: boolean;
  /** The daemon has a task due. */
  readonly daemonDue: boolean;
  /** Interrupts that are due. */
  readonly interrupts: readonly { readonly vcpu: number; readonly vector: number }[];
  /** Semantic events so far (exits, engine notes, pauses, preemption points inside handlers): PCT's clock. */
  readonly events: number;
  /** The vCPU count, for strategies that rotate. */
  readonly vcpus: number;
  /** Set when the choice is made inside a handler (then only run and proceed are possible). */
  readonly preemption: PreemptionPoint | null;
  /** Faults the scenario lets the scheduler inject (none unless it opts in). */
  readonly faults?: readonly HypervisorFault[];
  /** The pending exits that are EPT violations (a duplicate delivery applies to those). */
  readonly eptExits?: readonly number[];
  /**
   * Runnable vCPUs that may still execute stale code: code was written since they last looked
   * and they have not serialised since. Making one see it now is a choice (`see-code`); left
   * alone, it sees the new bytes at its next serialising event, as the SDM allows (8.1.3).
   */
  readonly staleCode?: readonly number[];
}

/** Whether `fault` may ride on handling `vcpu`'s pending exit. */
export function faultApplies(fault: HypervisorFault, vcpu: number, enabled: Enabled): boolean {
  return (enabled.faults ?? []).includes(fault) && (fault !== 'duplicate-exit' || (enabled.eptExits ?? []).includes(vcpu));
}

/** A scheduling strategy. All its randomness comes from the generator it was built with. */
export interface Scheduler {
  /** e.g. "rr", "random", "pct(d=2)", "replay". */
  readonly name: string;
  /** Picks the next choice; only called when at least one choice is enabled. */
  choose(enabled: Enabled): Choice;
  /**
   * Sees every runtime event as it happens (exits with their GPA, engine writes, pauses): what a
   * strategy that reasons about which pending events race (POS) or how many each vCPU has left
   * (SURW) learns from. Strategies that only look at what is enabled leave it out.
   */
  observe?(event: RuntimeEvent): void;
}

/** Short text of a choice, for traces and messages. */
export function formatChoice(choice: Choice): string {
  switch (choice.kind) {
    case 'run': return `run v${choice.vcpu} ${choice.steps}`;
    case 'handle': return choice.fault === undefined ? `handle v${choice.vcpu}` : `handle v${choice.vcpu} ${choice.fault}`;
    case 'timer': return 'timer';
    case 'daemon': return 'daemon';
    case 'irq': return `irq v${choice.vcpu} ${choice.vector}`;
    case 'proceed': return 'proceed';
    case 'see-code': return `see-code v${choice.vcpu}`;
  }
}

/** Whether `choice` is possible given what is enabled. */
export function isEnabled(choice: Choice, enabled: Enabled): boolean {
  switch (choice.kind) {
    case 'run': return enabled.runnable.includes(choice.vcpu) && choice.steps > 0;
    case 'handle': return enabled.pendingExits.includes(choice.vcpu) && (choice.fault === undefined || faultApplies(choice.fault, choice.vcpu, enabled));
    case 'timer': return enabled.timerDue;
    case 'daemon': return enabled.daemonDue;
    case 'irq': return enabled.interrupts.some((i) => i.vcpu === choice.vcpu && i.vector === choice.vector);
    case 'proceed': return enabled.preemption !== null;
    case 'see-code': return (enabled.staleCode ?? []).includes(choice.vcpu);
  }
}
