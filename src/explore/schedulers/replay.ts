import { formatChoice, isEnabled, type Choice, type Enabled, type Scheduler } from '../schedule.ts';

/** Raised when a recorded schedule cannot be followed: the code or the scenario changed. */
export class ReplayDivergence extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayDivergence';
  }
}

/**
 * Replays a recorded schedule choice by choice. A recorded choice that is not possible now (the
 * vCPU is not runnable, there is no such pending exit) stops the replay with where and why.
 */
export class ReplayScheduler implements Scheduler {
  readonly name = 'replay';
  private next = 0;

  constructor(
    private readonly choices: readonly Choice[],
    private readonly describe: () => string = () => '',
  ) {}

  /** True once every recorded choice was used. */
  get exhausted(): boolean {
    return this.next >= this.choices.length;
  }

  choose(enabled: Enabled): Choice {
    const choice = this.choices[this.next];
    if (choice === undefined) {
      throw new ReplayDivergence(`the recorded schedule ended after ${this.choices.length} choices, but the run wants to go on\n${this.describe()}`);
    }
    if (!isEnabled(choice, enabled)) {
      throw new ReplayDivergence(
        `choice #${this.next} "${formatChoice(choice)}" is not possible now ` +
          `(runnable: [${enabled.runnable.join(', ')}], pending exits: [${enabled.pendingExits.join(', ')}], timer ${enabled.timerDue ? 'due' : 'not due'})\n${this.describe()}`,
      );
    }
    this.next++;
    return choice;
  }
}
