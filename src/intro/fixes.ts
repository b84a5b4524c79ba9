/**
 * Mitigations as switches (DESIGN.md, faithfulness rule 4): HVMI's own, built in, and those a
 * scenario declares for the engine logic it adds. Turning one off runs the naive code path in its
 * place — never a faked symptom. A catalog (built-in plus a scenario's) knows every name, its
 * description and default, and turns `--fix name=on|off` settings into the values of a run.
 */

/** A mitigation switch: its name, and what it does and what turning it off brings back. Every fix is on unless a run turns it off. */
export interface FixDeclaration<N extends string = string> {
  readonly name: N;
  readonly description: string;
}

/** HVMI's mitigations for the races this engine can hit. */
export const BUILTIN_FIXES = [
  { name: 'icacheFlushOnPatch', description: 'flush the instruction cache entry of a patched instruction (off: peers decode the stale MOV)' },
  { name: 'patchedGuard', description: 'skip mem-table entries already patched (off: a stale decode relocates the instruction again)' },
  { name: 'peerPatchedRetry', description: 'retry when the faulting instruction is a JMP another vCPU just patched in (off: analyse it)' },
  { name: 'toctouRetry', description: 'retry instead of analysing an instruction that was just decoded into the cache (off: analyse it)' },
  { name: 'analyseEveryAddress', description: 'analyse every address an instruction accesses (off: only the exit\'s GLA, so a PUSH [mem] allowed for its read writes a protected stack unchecked)' },
  { name: 'repProbe', description: 'probe a REP string instruction\'s whole range (RCX elements, to the page end) and turn the hypervisor\'s REP optimisation off when it holds a hook (off: a page\'s worth is carried out on the strength of its first element)' },
  { name: 'pauseWhilePatching', description: 'pause every vCPU while patching guest code (off: others run between the writes)' },
  { name: 'threadSafenessCheck', description: 'unload only when no thread is inside, or returns into, the engine\'s code in the guest (off: unload at once)' },
  { name: 'memtableZeroStackSlot', description: 'the mem-table handler zeroes the stack slot below RSP (off: a dead pointer into slack can block unload)' },
  { name: 'countedPause', description: 'pause and resume nest by a count (off: a boolean pause, released by the first inner resume)' },
  { name: 'deferredHookRemoval', description: 'a removed hook is flagged and deleted at the commit (off: deleted at once, while its page\'s hooks are walked)' },
  { name: 'rtlpvuLiveRipCheck', description: 'update the RtlpVirtualUnwind cache only when no other vCPU\'s RIP is inside its handler (off: a peer between an entry\'s MOV and CMP pairs the old byte with the new address)' },
  { name: 'timerFriendly', description: 'timer checks read global state and guest memory only (off: they follow a running vCPU\'s registers, which the framework refuses)' },
  { name: 'privilegeTransientTolerance', description: 'tolerate a one-bit Enabled ⊄ Present token once, alerting if it is still there next tick (off: alert on Windows\' two-step privilege removal)' },
  { name: 'deferDisableToReturn', description: 'a disable asked for inside a callback runs when the handler returns (off: at once, inside the callback)' },
  { name: 'casPageTableEmulation', description: 'carry a page-table store out with a compare-exchange and judge it on the real outcome (off: judge it at decode, the hypervisor writes later — a CMPXCHG beaten by an A-bit update is taken as done)' },
  { name: 'partialWriteAssembly', description: 'wait until every byte of a page-table entry is written before calling its callbacks (off: each partial write is taken as a whole new entry)' },
  { name: 'paeStoreLookahead', description: 'on a 32-bit PAE guest, after carrying out a 4-byte page-table store, carry out the next instruction in the same exit when it stores 4 bytes into the same entry (off: each half is an exit of its own, and the entry is left half-written in memory and in the engine\'s write state between the two)' },
  { name: 'duplicateWriteDrop', description: 'on a 32-bit guest, drop a second 4-byte page-table write from the same RIP as a duplicate event (off: process it again)' },
  { name: 'hookThenRead', description: 'hook a page table first, then read its entries (off: read, then hook — a write in between is never seen)' },
  { name: 'pauseAroundVasHook', description: 'pause every vCPU around placing a page-table hook so it is in force before anyone writes the table (off: running vCPUs write through until their next exit)' },
  { name: 'icacheSwapHook', description: 'the icache watches each cached page\'s translation and flushes it when the page is remapped (off: a remapped code page keeps its old decoded instructions)' },
] as const satisfies readonly FixDeclaration[];

