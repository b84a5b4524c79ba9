import type { RuntimeEvent } from '../../../actors/events.ts';
import type { Prng } from '../prng.ts';
import type { Choice, Enabled, PreemptionPoint, Scheduler } from '../schedule.ts';
import { checkSliceMax, handleWithFaults, logUniformSlice } from './choice-draws.ts';

/**
 * POS — Partial Order Sampling (Yuan, Yang, Gu; CAV 2018), over the events a vCPU simulator
 * knows. Every actor (each vCPU, and the timer) has a random priority for its next event; the
 * highest-priority actor that can act does (handles its pending exit, or runs a slice; the timer
 * fires). After an event, the actor gets a fresh priority for its next one, and so does every
 * actor whose pending event *races* with the one that ran — the two touch the same object and one
 * of them writes:
 *  - a handler (or the timer callback) reads and writes the engine's state, so it races with
 *    every other pending exit; if it wrote guest memory or EPT rights, or paused or resumed the
 *    guest, it races with every vCPU;
 *  - a slice that ended at an EPT violation on page P races with the vCPUs whose pending exit is
 *    on P, or who execute on P;
 *  - a preemption point inside a handler follows an engine write, so the handler's continuation
 *    races with every runnable vCPU.
 * Actors that do not race keep their priorities, so a vCPU keeps going past steps that touch
 * nothing shared: partial orders are sampled far more evenly than by a random walk, which keeps
 * re-deciding order between independent steps. Slices are log-uniform (1 to `sliceMax` steps),
 * so a vCPU can stop anywhere inside a window. Due timer ticks, interrupts and daemon tasks go at
 * once: delaying a periodic check by whole periods is no interleaving a real timer gives.
 */
export class PosScheduler implements Scheduler {
  readonly name = 'pos';
  /** One priority per vCPU, then the timer's. */
  private readonly priority: Float64Array;
  /** The guest page of each vCPU's last EPT violation, and of the RIP it stopped at (−1: none). */
  private readonly exitPage: Int32Array;
  private readonly ripPage: Int32Array;
  /** What happened since the last choice: exits (vCPU, page) and whether the engine changed shared state. */
  private readonly exitsSince: number[] = [];
  private engineWrote = false;
  private lastActor = -1;
  /** The last choice ran engine code (a handler, the timer callback, or the rest of a handler). */
  private lastRanEngine = false;
  private lastPoint: PreemptionPoint | null = null;

  constructor(
    private readonly prng: Prng,
    private readonly vcpus: number,
    private readonly sliceMax: number,
  ) {
    checkSliceMax('POS', sliceMax);
    this.priority = new Float64Array(vcpus + 1);
    for (let actor = 0; actor <= vcpus; actor++) this.priority[actor] = prng.nextFloat();
    this.exitPage = new Int32Array(vcpus).fill(-1);
    this.ripPage = new Int32Array(vcpus).fill(-1);
  }

  observe(event: RuntimeEvent): void {
    switch (event.kind) {
      case 'stop':
        this.ripPage[event.vcpu] = pageOf(event.rip);
        if (event.exit !== null && event.exit.access !== 0) {
          this.exitPage[event.vcpu] = pageOf(event.exit.gpa);
          this.exitsSince.push(event.vcpu);
        }
        return;
      case 'note': case 'ept': case 'ept-commit': case 'pause': case 'resume':
        this.engineWrote = true;
        return;
      default:
    }
  }

  choose(enabled: Enabled): Choice {
    this.settle(enabled);
    if (enabled.preemption !== null) return this.atPreemption(enabled, enabled.preemption);
    // The environment's timing is not an actor to starve: a due tick fires at once (as rr, PCT
    // and the bounded search have it); its callback's races re-draw priorities like a handler's.
    if (enabled.timerDue) return this.acted(this.vcpus, true, { kind: 'timer' });
    if (enabled.daemonDue) return { kind: 'daemon' };
    if (enabled.interrupts.length > 0) return { kind: 'irq', ...enabled.interrupts[0] };
    let best = -1;
    for (let vcpu = 0; vcpu < this.vcpus; vcpu++) {
      const able = enabled.pendingExits.includes(vcpu) || enabled.runnable.includes(vcpu);
      if (able && (best < 0 || this.priority[vcpu] > this.priority[best])) best = vcpu;
    }
    if (best < 0) throw new Error('POS: nothing is enabled');
    if (enabled.pendingExits.includes(best)) return this.acted(best, true, handleWithFaults(this.prng, best, enabled));
    return this.acted(best, false, { kind: 'run', vcpu: best, steps: logUniformSlice(this.prng, this.sliceMax) });
  }

  /**
   * The handler goes on with its vCPU's priority (the timer's, for the timer callback); a runnable
   * vCPU of higher priority runs first. A new point is a new event of the handler, after an engine
   * write: it and every runnable vCPU get fresh priorities.
   */
  private atPreemption(enabled: Enabled, point: PreemptionPoint): Choice {
    const handler = point.handlerVcpu < 0 ? this.vcpus : point.handlerVcpu;
    if (point !== this.lastPoint) {
      this.lastPoint = point;
      this.refresh(handler);
      for (const vcpu of enabled.runnable) this.refresh(vcpu);
    }
    let best = -1;
    for (const vcpu of enabled.runnable) if (this.priority[vcpu] > this.priority[handler] && (best < 0 || this.priority[vcpu] > this.priority[best])) best = vcpu;
    // What the handler does after it proceeds is its own event again.
    if (best < 0) return this.acted(handler, true, { kind: 'proceed' });
    return this.acted(best, false, { kind: 'run', vcpu: best, steps: logUniformSlice(this.prng, this.sliceMax) });
  }

  private acted(actor: number, engine: boolean, choice: Choice): Choice {
    this.lastActor = actor;
    this.lastRanEngine = engine;
    return choice;
  }

  /** Fresh priorities for the actor that acted last and for every actor whose next event races with what it did. */
  private settle(enabled: Enabled): void {
    if (this.lastActor >= 0) this.refresh(this.lastActor);
    if (this.engineWrote) {
      for (let other = 0; other <= this.vcpus; other++) if (other !== this.lastActor) this.refresh(other);
    } else if (this.lastRanEngine) {
      for (const other of enabled.pendingExits) if (other !== this.lastActor) this.refresh(other);
    }
    for (const exited of this.exitsSince) {
      const page = this.exitPage[exited];
      for (let other = 0; other < this.vcpus; other++) {
        if (other !== exited && (this.ripPage[other] === page || (this.exitPage[other] === page && enabled.pendingExits.includes(other)))) this.refresh(other);
      }
    }
    this.lastActor = -1;
    this.lastRanEngine = false;
    this.exitsSince.length = 0;
    this.engineWrote = false;
  }

  private refresh(actor: number): void {
    this.priority[actor] = this.prng.nextFloat();
  }
}

function pageOf(address: bigint): number {
  return Math.floor(Number(address) / 4096);
}
