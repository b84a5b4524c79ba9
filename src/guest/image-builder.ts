import { Assembler, type AssembledCode } from '../asm/index.ts';
import type { ImageSection } from './pe-image.ts';

/**
 * Lays out a kernel image from parts: code assembled at its final address, and data. Each part
 * goes into a named section; sections follow one another on page boundaries in the order they
 * were declared, parts inside a section in the order they were added. Any part may use the
 * address of any symbol of the image (every named label of every part) through `symbol()`:
 * linking assembles everything, lays it out, and repeats until no address moves. This is how
 * the NT-like kernel is built, and how a scenario adds its own functions and variables to it.
 */

/** A section of the image, as a PE section header describes it. */
export interface SectionSpec {
  readonly name: string;
  /** IMAGE_SCN_* characteristics. */
  readonly characteristics: number;
  /** Extra bytes to reserve after the parts (e.g. room for data the guest fills at run time). */
  readonly reserve?: number;
}

/** Resolves a symbol of the image (a part's name or any named label in it) to its address. */
export type SymbolResolver = (name: string) => bigint;

export interface CodePartOptions {
  /** Start on a page boundary and let nothing else share its page(s) (e.g. the hooked page). */
  readonly ownPage?: boolean;
  /** Alignment of the part's start (default 16). */
  readonly align?: number;
  /** Fill for alignment padding (default INT3). */
  readonly fill?: number;
}

interface Part {
  readonly section: string;
  readonly name: string;
  readonly ownPage: boolean;
  readonly align: number;
  readonly fill: number;
  /** Code: assembled on every link pass. Data: fixed bytes. */
  readonly build: ((a: Assembler, symbol: SymbolResolver) => void) | null;
  readonly bytes: Uint8Array | null;
}

/** A linked image: its sections with their bytes, every symbol, and listings. */
export interface LinkedImage {
  readonly base: bigint;
  readonly sizeOfImage: number;
  readonly sections: readonly ImageSection[];
  readonly symbols: ReadonlyMap<string, bigint>;
  /** Where each part starts and how long it is. */
  readonly parts: ReadonlyMap<string, { readonly section: string; readonly address: bigint; readonly size: number }>;
  readonly listing: string;
}

const PAGE = 0x1000;
const HEADERS = 0x1000;
const MAX_PASSES = 8;

const alignUp = (value: number, to: number): number => Math.ceil(value / to) * to;

export class ImageBuilder {
  private readonly sectionSpecs: SectionSpec[] = [];
  private readonly parts: Part[] = [];

  constructor(readonly base: bigint) {
    if (base % BigInt(PAGE) !== 0n) throw new RangeError(`image base 0x${base.toString(16)} must be page-aligned`);
  }

  /** Declares a section; sections are laid out in declaration order. */
  section(spec: SectionSpec): this {
    if (this.sectionSpecs.some((s) => s.name === spec.name)) throw new Error(`section ${spec.name} is declared twice`);
    if (spec.name.length > 8) throw new RangeError(`section name "${spec.name}" is longer than 8 characters`);
    this.sectionSpecs.push(spec);
    return this;
  }

  /** Names of the declared sections, in layout order. */
  get sectionNames(): readonly string[] {
    return this.sectionSpecs.map((s) => s.name);
  }

  /** Adds code to `section`; `name` labels its first byte. `build` may run several times (link passes) and must emit the same code each time for the same addresses. */
  code(section: string, name: string, build: (a: Assembler, symbol: SymbolResolver) => void, options: CodePartOptions = {}): this {
    this.addPart({ section, name, ownPage: options.ownPage === true, align: options.align ?? 16, fill: options.fill ?? 0xcc, build, bytes: null });
    return this;
  }

  /** Adds data to `section`: the given bytes, or `size` zero bytes. */
  data(section: string, name: string, init: Uint8Array | number, options: { readonly align?: number } = {}): this {
    const bytes = typeof init === 'number' ? new Uint8Array(init) : init;
    this.addPart({ section, name, ownPage: false, align: options.align ?? 8, fill: 0, build: null, bytes });
    return this;
  }

  private addPart(part: Part): void {
    if (!this.sectionSpecs.some((s) => s.name === part.section)) {
      throw new Error(`no section "${part.section}" in this image (sections: ${this.sectionNames.join(', ')})`);
    }
    if (this.parts.some((p) => p.name === part.name)) throw new Error(`the image already has a part named "${part.name}"`);
    if (!Number.isInteger(part.align) || part.align < 1 || (part.align & (part.align - 1)) !== 0 || part.align > PAGE) {
      throw new RangeError(`part "${part.name}": align must be a power of two ≤ ${PAGE}`);
    }
    this.parts.push(part);
  }

