/**
 * Privileged and machine-specific instructions (SDM Vol. 2 instruction pages, Vol. 3C for VM
 * exits): MOV CR, RDMSR/WRMSR, SWAPGS, RDTSC, CPUID, SYSCALL/SYSRET. Their results are privileged
 * or differ between machines, so the host CPU cannot check them; these tests do.
 */
import test from 'ava';
import { type Assembler, cr0, cr3, cr4, cr8, eax, ecx, edx, fs, gs, qword, r8, r9, r10, r11, rax, rcx, rdx } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { MAX_PHYS_BITS } from '../../src/cpu/mmu.ts';
import { MSR } from '../../src/cpu/ops/msr.ts';
import { ExitControl, ExitReason } from '../../src/cpu/state-block.ts';
import { Selector } from '../../src/machine/long-mode.ts';
import type { GprName, VcpuState } from '../../src/machine/vcpu-state.ts';
import { CODE, TestMachine } from '../support/test-machine.ts';
import { DATA, RFLAGS, USER_STACK, haltingGate, handlerAt, readFrame, runToVmcall, startInRing3 } from './helpers.ts';

const CR0_INITIAL = 0x80050033n;
const CR4_INITIAL = 0x20n;

/** Sets up #GP (and #UD) handlers that halt, runs, and returns the #GP error code (or null if none was raised). */
function gpError(tm: TestMachine, build: (a: Assembler) => void): bigint | null {
  haltingGate(tm, 13);
  tm.assemble(CODE, build);
  const stop = tm.run();
  const state = tm.state();
  if (stop !== RunStop.halted || state.rip !== handlerAt(13) + 1n) return null;
  return readFrame(tm, state.gpr('rsp'), true).error ?? null;
}

const wrmsr = (a: Assembler, index: number, value: bigint): Assembler =>
  a.mov(ecx, index).mov(eax, Number(value & 0xffffffffn)).mov(edx, Number(value >> 32n)).wrmsr();

const edxEax = (state: VcpuState): bigint => (state.gpr('rdx') << 32n) | state.gpr('rax');

// --- control registers -------------------------------------------------------------------------

test('MOV to/from CR0, CR3, CR4 and CR8 at CPL 0 reads back what was written', (t) => {
  // Method: clear CR0.AM, set CR4.PGE, set CR3.PWT|PCD (same tables), TPR 0xa; read all back.
  const tm = new TestMachine();
  const root = BigInt(tm.tables.root);
  const state = runToVmcall(tm, (a) => {
    a.mov(rax, CR0_INITIAL & ~0x40000n).mov(cr0, rax).mov(r8, cr0);
    a.mov(rax, root | 0x18n).mov(cr3, rax).mov(r9, cr3);
    a.mov(rax, 0xa0).mov(cr4, rax).mov(r10, cr4);
    a.mov(rax, 0xa).mov(cr8, rax).mov(rcx, cr8);
    a.vmcall();
  });
  t.is(state.gpr('r8'), CR0_INITIAL & ~0x40000n);
  t.is(state.gpr('r9'), root | 0x18n);
  t.is(state.gpr('r10'), 0xa0n);
  t.is(state.gpr('rcx'), 0xan);
  t.is(state.get64('cr0'), CR0_INITIAL & ~0x40000n);
  t.is(state.get64('cr4'), 0xa0n);
  t.is(state.get32('cr8'), 0xa);
});

test('MOV to CR with reserved or illegal values is #GP(0) and leaves the register unchanged', (t) => {
  // Method: SDM MOV CR (64-bit mode): reserved CR0/CR4 bits, PG=0 or PAE=0 (leaving IA-32e
  // mode), NW=1 with CD=0, CR3 bits above MAXPHYADDR, CR8 bits 63:4.
  const cases: Array<[string, 0 | 3 | 4 | 8, bigint]> = [
    ['CR0 reserved bit 6', 0, CR0_INITIAL | 0x40n],
    ['CR0.PG cleared', 0, CR0_INITIAL & ~0x80000000n],
    ['CR0.NW without CD', 0, CR0_INITIAL | 0x20000000n],
    ['CR0 bit 32', 0, CR0_INITIAL | (1n << 32n)],
    ['CR4 reserved bit 15', 4, CR4_INITIAL | 0x8000n],
    ['CR4.PAE cleared', 4, 0n],
    ['CR3 above MAXPHYADDR', 3, 1n << BigInt(MAX_PHYS_BITS)],
    ['CR8 bit 4', 8, 0x10n],
  ];
  const register = { 0: cr0, 3: cr3, 4: cr4, 8: cr8 } as const;
  for (const [name, n, value] of cases) {
    const tm = new TestMachine();
    const before = n === 8 ? BigInt(tm.state().get32('cr8')) : tm.state().get64(`cr${n}`);
    t.is(gpError(tm, (a) => a.mov(rax, value).mov(register[n], rax)), 0n, name);
    t.is(n === 8 ? BigInt(tm.state().get32('cr8')) : tm.state().get64(`cr${n}`), before, `${name}: unchanged`);
  }
});

