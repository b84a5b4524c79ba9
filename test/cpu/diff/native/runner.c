/*
 * vcpusim native runner: the "host" half of the CPU differential test.
 *
 * Reads a stream of test cases on stdin, executes each case's raw x86-64
 * machine code on the real CPU with the requested GPRs / RFLAGS / scratch
 * memory, and writes the resulting architectural state to stdout.  The
 * emulator half of the harness runs the same cases and compares.
 *
 * Built at test time by native-runner.ts (`cc -O2 -pthread ...`); no binary
 * is ever committed.  x86-64 Linux only.
 *
 * ===========================================================================
 * Address map (the emulator uses the same one, so RIP-relative code, return
 * addresses and stack pointers compare equal)
 *
 *   CODE_BASE     0x200000    64 KiB RWX, shared by the case's threads.  Case
 *                             code at CODE_BASE; at the "end address"
 *                             CODE_BASE + codeLen the runner writes a 7-byte
 *                             exit stub.  A case ends when execution reaches
 *                             the end address.
 *   SCRATCH_BASE  0x300000    64 KiB RW, shared by the case's threads.
 *   EXIT_PAGE     0x7ffff000  4 KiB, READ + EXECUTE: holds the address of
 *                             the runner's exit tail, for the exit stub's
 *                             `jmp [disp32]`, and the far pointers and
 *                             jumps of 32-bit cases (see "32-bit cases").
 *                             Below 2 GiB so that a sign-extended disp32
 *                             reaches it.  The one native mapping the
 *                             emulator does not have; not being writable,
 *                             case code cannot corrupt it.
 *
 * Nothing else of the runner lives below 4 GiB (the binary is PIE; libc,
 * stacks, heap are mapped high), so any other low address faults exactly as
 * in an emulator that maps only code and scratch.
 *
 * Memory hygiene between cases: bytes of the code region beyond code + stub
 * and bytes of the scratch region outside the window are zero at case start
 * *as far as the declared extents go*: the runner clears the previous case's
 * code extent and scratch window (cheap).  A case that stores outside its
 * window (or into the code region) leaves those bytes for later cases; set
 * control bit CTRL_FULL_CLEAR on cases that follow such cases to zero both
 * whole regions first (~0.9 us).
 *
 * ===========================================================================
 * Entering and leaving a case
 *
 * All runner state the assembly needs is in the global `vcpu_ctx` (.bss),
 * addressed RIP-relative from the runner's own code: that needs no register,
 * and it sits at a random high (PIE) address, out of reach of stray case
 * stores (unlike a writable control page at a fixed low address: a case that
 * jumps into the middle of the exit stub decodes `and eax, 0x7ffff000` and
 * then `add [rax], al` - found by the fuzz stress test).
 *
 *  vcpu_enter (called from C): saves the host callee-saved GPRs, RSP, MXCSR
 *    and x87 CW; gives the case a defined FP/SIMD state (fninit, MXCSR =
 *    0x1f80, xmm/ymm 0-15 zeroed; AVX-512 zmm16-31 / k0-7 are not touched);
 *    marks the context "in case"; sets the FS and GS bases to 0 (see "FS and
 *    GS"); pushes the case RFLAGS and popfq; then with mov only (no flag
 *    changes) loads all 16 GPRs, RSP last, and jumps to CODE_BASE.
 *
 *  Exit stub written at the end address (7 bytes):
 *        ff 24 25 00 f0 ff 7f     jmp qword ptr [0x7ffff000]
 *    An indirect jump changes no register and no flag.
 *
 *  vcpu_exit_tail (assembled, so no hand-encoded save sequence): clears "in
 *    case", stores RAX and RSP, switches to the host stack, pushfq/pops the
 *    RFLAGS, resets RFLAGS to 0x202 (the case may have left DF/AC/TF set,
 *    which C must not see), stores the other GPRs, then (vcpu_recover)
 *    restores the host FS base, FP control state and callee-saved GPRs and
 *    `ret`s out of vcpu_enter.  The case's stack and memory are never written.
 *
 *  FS and GS: glibc keeps its TLS at the FS base.  Running cases with the
 *    host's FS base would make fs:-prefixed accesses differ from an emulator
 *    (whose bases are 0) and let random code scribble over libc's TLS.  Both
 *    bases are 0 while a case runs, and the host's are back afterwards, also
 *    after faults and after a case's own wrfsbase/wrgsbase or segment load.
 *    Two ways, chosen once at start-up:
 *      - "wrfsbase": the kernel advertises FSGSBASE (AT_HWCAP2, Linux >= 5.9
 *        on capable CPUs); the trampoline and the exit write the bases
 *        directly (a few ns).
 *      - "arch_prctl": otherwise, or when the environment variable
 *        VCPUSIM_NATIVE_NO_FSGSBASE=1 forces it: the trampoline loads FS and
 *        GS with the user data selector (descriptor base 0; the kernel keeps
 *        selectors across context switches), and the exit gives FS the
 *        host's base with one raw arch_prctl system call (~1-5 us), which
 *        also puts the kernel's record right.  Some hypervisors let wrfsbase
 *        run in user mode while the kernel does not know about it; this path
 *        is right there too.
 *    The signal handler may run with FS = 0 and never touches TLS (no
 *    errno, no stack protector, raw syscalls only).
 *
 *  Non-canonical RSP: some hosts (seen under a paravirtualised hypervisor)
 *    cannot return to user mode with a non-canonical RSP: a timer tick, an
 *    IPI or a minor page fault during such a case comes back as #GP(0) at
 *    whatever RIP the case had reached.  Start-up probes for it (one minor
 *    fault with RSP non-canonical, no waiting).  On such a host a #GP(0)
 *    with RSP non-canonical is reported as status 3, "host-interrupted": the
 *    case's own outcome could not be observed; it is never passed off as
 *    the case's fault.  `runner --print-config` prints both choices.
 *
 * ===========================================================================
 * 32-bit cases (control bit CTRL_COMPAT32)
 *
 * The case's code runs as 32-bit code in compatibility mode, through
 * x86-64 Linux's flat 32-bit user code segment (selector 0x23).  Code and
 * scratch are below 4 GiB already.  The trampoline is the same up to its
 * final jump, which for these cases goes to a 64-bit `jmp far [m16:32]` in
 * the exit page (ENTER32_CODE) that loads CS 0x23 with EIP = CODE_BASE; no
 * register or flag changes on the way.  The exit stub at the end address is
 * the 32-bit `jmp far [EXIT_TO64_PTR]` (6 bytes and a nop), to a 64-bit
 * `jmp [EXIT_PAGE_BASE]` under CS 0x33 (EXIT_TO64_CODE), and so into the
 * ordinary exit tail.  DS and ES hold the user data selector in every case
 * (a null DS faults on the first 32-bit data access; 64-bit code ignores
 * them).  FS and GS are as for 64-bit cases, so fs:/gs: accesses in 32-bit
 * code may fault through a null selector: the harness does not generate
 * them.  A signal taken in compatibility mode resumes the runner with CS
 * set back to 0x33.  Registers go in and come out 64 bits wide: what the
 * CPU leaves in the high halves is reported as it is.  One thread only.
 *
 * ===========================================================================
 * Threads (benchmark mode): thread = worker *process*
 *
 * threads = 2 runs the same code at the same CODE_BASE in two execution
 * contexts that share the code and scratch regions (MAP_SHARED) but each have
 * their own `vcpu_ctx` at the same address (process-private .bss across
 * fork()).  That is how each context's exit stub and exit tail find their own
 * save area with no register and no segment base: context 0 is the main
 * runner process, context 1 a worker process forked on the first two-thread
 * case.  From the case's point of view this is exactly two threads of one
 * address space (the only memory both can see is shared); the caller supplies
 * ordinary code - no per-thread copies, no position independence - and both
 * contexts end at the same end address.  They differ only in their input
 * registers.
 *
 * Both contexts meet in a spin rendezvous and are released together; each
 * reads CLOCK_MONOTONIC right before vcpu_enter and right after it returns
 * (elapsedNs, including a few tens of ns of trampoline + clock overhead:
 * calibrate with an empty case).  wallNs = max(end) - min(start).
 *
 * ===========================================================================
 * Faults and timeouts
 *
 * SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS and SIGALRM have SA_SIGINFO
 * handlers on an alternate stack (the case's RSP may point anywhere, e.g.
 * into the scratch window, which must not receive a signal frame).  For a
 * signal inside a case the handler records from the ucontext: the signal
 * number, REG_TRAPNO (exception vector), REG_ERR (error code), si_addr (CR2
 * for page faults), the 16 GPRs, RIP and EFL, exactly as the kernel reports
 * them.  Notably: for INT3 (vector 3) Linux reports RIP *after* the int3; at
 * faults EFL usually has RF (bit 16) set.  AC (bit 18) in the case RFLAGS
 * makes misaligned accesses raise #AC (SIGBUS, vector 17): reported, not
 * prevented.  TF (bit 8) in the input RFLAGS traps right after the
 * trampoline's popfq, i.e. inside the trampoline (RIP outside the code
 * region): don't set it.
 *
 * Instead of siglongjmp, the handler rewrites the interrupted context (RIP =
 * vcpu_recover, RSP = saved host RSP, RFLAGS = 0x202) and returns: sigreturn
 * restores the signal mask (no per-case sigsetjmp(..., 1) syscall), and
 * vcpu_recover restores FS, callee-saved GPRs and FP control state exactly
 * like the normal exit, then returns out of vcpu_enter.
 *
 * Timeouts: a watchdog thread in the main process (not a timer per case:
 * setitimer is process-wide and arming/disarming costs ~0.7 us of syscalls
 * per case) watches each context's deadline in shared memory and sends
 * SIGALRM once it has passed (tgkill / kill for the worker process), again
 * every poll interval until the case stops.  The handler ignores a SIGALRM
 * arriving before the current case's deadline (a stale kick for an earlier
 * case), so a late signal never times out the wrong case.  A timed-out case
 * reports status 2, signo SIGALRM and the GPRs/RIP/RFLAGS where it was
 * interrupted.
 *
 * System calls: a seccomp filter turns every syscall whose instruction
 * pointer is below 4 GiB (i.e. issued by case code) into SIGSYS, reported
 * like any other signal (RIP after the syscall instruction; the vector field
 * is not meaningful).  Random code therefore cannot write to the protocol
 * pipe, exit, or remap the regions.
 *
 * ===========================================================================
 * Protocol (little-endian, no padding, no batch header; EOF at a case
 * boundary ends the run with exit status 0)
 *
 * Input, per case:
 *   off  0  u32 magic        0x31435356 ("VSC1")
 *   off  4  u32 control      bits 0-7: thread count (1 or 2)
 *                            bit 8:    CTRL_FULL_CLEAR (zero both regions first)
 *                            bit 9:    CTRL_COMPAT32 (32-bit code; 1 thread)
 *                            others:   must be 0
 *   off  8  u32 codeLen      <= 65529 (region size minus the 7-byte stub)
 *   off 12  u32 scratchAddr  absolute; the window [scratchAddr, scratchAddr +
 *   off 16  u32 scratchLen   scratchLen) must lie in [0x300000, 0x310000)
 *   off 20  u32 timeoutMs    >= 1
 *   off 24  codeLen bytes of code
 *   then per thread: 17 x u64 = rax rcx rdx rbx rsp rbp rsi rdi r8..r15 rflags
 *   then scratchLen bytes: initial window contents
 *
 * Output, per case:
 *   off  0  u32 magic        0x31525356 ("VSR1")
 *   off  4  u32 thread count
 *   then per thread (184 bytes):
 *     +0   u32 status        0 = reached end address, 1 = signal, 2 = timeout,
 *                            3 = host-interrupted (see "Non-canonical RSP")
 *     +4   u32 signo         0 for status 0, SIGALRM for status 2
 *     +8   u64 trapno        REG_TRAPNO (exception vector); 0 unless status 1
 *     +16  u64 err           REG_ERR (error code);          0 unless status 1
 *     +24  u64 faultAddr     si_addr;                       0 unless status 1
 *     +32  u64 rip           the end address for status 0
 *     +40  16 x u64 GPRs     rax rcx rdx rbx rsp rbp rsi rdi r8..r15
 *     +168 u64 rflags        as pushfq / the kernel saw them (IF, bit 1 set)
 *     +176 u64 elapsedNs
 *   then u64 wallNs
 *   then scratchLen bytes: final window contents
 *
 * Malformed input: message on stderr, exit status 65.  I/O error: 74.
 * Runner-internal failure: message on stderr, exit status 70.
 * `runner --print-stub` prints the exit stub bytes (hex) for a disassembly
 * check; `runner --print-config` prints `fsgs=wrfsbase|arch_prctl
 * forced=0|1 noncanonical-rsp=ok|host-gp` and exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <asm/prctl.h>

#define CODE_BASE 0x200000UL
#define CODE_SIZE 0x10000UL
#define SCRATCH_BASE 0x300000UL
#define SCRATCH_SIZE 0x10000UL
#define EXIT_PAGE_BASE 0x7ffff000UL /* read-only: holds &vcpu_exit_tail */
#define EXIT_PAGE_SIZE 0x1000UL
#define STUB_LEN 7UL
#define MAX_CODE_LEN (CODE_SIZE - STUB_LEN)

