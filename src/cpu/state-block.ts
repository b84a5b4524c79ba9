/**
 * The CPU's side of the shared state: the layout of one vCPU's state block (its register file,
 * exit record and control words, as int32 word indexes) and the codes stored in it.
 *
 * The CPU is the bottom layer (DESIGN.md: `machine → cpu`), so the block's layout is defined
 * here and `machine/layout.ts` places these blocks in the control buffer and re-exports them:
 * there is still one layout, read everywhere through these names. Every field names its single
 * writer: "vcpu" fields are written only by the thread running that vCPU, "hv" fields only by the
 * hypervisor side, "stopped" fields by the hypervisor only while the vCPU is stopped.
 * 64-bit values are two int32 words, low first.
 */
/** Size of a guest page; every per-page table is indexed by GPA >> PAGE_SHIFT. */
export const PAGE_SHIFT = 12;
export const PAGE_BYTES = 1 << PAGE_SHIFT;

/** EPT rights bits, one byte per guest page. R/W/X as in the EPT entry. */
export const EptBits = { read: 1, write: 2, execute: 4, all: 7 } as const;

/**
 * vCPU state block: word indexes relative to the block start. GPRs come first in x86 encoding
 * order (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15), each as lo/hi, so register number n
 * lives at words 2n and 2n+1 — the CPU compiles register accesses to constant indexes.
 */