test('MOV to and from control registers at CPL 3 is #GP(0)', (t) => {
  // Method: both directions from ring 3 (SDM: #GP(0) if CPL > 0).
  for (const build of [(a: Assembler) => a.mov(rax, cr0), (a: Assembler) => a.mov(cr3, rax), (a: Assembler) => a.mov(cr8, rax)]) {
    const tm = new TestMachine();
    startInRing3(tm);
    t.is(gpError(tm, build), 0n);
  }
});

test('CR write exiting: the write exits before taking effect, with CR number, value and source register', (t) => {
  // Method: each crWrite control; MOV CRn, R9 with a value (even an invalid one: the exit comes
  // first, SDM 3C §25.1.1). The CR keeps its value and RIP stays on the MOV.
  const controls = { 0: ExitControl.crWrite0, 3: ExitControl.crWrite3, 4: ExitControl.crWrite4, 8: ExitControl.crWrite8 } as const;
  const register = { 0: cr0, 3: cr3, 4: cr4, 8: cr8 } as const;
  for (const n of [0, 3, 4, 8] as const) {
    const tm = new TestMachine({ exitControls: controls[n] });
    const before = n === 8 ? 0n : tm.state().get64(`cr${n}`);
    const value = 0x8000_0000_1234_5670n;
    const code = tm.assemble(CODE, (a) => a.mov(r9, value).bind(a.newLabel('mov')).mov(register[n], r9).bind(a.newLabel('next')));
    t.is(tm.run(), RunStop.exit);
    const state = tm.state();
    const exit = state.exit();
    t.is(exit.reason, ExitReason.crWrite, `CR${n}`);
    t.is(exit.info0, n);
    t.is(exit.value, value);
    t.is((exit.qualification >> 8) & 0xf, 9, 'source register R9');
    t.is(exit.rip, code.addressOf('mov'));
    t.is(BigInt(exit.instructionLength), code.addressOf('next') - code.addressOf('mov'));
    t.is(state.rip, code.addressOf('mov'));
    t.is(n === 8 ? BigInt(state.get32('cr8')) : state.get64(`cr${n}`), before);
  }
  // Only the enabled register exits; reads never do.
  const tm = new TestMachine({ exitControls: ExitControl.crWrite3 });
  const state = runToVmcall(tm, (a) => a.mov(rax, 0xa0).mov(cr4, rax).mov(rdx, cr3).vmcall());
  t.is(state.get64('cr4'), 0xa0n);
});

// --- MSRs ----------------------------------------------------------------------------------------

test('EFER: RDMSR reads LME|LMA|NXE|SCE; NXE and SCE can be cleared; LME cannot change with paging on; reserved bits #GP', (t) => {
  // Method: read, write 0x500 (NXE and SCE cleared, LME kept), read back; then separate machines for
  // the #GP cases (SDM 3A §2.2.1, WRMSR: #GP for reserved bits; LME change while CR0.PG=1).
  const tm = new TestMachine();
  const state = runToVmcall(tm, (a) => {
    a.mov(ecx, MSR.EFER).rdmsr().mov(r8, rax).mov(r9, rdx);
    wrmsr(a, MSR.EFER, 0x500n).mov(ecx, MSR.EFER).rdmsr();
    a.vmcall();
  });
  t.is(state.gpr('r8'), 0xd01n);
  t.is(state.gpr('r9'), 0n);
  t.is(state.gpr('rax'), 0x500n, 'NXE and SCE cleared, LME kept, LMA read-only');
  t.is(state.get64('efer'), 0x500n);
  t.is(gpError(new TestMachine(), (a) => wrmsr(a, MSR.EFER, 0xc01n)), 0n, 'LME cleared with paging on');
  t.is(gpError(new TestMachine(), (a) => wrmsr(a, MSR.EFER, 0xd03n)), 0n, 'reserved bit 1');
  t.is(gpError(new TestMachine(), (a) => wrmsr(a, MSR.EFER, 0xd01n | (1n << 40n))), 0n, 'reserved high bit');
});