#define IN_MAGIC 0x31435356u  /* "VSC1" */
#define OUT_MAGIC 0x31525356u /* "VSR1" */
#define CTRL_THREADS_MASK 0xffu
#define CTRL_FULL_CLEAR 0x100u
#define CTRL_COMPAT32 0x200u

/* x86-64 Linux's flat user code selectors: 32-bit (compatibility mode) and 64-bit. */
#define USER32_CS 0x23
#define USER64_CS 0x33
/* Exit page layout (see "32-bit cases"). */
#define EXIT_TO64_PTR (EXIT_PAGE_BASE + 0x08)
#define EXIT_TO64_CODE (EXIT_PAGE_BASE + 0x10)
#define ENTER32_PTR (EXIT_PAGE_BASE + 0x18)
#define ENTER32_CODE (EXIT_PAGE_BASE + 0x20)

#define IN_HEADER_LEN 24
#define THREAD_IN_LEN (17 * 8)
#define THREAD_OUT_LEN 184

#define STATUS_END 0u
#define STATUS_SIGNAL 1u
#define STATUS_TIMEOUT 2u
#define STATUS_HOST_INTERRUPTED 3u
#define STATUS_RUNNING 0xffffffffu

#define MAX_THREADS 2
#define ALTSTACK_SIZE (256 * 1024)

