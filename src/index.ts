/**
 * vcpusim's public API: everything a scenario author needs, and the commands built on it. The
 * built-in scenarios import only from here (a test checks it), so a scenario of your own can do
 * whatever they do.
 *
 * - Scenarios: `ScenarioDefinition` (guest, bugs, fixes, oracles, window goals, engine logic),
 *   `defineScenario` to type one, the rig that runs it (`ScenarioRig`), the registry.
 * - The guest: `NtGuest` and its builder (code and data in kernel sections, threads, pages,
 *   hypercalls), the kernel's layout, the assembler and disassembler.
 * - The engine: `ScenarioEngine` (GPA and register hooks, detour callbacks, hypercalls, EPT stages), HVMI's
 *   status codes and actions, the fixes (`FixDeclaration`, `FixCatalog`).
 * - A run's events: `RuntimeEvent` with exit tickets, and queries over them.
 * - Exploring beyond seeds: every schedule up to k preemptions (`exploreScenarioBounded`, from a
 *   branch point `exploreBranchBounded`), a failure shrunk (`shrinkFailingRun`), a fix proven on
 *   the recorded interleaving (`replayWithFix`), a recorded failure kept fixed (`checkRecordedFailure`).
 * - Commands: `runCommand` / `campaignCommand` (what scenarios/run.ts and campaign.ts run), traces.
 */

// ---- scenarios and the rig ----------------------------------------------------------------------
export {
  fixCatalogOf, RIG_ORACLES, ScenarioDefinitionError, validateScenario,
  type EngineExtension, type HypervisorModel, type Oracle, type OraclePhase, type ScenarioBounds, type ScenarioBug, type ScenarioDefinition,
  type ScenarioGuest, type TimedEvent, type WindowGoal, type World,
} from './explore/scenario.ts';
export { defineScenario } from './explore/define.ts';
export { guestAlive, hooksRemoved, imageRestored, threadsCorrect, unloadSucceeds } from './explore/oracles.ts';
export { describeFailedUnload } from './explore/unload-report.ts';
export type { UnloadReport } from '../actors/introspection.ts';
export type { ThreadScan, UnsafeThread, IntroRegion } from './intro/thread-safeness.ts';
export { Kthread, ThreadState, WaitReason, Eprocess } from './guest/layout.ts';
export {
  BranchStateLeak, failed, RUN_MODES, ScenarioRig, ScenarioSetupError, traceJsonOf,
  type BranchRequest, type BranchResult, type RigOptions, type RunMode, type RunOptions, type RunReport, type RunRequest, type Violation,
} from './explore/scenario-rig.ts';
export { describeBranchPoint, parseBranchPoint, type BranchPoint, type BranchSuffix } from './explore/branch.ts';
export { UnsnapshottableState } from './explore/object-graph.ts';
export { allScenarios, findScenario, loadScenarioModules, registerScenario } from './explore/registry.ts';
export { STRATEGIES, type StrategyName, type StrategyPlan } from './explore/schedulers/index.ts';
export { RunTally } from './explore/tally.ts';

// ---- exploring beyond seeds: bounded guarantees, shrinking, proving a fix -------------------------
export { describeBounded, exploreBranchBounded, exploreScenarioBounded, type WalkOption } from './explore/exhaustive-run.ts';
export { PrefixWalk, WalkSetupFailed, type WalkOptions, type WalkStats } from './explore/prefix-walk.ts';
export { BOUND_MEASURES, type BoundMeasure, type ExhaustiveAttempt, type ExhaustiveLevel, type ExhaustiveOptions, type ExhaustiveResult } from './explore/exhaustive.ts';
export {
  breaksFirstAs, describePick, describeSearch, describeShrink, findSimplest, recordShrunk, searchShrink, SHRINK_OFFERS, shrinkFailingReports, shrinkFailingRun, shrinkSimplest,
  type FewerPreemptionsSearch, type SearchShrinkOptions, type ShrinkCandidate, type ShrinkFound, type ShrinkMeasures, type ShrinkTry, type ShrunkFailure, type SimplestOptions,
} from './explore/shrink-run.ts';
export { formatFixDifferential, replayWithFix, type FixDifferential } from './explore/fix-differential.ts';
export { checkRecordedFailure, keptFixed, UncheckableRecordingError, type RecordedFailureCheck, type Reproduction } from './explore/recorded-failure.ts';
export { formatRecordedFailureCheck } from './report/recorded-failure-text.ts';
export type { Choice } from './explore/schedule.ts';

// ---- a run's events ---------------------------------------------------------------------------
export type { ExitFacts, RuntimeEvent, StopName } from '../actors/events.ts';
export {
  eventsBetween, exitByTicket, exitsOf, handledOf, happenedBefore, notesOf, pendingExitsAt,
  type ExitEvent, type ExitFilter, type HandleEvent, type Located, type NoteEvent, type StopEvent,
} from './explore/event-queries.ts';
export {
  OrderingCoverage, OrderingScan, orderingsOf, ORDERINGS, ORDERING_TEXT, orderOf, possibleByPair, possibleOrderings, SideScan, spansOf,
  type Occurrence, type Ordering, type OrderingPair, type OrderingSide, type OrderingWitness, type RunMemory, type Span,
} from './explore/orderings.ts';

