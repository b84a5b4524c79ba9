import { Cpu } from '../cpu/cpu.ts';
import type { CpuPort } from '../cpu/ports.ts';
import { EptTable } from './ept.ts';
import { EptBits, Header, LAYOUT_MAGIC, LAYOUT_VERSION, controlLayout, type ControlLayout } from './layout.ts';
import { GuestMemory } from './memory.ts';
import { VcpuState } from './vcpu-state.ts';

/** Options for a new machine. */
export interface MachineOptions {
  /** Guest RAM size in bytes (multiple of 4 KiB, 1 MiB .. 1 GiB). */
  ramBytes: number;
  /** Number of vCPUs (1..16). */
  vcpus: number;
  /** Initial EPT rights of every page (default rwx). */
  defaultRights?: number;
}

/**
 * Everything a thread needs to attach to a machine: plain data, cloneable through `workerData`
 * or `postMessage` (SharedArrayBuffers are shared, not copied).
 */
export interface MachineDescriptor {
  readonly ram: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly ramBytes: number;
  readonly vcpus: number;
}

/**
 * A machine: guest RAM, the committed EPT, and one state block per vCPU, all in shared memory.
 * The same object shape exists in every thread that attached the descriptor.
 */
export class Machine {
  readonly layout: ControlLayout;
  readonly memory: GuestMemory;
  readonly ept: EptTable;
  private readonly states: VcpuState[];

  private constructor(readonly descriptor: MachineDescriptor) {
    this.layout = controlLayout(descriptor.ramBytes, descriptor.vcpus);
    if (descriptor.control.byteLength !== this.layout.totalBytes) {
      throw new Error(
        `control buffer is ${descriptor.control.byteLength} bytes, layout needs ${this.layout.totalBytes}: descriptor from another build?`,
      );
    }
    const header = new Int32Array(descriptor.control, 0, Header.words);
    if (header[Header.magic] !== LAYOUT_MAGIC || header[Header.version] !== LAYOUT_VERSION) {
      throw new Error('control buffer has no vcpusim layout header (magic/version mismatch)');
    }
    this.memory = new GuestMemory(descriptor.ram, descriptor.control, this.layout);
    this.ept = new EptTable(descriptor.control, this.layout);
    this.states = Array.from({ length: descriptor.vcpus }, (_, id) => new VcpuState(descriptor.control, this.layout, id));
  }

  /** Allocates a new machine. */
  static create(options: MachineOptions): Machine {
    const layout = controlLayout(options.ramBytes, options.vcpus);
    const ram = new SharedArrayBuffer(options.ramBytes);
    const control = new SharedArrayBuffer(layout.totalBytes);
    const header = new Int32Array(control, 0, Header.words);
    header[Header.magic] = LAYOUT_MAGIC;
    header[Header.version] = LAYOUT_VERSION;
    header[Header.ramPages] = layout.ramPages;
    header[Header.vcpuCount] = layout.vcpuCount;
    new Uint8Array(control, layout.eptRightsBytes, layout.ramPages).fill(options.defaultRights ?? EptBits.all);
    return new Machine({ ram, control, ramBytes: options.ramBytes, vcpus: options.vcpus });
  }

  /** Attaches to a machine created elsewhere (e.g. in a worker). */
  static attach(descriptor: MachineDescriptor): Machine {
    return new Machine(descriptor);
  }

  get vcpuCount(): number {
    return this.states.length;
  }

  /** What a CPU needs to run vCPU `id` on this machine. */
  cpuPort(id: number): CpuPort {
    return { id, vcpuCount: this.vcpuCount, words: this.vcpu(id).words, memory: this.memory, ept: this.ept };
  }

  /** Creates the emulated CPU for vCPU `id` (one per vCPU, in the thread that runs it). */
  createCpu(id: number): Cpu {
    return new Cpu(this.cpuPort(id));
  }

  /** Typed accessors for one vCPU's state block. */
  vcpu(id: number): VcpuState {
    const state = this.states[id];
    if (state === undefined) throw new RangeError(`vCPU ${id} does not exist (machine has ${this.states.length})`);
    return state;
  }
}
