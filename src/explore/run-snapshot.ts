import { isMachineTable } from '../../actors/table-actor.ts';
import { vcpuMachine } from '../../actors/vcpu.machine.ts';
import { BLOCK_MUTABLE_FIELDS, isBlock, isBlockCache } from '../cpu/block.ts';
import { isDecoded } from '../cpu/decode.ts';
import { MachineCheckpoint, type CheckpointRestore } from '../machine/checkpoint.ts';
import { EptTable } from '../machine/ept.ts';
import { Machine } from '../machine/machine.ts';
import { GuestMemory } from '../machine/memory.ts';
import { VcpuState } from '../machine/vcpu-state.ts';
import { ObjectGraphSnapshot, type GraphShapes } from './object-graph.ts';

/**
 * The whole simulation at one top-level choice point of a deterministic inline run: the machine
 * (RAM, EPT, vCPU blocks, control words: `MachineCheckpoint`, dirty pages only on restore) and
 * every object of the run — the session with its actors and vCPU hosts (the CPUs, their decoded
 * blocks and TLBs), the engine, the scheduler and its generator, the trace, the run's event log
 * (`ObjectGraphSnapshot`). Restoring it puts the run back at that point, to go on with another
 * schedule without running the prefix again.
 */

/** xstate's machine definitions (StateMachine, StateNode): immutable logic shared by every run. */
const XSTATE_LOGIC: ReadonlySet<unknown> = new Set([vcpuMachine.constructor, vcpuMachine.root.constructor]);

/** Kept by identity: the machine's shared-memory views (the checkpoint restores their contents), decoded code, immutable logic (xstate's machines, their tables), WASM handles. */
function keptByIdentity(value: object): boolean {
  return (
    value instanceof Machine || value instanceof GuestMemory || value instanceof EptTable || value instanceof VcpuState ||
    isDecoded(value) || isMachineTable(value) || XSTATE_LOGIC.has(value.constructor) || '__wbg_ptr' in value
  );
}

/** A decoded block changes only in its few bookkeeping fields; a CPU's jump cache is only a faster way into its block maps. */
const CPU_SHAPES: GraphShapes = {
  mutableFields: (value) => (isBlock(value) ? BLOCK_MUTABLE_FIELDS : null),
  derivedCache: isBlockCache,
};

export class RunSnapshot {
  private constructor(
    private readonly machine: MachineCheckpoint,
    private readonly graph: ObjectGraphSnapshot,
  ) {}

  /**
   * Takes the snapshot; `roots` name every object the run's state hangs from, `logs` the arrays
   * only ever appended to (events, trace entries), saved by length.
   */
  static take(machine: Machine, roots: Readonly<Record<string, object>>, logs: readonly unknown[][]): RunSnapshot {
    const graph = ObjectGraphSnapshot.capture(Object.values(roots), Object.keys(roots), keptByIdentity, new Set(logs), CPU_SHAPES);
    return new RunSnapshot(new MachineCheckpoint(machine), graph);
  }

  /** Objects whose contents the snapshot holds. */
  get objects(): number {
    return this.graph.objects;
  }

  /** Puts the run back where the snapshot was taken. */
  restore(): CheckpointRestore {
    const machine = this.machine.restore();
    this.graph.restore();
    return machine;
  }

  /** The machine stops watching writes; the snapshot is not used again. */
  release(): void {
    this.machine.release();
  }
}