export const Vcpu = {
  gpr: 0, //              stopped: 16 × (lo, hi)
  rip: 32, //             stopped: lo, hi
  rflags: 34, //          stopped: low 32 bits (the upper half of RFLAGS is reserved zero)
  cr0: 36, //             stopped: lo, hi
  cr2: 38, //             stopped
  cr3: 40, //             stopped
  cr4: 42, //             stopped
  cr8: 44, //             stopped: TPR (low 4 bits)
  efer: 46, //            stopped
  xcr0: 48, //            stopped
  star: 50, //            stopped: MSR C000_0081
  lstar: 52, //           stopped: MSR C000_0082
  cstar: 54, //           stopped: MSR C000_0083
  fmask: 56, //           stopped: MSR C000_0084
  fsBase: 58, //          stopped: MSR C000_0100
  gsBase: 60, //          stopped: MSR C000_0101
  kernelGsBase: 62, //    stopped: MSR C000_0102
  sysenterCs: 64, //      stopped: MSR 174
  sysenterEsp: 66, //     stopped: MSR 175
  sysenterEip: 68, //     stopped: MSR 176
  pat: 70, //             stopped: MSR 277
  tscAux: 72, //          stopped: MSR C000_0103
  apicBase: 74, //        stopped: MSR 1B
  tscOffset: 76, //       hv: added to the virtual TSC (VMCS TSC offset)
  /** Segment selectors; in 64-bit mode only CS (for CPL), SS and the FS/GS bases matter. */
  cs: 80, //              stopped
  ss: 81, //              stopped
  ds: 82, //              stopped
  es: 83, //              stopped
  fs: 84, //              stopped
  gs: 85, //              stopped
  tr: 86, //              stopped: task register selector
  /**
   * 1 when CS is a 32-bit code segment (L=0, D=1) while EFER.LMA=1: compatibility mode. The one
   * bit of the VMCS guest CS access rights that vcpusim models (with LMA=0, code is 32-bit and
   * this is ignored; with LMA=1 and 0 here, CS is a 64-bit code segment).
   */
  csCompat: 87, //        stopped
  gdtrBase: 88, //        stopped: lo, hi
  gdtrLimit: 90, //       stopped
  idtrBase: 92, //        stopped: lo, hi
  idtrLimit: 94, //       stopped
  trBase: 96, //          stopped: lo, hi (TSS base, for RSP0 and IST on interrupt delivery)
  trLimit: 98, //         stopped
  /** Activity: see ActivityState. */
  activity: 100, //       stopped
  /** Interruptibility: bit 0 = blocking by STI (one-instruction shadow). */
  interruptibility: 101, // stopped
  /** Pending external interrupt vector, or -1; taken at the next instruction boundary with IF=1. */
  pendingInterrupt: 102, // stopped (hv injects while the vCPU is stopped)
  /** Pending event to deliver at VM entry (VMCS entry-interruption info): see EventInfo. */
  pendingEvent: 103, //   stopped
  pendingEventError: 104, // stopped
  /** VM-exit controls (ExitControl bits) and the exception bitmap (vector n exits when bit n set). */
  exitControls: 106, //   hv
  exceptionBitmap: 107, // hv
  /** Exit record: written by the vCPU when it stops with a VM exit, read by the hypervisor. */
  exitReason: 110, //     vcpu: ExitReason
  exitQualification: 111, // vcpu: reason-specific bits (EPT: ExitAccess bits + ExitEptFlags)
  exitGpa: 112, //        vcpu: lo, hi
  exitGla: 114, //        vcpu: lo, hi
  exitInsnLength: 116, // vcpu
  exitRip: 118, //        vcpu: lo, hi (RIP of the instruction that exited)
  exitInfo0: 120, //      vcpu: CR number / MSR index / XCR index / exception vector / DTR kind
  exitInfo1: 121, //      vcpu: source value lo (MOV CR, WRMSR eax, XSETBV eax) / error code
  exitInfo2: 122, //      vcpu: source value hi
  exitVectoring: 123, //  vcpu: EventInfo of an event whose delivery caused the exit, else 0
  exitVectoringError: 124, // vcpu
  /** Retired instructions of this vCPU (lo, hi): the basis of its virtual TSC. */
  retired: 126, //        vcpu
  /** Last #UD raised by the CPU: why (UdReason), the iced Code and the RIP. */
  udReason: 128, //       vcpu
  udCode: 129, //         vcpu
  udRip: 130, //          vcpu: lo, hi
  udCount: 132, //        vcpu
  /**
   * The four PAE PDPTE registers (lo, hi each). The CPU loads them from the PDPT at CR3[31:5] on
   * MOV CR3, and on MOV CR0/CR4 that turns PAE paging on or changes its mode (SDM Vol. 3A §4.4.1);
   * page walks read them here, never the PDPT in memory. VM entry takes them as they are here, as
   * VMX with EPT takes the VMCS guest-PDPTE fields (SDM Vol. 3C §26.3.2.4): a hypervisor that
   * changes CR3 of a PAE guest writes them too.
   */
  pdpte: 134, //          stopped: 4 × (lo, hi)
  /**
   * A non-zero hint the CPU polls every few blocks so the host can stop it at an instruction
   * boundary (pause in free-running mode). Set by the hypervisor side, cleared by it on resume.
   */
  attention: 142, //      hv
  /** Words of the host protocol between the hypervisor side and the thread running the vCPU
   *  (request/acknowledge words with one writer each; see machine/layout.ts `Control`). */
  runtime: 144, //        VCPU_RUNTIME_WORDS words
  /** Block size in words; a multiple of 16 so every block starts on a 64-byte line. */
  words: 256,
} as const;

/** Words of the host protocol at `Vcpu.runtime` (machine/layout.ts `Control` uses the first ones). */
export const VCPU_RUNTIME_WORDS = 16;

/** What the vCPU is doing architecturally (VMCS guest activity state). */
export const ActivityState = { active: 0, halted: 1, shutdown: 2 } as const;

/** Event info encoding (VMCS style): bit 31 valid, bits 10:8 type, bits 7:0 vector, bit 11 has error code. */
export const EventInfo = {
  valid: 1 << 31,
  hasError: 1 << 11,
  typeShift: 8,
  /** Event types. */
  external: 0,
  nmi: 2,
  hardwareException: 3,
  softwareInterrupt: 4,
  softwareException: 6,
} as const;

