import type { Cpu } from '../cpu.ts';
import { ZF, carry, condition, settleFlags } from '../flags.ts';
import { compareExchange, compareExchangeWide, lockedRmw } from './atomic.ts';
import { bitTest, scan } from './bits.ts';
import { divide, multiplyAccumulator, multiplyTruncated } from './muldiv.ts';
import { doubleShift, shift } from './shift.ts';
import { stringOp } from './string.ts';
import * as system from './system.ts';

/**
 * The helper table `H` that generated block code calls. One frozen object, so every call site in
 * generated code is `H.name(...)` on a constant — V8 inlines the small ones.
 */

const expected = new Int32Array(4);
const replacement = new Int32Array(4);
const current = new Int32Array(4);

/** CMPXCHG8B/16B using RDX:RAX (expected) and RCX:RBX (replacement); sets ZF. */
function compareExchangeWideHelper(cpu: Cpu, pa: number, size: 8 | 16): void {
  const r = cpu.r;
  // Words low first: RAX lo, RAX hi (16B) / EDX (8B), ...
  if (size === 8) {
    expected[0] = r[0]; expected[1] = r[4];
    replacement[0] = r[6]; replacement[1] = r[2];
  } else {
    expected[0] = r[0]; expected[1] = r[1]; expected[2] = r[4]; expected[3] = r[5];
    replacement[0] = r[6]; replacement[1] = r[7]; replacement[2] = r[2]; replacement[3] = r[3];
  }
  const equal = compareExchangeWide(cpu.mmu, pa, size, expected, replacement, current);
  const flags = settleFlags(cpu);
  cpu.fl = equal ? flags | ZF : flags & ~ZF;
  if (equal) return;
  if (size === 8) {
    r[0] = current[0]; r[1] = 0;
    r[4] = current[1]; r[5] = 0;
  } else {
    r[0] = current[0]; r[1] = current[1];
    r[4] = current[2]; r[5] = current[3];
  }
}

export const helpers = Object.freeze({
  fault: (cpu: Cpu, vector: number, error: number): never => cpu.fault(vector, error),
  undefinedOpcode: (cpu: Cpu, reason: number, code: number, ip: number): never => cpu.undefinedOpcode(reason, code, ip),
  cond: (cpu: Cpu, cc: number): boolean => condition(cpu, cc),
  carry: (cpu: Cpu): number => carry(cpu),
  lockRmw: (cpu: Cpu, pa: number, size: number, op: number, blo: number, bhi: number, cin: number): number =>
    lockedRmw(cpu.mmu, pa, size, op, blo, bhi, cin),
  compareExchange: (cpu: Cpu, pa: number, size: number, alo: number, ahi: number, blo: number, bhi: number): number =>
    compareExchange(cpu.mmu, pa, size, alo, ahi, blo, bhi),
  compareExchangeWide: compareExchangeWideHelper,
  shift,
  doubleShift,
  multiplyAccumulator,
  multiplyTruncated,
  divide,
  bitTest,
  scan,
  stringOp,
  fence: (_cpu: Cpu): void => {
    // Any Atomics operation is a sequentially consistent fence for SharedArrayBuffer accesses.
    Atomics.load(_cpu.words, 0);
  },
  writeCr: system.writeCr,
  readCr: system.readCr,
  rdmsr: system.rdmsr,
  wrmsr: system.wrmsr,
  cpuid: system.cpuid,
  rdtsc: system.rdtsc,
  xsetbv: system.xsetbv,
  descriptorTable: system.descriptorTable,
  ltr: system.ltr,
  invlpg: system.invlpg,
  vmcall: system.vmcall,
  swapgs: system.swapgs,
  syscall: system.syscall,
  sysret: system.sysret,
  cli: system.cli,
  sti: system.sti,
  hlt: system.hlt,
  int3: system.int3,
  softwareInterrupt: system.softwareInterrupt,
  interruptReturn: system.interruptReturn,
  pushFlags: system.pushFlags,
  popFlags: system.popFlags,
  enter: system.enter,
  setFlagBits: system.setFlagBits,
});