#define EXIT_BAD_INPUT 65
#define EXIT_INTERNAL 70
#define EXIT_IO 74

#if defined(__has_attribute)
#if __has_attribute(no_stack_protector)
/* The signal handler may run with FS = 0: no canary load from %fs:0x28. */
#define NO_STACK_PROTECTOR __attribute__((no_stack_protector))
#endif
#endif
#ifndef NO_STACK_PROTECTOR
#define NO_STACK_PROTECTOR
#endif

/* ---- per-process runner state used by the assembly ------------------------- */

/* Offsets are pasted into the assembly (top-level asm takes no operands);
 * the _Static_asserts keep both in sync. */
#define OFF_IN_GPR 0
#define OFF_IN_RFLAGS 128
#define OFF_OUT_GPR 136
#define OFF_OUT_RFLAGS 264
#define OFF_HOST_RSP 272
#define OFF_HOST_RBX 280
#define OFF_HOST_RBP 288
#define OFF_HOST_R12 296
#define OFF_HOST_R13 304
#define OFF_HOST_R14 312
#define OFF_HOST_R15 320
#define OFF_HOST_FS 328
#define OFF_ENTRY 336
#define OFF_HOST_MXCSR 344
#define OFF_CASE_MXCSR 348
#define OFF_HOST_FCW 352
#define OFF_IN_CASE 354
#define OFF_HAVE_AVX 355
#define OFF_HAVE_FSGSBASE 356

struct control {
	uint64_t in_gpr[16]; /* protocol order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
	uint64_t in_rflags;
	uint64_t out_gpr[16];
	uint64_t out_rflags;
	uint64_t host_rsp, host_rbx, host_rbp, host_r12, host_r13, host_r14, host_r15;
	uint64_t host_fs;
	uint64_t entry; /* CODE_BASE: target of the trampoline's final jmp */
	uint32_t host_mxcsr;
	uint32_t case_mxcsr; /* 0x1f80: the MXCSR a case starts with */
	uint16_t host_fcw;
	uint8_t in_case; /* 1 from the trampoline until the exit tail / handler */
	uint8_t have_avx;
	uint8_t have_fsgsbase;
};

_Static_assert(offsetof(struct control, in_gpr) == OFF_IN_GPR, "layout");
_Static_assert(offsetof(struct control, in_rflags) == OFF_IN_RFLAGS, "layout");
_Static_assert(offsetof(struct control, out_gpr) == OFF_OUT_GPR, "layout");
_Static_assert(offsetof(struct control, out_rflags) == OFF_OUT_RFLAGS, "layout");
_Static_assert(offsetof(struct control, host_rsp) == OFF_HOST_RSP, "layout");
_Static_assert(offsetof(struct control, host_rbx) == OFF_HOST_RBX, "layout");
_Static_assert(offsetof(struct control, host_rbp) == OFF_HOST_RBP, "layout");
_Static_assert(offsetof(struct control, host_r12) == OFF_HOST_R12, "layout");
_Static_assert(offsetof(struct control, host_r13) == OFF_HOST_R13, "layout");
_Static_assert(offsetof(struct control, host_r14) == OFF_HOST_R14, "layout");
_Static_assert(offsetof(struct control, host_r15) == OFF_HOST_R15, "layout");
_Static_assert(offsetof(struct control, host_fs) == OFF_HOST_FS, "layout");
_Static_assert(offsetof(struct control, entry) == OFF_ENTRY, "layout");
_Static_assert(offsetof(struct control, host_mxcsr) == OFF_HOST_MXCSR, "layout");
_Static_assert(offsetof(struct control, case_mxcsr) == OFF_CASE_MXCSR, "layout");
_Static_assert(offsetof(struct control, host_fcw) == OFF_HOST_FCW, "layout");
_Static_assert(offsetof(struct control, in_case) == OFF_IN_CASE, "layout");
_Static_assert(offsetof(struct control, have_avx) == OFF_HAVE_AVX, "layout");
_Static_assert(offsetof(struct control, have_fsgsbase) == OFF_HAVE_FSGSBASE, "layout");

/* One per process, so the worker process has its own at the same address.
 * Hidden: the assembly addresses it RIP-relative, without the GOT. */
__attribute__((visibility("hidden"), aligned(64))) struct control vcpu_ctx;
#define CTL (&vcpu_ctx)

void vcpu_enter(void);
void vcpu_exit_tail(void);
void vcpu_recover(void);

#define STR_(x) #x
#define STR(x) STR_(x)
/* RIP-relative operand vcpu_ctx + off: needs no register, and the runner's
 * .bss is at a random high (PIE) address the case will not hit by accident. */
#define C(off) "vcpu_ctx+" STR(off) "(%rip)"
#define CIN(i) C(OFF_IN_GPR + 8 * i)
#define COUT(i) C(OFF_OUT_GPR + 8 * i)

