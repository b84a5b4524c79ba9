import { eax, qword, rax, rbx, rcx, rdi, rsi } from '../../src/asm/index.ts';
import type { ExitHandler } from '../../actors/hypervisor.ts';
import { ExitReason } from '../../src/machine/layout.ts';
import { CODE, TestMachine } from './test-machine.ts';

/**
 * A guest for runtime tests: every vCPU loops `iterations` times doing LOCK XADD on two shared
 * counters and a plain increment of its own slot, takes a VMCALL "tick" every `period`
 * iterations, and ends with a VMCALL "done". The handler counts ticks and stops finished vCPUs.
 */

export const COUNTERS = 0x300000n;
export const SLOTS = 0x301000n;
export const TICK = 0x1000n;
export const DONE = 0x2000n;

export interface CounterGuest {
  readonly test: TestMachine;
  readonly handler: ExitHandler;
  /** VMCALL ticks seen per vCPU. */
  readonly ticks: number[];
  readonly iterations: number;
  readonly period: number;
  /** Differences from the exact expected results ([] when all is right). */
  check(): string[];
  /** Interrupts the guest's handler counted on vCPU `vcpu`. */
  interruptsTaken(vcpu: number): bigint;
  /** Zeroes the tick counts (before a re-run from a snapshot). */
  resetTicks(): void;
}

/** Vector of the guest's interrupt handler (it counts interrupts in the vCPU's slot + 8). */
export const GUEST_VECTOR = 0x40;
const INTERRUPT_HANDLER = CODE + 0x800n;

export function counterGuest(vcpus: number, iterations: number, period: number): CounterGuest {
  const test = new TestMachine({ vcpus });
  test.assemble(INTERRUPT_HANDLER, (a) => {
    a.inc(qword(rdi, 8));
    a.iretq();
  });
  test.setGate(GUEST_VECTOR, INTERRUPT_HANDLER);
  test.assemble(CODE, (a) => {
    const top = a.newLabel('top');
    const skip = a.newLabel('skip');
    a.bind(top);
    a.mov(eax, 1);
    a.lock().xadd(qword(rsi), rax);
    a.mov(eax, 3);
    a.lock().xadd(qword(rsi, 8), rax);
    a.inc(qword(rdi));
    a.dec(rbx);
    a.jne(skip);
    a.mov(rbx, period);
    a.mov(eax, Number(TICK));
    a.vmcall();
    a.bind(skip);
    a.dec(rcx);
    a.jne(top);
    a.mov(eax, Number(DONE));
    a.vmcall();
    a.hlt();
  });
  for (let vcpu = 0; vcpu < vcpus; vcpu++) {
    const state = test.state(vcpu);
    state.setGpr('rsi', COUNTERS);
    state.setGpr('rdi', SLOTS + BigInt(vcpu * 64));
    state.setGpr('rcx', BigInt(iterations));
    state.setGpr('rbx', BigInt(period));
    state.rflags = 0x202n; // IF: injected interrupts are taken
  }
  const ticks = new Array<number>(vcpus).fill(0);
  const handler: ExitHandler = (context) => {
    if (context.exit.reason !== ExitReason.vmcall) throw new Error(`unexpected exit ${context.exit.reason} on vCPU ${context.vcpuId}`);
    const code = context.self.gpr('rax');
    if (code === TICK) {
      ticks[context.vcpuId]++;
      return { action: 'allowedVirtual' };
    }
    if (code === DONE) return { action: 'shutdown' };
    throw new Error(`VMCALL with unknown code 0x${code.toString(16)}`);
  };
  return {
    test,
    handler,
    ticks,
    iterations,
    period,
    interruptsTaken: (vcpu) => test.read64(SLOTS + BigInt(vcpu * 64) + 8n),
    resetTicks: () => ticks.fill(0),
    check() {
      const problems: string[] = [];
      const expectA = BigInt(vcpus * iterations);
      const a = test.read64(COUNTERS);
      const b = test.read64(COUNTERS + 8n);
      if (a !== expectA) problems.push(`counter A is ${a}, expected ${expectA}`);
      if (b !== 3n * expectA) problems.push(`counter B is ${b}, expected ${3n * expectA}`);
      for (let vcpu = 0; vcpu < vcpus; vcpu++) {
        const slot = test.read64(SLOTS + BigInt(vcpu * 64));
        if (slot !== BigInt(iterations)) problems.push(`vCPU ${vcpu} slot is ${slot}, expected ${iterations}`);
        const expectTicks = Math.floor(iterations / period);
        if (ticks[vcpu] !== expectTicks) problems.push(`vCPU ${vcpu} took ${ticks[vcpu]} ticks, expected ${expectTicks}`);
      }
      return problems;
    },
  };
}