export type BuiltinFixName = (typeof BUILTIN_FIXES)[number]['name'];

/** The value of every fix in a run: HVMI's built-in ones and a scenario's own (`N`). */
export type Fixes<N extends string = never> = { readonly [K in BuiltinFixName]: boolean } & { readonly [K in N]: boolean };

/** Name of any fix: a built-in one or one a scenario declared. */
export type FixName = BuiltinFixName | (string & {});

const NAME = /^[a-z][A-Za-z0-9]*$/;

/** Every fix a scenario can use: the built-in ones and its own, checked once. */
export class FixCatalog<N extends string = never> {
  private readonly declarations: readonly FixDeclaration[];

  constructor(scenarioFixes: readonly FixDeclaration<N>[] = [], owner = 'scenario') {
    const all: FixDeclaration[] = [...BUILTIN_FIXES];
    for (const fix of scenarioFixes) {
      if (typeof fix.name !== 'string' || !NAME.test(fix.name)) throw new Error(`${owner}: fix name ${JSON.stringify(fix.name)} must be a camelCase identifier`);
      if (all.some((known) => known.name === fix.name)) throw new Error(`${owner}: fix "${fix.name}" is declared twice (or shadows a built-in fix)`);
      if (typeof fix.description !== 'string' || fix.description.trim() === '') throw new Error(`${owner}: fix "${fix.name}" needs a description`);
      all.push(fix);
    }
    this.declarations = all;
  }

  /** Every fix name, built-in first. */
  get names(): readonly (BuiltinFixName | N)[] {
    return this.declarations.map((d) => d.name as BuiltinFixName | N);
  }

  /** The declarations, built-in first (for --list and usage texts). */
  get all(): readonly FixDeclaration[] {
    return this.declarations;
  }

  /** The fixes the scenario declared itself. */
  get own(): readonly FixDeclaration[] {
    return this.declarations.slice(BUILTIN_FIXES.length);
  }

  has(name: string): name is BuiltinFixName | N {
    return this.declarations.some((d) => d.name === name);
  }

  /** Every fix on. */
  defaults(): Fixes<N> {
    return Object.freeze(Object.fromEntries(this.declarations.map((d) => [d.name, true]))) as Fixes<N>;
  }

  /** Every fix on but the named ones; an unknown name is an error that lists the known ones. */
  without(names: readonly string[]): Fixes<N> {
    return this.apply(this.defaults(), names.map((name) => `${name}=off`));
  }

  /**
   * Applies `name=on|off` settings (the CLI's `--fix`) on top of `base`. Throws one error naming
   * the bad setting and listing the valid names.
   */
  apply(base: Fixes<N>, settings: readonly string[]): Fixes<N> {
    const fixes: Record<string, boolean> = { ...this.defaults(), ...base };
    for (const setting of settings) {
      const match = /^([A-Za-z][A-Za-z0-9]*)=(on|off|true|false|1|0)$/.exec(setting.trim());
      const name = match?.[1];
      if (match === null || name === undefined || !this.has(name)) {
        throw new Error(`bad fix setting "${setting}": expected name=on|off with name one of ${this.names.join(', ')}`);
      }
      fixes[name] = match[2] === 'on' || match[2] === 'true' || match[2] === '1';
    }
    return Object.freeze(fixes) as Fixes<N>;
  }

  /** Names of the fixes that are off, in catalog order. */
  off(fixes: Fixes<N>): (BuiltinFixName | N)[] {
    const values = fixes as Readonly<Record<string, boolean>>;
    return this.names.filter((name) => values[name] === false);
  }
}

/** The built-in fixes alone. */
export const BUILTIN_FIX_CATALOG = new FixCatalog();
export const DEFAULT_FIXES: Fixes = BUILTIN_FIX_CATALOG.defaults();
export const FIX_NAMES: readonly BuiltinFixName[] = BUILTIN_FIX_CATALOG.names;

/** Built-in fixes with the named ones switched off. */
export function fixesWithout(names: readonly string[]): Fixes {
  return BUILTIN_FIX_CATALOG.without(names);
}

/** Names of the built-in fixes that are off. */
export function fixesOff(fixes: Fixes): BuiltinFixName[] {
  return BUILTIN_FIX_CATALOG.off(fixes);
}

/** Applies `name=on|off` settings for built-in fixes on top of `base`. */
export function applyFixSettings(base: Fixes, settings: readonly string[]): Fixes {
  return BUILTIN_FIX_CATALOG.apply(base, settings);
}