__asm__(
	".text\n"
	".globl vcpu_enter\n"
	".type vcpu_enter,@function\n"
	".p2align 4\n"
	"vcpu_enter:\n"
	"	movq %rsp, " C(OFF_HOST_RSP) "\n"
	"	movq %rbx, " C(OFF_HOST_RBX) "\n"
	"	movq %rbp, " C(OFF_HOST_RBP) "\n"
	"	movq %r12, " C(OFF_HOST_R12) "\n"
	"	movq %r13, " C(OFF_HOST_R13) "\n"
	"	movq %r14, " C(OFF_HOST_R14) "\n"
	"	movq %r15, " C(OFF_HOST_R15) "\n"
	"	stmxcsr " C(OFF_HOST_MXCSR) "\n"
	"	fnstcw " C(OFF_HOST_FCW) "\n"
	/* A defined FP/SIMD state for the case (flags may still change here). */
	"	fninit\n"
	"	ldmxcsr " C(OFF_CASE_MXCSR) "\n"
	"	cmpb $0, " C(OFF_HAVE_AVX) "\n"
	"	je 1f\n"
	"	vzeroall\n"
	"	jmp 2f\n"
	"1:	pxor %xmm0, %xmm0\n	pxor %xmm1, %xmm1\n	pxor %xmm2, %xmm2\n"
	"	pxor %xmm3, %xmm3\n	pxor %xmm4, %xmm4\n	pxor %xmm5, %xmm5\n"
	"	pxor %xmm6, %xmm6\n	pxor %xmm7, %xmm7\n	pxor %xmm8, %xmm8\n"
	"	pxor %xmm9, %xmm9\n	pxor %xmm10, %xmm10\n	pxor %xmm11, %xmm11\n"
	"	pxor %xmm12, %xmm12\n	pxor %xmm13, %xmm13\n	pxor %xmm14, %xmm14\n"
	"	pxor %xmm15, %xmm15\n"
	/* "In case" from here on: the host state is saved, so the handler can
	 * always recover, and vcpu_recover restores FS whatever happened. */
	"2:	movb $1, " C(OFF_IN_CASE) "\n"
	"	cmpb $0, " C(OFF_HAVE_FSGSBASE) "\n"
	"	je 5f\n"
	"	xorl %eax, %eax\n"
	"	wrfsbase %rax\n"
	"	wrgsbase %rax\n"
	"	jmp 3f\n"
	/* No FSGSBASE: load both with the user data selector (SS's), whose
	 * descriptor base is 0. No system call, and the kernel keeps the
	 * selectors (so base 0) across context switches. */
	"5:	movl %ss, %eax\n"
	"	movl %eax, %fs\n"
	"	movl %eax, %gs\n"
	/* DS and ES get the user data selector too: 64-bit mode ignores them,
	 * but a 32-bit case's data accesses fault through a null DS/ES. */
	"3:	movl %ss, %eax\n"
	"	movl %eax, %ds\n"
	"	movl %eax, %es\n"
	"	pushq " C(OFF_IN_RFLAGS) "\n"
	"	popfq\n"
	/* From here on: mov only, nothing may change a flag. */
	"	movq " CIN(0) ", %rax\n"
	"	movq " CIN(1) ", %rcx\n"
	"	movq " CIN(2) ", %rdx\n"
	"	movq " CIN(3) ", %rbx\n"
	"	movq " CIN(5) ", %rbp\n"
	"	movq " CIN(6) ", %rsi\n"
	"	movq " CIN(7) ", %rdi\n"
	"	movq " CIN(8) ", %r8\n"
	"	movq " CIN(9) ", %r9\n"
	"	movq " CIN(10) ", %r10\n"
	"	movq " CIN(11) ", %r11\n"
	"	movq " CIN(12) ", %r12\n"
	"	movq " CIN(13) ", %r13\n"
	"	movq " CIN(14) ", %r14\n"
	"	movq " CIN(15) ", %r15\n"
	"	movq " CIN(4) ", %rsp\n"
	"	jmp *" C(OFF_ENTRY) "\n"
	".size vcpu_enter, .-vcpu_enter\n"

	".globl vcpu_exit_tail\n"
	".type vcpu_exit_tail,@function\n"
	".p2align 4\n"
	"vcpu_exit_tail:\n"
	/* First, so that a late watchdog kick is not taken for the case. */
	"	movb $0, " C(OFF_IN_CASE) "\n"
	"	movq %rax, " COUT(0) "\n"
	"	movq %rsp, " COUT(4) "\n"
	/* The host stack below vcpu_enter's return address is free; the
	 * case's stack must not be written. */
	"	movq " C(OFF_HOST_RSP) ", %rsp\n"
	"	pushfq\n"
	"	popq " C(OFF_OUT_RFLAGS) "\n"
	/* C code must not run with the case's DF/AC/TF. */
	"	pushq $0x202\n"
	"	popfq\n"
	"	movq %rcx, " COUT(1) "\n"
	"	movq %rdx, " COUT(2) "\n"
	"	movq %rbx, " COUT(3) "\n"
	"	movq %rbp, " COUT(5) "\n"
	"	movq %rsi, " COUT(6) "\n"
	"	movq %rdi, " COUT(7) "\n"
	"	movq %r8, " COUT(8) "\n"
	"	movq %r9, " COUT(9) "\n"
	"	movq %r10, " COUT(10) "\n"
	"	movq %r11, " COUT(11) "\n"
	"	movq %r12, " COUT(12) "\n"
	"	movq %r13, " COUT(13) "\n"
	"	movq %r14, " COUT(14) "\n"
	"	movq %r15, " COUT(15) "\n"
	/* The signal handler resumes here with RSP = host RSP, RFLAGS = 0x202. */
	".globl vcpu_recover\n"
	"vcpu_recover:\n"
	"	cmpb $0, " C(OFF_HAVE_FSGSBASE) "\n"
	"	je 6f\n"
	"	movq " C(OFF_HOST_FS) ", %rax\n"
	"	wrfsbase %rax\n"
	"	jmp 4f\n"
	/* Only the kernel can give FS its base back (selector 0, base above
	 * 4 GiB); the case may have changed it (wrfsbase where the CPU allows
	 * it, a segment load). GS keeps the data selector, base 0, which is
	 * what Linux gives user GS (start-up checked the host's GS base is 0). */
	"6:	movl $" STR(SYS_arch_prctl) ", %eax\n"
	"	movl $" STR(ARCH_SET_FS) ", %edi\n"
	"	movq " C(OFF_HOST_FS) ", %rsi\n"
	"	syscall\n"
	"4:	fninit\n"
	"	fldcw " C(OFF_HOST_FCW) "\n"
	"	ldmxcsr " C(OFF_HOST_MXCSR) "\n"
	"	movq " C(OFF_HOST_RBX) ", %rbx\n"
	"	movq " C(OFF_HOST_RBP) ", %rbp\n"
	"	movq " C(OFF_HOST_R12) ", %r12\n"
	"	movq " C(OFF_HOST_R13) ", %r13\n"
	"	movq " C(OFF_HOST_R14) ", %r14\n"
	"	movq " C(OFF_HOST_R15) ", %r15\n"
	"	ret\n"
	".size vcpu_exit_tail, .-vcpu_exit_tail\n");

/* ---- state shared between the two execution contexts (MAP_SHARED) ------- */

struct slot {
	/* how the watchdog kicks this context */
	pid_t pid, tid;
	/* watchdog interface (atomics): case serial while running, else 0 */
	uint64_t running;
	uint64_t deadline_ns;
	/* result of the last case (written by the context or its handler) */
	uint32_t status, signo;
	uint64_t trapno, err, fault_addr, rip;
	uint64_t out_gpr[16];
	uint64_t out_rflags;
	uint64_t start_ns, end_ns;
};

