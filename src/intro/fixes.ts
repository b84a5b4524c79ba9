/**
 * HVMI's mitigations for the races this engine can hit, one named switch each (DESIGN.md,
 * faithfulness rule 4). All are on by default. Turning one off runs the naive code path in its
 * place — never a faked symptom.
 */

export interface Fixes {
  /** memtables.c: IntIcFlushAddress(RIP) after patching, so no handler decodes the stale MOV. */
  readonly icacheFlushOnPatch: boolean;
  /** memtables.c: entries already `Patched` are skipped, so a stale decode cannot patch twice. */
  readonly patchedGuard: boolean;
  /** IntHandleEptViolation step 2: a JMP at a relocated RIP means a peer patched it — retry. */
  readonly peerPatchedRetry: boolean;
  /** IntHandleEptViolation: an instruction just added to the icache is not analysed — retry. */
  readonly toctouRetry: boolean;
  /** memtables.c: patch the instruction and write the handler with every vCPU paused. */
  readonly pauseWhilePatching: boolean;
}

export type FixName = keyof Fixes;

export const FIX_NAMES: readonly FixName[] = ['icacheFlushOnPatch', 'patchedGuard', 'peerPatchedRetry', 'toctouRetry', 'pauseWhilePatching'];

/** One line per fix: what turning it off brings back. */
export const FIX_DESCRIPTIONS: Readonly<Record<FixName, string>> = {
  icacheFlushOnPatch: 'flush the instruction cache entry of a patched instruction (off: peers decode the stale MOV)',
  patchedGuard: 'skip mem-table entries already patched (off: a stale decode relocates the instruction again)',
  peerPatchedRetry: 'retry when the faulting instruction is a JMP another vCPU just patched in (off: analyse it)',
  toctouRetry: 'retry instead of analysing an instruction that was just decoded into the cache (off: analyse it)',
  pauseWhilePatching: 'pause every vCPU while patching guest code (off: others run between the writes)',
};

export const DEFAULT_FIXES: Fixes = Object.freeze({
  icacheFlushOnPatch: true,
  patchedGuard: true,
  peerPatchedRetry: true,
  toctouRetry: true,
  pauseWhilePatching: true,
});

/** Fixes with the named ones switched off. */
export function fixesWithout(names: readonly FixName[]): Fixes {
  const fixes: Record<FixName, boolean> = { ...DEFAULT_FIXES };
  for (const name of names) fixes[name] = false;
  return Object.freeze(fixes);
}

/** Names of the fixes that are off, in FIX_NAMES order. */
export function fixesOff(fixes: Fixes): FixName[] {
  return FIX_NAMES.filter((name) => !fixes[name]);
}

/**
 * Applies `name=on|off` settings (the CLI's `--fix`) on top of `base`. Throws one error naming the
 * bad setting and listing the valid names.
 */
export function applyFixSettings(base: Fixes, settings: readonly string[]): Fixes {
  const fixes: Record<FixName, boolean> = { ...base };
  for (const setting of settings) {
    const match = /^([A-Za-z]+)=(on|off|true|false|1|0)$/.exec(setting.trim());
    const name = match?.[1];
    if (match === null || name === undefined || !(FIX_NAMES as readonly string[]).includes(name)) {
      throw new Error(`bad fix setting "${setting}": expected name=on|off with name one of ${FIX_NAMES.join(', ')}`);
    }
    fixes[name as FixName] = match[2] === 'on' || match[2] === 'true' || match[2] === '1';
  }
  return Object.freeze(fixes);
}
