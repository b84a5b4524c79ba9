/**
 * vcpusim public API.
 */
export { runSnippet, SnippetMachine, SNIPPET_CODE_ADDRESS, SNIPPET_STACK_TOP } from './machine/snippet.ts';
export type { SnippetOptions, SnippetResult, SnippetStop, SnippetMemory, ExitReasonName } from './machine/snippet.ts';
export { Machine, type MachineOptions, type MachineDescriptor } from './machine/machine.ts';
export { GPR_NAMES, VcpuState, type GprName, type ExitRecord, type UdRecord } from './machine/vcpu-state.ts';
export { Cpu, RunStop, type RunStopCode } from './cpu/cpu.ts';
export * as layout from './machine/layout.ts';
