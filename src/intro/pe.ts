import type { PagingFormat } from '../machine/page-tables.ts';
import { NtOffset, OptionalOffset, PE, SectionOffset, type SectionHeader } from '../guest/pe-format.ts';
import type { GuestMemory } from '../machine/memory.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import { IntStatus, IntroError } from './status.ts';

/**
 * Reads a PE32+ image's headers from guest memory (HVMI's IntPeValidateHeader and
 * IntPeGetSectionHeader*): image size, base and section table — what slack allocation and the
 * "inside the kernel image" checks need.
 */

export interface ParsedImage {
  readonly base: bigint;
  readonly sizeOfImage: number;
  readonly sections: readonly SectionHeader[];
}

const MAX_SECTIONS = 96;

export function parseImage(memory: GuestMemory, cr3: number, base: bigint, paging: PagingFormat = '4-level'): ParsedImage {
  const fail = (what: string): never => {
    throw new IntroError(IntStatus.invalidInternalState, `image at 0x${base.toString(16)}: ${what}`);
  };
  const read = (offset: number, length: number): DataView => {
    const bytes = tryReadGuestVirtual(memory, cr3, base + BigInt(offset), length, paging);
    if (bytes === null) return fail(`bytes ${offset}..${offset + length} are not mapped`);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const dos = read(0, 0x40);
  if (dos.getUint16(0, true) !== PE.dosMagic) fail('no MZ signature');
  const nt = dos.getUint32(PE.lfanewOffset, true);
  const headers = read(nt, NtOffset.optional + PE.optionalHeaderBytes);
  if (headers.getUint32(0, true) !== PE.ntSignature) fail(`no PE signature at offset 0x${nt.toString(16)}`);
  if (headers.getUint16(NtOffset.machine, true) !== PE.machineAmd64) fail('machine is not AMD64');
  const optionalSize = headers.getUint16(NtOffset.sizeOfOptionalHeader, true);
  if (headers.getUint16(NtOffset.optional + OptionalOffset.magic, true) !== PE.optionalMagic64) fail('optional header is not PE32+');
  const sizeOfImage = headers.getUint32(NtOffset.optional + OptionalOffset.sizeOfImage, true);
  const count = headers.getUint16(NtOffset.numberOfSections, true);
  if (count === 0 || count > MAX_SECTIONS) fail(`${count} sections`);
  const table = read(nt + NtOffset.optional + optionalSize, count * PE.sectionHeaderBytes);
  const sections: SectionHeader[] = [];
  for (let k = 0; k < count; k++) {
    const at = k * PE.sectionHeaderBytes;
    let name = '';
    for (let c = 0; c < 8; c++) {
      const ch = table.getUint8(at + SectionOffset.name + c);
      if (ch === 0) break;
      name += String.fromCharCode(ch);
    }
    const section: SectionHeader = {
      name,
      virtualSize: table.getUint32(at + SectionOffset.virtualSize, true),
      virtualAddress: table.getUint32(at + SectionOffset.virtualAddress, true),
      characteristics: table.getUint32(at + SectionOffset.characteristics, true),
    };
    if (section.virtualAddress + section.virtualSize > sizeOfImage) fail(`section ${name} runs past SizeOfImage`);
    sections.push(section);
  }
  return { base, sizeOfImage, sections };
}
