/**
 * Register constants for the assembler.
 *
 * Each register is a frozen object wrapping the iced `Register` value. `cls`
 * and `size` are literal types so signatures (and readers) can tell a 64-bit
 * GPR from a 32-bit one without consulting a table.
 */
import iced from 'iced-x86';
import type { Register } from 'iced-x86';

/** Register families the instruction matcher understands. */
export type RegClass = 'gpr' | 'seg' | 'cr' | 'dr' | 'xmm';

/** A machine register. `size` is the width in bytes. */
export interface Reg<C extends RegClass = RegClass, S extends number = number> {
  readonly kind: 'reg';
  readonly cls: C;
  readonly size: S;
  /** iced-x86 register id. */
  readonly reg: Register;
  /** Lower-case Intel name, e.g. `r8b`. */
  readonly name: string;
}

export type Gpr8 = Reg<'gpr', 1>;
export type Gpr16 = Reg<'gpr', 2>;
export type Gpr32 = Reg<'gpr', 4>;
export type Gpr64 = Reg<'gpr', 8>;
/** Any general-purpose register. */
export type Gpr = Gpr8 | Gpr16 | Gpr32 | Gpr64;
export type SegReg = Reg<'seg', 2>;
export type CrReg = Reg<'cr', 8>;
export type DrReg = Reg<'dr', 8>;
export type XmmReg = Reg<'xmm', 16>;
/** Every register kind the assembler accepts as an operand. */
export type AnyReg = Gpr | SegReg | CrReg | DrReg | XmmReg;

// `icedName` differs from the Intel name only for r8b..r15b (iced: R8L..R15L).
function mk<C extends RegClass, S extends number>(cls: C, size: S, name: string, icedName = name.toUpperCase()): Reg<C, S> {
  const reg = iced.Register[icedName as keyof typeof iced.Register];
  if (typeof reg !== 'number') throw new Error(`internal: iced has no register ${icedName}`);
  return Object.freeze({ kind: 'reg', cls, size, reg, name });
}

export const rax: Gpr64 = mk('gpr', 8, 'rax');
export const rcx: Gpr64 = mk('gpr', 8, 'rcx');
export const rdx: Gpr64 = mk('gpr', 8, 'rdx');
export const rbx: Gpr64 = mk('gpr', 8, 'rbx');
export const rsp: Gpr64 = mk('gpr', 8, 'rsp');
export const rbp: Gpr64 = mk('gpr', 8, 'rbp');
export const rsi: Gpr64 = mk('gpr', 8, 'rsi');
export const rdi: Gpr64 = mk('gpr', 8, 'rdi');
export const r8: Gpr64 = mk('gpr', 8, 'r8');
export const r9: Gpr64 = mk('gpr', 8, 'r9');
export const r10: Gpr64 = mk('gpr', 8, 'r10');
export const r11: Gpr64 = mk('gpr', 8, 'r11');
export const r12: Gpr64 = mk('gpr', 8, 'r12');
export const r13: Gpr64 = mk('gpr', 8, 'r13');
export const r14: Gpr64 = mk('gpr', 8, 'r14');
export const r15: Gpr64 = mk('gpr', 8, 'r15');

export const eax: Gpr32 = mk('gpr', 4, 'eax');
export const ecx: Gpr32 = mk('gpr', 4, 'ecx');
export const edx: Gpr32 = mk('gpr', 4, 'edx');
export const ebx: Gpr32 = mk('gpr', 4, 'ebx');
export const esp: Gpr32 = mk('gpr', 4, 'esp');
export const ebp: Gpr32 = mk('gpr', 4, 'ebp');
export const esi: Gpr32 = mk('gpr', 4, 'esi');
export const edi: Gpr32 = mk('gpr', 4, 'edi');
export const r8d: Gpr32 = mk('gpr', 4, 'r8d');
export const r9d: Gpr32 = mk('gpr', 4, 'r9d');
export const r10d: Gpr32 = mk('gpr', 4, 'r10d');
export const r11d: Gpr32 = mk('gpr', 4, 'r11d');
export const r12d: Gpr32 = mk('gpr', 4, 'r12d');
export const r13d: Gpr32 = mk('gpr', 4, 'r13d');
export const r14d: Gpr32 = mk('gpr', 4, 'r14d');
export const r15d: Gpr32 = mk('gpr', 4, 'r15d');