struct shared {
	/* futex words / rendezvous counters (32-bit for the futex syscall) */
	uint32_t job_seq, ready_seq, go_seq, done_seq;
	/* the current case, as far as the worker needs it */
	uint64_t serial, timeout_ns, end_addr;
	uint64_t worker_in_gpr[16];
	uint64_t worker_in_rflags;
	struct slot slots[MAX_THREADS];
};

static struct shared *shm;
static int my_slot; /* 0 in the main process, 1 in the worker process */
static pid_t worker_pid;
static pid_t main_pid;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- async-signal-safe helpers: no errno, no TLS, no stdio --------------- */

static long raw_syscall3(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static void raw_puts(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	raw_syscall3(SYS_write, 2, (long)s, (long)n);
}

static void raw_puthex(uint64_t v)
{
	char buf[19] = "0x";
	for (int i = 0; i < 16; i++)
		buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
	buf[18] = 0;
	raw_puts(buf);
}

static void __attribute__((noreturn)) raw_die(void)
{
	for (;;)
		raw_syscall3(SYS_exit_group, EXIT_INTERNAL, 0, 0);
}

/* ---- signal handler -------------------------------------------------------- */

static const int gpr_greg[16] = {
	REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
	REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

/* Set once by probe_noncanonical_rsp() before any case (and before the worker
 * process is forked, which inherits it). */
static uint8_t host_gp_on_noncanonical_rsp;

static int is_canonical(uint64_t address)
{
	return (uint64_t)((int64_t)(address << 16) >> 16) == address;
}

/* May run with the case's FS base (0): must not touch TLS. */
static NO_STACK_PROTECTOR void on_signal(int sig, siginfo_t *si, void *ucv)
{
	/* The kernel clears DF/TF on delivery but not AC: C must not trip #AC. */
	__asm__ volatile("pushfq\n\tandq $~0x40000, (%%rsp)\n\tpopfq" ::: "cc", "memory");

	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	struct slot *s = &shm->slots[my_slot];

	if (!CTL->in_case) {
		/* A late watchdog kick after the case already ended: harmless. */
		if (sig == SIGALRM)
			return;
		raw_puts("vcpusim-native-runner: internal fault: signal ");
		raw_puthex((uint64_t)sig);
		raw_puts(" at rip ");
		raw_puthex((uint64_t)g[REG_RIP]);
		raw_puts(" addr ");
		raw_puthex((uint64_t)(uintptr_t)si->si_addr);
		raw_puts("\n");
		raw_die();
	}

	if (sig == SIGALRM) {
		/* Only a kick past the *current* case's deadline counts. */
		struct timespec ts;
		raw_syscall3(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts, 0);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		if (now < __atomic_load_n(&s->deadline_ns, __ATOMIC_ACQUIRE))
			return;
		s->status = STATUS_TIMEOUT;
	} else {
		s->status = host_gp_on_noncanonical_rsp && sig == SIGSEGV && g[REG_TRAPNO] == 13 && g[REG_ERR] == 0 &&
				    !is_canonical((uint64_t)g[REG_RSP])
			? STATUS_HOST_INTERRUPTED
			: STATUS_SIGNAL;
		s->trapno = (uint64_t)g[REG_TRAPNO];
		s->err = (uint64_t)g[REG_ERR];
		s->fault_addr = (uint64_t)(uintptr_t)si->si_addr;
	}
	s->signo = (uint32_t)sig;
	s->rip = (uint64_t)g[REG_RIP];
	for (int i = 0; i < 16; i++)
		s->out_gpr[i] = (uint64_t)g[gpr_greg[i]];
	s->out_rflags = (uint64_t)g[REG_EFL];
	CTL->in_case = 0;

	/* Resume in vcpu_recover on the host stack; sigreturn restores the
	 * signal mask, vcpu_recover FS and the callee-saved registers. */
	g[REG_RIP] = (greg_t)(uintptr_t)vcpu_recover;
	g[REG_RSP] = (greg_t)CTL->host_rsp;
	g[REG_EFL] = 0x202;
	/* A 32-bit case was interrupted in compatibility mode: sigreturn must
	 * bring vcpu_recover back in 64-bit mode (CS is the low 16 bits). */
	g[REG_CSGSFS] = (g[REG_CSGSFS] & ~(greg_t)0xffff) | USER64_CS;
}

/* ---- setup ----------------------------------------------------------------- */

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("vcpusim-native-runner: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	_exit(code);
}

static void map_fixed(uintptr_t addr, size_t len, int prot, int share, const char *what)
{
	void *p = mmap((void *)addr, len, prot, share | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED)
		die(EXIT_INTERNAL, "cannot map the %s region at %#lx: %s", what, (unsigned long)addr, strerror(errno));
	if ((uintptr_t)p != addr) /* pre-4.17 kernels ignore MAP_FIXED_NOREPLACE */
		die(EXIT_INTERNAL, "the %s region landed at %p instead of %#lx", what, p, (unsigned long)addr);
}

/* VCPUSIM_NATIVE_NO_FSGSBASE=1 takes the arch_prctl path on any CPU, so a
 * machine with FSGSBASE tests the path the others take. */
static int fsgsbase_forced_off(void)
{
	const char *v = getenv("VCPUSIM_NATIVE_NO_FSGSBASE");
	if (v == NULL || *v == 0 || strcmp(v, "0") == 0)
		return 0;
	if (strcmp(v, "1") != 0)
		die(EXIT_BAD_INPUT, "VCPUSIM_NATIVE_NO_FSGSBASE must be 0 or 1, got '%s'", v);
	return 1;
}

static void init_control(void)
{
	uintptr_t fs = 0, gs = 0;
	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) != 0 || syscall(SYS_arch_prctl, ARCH_GET_GS, &gs) != 0)
		die(EXIT_INTERNAL, "arch_prctl(ARCH_GET_FS/GS): %s", strerror(errno));
	if (gs != 0)
		die(EXIT_INTERNAL, "the host's GS base is %#lx, not 0: cases could not get it back", (unsigned long)gs);
	CTL->host_fs = fs;
	CTL->entry = CODE_BASE;
	CTL->case_mxcsr = 0x1f80;
	__builtin_cpu_init();
	CTL->have_avx = __builtin_cpu_supports("avx") ? 1 : 0;
	int hw = (getauxval(AT_HWCAP2) & 2 /* HWCAP2_FSGSBASE */) ? 1 : 0;
	CTL->have_fsgsbase = hw && !fsgsbase_forced_off();
}