test('STAR, LSTAR and FMASK round-trip through EDX:EAX; a non-canonical LSTAR is #GP(0)', (t) => {
  // Method: WRMSR then RDMSR of each; the results go to r8..r10 (high halves zero-extended).
  const tm = new TestMachine();
  const values: Array<[number, bigint, GprName]> = [
    [MSR.STAR, 0x0023_0010_0000_0000n, 'r8'],
    [MSR.LSTAR, 0xffff_8000_0010_2000n, 'r9'],
    [MSR.FMASK, 0x47700n, 'r10'],
  ];
  const state = runToVmcall(tm, (a) => {
    for (const [index, value] of values) wrmsr(a, index, value);
    for (const [index, , target] of values) {
      a.mov(rax, -1).mov(rdx, -1).mov(ecx, index).rdmsr().shl(rdx, 32).or(rdx, rax);
      a.mov({ r8, r9, r10 }[target as 'r8' | 'r9' | 'r10'], rdx);
    }
    a.vmcall();
  });
  for (const [, value, target] of values) t.is(state.gpr(target), value);
  t.is(state.get64('lstar'), 0xffff_8000_0010_2000n);
  t.is(gpError(new TestMachine(), (a) => wrmsr(a, MSR.LSTAR, 0x0000_8000_0000_0000n)), 0n);
});

test('FS/GS base MSRs relocate fs:/gs: accesses; SWAPGS exchanges GS base with KERNEL_GS_BASE', (t) => {
  // Method: FS base = DATA, GS base = DATA+0x100, KERNEL_GS_BASE = DATA+0x200, distinct markers at
  // +0x10 of each; read fs:[0x10], gs:[0x10], SWAPGS, gs:[0x10] again, and both MSRs.
  const tm = new TestMachine();
  tm.write64(DATA + 0x10n, 0x1111n);
  tm.write64(DATA + 0x110n, 0x2222n);
  tm.write64(DATA + 0x210n, 0x3333n);
  const state = runToVmcall(tm, (a) => {
    wrmsr(a, MSR.FS_BASE, DATA);
    wrmsr(a, MSR.GS_BASE, DATA + 0x100n);
    wrmsr(a, MSR.KERNEL_GS_BASE, DATA + 0x200n);
    a.mov(r8, qword({ seg: fs, disp: 0x10 })).mov(r9, qword({ seg: gs, disp: 0x10 }));
    a.swapgs().mov(r10, qword({ seg: gs, disp: 0x10 }));
    a.mov(ecx, MSR.GS_BASE).rdmsr().mov(r11, rax).mov(ecx, MSR.KERNEL_GS_BASE).rdmsr();
    a.vmcall();
  });
  t.is(state.gpr('r8'), 0x1111n);
  t.is(state.gpr('r9'), 0x2222n);
  t.is(state.gpr('r10'), 0x3333n, 'after SWAPGS, gs: uses the old KERNEL_GS_BASE');
  t.is(state.gpr('r11'), DATA + 0x200n);
  t.is(state.gpr('rax'), DATA + 0x100n);
  t.is(state.get64('gsBase'), DATA + 0x200n);
  t.is(state.get64('kernelGsBase'), DATA + 0x100n);
});

test('SWAPGS, RDMSR and WRMSR at CPL 3 are #GP(0); an unknown MSR is #GP(0) at CPL 0', (t) => {
  // Method: SDM SWAPGS/RDMSR/WRMSR exception lists.
  for (const build of [(a: Assembler) => a.swapgs(), (a: Assembler) => a.mov(ecx, MSR.EFER).rdmsr(), (a: Assembler) => wrmsr(a, MSR.FMASK, 0n)]) {
    const tm = new TestMachine();
    startInRing3(tm);
    t.is(gpError(tm, build), 0n);
  }
  t.is(gpError(new TestMachine(), (a) => a.mov(ecx, 0x4000_0123).rdmsr()), 0n);
  t.is(gpError(new TestMachine(), (a) => wrmsr(a, 0xc000_1234, 1n)), 0n);
});

