/**
 * The #UD reasons the CPU records for the hypervisor, CMPXCHG8B/CMPXCHG16B outcomes and
 * alignment, and ENTER/LEAVE with nesting levels (SDM Vol. 2 pseudo-code).
 */
import test from 'ava';
import iced from 'iced-x86';
import { eax, ebx, ecx, edx, mem, rdi } from '../../src/asm/index.ts';
import { RunStop } from '../../src/cpu/cpu.ts';
import { ExitReason, UdReason, type UdReasonCode } from '../../src/cpu/state-block.ts';
import { CODE, TestMachine, stackTop } from '../support/test-machine.ts';
import { DATA, RFLAGS, fault, runToVmcall } from './helpers.ts';

test('#UD reasons are recorded: invalid bytes, UD0/UD1/UD2, unsupported instructions, illegal LOCK; #UD is delivered either way', (t) => {
  // Method: each byte sequence after a NOP; the guest gets #UD (vector 6, RIP of the instruction)
  // and state.lastUd() says why, with the iced Code of decodable instructions (UdReason docs).
  const C = iced.Code;
  const cases: Array<[string, number[], UdReasonCode, number]> = [
    ['PUSH ES is invalid in 64-bit mode', [0x06], UdReason.invalidEncoding, C.INVALID],
    ['UD2: the guest asked', [0x0f, 0x0b], UdReason.invalidEncoding, C.Ud2],
    ['UD0 (0F FF): the guest asked', [0x0f, 0xff, 0xc0], UdReason.invalidEncoding, C.Ud0_r32_rm32],
    ['UD1 (0F B9): the guest asked', [0x0f, 0xb9, 0xc0], UdReason.invalidEncoding, C.Ud1_r32_rm32],
    ['ADDPS: SSE is not emulated', [0x0f, 0x58, 0xc1], UdReason.unsupported, C.Addps_xmm_xmmm128],
    ['FLD1: x87 is not emulated', [0xd9, 0xe8], UdReason.unsupported, C.Fld1],
    ['LOCK NOP', [0xf0, 0x90], UdReason.illegalUse, C.Nopd],
    ['LOCK ADD with a register destination', [0xf0, 0x01, 0xd8], UdReason.illegalUse, C.Add_rm32_r32],
    ['LOCK CPUID', [0xf0, 0x0f, 0xa2], UdReason.illegalUse, C.Cpuid],
  ];
  for (const [name, bytes, reason, code] of cases) {
    const tm = new TestMachine();
    t.deepEqual(fault(tm, (a) => a.nop().raw(bytes)), { vector: 6, rip: CODE + 1n }, name);
    const ud = tm.state().lastUd();
    t.is(ud.reason, reason, name);
    t.is(iced.Code[ud.code], iced.Code[code], name);
    t.is(ud.rip, CODE + 1n, name);
    t.is(ud.count, 1, name);
  }
});

test('#UD in the exception bitmap exits with vector 6; the recorded reason is still there for the hypervisor', (t) => {
  // Method: ADDPS with bit 6 set: exit reason exception, info0 6; lastUd() names the unsupported form.
  const tm = new TestMachine({ exceptionBitmap: 1 << 6 });
  tm.assemble(CODE, (a) => a.raw([0x0f, 0x58, 0xc1]));
  t.is(tm.run(), RunStop.exit);
  t.is(tm.state().exit().reason, ExitReason.exception);
  t.is(tm.state().exit().info0, 6);
  t.is(tm.state().lastUd().reason, UdReason.unsupported);
  t.is(tm.state().lastUd().code, iced.Code.Addps_xmm_xmmm128);
});

// --- CMPXCHG8B / CMPXCHG16B ---------------------------------------------------------------------------

test('CMPXCHG16B: equal → stores RCX:RBX and sets ZF; different → loads RDX:RAX and clears ZF; other flags kept', (t) => {
  // Method: SDM CMPXCHG16B on a 16-byte aligned operand holding 0x2222:0x1111, first with
  // RDX:RAX equal to it (then memory = RCX:RBX), then again (now different: RDX:RAX ← memory).
  // CF is set beforehand and must survive (only ZF is written).
  const tm = new TestMachine();
  tm.write64(DATA, 0x1111n);
  tm.write64(DATA + 8n, 0x2222n);
  const state = runToVmcall(tm, (a) => {
    a.mov(rdi, DATA).mov(eax, 0x1111).mov(edx, 0x2222).mov(ebx, 0x3333).mov(ecx, 0x4444).stc();
    a.cmpxchg16b(mem(rdi)).pushfq();
    a.mov(eax, 0x1111).mov(edx, 0x2222).cmpxchg16b(mem(rdi)).vmcall();
  });
  t.is(tm.read64(DATA), 0x3333n);
  t.is(tm.read64(DATA + 8n), 0x4444n);
  const first = tm.read64(state.gpr('rsp'));
  t.is(first & (RFLAGS.ZF | RFLAGS.CF), RFLAGS.ZF | RFLAGS.CF, 'success: ZF=1, CF kept');
  t.is(state.rflags & (RFLAGS.ZF | RFLAGS.CF), RFLAGS.CF, 'failure: ZF=0, CF kept');
  t.is(state.gpr('rax'), 0x3333n, 'RDX:RAX loaded from memory');
  t.is(state.gpr('rdx'), 0x4444n);
});

