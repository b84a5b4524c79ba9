/**
 * The integrator's daemon: work asked for now and done later, under the handler lock (HVMI's
 * disable retries). It holds at most one task; when it runs is the scheduler's choice among
 * everything enabled, once the task is due in virtual time.
 */

export interface DaemonTask {
  readonly label: string;
  /** Virtual time it is due at. */
  readonly due: number;
  readonly run: () => void;
}

export class Daemon {
  private task: DaemonTask | null = null;

  /** Replaces any pending task with `run`, due `afterSteps` after `now`. */
  defer(label: string, now: number, afterSteps: number, run: () => void): void {
    this.task = { label, due: now + Math.max(0, afterSteps), run };
  }

  get pending(): DaemonTask | null {
    return this.task;
  }

  /** Due at `now` — or early, when nothing else could make virtual time pass until it is. */
  isDue(now: number, nothingElse: boolean): boolean {
    return this.task !== null && (now >= this.task.due || nothingElse);
  }

  /** Removes the pending task and returns it (null when there is none). */
  take(): DaemonTask | null {
    const task = this.task;
    this.task = null;
    return task;
  }

  clear(): void {
    this.task = null;
  }
}
