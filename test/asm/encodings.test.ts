import test from 'ava';
import {
  Assembler, absolute, al, ax, byte, cl, cr0, cr2, cr3, cr4, cr8, dword, ds, eax, ebx, ecx, edx, gs, mem, qword, r10, r12, r15, r8, r8b, r9,
  rax, rbp, rbx, rcx, bx, ah, bh, rdi, rdx, rsi, rsp, sil, word, withSeg, xmm0, xmm1, xmmword, r13, esp, hexBytes,
} from '../../src/asm/index.ts';
import { asmHex, decodeAll } from './helpers.ts';

type Case = readonly [title: string, emit: (a: Assembler) => void, hex: string, codes?: readonly string[]];

const cases: readonly Case[] = [
  // The three sequences from the design brief.
  ['mov ecx,[rdx+rax*4+0x4ea91c]', (a) => a.mov(ecx, dword(rdx, rax, 4, 0x4ea91c)), '8b 8c 82 1c a9 4e 00', ['Mov_r32_rm32']],
  ['lock xadd [r9],rax', (a) => a.lock().xadd(qword(r9), rax), 'f0 49 0f c1 01', ['Xadd_rm64_r64']],
  ['mov rax,0x1234; vmcall', (a) => a.mov(rax, 0x1234).vmcall(), '48 c7 c0 34 12 00 00 0f 01 c1', ['Mov_rm64_imm32', 'Vmcall']],

  // mov and immediate-width selection (never changes operand size)
  ['mov rax,imm64', (a) => a.mov(rax, 0x123456789n), '48 b8 89 67 45 23 01 00 00 00', ['Mov_r64_imm64']],
  ['mov rax,-1', (a) => a.mov(rax, -1), '48 c7 c0 ff ff ff ff', ['Mov_rm64_imm32']],
  ['mov rax,0xffffffff needs imm64', (a) => a.mov(rax, 0xffffffff), '48 b8 ff ff ff ff 00 00 00 00', ['Mov_r64_imm64']],
  ['mov rax,u64 max', (a) => a.mov(rax, 0xffffffffffffffffn), '48 c7 c0 ff ff ff ff', ['Mov_rm64_imm32']],
  ['mov eax,0xffffffff', (a) => a.mov(eax, 0xffffffff), 'b8 ff ff ff ff', ['Mov_r32_imm32']],
  ['mov eax,-1', (a) => a.mov(eax, -1), 'b8 ff ff ff ff', ['Mov_r32_imm32']],
  ['mov al,0xff', (a) => a.mov(al, 0xff), 'b0 ff', ['Mov_r8_imm8']],
  ['mov r8b,1', (a) => a.mov(r8b, 1), '41 b0 01', ['Mov_r8_imm8']],
  ['mov ax,0xffff', (a) => a.mov(ax, 0xffff), '66 b8 ff ff', ['Mov_r16_imm16']],
  ['mov rax,rbx', (a) => a.mov(rax, rbx), '48 89 d8', ['Mov_rm64_r64']],
  ['mov [rsp+8],rax', (a) => a.mov(qword(rsp, 8), rax), '48 89 44 24 08', ['Mov_rm64_r64']],
  ['mov rax,[rsp+8]', (a) => a.mov(rax, qword(rsp, 8)), '48 8b 44 24 08', ['Mov_r64_rm64']],
  ['mov rax,[rbp] (needs disp8)', (a) => a.mov(rax, qword(rbp)), '48 8b 45 00', ['Mov_r64_rm64']],
  ['mov rax,[r13]', (a) => a.mov(rax, qword(r13)), '49 8b 45 00', ['Mov_r64_rm64']],
  ['mov eax,[rcx-8]', (a) => a.mov(eax, dword(rcx, -8)), '8b 41 f8', ['Mov_r32_rm32']],
  ['mov dword [rdi+0x100],0x12345678', (a) => a.mov(dword(rdi, 0x100), 0x12345678), 'c7 87 00 01 00 00 78 56 34 12', ['Mov_rm32_imm32']],
  ['mov byte [rsi],0x80', (a) => a.mov(byte(rsi), 0x80), 'c6 06 80', ['Mov_rm8_imm8']],
  ['mov word [rax],ax', (a) => a.mov(word(rax), ax), '66 89 00', ['Mov_rm16_r16']],
  ['mov [rax*8+0x1000],rcx (no base)', (a) => a.mov(qword(null, rax, 8, 0x1000), rcx), '48 89 0c c5 00 10 00 00', ['Mov_rm64_r64']],
  ['mov rax,[abs 0x1000]', (a) => a.mov(rax, qword(absolute(0x1000))), '48 8b 04 25 00 10 00 00', ['Mov_r64_rm64']],
  ['mov rax,[abs kernel addr] via moffs', (a) => a.mov(rax, qword(absolute(0xfffff80000401000n))), '48 a1 00 10 40 00 00 f8 ff ff', ['Mov_RAX_moffs64']],
  ['mov rax,gs:[0x28]', (a) => a.mov(rax, qword({ seg: gs, disp: 0x28 })), '65 48 8b 04 25 28 00 00 00', ['Mov_r64_rm64']],
  ['mov rcx,gs:[rax]', (a) => a.mov(rcx, withSeg(gs, qword(rax))), '65 48 8b 08', ['Mov_r64_rm64']],
  ['mov ds,ax (16-bit operand keeps its 66 prefix)', (a) => a.mov(ds, ax), '66 8e d8', ['Mov_Sreg_rm16']],
  ['mov ds,eax', (a) => a.mov(ds, eax), '8e d8', ['Mov_Sreg_r32m16']],
  ['mov cr3,rax', (a) => a.mov(cr3, rax), '0f 22 d8', ['Mov_cr_r64']],
  ['mov rax,cr2', (a) => a.mov(rax, cr2), '0f 20 d0', ['Mov_r64_cr']],
  ['mov cr8,rax', (a) => a.mov(cr8, rax), '44 0f 22 c0', ['Mov_cr_r64']],
  ['mov rax,cr0; mov cr4,rcx', (a) => a.mov(rax, cr0).mov(cr4, rcx), '0f 20 c0 0f 22 e1', ['Mov_r64_cr', 'Mov_cr_r64']],
  ['movzx eax,byte [rdi]', (a) => a.movzx(eax, byte(rdi)), '0f b6 07', ['Movzx_r32_rm8']],
  ['movzx eax,sil', (a) => a.movzx(eax, sil), '40 0f b6 c6', ['Movzx_r32_rm8']],
  ['movsx rax,word [rsi]', (a) => a.movsx(rax, word(rsi)), '48 0f bf 06', ['Movsx_r64_rm16']],
  ['movsxd rax,dword [rcx]', (a) => a.movsxd(rax, dword(rcx)), '48 63 01', ['Movsxd_r64_rm32']],
  ['lea rax,[rbx+rcx*8+0x10]', (a) => a.lea(rax, mem(rbx, rcx, 8, 0x10)), '48 8d 44 cb 10', ['Lea_r64_m']],
  ['lea rax,qword-sized mem is fine', (a) => a.lea(rax, qword(rbx, 8)), '48 8d 43 08', ['Lea_r64_m']],
  ['xchg rax,rcx (operands swapped for the short form)', (a) => a.xchg(rax, rcx), '48 91', ['Xchg_r64_RAX']],
  ['xchg rcx,rax', (a) => a.xchg(rcx, rax), '48 91', ['Xchg_r64_RAX']],
  ['xchg eax,eax is not nop', (a) => a.xchg(eax, eax), '87 c0', ['Xchg_rm32_r32']],
  ['xchg [rdi],eax', (a) => a.xchg(dword(rdi), eax), '87 07', ['Xchg_rm32_r32']],
  ['bswap eax; bswap r8', (a) => a.bswap(eax).bswap(r8), '0f c8 49 0f c8', ['Bswap_r32', 'Bswap_r64']],
  ['cmove rax,rcx', (a) => a.cmove(rax, rcx), '48 0f 44 c1', ['Cmove_r64_rm64']],
  ['cmovz/cmovcc alias', (a) => a.cmovz(eax, dword(rbx)).cmovcc('a', ecx, edx), '0f 44 03 0f 47 ca', ['Cmove_r32_rm32', 'Cmova_r32_rm32']],
  ['setne al; setg [rdi]', (a) => a.setne(al).setg(byte(rdi)), '0f 95 c0 0f 9f 07', ['Setne_rm8', 'Setg_rm8']],

  // arithmetic
  ['add rax,1', (a) => a.add(rax, 1), '48 83 c0 01', ['Add_rm64_imm8']],
  ['add eax,0x1000 (accumulator form)', (a) => a.add(eax, 0x1000), '05 00 10 00 00', ['Add_EAX_imm32']],
  ['add al,1', (a) => a.add(al, 1), '04 01', ['Add_AL_imm8']],
  ['add ax,0xffff (equal length: lowest Code wins)', (a) => a.add(ax, 0xffff), '66 05 ff ff', ['Add_AX_imm16']],
  ['add bx,-1 uses imm8 sign-extension', (a) => a.add(bx, 0xffff), '66 83 c3 ff', ['Add_rm16_imm8']],
  ['push word ptr / push ax keep 16-bit size', (a) => a.push(ax).push(word(rax)), '66 50 66 ff 30', ['Push_r16', 'Push_rm16']],
  ['and eax,0xffffff80', (a) => a.and(eax, 0xffffff80), '83 e0 80', ['And_rm32_imm8']],
  ['sub rsp,0x28', (a) => a.sub(rsp, 0x28), '48 83 ec 28', ['Sub_rm64_imm8']],
  ['adc rdx,rcx; sbb eax,[rbx]', (a) => a.adc(rdx, rcx).sbb(eax, dword(rbx)), '48 11 ca 1b 03', ['Adc_rm64_r64', 'Sbb_r32_rm32']],
  ['cmp rax,10', (a) => a.cmp(rax, 10), '48 83 f8 0a', ['Cmp_rm64_imm8']],
  ['cmp qword [rdi],0x1000', (a) => a.cmp(qword(rdi), 0x1000), '48 81 3f 00 10 00 00', ['Cmp_rm64_imm32']],
  ['inc dword [rax]; dec r10', (a) => a.inc(dword(rax)).dec(r10), 'ff 00 49 ff ca', ['Inc_rm32', 'Dec_rm64']],
  ['neg rax; not ecx', (a) => a.neg(rax).not(ecx), '48 f7 d8 f7 d1', ['Neg_rm64', 'Not_rm32']],
  ['mul rcx', (a) => a.mul(rcx), '48 f7 e1', ['Mul_rm64']],
  ['imul 1/2/3 operands', (a) => a.imul(ecx).imul(rax, rcx).imul(rax, rcx, 10).imul(rax, qword(rdi), 1000),
    'f7 e9 48 0f af c1 48 6b c1 0a 48 69 07 e8 03 00 00', ['Imul_rm32', 'Imul_r64_rm64', 'Imul_r64_rm64_imm8', 'Imul_r64_rm64_imm32']],
  ['div r8; idiv qword [rsp]', (a) => a.div(r8).idiv(qword(rsp)), '49 f7 f0 48 f7 3c 24', ['Div_rm64', 'Idiv_rm64']],
  ['cbw cwde cdqe cwd cdq cqo', (a) => a.cbw().cwde().cdqe().cwd().cdq().cqo(), '66 98 98 48 98 66 99 99 48 99', ['Cbw', 'Cwde', 'Cdqe', 'Cwd', 'Cdq', 'Cqo']],
  ['and/or/xor/test', (a) => a.and(rax, -16).or(byte(rax), 0x80).xor(r15, r15).test(al, 1).test(rax, rax).test(ecx, 0x100),
    '48 83 e0 f0 80 08 80 4d 31 ff a8 01 48 85 c0 f7 c1 00 01 00 00',
    ['And_rm64_imm8', 'Or_rm8_imm8', 'Xor_rm64_r64', 'Test_AL_imm8', 'Test_rm64_r64', 'Test_rm32_imm32']],

  // shifts and bits
  ['shl rax,1', (a) => a.shl(rax, 1), '48 d1 e0', ['Shl_rm64_1']],
  ['shr rdx,cl', (a) => a.shr(rdx, cl), '48 d3 ea', ['Shr_rm64_CL']],
  ['sar eax,31; rol rax,8; ror ecx,1', (a) => a.sar(eax, 31).rol(rax, 8).ror(ecx, 1), 'c1 f8 1f 48 c1 c0 08 d1 c9', ['Sar_rm32_imm8', 'Rol_rm64_imm8', 'Ror_rm32_1']],
  ['rcl/rcr', (a) => a.rcl(rax, 2).rcr(byte(rdi), cl), '48 c1 d0 02 d2 1f', ['Rcl_rm64_imm8', 'Rcr_rm8_CL']],
  ['sal is shl /4', (a) => a.sal(rax, 3), '48 c1 e0 03', ['Shl_rm64_imm8']],
  ['shld/shrd', (a) => a.shld(rax, rdx, 4).shrd(qword(rdi), rdx, cl), '48 0f a4 d0 04 48 0f ad 17', ['Shld_rm64_r64_imm8', 'Shrd_rm64_r64_CL']],
  ['bt/bts/btr/btc', (a) => a.bt(rax, 3).bts(dword(rdi), eax).btr(rcx, rdx).btc(qword(rsi), 63),
    '48 0f ba e0 03 0f ab 07 48 0f b3 d1 48 0f ba 3e 3f', ['Bt_rm64_imm8', 'Bts_rm32_r32', 'Btr_rm64_r64', 'Btc_rm64_imm8']],
  ['bsf/bsr/popcnt/lzcnt/tzcnt', (a) => a.bsf(rax, rcx).bsr(eax, dword(rdi)).popcnt(eax, ecx).lzcnt(rax, rcx).tzcnt(rax, rcx),
    '48 0f bc c1 0f bd 07 f3 0f b8 c1 f3 48 0f bd c1 f3 48 0f bc c1', ['Bsf_r64_rm64', 'Bsr_r32_rm32', 'Popcnt_r32_rm32', 'Lzcnt_r64_rm64', 'Tzcnt_r64_rm64']],

  // stack and frames
  ['push/pop', (a) => a.push(rbp).push(r12).pop(r15).push(qword(rax, 8)).pop(qword(rsp)),
    '55 41 54 41 5f ff 70 08 8f 04 24', ['Push_r64', 'Push_r64', 'Pop_r64', 'Push_rm64', 'Pop_rm64']],
  ['push imm8/imm32', (a) => a.push(0x10).push(0x1000).push(-1), '6a 10 68 00 10 00 00 6a ff', ['Pushq_imm8', 'Pushq_imm32', 'Pushq_imm8']],
  ['push fs/gs', (a) => a.push(gs).pop(gs), '0f a8 0f a9', ['Pushq_GS', 'Popq_GS']],
  ['pushfq popfq enter leave', (a) => a.pushfq().popfq().enter(0x20, 0).leave(), '9c 9d c8 20 00 00 c9', ['Pushfq', 'Popfq', 'Enterq_imm16_imm8', 'Leaveq']],
  ['ret; ret 8', (a) => a.ret().ret(8), 'c3 c2 08 00', ['Retnq', 'Retnq_imm16']],
  ['indirect jmp/call', (a) => a.jmp(rax).call(qword(rax, 8)).call(r9), 'ff e0 ff 50 08 41 ff d1', ['Jmp_rm64', 'Call_rm64', 'Call_rm64']],

  // atomics
  ['cmpxchg / lock cmpxchg16b / xadd', (a) => a.cmpxchg(qword(rdi), rcx).lock().cmpxchg16b(mem(rdi)).xadd(eax, ebx),
    '48 0f b1 0f f0 48 0f c7 0f 0f c1 d8', ['Cmpxchg_rm64_r64', 'Cmpxchg16b_m128', 'Xadd_rm32_r32']],
  ['lock add/inc/bts', (a) => a.lock().add(qword(rdi), 1).lock().inc(dword(rax)).lock().bts(qword(rsi), 5),
    'f0 48 83 07 01 f0 ff 00 f0 48 0f ba 2e 05', ['Add_rm64_imm8', 'Inc_rm32', 'Bts_rm64_imm8']],
  ['xchg with memory (implicitly locked)', (a) => a.xchg(qword(rdi), rax), '48 87 07', ['Xchg_rm64_r64']],

  // system
  ['fences, pause, nop', (a) => a.nop().pause().mfence().lfence().sfence(), '90 f3 90 0f ae f0 0f ae e8 0f ae f8', ['Nopd', 'Pause', 'Mfence', 'Lfence', 'Sfence']],
  ['flags/interrupts', (a) => a.cli().sti().hlt().int3().int(0x80).iretq().clc().stc().cld().std().cmc(),
    'fa fb f4 cc cd 80 48 cf f8 f9 fc fd f5', ['Cli', 'Sti', 'Hlt', 'Int3', 'Int_imm8', 'Iretq', 'Clc', 'Stc', 'Cld', 'Std', 'Cmc']],
  ['cpuid rdtsc rdtscp rdmsr wrmsr xgetbv xsetbv', (a) => a.cpuid().rdtsc().rdtscp().rdmsr().wrmsr().xgetbv().xsetbv(),
    '0f a2 0f 31 0f 01 f9 0f 32 0f 30 0f 01 d0 0f 01 d1', ['Cpuid', 'Rdtsc', 'Rdtscp', 'Rdmsr', 'Wrmsr', 'Xgetbv', 'Xsetbv']],
  ['descriptor tables', (a) => a.lgdt(mem(rax)).lidt(mem(rax)).sgdt(mem(rbx)).sidt(mem(rbx)).ltr(eax).ltr(word(rsp, 2)).ltr(ax),
    '0f 01 10 0f 01 18 0f 01 03 0f 01 0b 0f 00 d8 0f 00 5c 24 02 66 0f 00 d8',
    ['Lgdt_m1664', 'Lidt_m1664', 'Sgdt_m1664', 'Sidt_m1664', 'Ltr_r32m16', 'Ltr_r32m16', 'Ltr_rm16']],
  ['invlpg wbinvd clflush', (a) => a.invlpg(mem(rax)).invlpg(byte(rdi, 0x10)).wbinvd().clflush(byte(rdi)), '0f 01 38 0f 01 7f 10 0f 09 0f ae 3f', ['Invlpg_m', 'Invlpg_m', 'Wbinvd', 'Clflush_m8']],
  ['vmcall swapgs syscall sysretq ud2', (a) => a.vmcall().swapgs().syscall().sysretq().ud2(), '0f 01 c1 0f 01 f8 0f 05 48 0f 07 0f 0b', ['Vmcall', 'Swapgs', 'Syscall', 'Sysretq', 'Ud2']],

  // string instructions
  ['movs*/stos*', (a) => a.movsb().movsw().movsd().movsq().stosb().stosw().stosd().stosq(),
    'a4 66 a5 a5 48 a5 aa 66 ab ab 48 ab', ['Movsb_m8_m8', 'Movsw_m16_m16', 'Movsd_m32_m32', 'Movsq_m64_m64', 'Stosb_m8_AL', 'Stosw_m16_AX', 'Stosd_m32_EAX', 'Stosq_m64_RAX']],
  ['lods*/cmps*/scas*', (a) => a.lodsb().lodsq().cmpsb().cmpsd().cmpsq().scasb().scasw().scasq(),
    'ac 48 ad a6 a7 48 a7 ae 66 af 48 af', ['Lodsb_AL_m8', 'Lodsq_RAX_m64', 'Cmpsb_m8_m8', 'Cmpsd_m32_m32', 'Cmpsq_m64_m64', 'Scasb_AL_m8', 'Scasw_AX_m16', 'Scasq_RAX_m64']],
  ['rep prefixes', (a) => a.rep().stosb().rep().movsq().repe().cmpsb().repne().scasb().rep().lodsd(),
    'f3 aa f3 48 a5 f3 a6 f2 ae f3 ad', ['Stosb_m8_AL', 'Movsq_m64_m64', 'Cmpsb_m8_m8', 'Scasb_AL_m8', 'Lodsd_EAX_m32']],
  ['SSE movsd/cmpsd with operands still work', (a) => a.movsd(xmm0, qword(rax)).cmpsd(xmm0, xmm1, 1).emit('movdqu', xmm1, xmmword(rsi)),
    'f2 0f 10 00 f2 0f c2 c1 01 f3 0f 6f 0e', ['Movsd_xmm_xmmm64', 'Cmpsd_xmm_xmmm64_imm8', 'Movdqu_xmm_xmmm128']],

  // generic escape hatch
  ['emit by iced mnemonic name', (a) => a.emit('Cmpxchg', qword(rdi), rcx).emit('jz', 0x1000).emit('out', 0x80, al).emit('in', eax, 0x60), '48 0f b1 0f 0f 84 f6 ff ff ff e6 80 e5 60',
    ['Cmpxchg_rm64_r64', 'Je_rel32_64', 'Out_imm8_AL', 'In_EAX_imm8']],
  ['raw bytes', (a) => a.raw([0x0f, 0x0b]).raw(new Uint8Array([0x90])), '0f 0b 90', ['Ud2', 'Nopd']],
  ['esp as base needs SIB', (a) => a.mov(eax, dword(rsp)).lea(esp, mem(rsp, -4)), '8b 04 24 8d 64 24 fc', ['Mov_r32_rm32', 'Lea_r32_m']],
];