// ---- the guest ----------------------------------------------------------------------------------
export {
  NtGuest,
  type BugCheck, type CodeSection, type DataSection, type GuestCall, type GuestExtension, type GuestHypercall, type GuestPages,
  type GuestRegisters, type NtGuestBuilder, type NtGuestOptions, type ThreadReport,
} from './guest/nt-guest.ts';
export { HOOKED_APIS, PROCESSOR_BLOCK, serviceValue, SYSTEM_TOKEN, type KernelImage } from './guest/kernel.ts';
export { REX_W, UNWIND_SITES, UnwindFunction } from './guest/unwind.ts';
export { emitCountdown } from './guest/countdown.ts';
export type { ManagedRange, ManagedRangeOptions } from './guest/managed-range.ts';
export { Pae32Guest, PAE32_KERNEL_BASE, PAE32_THREAD_DONE, type Pae32Builder, type Pae32GuestOptions, type Pae32Range } from './guest/pae32-guest.ts';
export { Pte } from './machine/page-tables.ts';
export { SWITCHES, caseValue, defaultValue, type SwitchSpec } from './guest/switch-functions.ts';
export type { CodePartOptions, SymbolResolver } from './guest/image-builder.ts';
export { CLOCK_VECTOR, Hypercall, KERNEL_BASE, KERNEL_GPA, MAX_VCPUS, PerCpu, SYSTEM_PRIVILEGES, Token } from './guest/layout.ts';
export * from './asm/index.ts';

// ---- the engine ---------------------------------------------------------------------------------
export {
  ScenarioEngine,
  type AddressSpaceMonitorSpec, type SwapHookSpec,
  type CrHookSpec, type DtrHookSpec, type EngineCall, type EptStageExit, type MsrHookSpec, type RegisterWriteCallback, type ScenarioHookSpec,
  type XcrHookSpec,
} from './intro/extension.ts';
export {
  DescriptorAccess,
  type CrHook, type CrWrite, type DescriptorTable, type DtrHook, type DtrLoad, type MsrHook, type MsrWrite, type RegisterExit, type XcrHook,
  type XcrWrite,
} from './intro/callbacks/register-hooks.ts';
export type { RegisterHook, RegisterHookBase, RegisterHookKind } from './intro/callbacks/hook-list.ts';
export type { Introcore } from './intro/engine.ts';
export type { GuestDescription, GuestThreads } from './guest/description.ts';
export type { CallbackResult, GpaHook, HookedAccess } from './intro/gpa-hooks.ts';
export type { PtsHook, SwapChange } from './intro/pts-hooks.ts';
export type { VasChange, VasDivergence, VasMonitorHandle } from './intro/vas-monitor.ts';
export type { Detour, DetourCall } from './intro/detours.ts';
export type { IntegrityRegion, IntegrityResponse } from './intro/integrity.ts';
export type { DecodedInstruction } from './intro/decoder.ts';
export type { VcpuAccess } from './intro/glue.ts';
export { IntStatus, IntroAction, actionName, type IntroActionCode, type IntroActionName } from './intro/status.ts';
export { jumpPatch } from './intro/memtable-handler.ts';
export {
  BUILTIN_FIXES, DEFAULT_FIXES, FixCatalog,
  type BuiltinFixName, type FixDeclaration, type FixName, type Fixes,
} from './intro/fixes.ts';
export type { Session } from '../actors/session.ts';
export type { Introspection } from '../actors/introspection.ts';
export type { ProtocolInterpreter } from '../actors/table-actor.ts';

// ---- memory, machine, CPU ----------------------------------------------------------------------
export { cr3Root, translateGva, tryReadGuestVirtual } from './machine/guest-virtual.ts';
export { runSnippet, SnippetMachine, SNIPPET_CODE_ADDRESS, SNIPPET_STACK_TOP } from './machine/snippet.ts';
export type { SnippetOptions, SnippetResult, SnippetStop, SnippetMemory, SnippetMode, ExitReasonName } from './machine/snippet.ts';
export { Machine, type MachineOptions, type MachineDescriptor } from './machine/machine.ts';
export { GPR_NAMES, VcpuState, type GprName, type ExitRecord, type UdRecord } from './machine/vcpu-state.ts';
export { Cpu, RunStop, type RunStopCode } from './cpu/cpu.ts';
export * as layout from './machine/layout.ts';

// ---- traces, reports, commands ------------------------------------------------------------------
export { parseTraceJson, traceToJson, type TraceJson, type TraceMeta } from './explore/trace-json.ts';
export { firstDivergence, Trace, type TraceEntry } from './explore/trace.ts';
export { readTraceFile, traceFileName, traceFilesIn, writeRunTrace } from './report/trace-file.ts';
export { formatFailure, replayCommand, rerunCommand } from './report/text.ts';
export { writeReports, writeRunReports, type ReportTargets, type RunReportsOptions } from './report/run-reports.ts';
export { chromeTrace, perfettoTrace, type ChromeTrace, type TraceEvent } from './report/perfetto.ts';
export { htmlTimeline } from './report/html.ts';
export type { ActorChange, ExitCapture, RunRecording } from './explore/recorder.ts';
export { runMain } from './cli/common.ts';
export { runCommand, type CliContext } from './cli/run.ts';
export { campaignCommand } from './cli/campaign.ts';