/** Per-vCPU VM-exit controls. Instructions not enabled here execute without an exit. */
export const ExitControl = {
  int3: 1 << 0, //          INT3 exits (else #BP is delivered, subject to the exception bitmap)
  hlt: 1 << 1, //           HLT exits (else the vCPU halts until an interrupt)
  crWrite0: 1 << 2, //      MOV to CR0 exits
  crWrite3: 1 << 3, //      MOV to CR3 exits
  crWrite4: 1 << 4, //      MOV to CR4 exits
  crWrite8: 1 << 5, //      MOV to CR8 exits
  msrWrite: 1 << 6, //      WRMSR exits
  xcrWrite: 1 << 7, //      XSETBV exits
  dtr: 1 << 8, //           LGDT/LIDT/SGDT/SIDT/LTR exit (descriptor-table exiting)
  /** Defaults an introspection engine asks for: every write HVMI hooks. */
  introspectionDefault: 0x1ff,
} as const;

/** Why a vCPU stopped with a VM exit. Values are stable: they appear in traces. */
export const ExitReason = {
  none: 0,
  eptViolation: 1,
  vmcall: 2,
  int3: 3,
  crWrite: 4,
  msrWrite: 5,
  xcrWrite: 6,
  dtr: 7,
  hlt: 8,
  exception: 9, //   an exception whose vector is set in the exception bitmap
  tripleFault: 10,
} as const;
export type ExitReasonCode = (typeof ExitReason)[keyof typeof ExitReason];

/** EPT-violation qualification: the access that faulted (R/W/X bits as in EptBits) plus flags. */
export const ExitAccess = { read: 1, write: 2, execute: 4 } as const;
export const ExitEptFlags = {
  /** The GLA field is valid (the access came from a linear address). */
  glaValid: 1 << 7,
  /** Set when the access was to the translated page; clear when it was to a paging structure. */
  finalTranslation: 1 << 8,
  /** The page's EPT rights at the time, shifted left by 3 (bits 3..5), for diagnostics. */
  rightsShift: 3,
} as const;

/** DTR exit kinds in exitInfo0. */
export const DtrKind = { lgdt: 0, lidt: 1, sgdt: 2, sidt: 3, ltr: 4 } as const;

/** Why the CPU raised #UD. */
export const UdReason = {
  none: 0,
  /** The bytes are not a valid x86-64 instruction (the guest is wrong). */
  invalidEncoding: 1,
  /** A valid instruction that vcpusim does not implement (vcpusim is lacking). */
  unsupported: 2,
  /** A valid instruction used illegally (LOCK where not allowed, bad register, ...). */
  illegalUse: 3,
} as const;
export type UdReasonCode = (typeof UdReason)[keyof typeof UdReason];

/** Checks, once at load, that no two vCPU fields overlap and every 64-bit field is pair-aligned. */
function assertVcpuFields(): void {
  const pairs = new Set<string>([
    'gpr', 'rip', 'cr0', 'cr2', 'cr3', 'cr4', 'efer', 'xcr0', 'star', 'lstar', 'cstar', 'fmask', 'fsBase', 'gsBase',
    'kernelGsBase', 'sysenterCs', 'sysenterEsp', 'sysenterEip', 'pat', 'tscAux', 'apicBase', 'tscOffset', 'gdtrBase',
    'idtrBase', 'trBase', 'exitGpa', 'exitGla', 'exitRip', 'retired', 'udRip', 'pdpte',
  ]);
  const widths: Record<string, number> = { gpr: 32, rflags: 2, cr8: 2, runtime: VCPU_RUNTIME_WORDS, pdpte: 8 };
  const owner = new Map<number, string>();
  for (const [name, index] of Object.entries(Vcpu)) {
    if (name === 'words') continue;
    const width = widths[name] ?? (pairs.has(name) ? 2 : 1);
    if (pairs.has(name) && index % 2 !== 0) throw new Error(`vCPU field ${name} is 64-bit but not pair-aligned`);
    for (let w = index; w < index + width; w++) {
      const previous = owner.get(w);
      if (previous !== undefined) throw new Error(`vCPU fields ${previous} and ${name} overlap at word ${w}`);
      if (w >= Vcpu.words) throw new Error(`vCPU field ${name} runs past the block`);
      owner.set(w, name);
    }
  }
}
assertVcpuFields();
