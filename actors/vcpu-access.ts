import type { Field32, Field64, GprName, VcpuState } from '../src/machine/vcpu-state.ts';
import { VcpuAccessError, type VcpuAccess } from './hypervisor.ts';

/**
 * Register access that checks, on every call, that the vCPU is stopped (exited or paused). The
 * check is what turns a TIMER_FRIENDLY violation — reading a running vCPU — into an error.
 */
export class GuardedVcpu implements VcpuAccess {
  constructor(
    private readonly state: VcpuState,
    /** Returns null when access is allowed, else the vCPU's state name for the message. */
    private readonly denied: () => string | null,
  ) {}

  get id(): number {
    return this.state.id;
  }

  private check(): VcpuState {
    const why = this.denied();
    if (why !== null) throw new VcpuAccessError(this.state.id, why);
    return this.state;
  }

  gpr(name: GprName): bigint {
    return this.check().gpr(name);
  }

  setGpr(name: GprName, value: bigint): void {
    this.check().setGpr(name, value);
  }

  rip(): bigint {
    return this.check().rip;
  }

  setRip(value: bigint): void {
    this.check().rip = value;
  }

  rflags(): bigint {
    return this.check().rflags;
  }

  setRflags(value: bigint): void {
    this.check().rflags = value;
  }

  get64(field: Field64): bigint {
    return this.check().get64(field);
  }

  set64(field: Field64, value: bigint): void {
    this.check().set64(field, value);
  }

  get32(field: Field32): number {
    return this.check().get32(field);
  }
}
