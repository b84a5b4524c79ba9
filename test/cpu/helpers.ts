import type { Assembler } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason } from '../../src/cpu/state-block.ts';
import type { VcpuState } from '../../src/machine/vcpu-state.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';

/**
 * Shared pieces of the interrupt and system-instruction tests: a handler area, a data area, a
 * user stack, frame reading, and ways to run code at CPL 3.
 */

/** Handlers are assembled here, 0x100 bytes apart by vector (`handlerAt(v)`). */
export const HANDLERS = 0x200000n;
/** Scratch data the guest reads and writes. */
export const DATA = 0x300000n;
/** Top of the stack used by ring-3 code (identity-mapped, user-accessible). */
export const USER_STACK = 0x60000n;
/** A linear address the test machine leaves unmapped (the identity map ends at 8 MiB). */
export const UNMAPPED = 0x900000n;

export const RFLAGS = { CF: 0x1n, ZF: 0x40n, TF: 0x100n, IF: 0x200n, DF: 0x400n, IOPL: 0x3000n, RF: 0x10000n, AC: 0x40000n, ID: 0x200000n } as const;

export function handlerAt(vector: number): bigint {
  return HANDLERS + BigInt(vector) * 0x100n;
}

/** The 64-bit interrupt frame (SDM Vol. 3A Figure 6-9), read upwards from `rsp`. */
export interface Frame {
  error?: bigint;
  rip: bigint;
  cs: bigint;
  rflags: bigint;
  rsp: bigint;
  ss: bigint;
}

export function readFrame(tm: TestMachine, rsp: bigint, hasError: boolean): Frame {
  const at = (k: number): bigint => tm.read64(rsp + 8n * BigInt(k));
  const o = hasError ? 1 : 0;
  const frame: Frame = { rip: at(o), cs: at(o + 1), rflags: at(o + 2), rsp: at(o + 3), ss: at(o + 4) };
  if (hasError) frame.error = at(0);
  return frame;
}

/** Installs a gate whose handler is a bare HLT (the run stops with RunStop.halted inside it). */
export function haltingGate(tm: TestMachine, vector: number, options: { trap?: boolean; dpl?: number; ist?: number } = {}): bigint {
  const handler = handlerAt(vector);
  tm.assemble(handler, (a) => a.hlt());
  tm.setGate(vector, handler, options);
  return handler;
}

/** Installs a gate whose handler is assembled by `build` at its handler address. */
export function gate(tm: TestMachine, vector: number, build: (a: Assembler) => void, options: { trap?: boolean; dpl?: number; ist?: number } = {}): bigint {
  const handler = handlerAt(vector);
  tm.assemble(handler, build);
  tm.setGate(vector, handler, options);
  return handler;
}

/** Makes the vCPU start at CPL 3 (user CS/SS) on the user stack, with the given RFLAGS. */
export function startInRing3(tm: TestMachine, rflags = 0x202n, rsp = USER_STACK): void {
  const state = tm.state();
  state.set32('cs', Selector.userCode);
  for (const segment of ['ss', 'ds', 'es'] as const) state.set32(segment, Selector.userData);
  state.setGpr('rsp', rsp);
  state.rflags = rflags;
}

/** RFLAGS as the state block holds it. */
export function rflagsOf(tm: TestMachine): bigint {
  return tm.state().rflags;
}

/** Assembles `build` at CODE (it must end in VMCALL), runs vCPU `id` and returns its state; throws on any other stop. */
export function runToVmcall(tm: TestMachine, build: (a: Assembler) => void, id = 0): VcpuState {
  tm.assemble(CODE, build);
  const stop = tm.run(id);
  const state = tm.state(id);
  if (stop !== RunStop.exit || state.exit().reason !== ExitReason.vmcall) {
    throw new Error(`expected a VMCALL exit, got stop ${stop} reason ${state.exit().reason} at 0x${state.rip.toString(16)}`);
  }
  return state;
}

/**
 * Assembles `build` at CODE with halting handlers for #UD, #NP and #GP, runs, and returns the
 * vector taken with its pushed RIP and error code; null if the run ended any other way.
 */
export function fault(tm: TestMachine, build: (a: Assembler) => void): { vector: number; error?: bigint; rip: bigint } | null {
  const vectors = [6, 11, 13];
  for (const vector of vectors) haltingGate(tm, vector);
  tm.assemble(CODE, build);
  const stop = tm.run();
  const state = tm.state();
  const vector = vectors.find((v) => state.rip === handlerAt(v) + 1n);
  if (stop !== RunStop.halted || vector === undefined) return null;
  const frame = readFrame(tm, state.gpr('rsp'), vector !== 6);
  return { vector, rip: frame.rip, ...(frame.error !== undefined ? { error: frame.error } : {}) };
}
