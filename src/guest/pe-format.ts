/**
 * The PE32+ fields an NT-like kernel image needs and an introspection engine reads: DOS header,
 * NT headers, optional header, section table. Offsets are those of the real format, so the
 * engine parses the guest's image the way HVMI parses ntoskrnl.
 */

export const PE = {
  dosMagic: 0x5a4d, // "MZ"
  /** e_lfanew: offset of the NT headers. */
  lfanewOffset: 0x3c,
  ntSignature: 0x00004550, // "PE\0\0"
  machineAmd64: 0x8664,
  optionalMagic64: 0x20b,
  fileHeaderBytes: 20,
  optionalHeaderBytes: 240,
  sectionHeaderBytes: 40,
} as const;

/** Offsets inside the NT headers (from the signature). */
export const NtOffset = {
  machine: 4,
  numberOfSections: 6,
  sizeOfOptionalHeader: 20,
  characteristics: 22,
  optional: 24,
} as const;

/** Offsets inside the 64-bit optional header. */
export const OptionalOffset = {
  magic: 0,
  addressOfEntryPoint: 16,
  imageBase: 24,
  sectionAlignment: 32,
  fileAlignment: 36,
  sizeOfImage: 56,
  sizeOfHeaders: 60,
  numberOfRvaAndSizes: 108,
} as const;

/** Offsets inside a section header. */
export const SectionOffset = {
  name: 0,
  virtualSize: 8,
  virtualAddress: 12,
  sizeOfRawData: 16,
  pointerToRawData: 20,
  characteristics: 36,
} as const;

/** IMAGE_SCN_* section characteristics. */
export const Scn = {
  code: 0x00000020,
  initializedData: 0x00000040,
  discardable: 0x02000000,
  notPaged: 0x08000000,
  execute: 0x20000000,
  read: 0x40000000,
  write: 0x80000000,
} as const;

/** One section as written into (and parsed from) the image. */
export interface SectionHeader {
  /** Up to 8 ASCII characters. */
  readonly name: string;
  /** Bytes actually used; the rest of the section's last page is slack. */
  readonly virtualSize: number;
  /** RVA (page aligned). */
  readonly virtualAddress: number;
  readonly characteristics: number;
}