  /** Assembles and lays out every part until addresses settle; throws naming a symbol that does not exist. */
  link(): LinkedImage {
    // Until the first layout, unknown symbols resolve to a far placeholder, so displacements and
    // branches to them take their long (32-bit) forms, as they will at their real addresses.
    const placeholder = this.base + 0x7fff_0000n;
    let symbols = new Map<string, bigint>();
    let addresses = new Map<string, bigint>(this.parts.map((p) => [p.name, this.base + BigInt(HEADERS)]));
    for (let pass = 0; pass < MAX_PASSES; pass++) {
      const resolve = (final: boolean): SymbolResolver => (name) => {
        const address = symbols.get(name);
        if (address !== undefined) return address;
        if (final) throw new Error(`image symbol "${name}" is not defined by any part`);
        return placeholder;
      };
      const built = this.parts.map((part) => this.assemblePart(part, addresses.get(part.name)!, resolve(pass > 0)));
      const layout = this.layout(built.map((b) => b.bytes.length));
      const nextSymbols = new Map<string, bigint>();
      built.forEach((b, i) => {
        const part = this.parts[i];
        const shift = layout.addresses[i] - addresses.get(part.name)!;
        nextSymbols.set(part.name, layout.addresses[i]);
        for (const [label, address] of b.code?.labels ?? []) {
          if (label !== part.name && nextSymbols.has(label)) throw new Error(`image symbol "${label}" is defined twice`);
          nextSymbols.set(label, address + shift);
        }
      });
      const settled = built.every((b, i) => b.start === layout.addresses[i]) && sameSymbols(symbols, nextSymbols);
      symbols = nextSymbols;
      addresses = new Map(this.parts.map((p, i) => [p.name, layout.addresses[i]]));
      if (settled && pass > 0) return this.image(built, layout, symbols);
    }
    throw new Error(`the image layout did not settle in ${MAX_PASSES} passes (a part changes size with the addresses it is given)`);
  }

  private assemblePart(part: Part, start: bigint, symbol: SymbolResolver): { start: bigint; bytes: Uint8Array; code: AssembledCode | null } {
    if (part.build === null) return { start, bytes: part.bytes!, code: null };
    const a = new Assembler(start);
    a.label(part.name);
    part.build(a, symbol);
    const code = a.assemble();
    return { start, bytes: code.bytes, code };
  }

  /** Addresses of the parts and the extent of each section, for the given part sizes. */
  private layout(sizes: readonly number[]): { addresses: bigint[]; sections: { rva: number; size: number }[] } {
    const addresses = new Array<bigint>(this.parts.length);
    const sections: { rva: number; size: number }[] = [];
    let rva = HEADERS;
    for (const spec of this.sectionSpecs) {
      const start = rva;
      let cursor = start;
      this.parts.forEach((part, i) => {
        if (part.section !== spec.name) return;
        if (part.ownPage) cursor = alignUp(cursor, PAGE);
        else cursor = alignUp(cursor, part.align);
        addresses[i] = this.base + BigInt(cursor);
        cursor += sizes[i];
        if (part.ownPage) {
          if (sizes[i] > PAGE) throw new Error(`part "${part.name}" is ${sizes[i]} bytes: a part on its own page must fit in one page`);
          cursor = alignUp(cursor, PAGE);
        }
      });
      const size = Math.max(1, cursor - start + (spec.reserve ?? 0));
      sections.push({ rva: start, size });
      rva = alignUp(start + size, PAGE);
    }
    return { addresses, sections };
  }

  private image(built: readonly { start: bigint; bytes: Uint8Array; code: AssembledCode | null }[], layout: ReturnType<ImageBuilder['layout']>, symbols: Map<string, bigint>): LinkedImage {
    const sections: ImageSection[] = this.sectionSpecs.map((spec, k) => {
      const { rva, size } = layout.sections[k];
      const bytes = new Uint8Array(size);
      this.parts.forEach((part, i) => {
        if (part.section !== spec.name) return;
        const offset = Number(layout.addresses[i] - this.base) - rva;
        // Alignment padding before code is INT3 (or the part's fill), as a compiler leaves it;
        // the rest of a page left to a part on its own page stays zero.
        const previousEnd = this.previousEnd(spec.name, i, layout, built, rva);
        if (part.build !== null && offset - previousEnd < part.align) bytes.fill(part.fill, previousEnd, offset);
        bytes.set(built[i].bytes, offset);
      });
      const used = this.sectionEnd(spec.name, layout, built, rva);
      return { name: spec.name, virtualAddress: rva, virtualSize: Math.max(used + (spec.reserve ?? 0), 1), characteristics: spec.characteristics, bytes: bytes.subarray(0, used) };
    });
    const last = layout.sections[layout.sections.length - 1];
    const sizeOfImage = alignUp(last.rva + last.size, PAGE);
    const parts = new Map(this.parts.map((p, i) => [p.name, { section: p.section, address: layout.addresses[i], size: built[i].bytes.length }]));
    const listing = built.map((b) => b.code?.listing() ?? '').filter((l) => l !== '').join('\n');
    return { base: this.base, sizeOfImage, sections, symbols, parts, listing };
  }

  /** End offset (in the section) of the part before part `index` in the same section, or 0. */
  private previousEnd(section: string, index: number, layout: ReturnType<ImageBuilder['layout']>, built: readonly { bytes: Uint8Array }[], rva: number): number {
    for (let j = index - 1; j >= 0; j--) {
      if (this.parts[j].section !== section) continue;
      return Number(layout.addresses[j] - this.base) - rva + built[j].bytes.length;
    }
    return 0;
  }

  /** Bytes of the section holding parts (its slack starts here). */
  private sectionEnd(section: string, layout: ReturnType<ImageBuilder['layout']>, built: readonly { bytes: Uint8Array }[], rva: number): number {
    let end = 0;
    this.parts.forEach((part, i) => {
      if (part.section === section) end = Math.max(end, Number(layout.addresses[i] - this.base) - rva + built[i].bytes.length);
    });
    return end;
  }
}

function sameSymbols(a: ReadonlyMap<string, bigint>, b: ReadonlyMap<string, bigint>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, address] of a) if (b.get(name) !== address) return false;
  return true;
}