for (const [title, emit, hex, codes] of cases) {
  test(`encodes ${title}`, (t) => {
    const a = new Assembler(0x1000n);
    emit(a);
    const out = a.assemble();
    t.is(hexBytes(out.bytes), hex);
    if (codes) t.deepEqual(decodeAll(out.bytes, 0x1000n).map((d) => d.code), [...codes]);
  });
}

test('nop(n) emits a single NOP instruction of exactly n bytes for n = 1..15', (t) => {
  for (let n = 1; n <= 15; n++) {
    const a = new Assembler(0x1000n);
    a.nop(n);
    const { bytes } = a.assemble();
    t.is(bytes.length, n);
    const d = decodeAll(bytes, 0x1000n);
    t.is(d.length, 1, `nop(${n})`);
    t.regex(d[0].code, /^Nop/, `nop(${n}) decoded as ${d[0].code}`);
  }
});

test('nop with a memory operand uses 0F 1F /0', (t) => {
  t.is(asmHex((a) => a.nop(dword(rax))), '0f 1f 00');
});

test('every condition code has jcc, cmovcc and setcc forms', (t) => {
  const conds = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;
  conds.forEach((cc, i) => {
    const a = new Assembler(0x1000n);
    a.jcc(cc, 0x2000n).cmovcc(cc, rax, rbx).setcc(cc, al).jcc(cc, 0x1000n, { short: true });
    const bytes = a.assemble().bytes;
    t.deepEqual([...bytes.subarray(0, 2)], [0x0f, 0x80 + i], `j${cc} rel32`);
    t.deepEqual([...bytes.subarray(6, 10)], [0x48, 0x0f, 0x40 + i, 0xc3], `cmov${cc}`);
    t.deepEqual([...bytes.subarray(10, 13)], [0x0f, 0x90 + i, 0xc0], `set${cc}`);
    t.is(bytes[13], 0x70 + i, `j${cc} short`);
  });
});