test('WRMSR exiting: exits before the write with the MSR index and EDX:EAX, even for an unknown MSR', (t) => {
  // Method: ExitControl.msrWrite; WRMSR LSTAR, then an unknown index (fault-like exits beat the
  // #GP an unknown MSR would raise, SDM 3C §25.1.1).
  for (const [index, value] of [[MSR.LSTAR, 0xffff_8000_1234_5678n], [0xc000_1234, 7n]] as const) {
    const tm = new TestMachine({ exitControls: ExitControl.msrWrite });
    haltingGate(tm, 13);
    const code = tm.assemble(CODE, (a) => {
      a.mov(ecx, index).mov(eax, Number(value & 0xffffffffn)).mov(edx, Number(value >> 32n));
      a.bind(a.newLabel('wrmsr')).wrmsr();
    });
    t.is(tm.run(), RunStop.exit);
    const exit = tm.state().exit();
    t.is(exit.reason, ExitReason.msrWrite);
    t.is(exit.info0 >>> 0, index);
    t.is(exit.value, value);
    t.is(exit.rip, code.addressOf('wrmsr'));
    t.is(exit.instructionLength, 2);
    t.is(tm.state().get64('lstar'), 0n, 'not written');
  }
});

// --- time stamp counter --------------------------------------------------------------------------

test('RDTSC = steps retired before it + the TSC offset, exactly', (t) => {
  // Method: tscOffset = 1000 and a fresh vCPU; RDTSC after three NOPs reads 1003; a second RDTSC
  // three steps later reads 1006 (the first RDTSC and two MOVs retired in between).
  const tm = new TestMachine();
  tm.state().set64('tscOffset', 1000n);
  const state = runToVmcall(tm, (a) => a.nop().nop().nop().rdtsc().mov(r8, rax).mov(r9, rdx).rdtsc().vmcall());
  t.is((state.gpr('r9') << 32n) | state.gpr('r8'), 1003n);
  t.is(edxEax(state), 1006n);
});

test('RDTSC increases with instructions and is identical across identical runs, however they are split', (t) => {
  // Method: the same loop (RDTSC samples stored to memory) on two machines, one in a single run
  // and one in runs of 7 steps; every sample and the final state must match, and samples increase.
  const build = (a: Assembler): void => {
    const loop = a.newLabel('loop');
    a.mov(ecx, 20).mov(r8, DATA).bind(loop).rdtsc().shl(rdx, 32).or(rax, rdx).mov(qword(r8), rax).add(r8, 8).dec(ecx).jnz(loop).vmcall();
  };
  const one = new TestMachine();
  const split = new TestMachine();
  for (const tm of [one, split]) tm.state().set64('tscOffset', 0xffff_0000n);
  runToVmcall(one, build);
  split.assemble(CODE, build);
  let stop: number = RunStop.budget;
  for (let k = 0; k < 1000 && stop === RunStop.budget; k++) stop = split.run(0, 7);
  t.is(stop, RunStop.exit);
  const samples = (tm: TestMachine): bigint[] => Array.from({ length: 20 }, (_, k) => tm.read64(DATA + 8n * BigInt(k)));
  t.deepEqual(samples(split), samples(one));
  const s = samples(one);
  for (let k = 1; k < s.length; k++) t.is(s[k] - s[k - 1], 7n, 'seven steps per iteration');
  t.is(s[0], 0xffff_0000n + 2n);
});

test('WRMSR to the TSC sets the counter: RDTSC right after reads the written value + 1 step', (t) => {
  // Method: WRMSR IA32_TSC = 2^32 + 5, then RDTSC (one step later: the WRMSR itself retired) and
  // RDMSR IA32_TSC.
  const tm = new TestMachine();
  const state = runToVmcall(tm, (a) => {
    wrmsr(a, MSR.TSC, (1n << 32n) + 5n).rdtsc().mov(r8, rax).mov(r9, rdx);
    a.mov(ecx, MSR.TSC).rdmsr().vmcall();
  });
  t.is((state.gpr('r9') << 32n) | state.gpr('r8'), (1n << 32n) + 6n);
  t.is(edxEax(state), (1n << 32n) + 5n + 5n, 'RDMSR four steps after RDTSC');
});