test('CMPXCHG16B on an operand that is not 16-byte aligned is #GP(0), memory and registers untouched', (t) => {
  // Method: SDM CMPXCHG16B "#GP(0) if the memory operand is not aligned on a 16-byte boundary".
  const tm = new TestMachine();
  tm.write64(DATA + 8n, 0x1111n);
  tm.write64(DATA + 16n, 0x2222n);
  tm.state().setGpr('rax', 0x1111n);
  tm.state().setGpr('rdx', 0x2222n);
  tm.state().setGpr('rbx', 0x5555n);
  t.deepEqual(fault(tm, (a) => a.mov(rdi, DATA + 8n).cmpxchg16b(mem(rdi))), { vector: 13, error: 0n, rip: CODE + 7n });
  t.is(tm.read64(DATA + 8n), 0x1111n);
});

test('CMPXCHG8B: EDX:EAX vs m64, ECX:EBX stored on success; EDX:EAX loaded on failure; misaligned is fine', (t) => {
  // Method: SDM CMPXCHG8B on an operand at DATA+4 (not 8-byte aligned: CMPXCHG8B has no alignment
  // rule), success then failure.
  const tm = new TestMachine();
  tm.write64(DATA + 4n, 0x2222_2222_1111_1111n);
  const state = runToVmcall(tm, (a) => {
    a.mov(rdi, DATA + 4n).mov(eax, 0x1111_1111).mov(edx, 0x2222_2222).mov(ebx, 0x3333_3333).mov(ecx, 0x4444_4444);
    a.cmpxchg8b(mem(rdi)).pushfq();
    a.mov(eax, 0x1111_1111).mov(edx, 0x2222_2222).cmpxchg8b(mem(rdi)).vmcall();
  });
  t.is(tm.read64(DATA + 4n), 0x4444_4444_3333_3333n);
  t.is(tm.read64(state.gpr('rsp')) & RFLAGS.ZF, RFLAGS.ZF);
  t.is(state.rflags & RFLAGS.ZF, 0n);
  t.is(state.gpr('rax'), 0x3333_3333n);
  t.is(state.gpr('rdx'), 0x4444_4444n);
});

// --- ENTER / LEAVE ----------------------------------------------------------------------------------

/**
 * Runs ENTER size, level from RSP = S (= stack top) and RBP = B (a fake outer frame whose saved
 * frame pointers at B-8, B-16 are 0xf1, 0xf2), stops with VMCALL, then runs LEAVE; VMCALL.
 */
function enterLeave(size: number, level: number): { rsp: bigint; rbp: bigint; slots: bigint[]; afterLeave: { rsp: bigint; rbp: bigint } } {
  const tm = new TestMachine();
  const B = DATA + 0x100n;
  tm.write64(B - 8n, 0xf1n);
  tm.write64(B - 16n, 0xf2n);
  tm.state().setGpr('rbp', B);
  const state = runToVmcall(tm, (a) => a.enter(size, level).vmcall().leave().vmcall());
  const rsp = state.gpr('rsp');
  const rbp = state.gpr('rbp');
  const S = stackTop(0);
  const slots = Array.from({ length: level + 1 }, (_, k) => tm.read64(S - 8n * BigInt(k + 1)));
  tm.cpu().skipInstruction();
  if (tm.run() !== RunStop.exit || state.exit().reason !== ExitReason.vmcall) throw new Error('LEAVE; VMCALL did not reach the VMCALL');
  return { rsp, rbp, slots, afterLeave: { rsp: state.gpr('rsp'), rbp: state.gpr('rbp') } };
}

test('ENTER with nesting level 0: push RBP, RBP = frame, RSP -= size; LEAVE undoes it', (t) => {
  // Method: SDM ENTER pseudo-code, 64-bit operand size.
  const S = stackTop(0);
  const r = enterLeave(0x20, 0);
  t.deepEqual(r.slots, [DATA + 0x100n]);
  t.is(r.rbp, S - 8n);
  t.is(r.rsp, S - 8n - 0x20n);
  t.deepEqual(r.afterLeave, { rsp: S, rbp: DATA + 0x100n });
});

test('ENTER with nesting level 1: pushes RBP then the new frame pointer', (t) => {
  // Method: level 1 — Push(RBP); FrameTemp = RSP; Push(FrameTemp); RBP = FrameTemp; RSP -= size.
  const S = stackTop(0);
  const r = enterLeave(0x10, 1);
  t.deepEqual(r.slots, [DATA + 0x100n, S - 8n]);
  t.is(r.rbp, S - 8n);
  t.is(r.rsp, S - 16n - 0x10n);
  t.deepEqual(r.afterLeave, { rsp: S, rbp: DATA + 0x100n });
});

test('ENTER with nesting level 3: copies two outer frame pointers from [RBP-8], [RBP-16], then the new one', (t) => {
  // Method: level 3 — Push(RBP); FrameTemp = RSP; for i = 1..2 { RBP -= 8; Push([RBP]) };
  // Push(FrameTemp); RBP = FrameTemp; RSP -= size.
  const S = stackTop(0);
  const r = enterLeave(8, 3);
  t.deepEqual(r.slots, [DATA + 0x100n, 0xf1n, 0xf2n, S - 8n]);
  t.is(r.rbp, S - 8n);
  t.is(r.rsp, S - 32n - 8n);
  t.deepEqual(r.afterLeave, { rsp: S, rbp: DATA + 0x100n });
});

test('ENTER uses the nesting level modulo 32', (t) => {
  // Method: level 33 behaves as level 1 (SDM: NestingLevel := imm8 MOD 32).
  const S = stackTop(0);
  const r = enterLeave(0, 33);
  t.deepEqual(r.slots.slice(0, 2), [DATA + 0x100n, S - 8n]);
  t.is(r.rsp, S - 16n);
});
