/**
 * xstate runs a machine's actions inside `send`, but an action that throws does not make `send`
 * throw: the actor stops and the error resurfaces later, outside any handler. Effects that can
 * fail (stopping workers, deleting hooks) run through here instead: the error is kept and the
 * caller rethrows it right after `send`, where it happened.
 */
export class EffectErrors {
  private error: unknown = null;
  private failed = false;

  /** Wraps an action body so a throw is recorded rather than lost inside the actor. */
  guard<A extends unknown[]>(body: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        body(...args);
      } catch (error) {
        if (!this.failed) {
          this.failed = true;
          this.error = error;
        }
      }
    };
  }

  /**
   * Runs a computation an `assign` needs (a check's verdict): a throw is recorded like a guarded
   * effect's, and `fallback` is what the machine sees in its place.
   */
  attempt<T>(body: () => T, fallback: T): T {
    try {
      return body();
    } catch (error) {
      if (!this.failed) {
        this.failed = true;
        this.error = error;
      }
      return fallback;
    }
  }

  /** Throws (once) what an effect threw during the last send. */
  rethrow(): void {
    if (!this.failed) return;
    const error = this.error;
    this.failed = false;
    this.error = null;
    throw error;
  }
}