export const ax: Gpr16 = mk('gpr', 2, 'ax');
export const cx: Gpr16 = mk('gpr', 2, 'cx');
export const dx: Gpr16 = mk('gpr', 2, 'dx');
export const bx: Gpr16 = mk('gpr', 2, 'bx');
export const sp: Gpr16 = mk('gpr', 2, 'sp');
export const bp: Gpr16 = mk('gpr', 2, 'bp');
export const si: Gpr16 = mk('gpr', 2, 'si');
export const di: Gpr16 = mk('gpr', 2, 'di');
export const r8w: Gpr16 = mk('gpr', 2, 'r8w');
export const r9w: Gpr16 = mk('gpr', 2, 'r9w');
export const r10w: Gpr16 = mk('gpr', 2, 'r10w');
export const r11w: Gpr16 = mk('gpr', 2, 'r11w');
export const r12w: Gpr16 = mk('gpr', 2, 'r12w');
export const r13w: Gpr16 = mk('gpr', 2, 'r13w');
export const r14w: Gpr16 = mk('gpr', 2, 'r14w');
export const r15w: Gpr16 = mk('gpr', 2, 'r15w');

export const al: Gpr8 = mk('gpr', 1, 'al');
export const cl: Gpr8 = mk('gpr', 1, 'cl');
export const dl: Gpr8 = mk('gpr', 1, 'dl');
export const bl: Gpr8 = mk('gpr', 1, 'bl');
export const spl: Gpr8 = mk('gpr', 1, 'spl');
export const bpl: Gpr8 = mk('gpr', 1, 'bpl');
export const sil: Gpr8 = mk('gpr', 1, 'sil');
export const dil: Gpr8 = mk('gpr', 1, 'dil');
export const r8b: Gpr8 = mk('gpr', 1, 'r8b', 'R8L');
export const r9b: Gpr8 = mk('gpr', 1, 'r9b', 'R9L');
export const r10b: Gpr8 = mk('gpr', 1, 'r10b', 'R10L');
export const r11b: Gpr8 = mk('gpr', 1, 'r11b', 'R11L');
export const r12b: Gpr8 = mk('gpr', 1, 'r12b', 'R12L');
export const r13b: Gpr8 = mk('gpr', 1, 'r13b', 'R13L');
export const r14b: Gpr8 = mk('gpr', 1, 'r14b', 'R14L');
export const r15b: Gpr8 = mk('gpr', 1, 'r15b', 'R15L');
/** Legacy high-byte registers: not encodable together with a REX prefix. */
export const ah: Gpr8 = mk('gpr', 1, 'ah');
export const ch: Gpr8 = mk('gpr', 1, 'ch');
export const dh: Gpr8 = mk('gpr', 1, 'dh');
export const bh: Gpr8 = mk('gpr', 1, 'bh');

export const es: SegReg = mk('seg', 2, 'es');
export const cs: SegReg = mk('seg', 2, 'cs');
export const ss: SegReg = mk('seg', 2, 'ss');
export const ds: SegReg = mk('seg', 2, 'ds');
export const fs: SegReg = mk('seg', 2, 'fs');
export const gs: SegReg = mk('seg', 2, 'gs');

export const cr0: CrReg = mk('cr', 8, 'cr0');
export const cr2: CrReg = mk('cr', 8, 'cr2');
export const cr3: CrReg = mk('cr', 8, 'cr3');
export const cr4: CrReg = mk('cr', 8, 'cr4');
export const cr8: CrReg = mk('cr', 8, 'cr8');

export const dr0: DrReg = mk('dr', 8, 'dr0');
export const dr1: DrReg = mk('dr', 8, 'dr1');
export const dr2: DrReg = mk('dr', 8, 'dr2');
export const dr3: DrReg = mk('dr', 8, 'dr3');
export const dr6: DrReg = mk('dr', 8, 'dr6');
export const dr7: DrReg = mk('dr', 8, 'dr7');

export const xmm0: XmmReg = mk('xmm', 16, 'xmm0');
export const xmm1: XmmReg = mk('xmm', 16, 'xmm1');
export const xmm2: XmmReg = mk('xmm', 16, 'xmm2');
export const xmm3: XmmReg = mk('xmm', 16, 'xmm3');
export const xmm4: XmmReg = mk('xmm', 16, 'xmm4');
export const xmm5: XmmReg = mk('xmm', 16, 'xmm5');
export const xmm6: XmmReg = mk('xmm', 16, 'xmm6');
export const xmm7: XmmReg = mk('xmm', 16, 'xmm7');
export const xmm8: XmmReg = mk('xmm', 16, 'xmm8');
export const xmm9: XmmReg = mk('xmm', 16, 'xmm9');
export const xmm10: XmmReg = mk('xmm', 16, 'xmm10');
export const xmm11: XmmReg = mk('xmm', 16, 'xmm11');
export const xmm12: XmmReg = mk('xmm', 16, 'xmm12');
export const xmm13: XmmReg = mk('xmm', 16, 'xmm13');
export const xmm14: XmmReg = mk('xmm', 16, 'xmm14');
export const xmm15: XmmReg = mk('xmm', 16, 'xmm15');

/** 64-bit GPRs by encoding number (0 = rax … 15 = r15). */
export const GPR64_BY_NUMBER: readonly Gpr64[] = [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15];
