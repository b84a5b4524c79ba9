import type { PagingFormat } from '../machine/page-tables.ts';
import type { Glue, NoteDetail } from './glue.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import type { GuestDescription } from '../guest/description.ts';

/**
 * The timer's token-privileges integrity check (wintoken.c, IntWinTokenPrivsCheckIntegrityOnProcess;
 * hvmi-notes §11.13, catalogue 14). Every tick it reads the token's Present and Enabled words and
 * alerts when Present gained bits since the last tick, or Enabled holds a bit Present does not.
 * Windows drops a privilege in two steps — Present first, then Enabled — so a tick can land
 * between them: HVMI tolerates a one-bit Enabled ⊄ Present once (PrivsChangeOneBit) and alerts
 * if it is still there on the next tick (privilegeTransientTolerance).
 *
 * TIMER_FRIENDLY: the check reads guest memory through the system CR3 only, never a vCPU's
 * registers — the vCPUs keep running while it works. The naive way to find "the token in use"
 * (timerFriendly off) follows each vCPU's GS base to the token of the process it runs; reading a
 * running vCPU's register is exactly what the rule forbids, and the framework refuses it.
 */

export interface TokenCheckContext {
  readonly glue: Glue;
  readonly systemCr3: number;
  readonly paging: PagingFormat;
  readonly token: NonNullable<GuestDescription['systemToken']>;
  readonly fixes: { readonly timerFriendly: boolean; readonly privilegeTransientTolerance: boolean };
  readonly note: (what: string, detail: NoteDetail) => void;
}

/** What one tick found for one token. */
export interface TokenCheck {
  readonly present: bigint;
  readonly enabled: bigint;
  readonly presentIncreased: boolean;
  readonly enabledIncreased: boolean;
  /** A one-bit Enabled ⊄ Present tolerated this tick. */
  readonly toleratedOneBit: boolean;
}

const isOneBit = (bits: bigint): boolean => bits !== 0n && (bits & (bits - 1n)) === 0n;

export class TokenPrivileges {
  private originalPresent = 0n;
  private originalEnabled = 0n;
  private changeOneBit = false;
  /** Alerts raised so far. */
  alerts = 0;

  constructor(private readonly ctx: TokenCheckContext) {
    // IntWinTokenProtectPrivsInternal: the values at protection time are the reference.
    const privileges = this.read(ctx.token.gva);
    if (privileges !== null) [this.originalPresent, this.originalEnabled] = privileges;
  }

  /** One timer tick: IntWinTokenCheckIntegrity for the token (or tokens) in use. */
  checkIntegrity(): TokenCheck | null {
    return this.check(this.tokenInUse());
  }

  private tokenInUse(): bigint {
    const { glue, token, fixes } = this.ctx;
    if (fixes.timerFriendly) return token.gva;
    // The naive path: the token of what each vCPU runs, through its GS base — a register of a vCPU
    // that may be running. Every vCPU runs the one process here, so the last one is as good.
    let inUse = token.gva;
    for (let vcpu = 0; vcpu < glue.vcpuCount; vcpu++) {
      const block = glue.vcpu(vcpu).get64('gsBase');
      const bytes = tryReadGuestVirtual(glue.memory, this.ctx.systemCr3, block + BigInt(token.perCpuOffset), 8, this.ctx.paging);
      if (bytes !== null) inUse = new DataView(bytes.buffer).getBigUint64(0, true);
    }
    return inUse;
  }

  private read(gva: bigint): [bigint, bigint] | null {
    const { glue, systemCr3, token } = this.ctx;
    const present = tryReadGuestVirtual(glue.memory, systemCr3, gva + BigInt(token.presentOffset), 8, this.ctx.paging);
    const enabled = tryReadGuestVirtual(glue.memory, systemCr3, gva + BigInt(token.enabledOffset), 8, this.ctx.paging);
    if (present === null || enabled === null) return null;
    return [new DataView(present.buffer).getBigUint64(0, true), new DataView(enabled.buffer).getBigUint64(0, true)];
  }

  private check(gva: bigint): TokenCheck | null {
    const privileges = this.read(gva);
    // Not in memory: nothing to check this tick.
    if (privileges === null) return null;
    const [present, enabled] = privileges;
    let presentIncreased = false;
    let enabledIncreased = false;
    let toleratedOneBit = false;
    if (this.originalPresent !== 0n || this.originalEnabled !== 0n) {
      presentIncreased = (present & ~this.originalPresent) !== 0n;
      const changed = enabled !== this.originalEnabled || this.changeOneBit;
      if (changed && (enabled & present) !== enabled) {
        if (!this.changeOneBit && this.ctx.fixes.privilegeTransientTolerance && isOneBit(enabled & ~present)) {
          this.changeOneBit = true;
          toleratedOneBit = true;
          this.ctx.note('token-transient-tolerated', { present, enabled });
        } else {
          this.changeOneBit = false;
          enabledIncreased = true;
        }
      } else {
        this.changeOneBit = false;
      }
    }
    if (presentIncreased || enabledIncreased) {
      this.alerts++;
      this.ctx.note('token-privileges-alert', { present, enabled, originalPresent: this.originalPresent, originalEnabled: this.originalEnabled, presentIncreased, enabledIncreased });
    }
    // The new values are the reference from now on (no alert every second for the same change).
    this.originalPresent = present;
    this.originalEnabled = enabled;
    return { present, enabled, presentIncreased, enabledIncreased, toleratedOneBit };
  }
}