test('condition aliases map to their canonical forms', (t) => {
  const a = new Assembler(0x1000n);
  a.jz(0x1000n).jnz(0x1000n).jc(0x1000n).jnc(0x1000n).jnae(0x1000n).jpe(0x1000n).jnle(0x1000n);
  const codes = decodeAll(a.assemble().bytes, 0x1000n).map((d) => d.code);
  t.deepEqual(codes, ['Je_rel32_64', 'Jne_rel32_64', 'Jb_rel32_64', 'Jae_rel32_64', 'Jb_rel32_64', 'Jp_rel32_64', 'Jg_rel32_64']);
});

test('typed methods return this for chaining and the chain matches individual calls', (t) => {
  const chained = asmHex((a) => a.push(rbp).mov(rbp, rsp).sub(rsp, 0x20).leave().ret());
  const separate = asmHex((a) => { a.push(rbp); a.mov(rbp, rsp); a.sub(rsp, 0x20); a.leave(); a.ret(); });
  t.is(chained, separate);
  t.is(chained, '55 48 89 e5 48 83 ec 20 c9 c3');
});

test('ah/bh encode when no REX prefix is needed', (t) => {
  t.is(asmHex((a) => a.mov(ah, bh).mov(byte(rax), ah)), '88 fc 88 20');
});
