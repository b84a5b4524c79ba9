import { Header, Vcpu } from './layout.ts';
import type { Machine } from './machine.ts';

/**
 * A copy of a machine's guest-visible state — RAM, EPT rights, page generations, code marks and
 * every vCPU block — to restore before each run of a campaign, so runs start from the same state
 * without new workers. The host-protocol words (each block's runtime words, the doorbell, the
 * session state and the exit-ticket counter) are live protocol state and are never restored.
 */
export class MachineSnapshot {
  private readonly ram: Uint8Array;
  private readonly control: Uint8Array;

  constructor(machine: Machine) {
    this.ram = new Uint8Array(machine.descriptor.ram).slice();
    this.control = new Uint8Array(machine.descriptor.control).slice();
  }

  /** Writes the snapshot back. vCPU caches must be reset afterwards (generations may repeat). */
  restore(machine: Machine): void {
    const control = new Int32Array(machine.descriptor.control);
    const keepHeader = [Header.doorbell, Header.sessionState, Header.exitTickets];
    const keptHeader = keepHeader.map((index) => control[index]);
    const layout = machine.layout;
    const runtimeWords = 16;
    const keptRuntime: Int32Array[] = [];
    for (let id = 0; id < machine.vcpuCount; id++) {
      const at = layout.vcpuBlocksBytes / 4 + id * Vcpu.words + Vcpu.runtime;
      keptRuntime.push(control.slice(at, at + runtimeWords));
    }
    new Uint8Array(machine.descriptor.ram).set(this.ram);
    new Uint8Array(machine.descriptor.control).set(this.control);
    keepHeader.forEach((index, k) => (control[index] = keptHeader[k]));
    for (let id = 0; id < machine.vcpuCount; id++) {
      const at = layout.vcpuBlocksBytes / 4 + id * Vcpu.words + Vcpu.runtime;
      control.set(keptRuntime[id], at);
    }
  }
}
