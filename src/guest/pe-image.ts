import type { GuestMemory } from '../machine/memory.ts';
import { NtOffset, OptionalOffset, PE, SectionOffset, type SectionHeader } from './pe-format.ts';

/**
 * Writes a PE32+ image (headers at RVA 0, then each section at its RVA) into guest RAM — the
 * in-memory layout of a loaded kernel module, which is what an introspection engine parses.
 */

export interface ImageSection extends SectionHeader {
  /** The section's bytes (at most VirtualSize; the rest of its pages stays zero — slack). */
  readonly bytes: Uint8Array;
}

export interface ImageSpec {
  readonly base: bigint;
  readonly sizeOfImage: number;
  readonly entryRva: number;
  readonly sections: readonly ImageSection[];
}

const NT_HEADERS = 0x80;
const HEADERS_BYTES = 0x1000;

export function writeImage(memory: GuestMemory, gpa: number, spec: ImageSpec): void {
  memory.fill(gpa, spec.sizeOfImage, 0);
  const headers = new DataView(new ArrayBuffer(HEADERS_BYTES));
  headers.setUint16(0, PE.dosMagic, true);
  headers.setUint32(PE.lfanewOffset, NT_HEADERS, true);
  headers.setUint32(NT_HEADERS, PE.ntSignature, true);
  headers.setUint16(NT_HEADERS + NtOffset.machine, PE.machineAmd64, true);
  headers.setUint16(NT_HEADERS + NtOffset.numberOfSections, spec.sections.length, true);
  headers.setUint16(NT_HEADERS + NtOffset.sizeOfOptionalHeader, PE.optionalHeaderBytes, true);
  headers.setUint16(NT_HEADERS + NtOffset.characteristics, 0x0022, true); // executable, large-address aware
  const optional = NT_HEADERS + NtOffset.optional;
  headers.setUint16(optional + OptionalOffset.magic, PE.optionalMagic64, true);
  headers.setUint32(optional + OptionalOffset.addressOfEntryPoint, spec.entryRva, true);
  headers.setBigUint64(optional + OptionalOffset.imageBase, spec.base, true);
  headers.setUint32(optional + OptionalOffset.sectionAlignment, 0x1000, true);
  headers.setUint32(optional + OptionalOffset.fileAlignment, 0x200, true);
  headers.setUint32(optional + OptionalOffset.sizeOfImage, spec.sizeOfImage, true);
  headers.setUint32(optional + OptionalOffset.sizeOfHeaders, HEADERS_BYTES, true);
  headers.setUint32(optional + OptionalOffset.numberOfRvaAndSizes, 16, true);
  const table = optional + PE.optionalHeaderBytes;
  spec.sections.forEach((section, k) => {
    const at = table + k * PE.sectionHeaderBytes;
    if (section.name.length > 8) throw new RangeError(`section name "${section.name}" is longer than 8 characters`);
    for (let c = 0; c < section.name.length; c++) headers.setUint8(at + SectionOffset.name + c, section.name.charCodeAt(c));
    headers.setUint32(at + SectionOffset.virtualSize, section.virtualSize, true);
    headers.setUint32(at + SectionOffset.virtualAddress, section.virtualAddress, true);
    headers.setUint32(at + SectionOffset.sizeOfRawData, Math.ceil(section.virtualSize / 0x200) * 0x200, true);
    headers.setUint32(at + SectionOffset.pointerToRawData, section.virtualAddress, true);
    headers.setUint32(at + SectionOffset.characteristics, section.characteristics, true);
    if (section.bytes.length > section.virtualSize) throw new RangeError(`section ${section.name}: ${section.bytes.length} bytes exceed VirtualSize ${section.virtualSize}`);
    if (section.virtualAddress % 0x1000 !== 0 || section.virtualAddress + section.virtualSize > spec.sizeOfImage) {
      throw new RangeError(`section ${section.name} at RVA 0x${section.virtualAddress.toString(16)} does not fit the image`);
    }
    memory.write(gpa + section.virtualAddress, section.bytes);
  });
  memory.write(gpa, new Uint8Array(headers.buffer));
}
