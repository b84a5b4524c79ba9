import { Vcpu } from '../state-block.ts';
import type { Cpu } from '../cpu.ts';
import { MAX_PHYS_BITS } from '../mmu.ts';

/**
 * CPUID: a fixed, documented identity that reports only what vcpusim implements, so guest code
 * that checks features before using them stays inside the emulated instruction set.
 *
 * Vendor "GenuineIntel" (HVMI runs on Intel VT-x with EPT), family 6. Reported features:
 * leaf 1 EDX: PSE TSC MSR PAE CX8 PGE CMOV PAT; ECX: CX16 POPCNT XSAVE OSXSAVE(CR4) HYPERVISOR;
 * leaf 7 EBX: BMI1 (TZCNT) SMEP; 8000_0001 EDX: SYSCALL NX 1GB-pages LM, ECX: ABM (LZCNT).
 * No FPU/SSE: the x87 and vector units are not emulated.
 */

const vendor = (text: string): number[] => {
  const bytes = Buffer.from(text.padEnd(12, '\0'), 'latin1');
  return [bytes.readInt32LE(0), bytes.readInt32LE(4), bytes.readInt32LE(8)];
};
const [GENUINE, INEI, NTEL] = vendor('GenuineIntel');
const HYPERVISOR_ID = vendor('vcpusim');

const LEAF1_EDX = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 13) | (1 << 15) | (1 << 16);
const LEAF1_ECX = (1 << 13) | (1 << 23) | (1 << 26) | (1 << 31);
const LEAF7_EBX = (1 << 3) | (1 << 7);
const EXT1_EDX = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 29);
const EXT1_ECX = 1 << 5;

/** Returns [eax, ebx, ecx, edx] for the leaf/subleaf. */
export function cpuidLeaf(cpu: Cpu, leaf: number, subleaf: number): [number, number, number, number] {
  const w = cpu.words;
  switch (leaf) {
    case 0: return [0xd, GENUINE, NTEL, INEI];
    case 1: {
      const osxsave = (w[Vcpu.cr4] & 0x40000) !== 0 ? 1 << 27 : 0;
      // Family 6, model 0x55, stepping 7; EBX: APIC id = vCPU id, 16 logical processors max.
      return [0x50657, (cpu.id << 24) | (cpu.vcpuCount << 16), LEAF1_ECX | osxsave, LEAF1_EDX];
    }
    case 7: return subleaf === 0 ? [0, LEAF7_EBX, 0, 0] : [0, 0, 0, 0];
    case 0xd:
      // XSAVE: only x87 state is "supported" (XCR0 bit 0); size of the 512+64-byte legacy area.
      return subleaf === 0 ? [1, 576, 576, 0] : [0, 0, 0, 0];
    case 0x40000000: return [0x40000000, HYPERVISOR_ID[0], HYPERVISOR_ID[1], HYPERVISOR_ID[2]];
    case 0x80000000: return [0x80000008, 0, 0, 0];
    case 0x80000001: return [0, 0, EXT1_ECX, EXT1_EDX];
    case 0x80000008: return [MAX_PHYS_BITS | (48 << 8), 0, 0, 0];
    default: return [0, 0, 0, 0];
  }
}