static void install_handlers(void)
{
	void *alt = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (alt == MAP_FAILED)
		die(EXIT_INTERNAL, "alt stack: %s", strerror(errno));
	stack_t ss = {.ss_sp = alt, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
	if (sigaltstack(&ss, NULL) != 0) /* inherited by the forked worker */
		die(EXIT_INTERNAL, "sigaltstack: %s", strerror(errno));

	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS, SIGALRM};
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		if (sigaction(sigs[i], &sa, NULL) != 0)
			die(EXIT_INTERNAL, "sigaction(%d): %s", sigs[i], strerror(errno));
	signal(SIGPIPE, SIG_IGN); /* report EPIPE as an I/O error instead */
}

/* Syscalls issued from below 4 GiB come from case code: deliver SIGSYS. */
static void install_seccomp(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
		fprintf(stderr, "vcpusim-native-runner: warning: seccomp unavailable (%s); "
				"case code can issue real system calls\n", strerror(errno));
}

/* ---- watchdog (a thread of the main process) ------------------------------ */

static uint64_t watchdog_poll_ns = 100000000; /* atomic; shrinks for short timeouts */

static void *watchdog_main(void *arg)
{
	(void)arg;
	uint64_t kicked[MAX_THREADS] = {0};
	uint64_t kicked_at[MAX_THREADS] = {0};
	for (;;) {
		uint64_t poll = __atomic_load_n(&watchdog_poll_ns, __ATOMIC_RELAXED);
		uint64_t now = now_ns();
		uint64_t wake = now + poll;
		for (int i = 0; i < MAX_THREADS; i++) {
			struct slot *s = &shm->slots[i];
			uint64_t serial = __atomic_load_n(&s->running, __ATOMIC_ACQUIRE);
			if (!serial)
				continue;
			uint64_t deadline = __atomic_load_n(&s->deadline_ns, __ATOMIC_ACQUIRE);
			if (__atomic_load_n(&s->running, __ATOMIC_ACQUIRE) != serial)
				continue; /* changed under us; look again next round */
			if (now < deadline) {
				if (deadline < wake)
					wake = deadline;
				continue;
			}
			/* Kick again every poll interval: a kick that lands before
			 * the trampoline sets in_case is (correctly) ignored. */
			if (kicked[i] != serial || now - kicked_at[i] >= poll) {
				kicked[i] = serial;
				kicked_at[i] = now;
				if (i == 0)
					syscall(SYS_tgkill, s->pid, s->tid, SIGALRM);
				else
					kill(s->pid, SIGALRM);
			}
		}
		struct timespec ts = {.tv_sec = (time_t)(wake / 1000000000u), .tv_nsec = (long)(wake % 1000000000u)};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
		}
	}
	return NULL;
}

static void write_stub(unsigned char *stub);
static void write_stub32(unsigned char *stub);

/* ---- running a case in this context --------------------------------------- */

static void run_here(void)
{
	struct slot *s = &shm->slots[my_slot];
	s->status = STATUS_RUNNING;
	s->signo = 0;
	s->trapno = s->err = s->fault_addr = 0;
	uint64_t start = now_ns();
	__atomic_store_n(&s->deadline_ns, start + shm->timeout_ns, __ATOMIC_RELEASE);
	__atomic_store_n(&s->running, shm->serial, __ATOMIC_RELEASE);
	vcpu_enter();
	uint64_t end = now_ns();
	__atomic_store_n(&s->running, 0, __ATOMIC_RELEASE);
	s->start_ns = start;
	s->end_ns = end;
	if (s->status == STATUS_RUNNING) {
		s->status = STATUS_END;
		s->rip = shm->end_addr;
		memcpy(s->out_gpr, CTL->out_gpr, sizeof s->out_gpr);
		s->out_rflags = CTL->out_rflags;
	}
}

/* One case with RSP non-canonical whose only load touches a page that is not
 * yet mapped in: the kernel handles the minor fault and returns to the case,
 * which a faithful host survives.  Costs one page fault, no waiting. */
static void probe_noncanonical_rsp(void)
{
	static const unsigned char load[] = {0x8a, 0x03}; /* mov al, [rbx] */
	unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED)
		die(EXIT_INTERNAL, "probe page: %s", strerror(errno));
	unsigned char *code = (unsigned char *)CODE_BASE;
	memcpy(code, load, sizeof load);
	write_stub(code + sizeof load);
	memset(CTL->in_gpr, 0, sizeof CTL->in_gpr);
	CTL->in_gpr[3] = (uint64_t)(uintptr_t)page;  /* rbx */
	CTL->in_gpr[4] = 0x8000000000000000ull;       /* rsp */
	CTL->in_rflags = 0;
	shm->timeout_ns = 1000000000u;
	shm->serial = UINT64_MAX;
	shm->end_addr = CODE_BASE + sizeof load;
	run_here();
	struct slot *s = &shm->slots[0];
	if (s->status == STATUS_SIGNAL && s->signo == SIGSEGV && s->trapno == 13)
		host_gp_on_noncanonical_rsp = 1;
	else if (s->status != STATUS_END)
		die(EXIT_INTERNAL, "the non-canonical RSP probe ended with status %u signal %u vector %llu",
		    s->status, s->signo, (unsigned long long)s->trapno);
	memset(code, 0, sizeof load + STUB_LEN);
	munmap(page, 4096);
}