// --- CPUID ----------------------------------------------------------------------------------------

function cpuid(leaf: number, subleaf = 0, options: { vcpus?: number; id?: number; cr4?: bigint } = {}): { eax: bigint; ebx: bigint; ecx: bigint; edx: bigint } {
  const tm = new TestMachine({ vcpus: options.vcpus ?? 1 });
  const id = options.id ?? 0;
  const state = tm.state(id);
  if (options.cr4 !== undefined) state.set64('cr4', options.cr4);
  state.setGpr('rax', 0xdead_beef_0000_0000n | BigInt(leaf));
  state.setGpr('rcx', 0xdead_beef_0000_0000n | BigInt(subleaf));
  runToVmcall(tm, (a) => a.cpuid().vmcall(), id);
  return { eax: state.gpr('rax'), ebx: state.gpr('rbx'), ecx: state.gpr('rcx'), edx: state.gpr('rdx') };
}

const text = (...words: bigint[]): string => Buffer.concat(words.map((w) => { const b = Buffer.alloc(4); b.writeUInt32LE(Number(w)); return b; })).toString('latin1');
const bit = (value: bigint, n: number): boolean => ((value >> BigInt(n)) & 1n) === 1n;

test('CPUID leaf 0: max basic leaf 0xd and "GenuineIntel" in EBX:EDX:ECX; only EAX/ECX select the leaf', (t) => {
  // Method: RAX/RCX have garbage in bits 63:32; outputs are zero-extended 32-bit values.
  const r = cpuid(0);
  t.is(r.eax, 0xdn);
  t.is(text(r.ebx, r.edx, r.ecx), 'GenuineIntel');
  const h = cpuid(0x40000000);
  t.is(text(h.ebx, h.ecx, h.edx).replace(/\0+$/, ''), 'vcpusim');
  t.is(cpuid(0x80000000).eax, 0x80000008n);
});

test('CPUID leaf 1: family 6, APIC id = vCPU id, the documented features and nothing else', (t) => {
  // Method: vCPU 2 of 3; feature bits per ops/cpuid.ts (no FPU/SSE), OSXSAVE mirrors CR4.OSXSAVE.
  const r = cpuid(1, 0, { vcpus: 3, id: 2 });
  t.is((r.eax >> 8n) & 0xfn, 6n, 'family');
  t.is(r.ebx >> 24n, 2n, 'initial APIC id');
  t.is((r.ebx >> 16n) & 0xffn, 3n, 'logical processors');
  const edx = [3, 4, 5, 6, 8, 13, 15, 16];
  const ecx = [13, 23, 26, 31];
  t.is(r.edx, BigInt(edx.reduce((m, b) => m | (1 << b), 0) >>> 0));
  t.is(r.ecx, BigInt(ecx.reduce((m, b) => m | (1 << b), 0) >>> 0));
  t.false(bit(r.edx, 0) || bit(r.edx, 25) || bit(r.edx, 26), 'no FPU, SSE, SSE2');
  t.false(bit(r.ecx, 27), 'OSXSAVE clear while CR4.OSXSAVE is clear');
  t.true(bit(cpuid(1, 0, { cr4: 0x40020n }).ecx, 27), 'OSXSAVE set with CR4.OSXSAVE');
});

test('CPUID leaves 7, 0x80000001 and 0x80000008', (t) => {
  // Method: leaf 7.0 EBX = BMI1|SMEP, 7.1 empty; 8000_0001 EDX = SYSCALL|NX|1GB|LM, ECX = LZCNT;
  // 8000_0008 EAX = physical bits | 48 linear bits << 8.
  t.deepEqual(cpuid(7, 0), { eax: 0n, ebx: (1n << 3n) | (1n << 7n), ecx: 0n, edx: 0n });
  t.deepEqual(cpuid(7, 1), { eax: 0n, ebx: 0n, ecx: 0n, edx: 0n });
  const ext = cpuid(0x80000001);
  t.is(ext.edx, (1n << 11n) | (1n << 20n) | (1n << 26n) | (1n << 29n));
  t.is(ext.ecx, 1n << 5n);
  t.is(cpuid(0x80000008).eax, BigInt(MAX_PHYS_BITS) | (48n << 8n));
});

