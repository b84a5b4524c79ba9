import type { Choice, Enabled } from './schedule.ts';

/**
 * The shape of a schedule: which of its choices were preemptions and which only did what a
 * non-preemptive scheduler would have done anyway. Both are measured against one reference — the
 * default continuation — so the count of preemptions is the count of switches that a schedule
 * *chose*, not of those the program forced.
 *
 * The default continuation: due timer ticks, daemon tasks and interrupts first (the environment
 * acts when it is due); then the actor that acted last goes on — the vCPU (its pending exit is
 * handled, or it runs another slice) or, at a preemption point inside a handler, the handler
 * (proceed), unless a vCPU already preempted it there and can still run; otherwise the next able
 * vCPU in rotation. The timer's and the daemon's handlers belong to the environment: when one goes
 * on, the vCPU that acted before it is still the one that goes on — otherwise every daemon task
 * would free the choice of the next vCPU, and a bounded search would enumerate those orders free
 * of charge (the unload guests' k = 0 ran into tens of thousands).
 *
 * A preemption is a choice that differs from the default while the default would have let the
 * current actor go on: a switch away from a vCPU (or a handler) that could continue. Other
 * differences (a shorter slice, a later interrupt, which vCPU runs when the current one cannot)
 * are deviations but not preemptions.
 */

const PROCEED: Choice = { kind: 'proceed' };
const TIMER: Choice = { kind: 'timer' };
const DAEMON: Choice = { kind: 'daemon' };
/** Actor ids besides vCPU numbers. */
const HANDLER = -1;
const NOBODY = -2;

/** What one choice was, against the default continuation. */
export interface ChoiceShape {
  /** It switched away from an actor that could go on. */
  readonly preempts: boolean;
  /** The actor switched away from (a vCPU, or -1 for the handler); -2 when it `preempts` nothing. */
  readonly preempted: number;
}

/** Structural equality of choices. */
export function sameChoice(a: Choice, b: Choice): boolean {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'run': return b.kind === 'run' && a.vcpu === b.vcpu && a.steps === b.steps;
    case 'handle': return b.kind === 'handle' && a.vcpu === b.vcpu && a.fault === b.fault;
    case 'irq': return b.kind === 'irq' && a.vcpu === b.vcpu && a.vector === b.vector;
    case 'see-code': return b.kind === 'see-code' && a.vcpu === b.vcpu;
    default: return true;
  }
}

/** A choice a bounded search may take instead of the default, and whether taking it preempts. */
export interface Alternative {
  readonly choice: Choice;
  readonly preempts: boolean;
}

/**
 * The actor a choice makes act: a vCPU, the handler (-1: proceed), or nobody (-2: the environment,
 * and a vCPU seeing code written by others — its view changes, it does not act).
 */
export function actorOf(choice: Choice): number {
  return choice.kind === 'proceed' ? HANDLER : choice.kind === 'run' || choice.kind === 'handle' ? choice.vcpu : NOBODY;
}

/** Follows a schedule choice by choice; knows the default continuation at every point. */
export class ScheduleShape {
  /** Choices seen. */
  choices = 0;
  /** Index of every preempting choice, ascending. */
  readonly preemptionAt: number[] = [];
  /** Who each preemption switched away from: a vCPU, or -1 for the handler. */
  readonly preempted: number[] = [];
  /** Index of the last choice that deviated from the default, or -1. */
  lastDeviation = -1;
  /** Choices that deviated from the default (preemptions among them). */
  deviations = 0;
  /** The vCPU that acted last (ran or had its exit handled), -1 before any. */
  private current = -1;
  /** The vCPU that preempted the handler at the current preemption point, or -1. */
  private pointRunner = -1;

  /** @param slice the default continuation's slice (the scenario's) */
  constructor(private readonly slice: number) {}

  get preemptions(): number {
    return this.preemptionAt.length;
  }

  /** A copy that later choices — or a restore of the run this one follows — leave as it is now. */
  copy(): ScheduleShape {
    const twin = new ScheduleShape(this.slice);
    twin.choices = this.choices;
    twin.preemptionAt.push(...this.preemptionAt);
    twin.preempted.push(...this.preempted);
    twin.lastDeviation = this.lastDeviation;
    twin.deviations = this.deviations;
    twin.current = this.current;
    twin.pointRunner = this.pointRunner;
    return twin;
  }