/* ---- the worker process (execution context 1) ------------------------------ */

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *timeout)
{
	/* Not FUTEX_PRIVATE_FLAG: the word is in memory shared between processes. */
	return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

static void __attribute__((noreturn)) worker_main(pid_t parent)
{
	/* Never outlive the main runner, never touch its stdio streams. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	close(0);
	close(1);
	my_slot = 1;
	uint32_t seq = 0;
	for (;;) {
		uint32_t j;
		while ((j = __atomic_load_n(&shm->job_seq, __ATOMIC_ACQUIRE)) == seq)
			futex(&shm->job_seq, FUTEX_WAIT, seq, NULL);
		seq = j;
		memcpy(CTL->in_gpr, shm->worker_in_gpr, sizeof CTL->in_gpr);
		CTL->in_rflags = shm->worker_in_rflags;
		__atomic_store_n(&shm->ready_seq, seq, __ATOMIC_RELEASE);
		while (__atomic_load_n(&shm->go_seq, __ATOMIC_ACQUIRE) != seq)
			__builtin_ia32_pause();
		run_here();
		__atomic_store_n(&shm->done_seq, seq, __ATOMIC_RELEASE);
		futex(&shm->done_seq, FUTEX_WAKE, 1, NULL);
	}
}

static void start_worker(void)
{
	pid_t parent = getpid();
	fflush(stdout); /* nothing buffered may be duplicated into the child */
	pid_t pid = fork();
	if (pid < 0)
		die(EXIT_INTERNAL, "fork: %s", strerror(errno));
	if (pid == 0) {
		shm->slots[1].pid = shm->slots[1].tid = getpid();
		worker_main(parent);
	}
	worker_pid = pid;
	shm->slots[1].pid = shm->slots[1].tid = pid;
}

static void check_worker_alive(void)
{
	int status;
	if (waitpid(worker_pid, &status, WNOHANG) == worker_pid)
		die(EXIT_INTERNAL, "the worker process died (%s %d)",
		    WIFSIGNALED(status) ? "signal" : "exit status",
		    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

static void run_two(void)
{
	uint32_t seq = __atomic_load_n(&shm->job_seq, __ATOMIC_RELAXED) + 1;
	__atomic_store_n(&shm->job_seq, seq, __ATOMIC_RELEASE);
	futex(&shm->job_seq, FUTEX_WAKE, 1, NULL);

	/* Rendezvous: both spin, then go together (within ~100 ns). */
	for (uint64_t spins = 1; __atomic_load_n(&shm->ready_seq, __ATOMIC_ACQUIRE) != seq; spins++) {
		__builtin_ia32_pause();
		if ((spins & 0xfffff) == 0)
			check_worker_alive();
	}
	__atomic_store_n(&shm->go_seq, seq, __ATOMIC_RELEASE);
	run_here();

	for (uint64_t spins = 0; __atomic_load_n(&shm->done_seq, __ATOMIC_ACQUIRE) != seq; spins++) {
		if (spins < 20000) {
			__builtin_ia32_pause();
			continue;
		}
		struct timespec t = {.tv_sec = 0, .tv_nsec = 50000000};
		uint32_t d = __atomic_load_n(&shm->done_seq, __ATOMIC_ACQUIRE);
		if (d != seq)
			futex(&shm->done_seq, FUTEX_WAIT, d, &t);
		check_worker_alive();
	}
}

/* ---- I/O --------------------------------------------------------------------- */

static uint64_t case_index; /* for error messages */

/* Returns 0 on a clean EOF before the first byte (only if allow_eof). */
static int read_exact(void *dst, size_t len, int allow_eof, const char *what)
{
	size_t got = fread(dst, 1, len, stdin);
	if (got == len)
		return 1;
	if (ferror(stdin))
		die(EXIT_IO, "case #%llu: reading %s: %s", (unsigned long long)case_index, what, strerror(errno));
	if (got == 0 && allow_eof)
		return 0;
	die(EXIT_BAD_INPUT, "case #%llu: truncated input in %s (%zu of %zu bytes)",
	    (unsigned long long)case_index, what, got, len);
}

static void write_exact(const void *src, size_t len)
{
	if (len && fwrite(src, 1, len, stdout) != len)
		die(EXIT_IO, "writing results: %s", strerror(errno));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* 32-bit cases end with `jmp far [EXIT_TO64_PTR]` (6 bytes, then a nop). */
static void write_stub32(unsigned char *stub)
{
	stub[0] = 0xff; /* jmp m16:32 (FF /5) */
	stub[1] = 0x2d; /* ModRM: mod=00 reg=101 (/5) rm=101 (disp32 in 32-bit mode) */
	put_u32(stub + 2, (uint32_t)EXIT_TO64_PTR);
	stub[6] = 0x90;
}

/* The exit page: the exit tail's address, and the far pointers and 64-bit
 * jumps that take 32-bit cases into and out of compatibility mode. */
static void fill_exit_page(unsigned char *page)
{
	put_u64(page, (uint64_t)(uintptr_t)vcpu_exit_tail);
	put_u32(page + (EXIT_TO64_PTR - EXIT_PAGE_BASE), (uint32_t)EXIT_TO64_CODE);
	page[EXIT_TO64_PTR - EXIT_PAGE_BASE + 4] = USER64_CS;
	write_stub(page + (EXIT_TO64_CODE - EXIT_PAGE_BASE));
	put_u32(page + (ENTER32_PTR - EXIT_PAGE_BASE), (uint32_t)CODE_BASE);
	page[ENTER32_PTR - EXIT_PAGE_BASE + 4] = USER32_CS;
	unsigned char *enter = page + (ENTER32_CODE - EXIT_PAGE_BASE);
	enter[0] = 0xff; /* jmp m16:32 (FF /5), valid in 64-bit mode */
	enter[1] = 0x2c; /* ModRM: mod=00 reg=101 rm=100 (SIB) */
	enter[2] = 0x25; /* SIB: no index, disp32 base */
	put_u32(enter + 3, (uint32_t)ENTER32_PTR);
}

/* jmp qword ptr [EXIT_PAGE_BASE] */
static void write_stub(unsigned char *stub)
{
	stub[0] = 0xff; /* jmp r/m64 (FF /4) */
	stub[1] = 0x24; /* ModRM: mod=00 reg=100 (/4) rm=100 (SIB follows) */
	stub[2] = 0x25; /* SIB: scale=00 index=100 (none) base=101 (disp32, no base) */
	put_u32(stub + 3, (uint32_t)EXIT_PAGE_BASE);
}
_Static_assert(EXIT_PAGE_BASE < 0x80000000u, "disp32 is sign-extended");

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--print-stub") == 0) {
		unsigned char stub[STUB_LEN];
		write_stub(stub);
		for (size_t i = 0; i < STUB_LEN; i++)
			printf("%02x", stub[i]);
		printf("\n");
		return 0;
	}
	int print_config = argc == 2 && strcmp(argv[1], "--print-config") == 0;
	if (argc != 1 && !print_config)
		die(EXIT_BAD_INPUT, "usage: %s [--print-stub | --print-config] < cases > results", argv[0]);

	main_pid = getpid();
	static char inbuf[1 << 20], outbuf[1 << 20];
	setvbuf(stdin, inbuf, _IOFBF, sizeof inbuf);
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

	/* Code and scratch are shared with the worker process; vcpu_ctx (in
	 * .bss) is private to each process (copy-on-write across fork). */
	map_fixed(CODE_BASE, CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, "code");
	map_fixed(SCRATCH_BASE, SCRATCH_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, "scratch");
	map_fixed(EXIT_PAGE_BASE, EXIT_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, "exit vector");
	fill_exit_page((unsigned char *)EXIT_PAGE_BASE);
	/* Not writable: case code must not be able to redirect the exit. */
	if (mprotect((void *)EXIT_PAGE_BASE, EXIT_PAGE_SIZE, PROT_READ | PROT_EXEC) != 0)
		die(EXIT_INTERNAL, "mprotect: %s", strerror(errno));
	shm = mmap(NULL, sizeof *shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		die(EXIT_INTERNAL, "shared state: %s", strerror(errno));
	shm->slots[0].pid = main_pid;
	shm->slots[0].tid = gettid();
	unsigned char *code = (unsigned char *)CODE_BASE;
	unsigned char *scratch = (unsigned char *)SCRATCH_BASE;

	init_control();
	install_handlers();
	probe_noncanonical_rsp(); /* uses the handlers; before seccomp: nothing to trap yet */
	if (print_config) {
		printf("fsgs=%s forced=%d noncanonical-rsp=%s\n", CTL->have_fsgsbase ? "wrfsbase" : "arch_prctl",
		       fsgsbase_forced_off(), host_gp_on_noncanonical_rsp ? "host-gp" : "ok");
		fflush(stdout);
		_exit(0);
	}
	install_seccomp(); /* before the worker is forked: it inherits it */

	pthread_t wd;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old); /* the watchdog takes no signals */
	int rc = pthread_create(&wd, NULL, watchdog_main, NULL);
	if (rc != 0)
		die(EXIT_INTERNAL, "pthread_create: %s", strerror(rc));
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	size_t prev_code_extent = 0;
	uint64_t prev_win_off = 0, prev_win_len = 0;
	uint64_t min_timeout_ms = UINT64_MAX;

	for (;; case_index++) {
		unsigned char hdr[IN_HEADER_LEN];
		if (!read_exact(hdr, sizeof hdr, 1, "case header"))
			break;
		uint32_t magic = get_u32(hdr), control = get_u32(hdr + 4), code_len = get_u32(hdr + 8);
		uint32_t win_addr = get_u32(hdr + 12), win_len = get_u32(hdr + 16), timeout_ms = get_u32(hdr + 20);
		unsigned nthreads = control & CTRL_THREADS_MASK;
		unsigned long long ci = (unsigned long long)case_index;
		if (magic != IN_MAGIC)
			die(EXIT_BAD_INPUT, "case #%llu: bad magic %#x (expected %#x); stream out of sync?", ci, magic, IN_MAGIC);
		if (control & ~(CTRL_THREADS_MASK | CTRL_FULL_CLEAR | CTRL_COMPAT32))
			die(EXIT_BAD_INPUT, "case #%llu: unknown control bits %#x", ci, control);
		if (nthreads < 1 || nthreads > MAX_THREADS)
			die(EXIT_BAD_INPUT, "case #%llu: thread count %u (must be 1 or 2)", ci, nthreads);
		if (code_len > MAX_CODE_LEN)
			die(EXIT_BAD_INPUT, "case #%llu: codeLen %u exceeds %lu", ci, code_len, MAX_CODE_LEN);
		if (win_addr < SCRATCH_BASE || (uint64_t)win_addr + win_len > SCRATCH_BASE + SCRATCH_SIZE)
			die(EXIT_BAD_INPUT, "case #%llu: scratch window [%#x, +%#x) outside [%#lx, %#lx)", ci,
			    win_addr, win_len, SCRATCH_BASE, SCRATCH_BASE + SCRATCH_SIZE);
		if (timeout_ms == 0)
			die(EXIT_BAD_INPUT, "case #%llu: timeoutMs must be >= 1", ci);

		if (control & CTRL_FULL_CLEAR) {
			memset(code, 0, CODE_SIZE);
			memset(scratch, 0, SCRATCH_SIZE);
			prev_win_len = 0;
		}
		/* Code: zero what the previous case had beyond this extent. */
		size_t extent = code_len + STUB_LEN;
		if (prev_code_extent > extent)
			memset(code + extent, 0, prev_code_extent - extent);
		prev_code_extent = extent;
		read_exact(code, code_len, 0, "code");
		int compat32 = (control & CTRL_COMPAT32) != 0;
		if (compat32)
			write_stub32(code + code_len);
		else
			write_stub(code + code_len);
		/* The worker process's vcpu_ctx is its own: 32-bit cases are single-threaded. */
		if (compat32 && nthreads != 1)
			die(EXIT_BAD_INPUT, "case #%llu: 32-bit cases run on one thread", ci);
		CTL->entry = compat32 ? ENTER32_CODE : CODE_BASE;

		for (unsigned i = 0; i < nthreads; i++) {
			unsigned char regs[THREAD_IN_LEN];
			read_exact(regs, sizeof regs, 0, "thread registers");
			uint64_t *gpr = i == 0 ? CTL->in_gpr : shm->worker_in_gpr;
			uint64_t *rflags = i == 0 ? &CTL->in_rflags : &shm->worker_in_rflags;
			memcpy(gpr, regs, 16 * 8);
			memcpy(rflags, regs + 16 * 8, 8);
		}

		memset(scratch + prev_win_off, 0, prev_win_len);
		uint64_t win_off = win_addr - SCRATCH_BASE;
		read_exact(scratch + win_off, win_len, 0, "scratch bytes");
		prev_win_off = win_off;
		prev_win_len = win_len;

		if (timeout_ms < min_timeout_ms) {
			/* Poll often enough that a short timeout does not overshoot much. */
			min_timeout_ms = timeout_ms;
			uint64_t poll = (uint64_t)timeout_ms * 1000000u / 2;
			if (poll < 1000000u)
				poll = 1000000u;
			if (poll < __atomic_load_n(&watchdog_poll_ns, __ATOMIC_RELAXED))
				__atomic_store_n(&watchdog_poll_ns, poll, __ATOMIC_RELAXED);
		}
		shm->timeout_ns = (uint64_t)timeout_ms * 1000000u;
		shm->serial = case_index + 1;
		shm->end_addr = CODE_BASE + code_len;

		if (nthreads == 1) {
			run_here();
		} else {
			if (!worker_pid)
				start_worker();
			run_two();
		}

		unsigned char out[8 + MAX_THREADS * THREAD_OUT_LEN + 8];
		put_u32(out, OUT_MAGIC);
		put_u32(out + 4, nthreads);
		uint64_t min_start = UINT64_MAX, max_end = 0;
		for (unsigned i = 0; i < nthreads; i++) {
			struct slot *s = &shm->slots[i];
			unsigned char *p = out + 8 + i * THREAD_OUT_LEN;
			put_u32(p, s->status);
			put_u32(p + 4, s->signo);
			put_u64(p + 8, s->trapno);
			put_u64(p + 16, s->err);
			put_u64(p + 24, s->fault_addr);
			put_u64(p + 32, s->rip);
			memcpy(p + 40, s->out_gpr, 16 * 8);
			put_u64(p + 168, s->out_rflags);
			put_u64(p + 176, s->end_ns - s->start_ns);
			if (s->start_ns < min_start)
				min_start = s->start_ns;
			if (s->end_ns > max_end)
				max_end = s->end_ns;
		}
		put_u64(out + 8 + nthreads * THREAD_OUT_LEN, max_end - min_start);
		write_exact(out, 8 + nthreads * THREAD_OUT_LEN + 8);
		write_exact(scratch + win_off, win_len);
	}

	if (fflush(stdout) != 0)
		die(EXIT_IO, "writing results: %s", strerror(errno));
	_exit(0); /* the worker process gets SIGKILL (PR_SET_PDEATHSIG) */
}