// --- SYSCALL / SYSRET ------------------------------------------------------------------------------

test('SYSCALL/SYSRETQ round trip: RCX/R11 saved, RFLAGS masked by FMASK, CS/SS from STAR, CPL 3 → 0 → 3', (t) => {
  // Method: STAR like Linux (kernel 0x10, user base 0x23 → CS 0x33, SS 0x2b), FMASK = AC|DF|IF.
  // The kernel entry records its RFLAGS and stops with VMCALL; after skipping it, SYSRETQ returns
  // to ring 3, which stops with VMCALL.
  const tm = new TestMachine();
  const entry = 0x180000n;
  tm.assemble(entry, (a) => a.pushfq().pop(rax).mov(qword(r8), rax).vmcall().sysretq());
  const code = tm.assemble(CODE, (a) => a.syscall().bind(a.newLabel('back')).vmcall());
  const state = tm.state();
  state.set64('star', 0x0023_0010_0000_0000n);
  state.set64('lstar', entry);
  state.set64('fmask', RFLAGS.AC | RFLAGS.DF | RFLAGS.IF);
  startInRing3(tm, 0x40603n); // AC DF IF CF
  state.setGpr('r8', DATA);
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().rip, entry + 5n, 'stopped in the kernel entry');
  t.is(state.gpr('rcx'), code.addressOf('back'));
  t.is(state.gpr('r11'), 0x40603n);
  t.is(tm.read64(DATA), 0x3n, 'AC, DF, IF masked');
  t.is(state.get32('cs'), Selector.kernelCode);
  t.is(state.get32('ss'), Selector.kernelData);
  t.is(state.cpl, 0);
  t.is(state.gpr('rsp'), USER_STACK, 'SYSCALL does not switch stacks');
  tm.cpu().skipInstruction();
  t.is(tm.run(), RunStop.exit);
  t.is(state.exit().rip, code.addressOf('back'));
  t.is(state.get32('cs'), Selector.userCode);
  t.is(state.get32('ss'), Selector.userData);
  t.is(state.cpl, 3);
  t.is(state.rflags, 0x40603n);
});

test('SYSCALL with EFER.SCE clear is #UD; SYSRETQ at CPL 3 or to a non-canonical RCX is #GP(0)', (t) => {
  // Method: SDM SYSCALL/SYSRET exception lists.
  const noSce = new TestMachine();
  noSce.state().set64('efer', 0xd00n);
  haltingGate(noSce, 6);
  noSce.assemble(CODE, (a) => a.nop().syscall());
  t.is(noSce.run(), RunStop.halted);
  t.is(noSce.state().rip, handlerAt(6) + 1n);
  t.is(readFrame(noSce, noSce.state().gpr('rsp'), false).rip, CODE + 1n);

  const user = new TestMachine();
  startInRing3(user);
  t.is(gpError(user, (a) => a.sysretq()), 0n);
  t.is(user.state().cpl, 0);

  const kernel = new TestMachine();
  t.is(gpError(kernel, (a) => a.mov(rcx, 0x0000_8000_0000_0000n).sysretq()), 0n);
});

test('SYSRET restores only the SYSRET-visible RFLAGS bits from R11 and forces bit 1', (t) => {
  // Method: R11 = all ones except TF; RFLAGS after SYSRET = (R11 & 0x3C7FD7) | 2 (SDM SYSRET):
  // bits 3, 5, 15, 16 (RF), 17 (VM) and 22..63 end up clear. The ring-3 target stops with VMCALL.
  const tm = new TestMachine();
  const user = 0x180000n;
  tm.assemble(user, (a) => a.vmcall());
  tm.state().set64('star', 0x0023_0010_0000_0000n);
  const state = runToVmcall(tm, (a) => a.mov(rcx, user).mov(r11, ~Number(RFLAGS.TF)).sysretq());
  t.is(state.exit().rip, user);
  t.is(state.rflags, (0x3c7fd7n & ~RFLAGS.TF) | 2n);
  t.is(state.cpl, 3);
});