  /** Choices up to and including the last deviation: the rest is what the default continuation does anyway. */
  get decisive(): number {
    return this.lastDeviation + 1;
  }

  /** What the default continuation chooses now. */
  defaultChoice(enabled: Enabled): Choice {
    if (enabled.preemption !== null) {
      return this.pointRunner >= 0 && enabled.runnable.includes(this.pointRunner) ? { kind: 'run', vcpu: this.pointRunner, steps: this.slice } : PROCEED;
    }
    if (enabled.timerDue) return TIMER;
    if (enabled.daemonDue) return DAEMON;
    const irq = enabled.interrupts[0];
    if (irq !== undefined) return { kind: 'irq', vcpu: irq.vcpu, vector: irq.vector };
    const start = Math.max(0, this.current);
    for (let k = 0; k < enabled.vcpus; k++) {
      const vcpu = (start + k) % enabled.vcpus;
      if (enabled.pendingExits.includes(vcpu)) return { kind: 'handle', vcpu };
      if (enabled.runnable.includes(vcpu)) return { kind: 'run', vcpu, steps: this.slice };
    }
    // Nothing a vCPU can do (the run loop only asks when something is enabled): let time pass.
    return PROCEED;
  }

  /** Records `choice`, made when `enabled` held; returns what it was. */
  observe(enabled: Enabled, choice: Choice): ChoiceShape {
    const index = this.choices++;
    const deviates = !sameChoice(choice, this.defaultChoice(enabled));
    if (deviates) {
      this.lastDeviation = index;
      this.deviations++;
    }
    // Timer ticks, daemon tasks and interrupts switch no actor: they are the environment's timing.
    const actor = actorOf(choice);
    const goingOn = this.continuation(enabled);
    const preempts = goingOn !== NOBODY && actor !== NOBODY && actor !== goingOn;
    if (preempts) {
      this.preemptionAt.push(index);
      this.preempted.push(goingOn);
    }
    this.follow(enabled, choice);
    return { preempts, preempted: preempts ? goingOn : NOBODY };
  }

  /**
   * What else could act now instead of the default: each other actor (a vCPU's slice or its exit's
   * handling, or the handler going on), with whether that is a preemption. None while the
   * environment is due: timer ticks, daemon tasks and interrupts come when they are due.
   */
  alternatives(enabled: Enabled): Alternative[] {
    const expected = this.defaultChoice(enabled);
    if (actorOf(expected) === NOBODY) return [];
    const options: Choice[] = enabled.preemption !== null ? [PROCEED] : [];
    for (const vcpu of enabled.pendingExits) options.push({ kind: 'handle', vcpu });
    for (const vcpu of enabled.runnable) options.push({ kind: 'run', vcpu, steps: this.slice });
    const goingOn = this.continuation(enabled);
    return options
      .filter((choice) => actorOf(choice) !== actorOf(expected))
      .map((choice) => ({ choice, preempts: goingOn !== NOBODY && actorOf(choice) !== goingOn }));
  }

  /** The actor that would go on if nothing switched: the handler, a vCPU, or NOBODY. */
  private continuation(enabled: Enabled): number {
    if (enabled.preemption !== null) return this.pointRunner >= 0 && enabled.runnable.includes(this.pointRunner) ? this.pointRunner : HANDLER;
    const c = this.current;
    return c >= 0 && (enabled.pendingExits.includes(c) || enabled.runnable.includes(c)) ? c : NOBODY;
  }

  private follow(enabled: Enabled, choice: Choice): void {
    if (choice.kind === 'see-code') return;
    if (enabled.preemption !== null) {
      if (choice.kind === 'run') {
        this.pointRunner = choice.vcpu;
        this.current = choice.vcpu;
      } else {
        // The handler goes on, then its vCPU resumes; after the environment's handler (the timer's,
        // the daemon's) the vCPU that acted last goes on, as after a tick with no preemption point.
        this.pointRunner = -1;
        if (enabled.preemption.handlerVcpu >= 0) this.current = enabled.preemption.handlerVcpu;
      }
      return;
    }
    this.pointRunner = -1;
    const actor = actorOf(choice);
    if (actor >= 0) this.current = actor;
  }
}
