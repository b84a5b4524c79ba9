import type { PagingFormat } from '../machine/page-tables.ts';
import type { Detour, Detours, HandlerTemplate } from './detours.ts';
import type { ExitEvent, Glue, NoteDetail } from './glue.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import type { MemoryCloak } from './memcloak.ts';
import { IntStatus, IntroError, type IntStatusCode } from './status.ts';
import type { GprName } from '../machine/vcpu-state.ts';

/**
 * The RtlpVirtualUnwind read cache (rtlpvirtualunwind.c, handlers from winhkhnd.c; hvmi-notes
 * §3). Windows 7's unwinder scans code bytes one at a time, and the code pages the engine's API
 * hooks sit on are read-protected: every byte it reads would be an EPT violation. So at init the
 * engine detours those reads into slack handlers that are small caches written as guest code —
 * entries of immediates compared against the address — and fills an entry on every read
 * violation that comes from one. The update writes two immediates of two different instructions;
 * a vCPU between them would pair an old value with a new address, so the update is skipped while
 * any other vCPU's live RIP is inside the handler (the handler runs with interrupts off, so no
 * saved RIP can be there).
 */

/** How the handler of one unwind site caches (HVMI's detTagRtlVirtualUnwind1..8). */
export interface UnwindSiteKind {
  readonly tag: number;
  /** 'mov': 12 × {MOV r8, imm8; CMP r32, imm32; JZ}; 'cmp': 8 × {CMP r32, imm32; JNZ; MOV al, imm8; CMP al, imm8; STI; POP rax; JMP}. */
  readonly variant: 'mov' | 'cmp';
  /** The site's first instruction, the one the cache stands in for. */
  readonly instruction: string;
  /** Its bytes (the engine checks the site holds exactly these, as HVMI's pattern does). */
  readonly bytes: readonly number[];
  /** The register holding the address (its low 32 bits are compared) and the displacement of the read. */
  readonly base: Extract<GprName, 'rcx' | 'rbp'>;
  readonly displacement: number;
  /** mov variant: MOV's opcode (B0 al, B2 dl). cmp variant: the immediate the original compares with. */
  readonly operand: number;
}

const MODRM_CMP: Record<UnwindSiteKind['base'], number> = { rcx: 0xf9, rbp: 0xfd };

export const UNWIND_SITE_KINDS: readonly UnwindSiteKind[] = [
  { tag: 1, variant: 'mov', instruction: 'mov al, [rcx]', bytes: [0x8a, 0x01], base: 'rcx', displacement: 0, operand: 0xb0 },
  { tag: 2, variant: 'mov', instruction: 'mov al, [rcx+1]', bytes: [0x8a, 0x41, 0x01], base: 'rcx', displacement: 1, operand: 0xb0 },
  { tag: 3, variant: 'mov', instruction: 'mov dl, [rcx]', bytes: [0x8a, 0x11], base: 'rcx', displacement: 0, operand: 0xb2 },
  { tag: 4, variant: 'mov', instruction: 'mov al, [rbp+1]', bytes: [0x8a, 0x45, 0x01], base: 'rbp', displacement: 1, operand: 0xb0 },
  { tag: 5, variant: 'cmp', instruction: 'cmp byte [rbp+0], 48h', bytes: [0x80, 0x7d, 0x00, 0x48], base: 'rbp', displacement: 0, operand: 0x48 },
  { tag: 6, variant: 'mov', instruction: 'mov al, [rbp+0]', bytes: [0x8a, 0x45, 0x00], base: 'rbp', displacement: 0, operand: 0xb0 },
  { tag: 7, variant: 'cmp', instruction: 'cmp byte [rbp+1], 8Dh', bytes: [0x80, 0x7d, 0x01, 0x8d], base: 'rbp', displacement: 1, operand: 0x8d },
  { tag: 8, variant: 'cmp', instruction: 'cmp byte [rcx+1], 0FFh', bytes: [0x80, 0x79, 0x01, 0xff], base: 'rcx', displacement: 1, operand: 0xff },
];

/** Where a variant's entries are and where an entry's two immediates sit. */
export const UNWIND_LAYOUT = {
  mov: { first: 1, entries: 12, stride: 10, valueAt: 1, addressAt: 4, initial: 0x00, relocated: 0x7c },
  cmp: { first: 2, entries: 8, stride: 16, valueAt: 9, addressAt: 2, initial: 0xbd, relocated: 0x84 },
} as const;

/** The handler code before the relocated instructions, byte for byte as HVMI's. */
export function unwindHandlerTemplate(kind: UnwindSiteKind): HandlerTemplate {
  const layout = UNWIND_LAYOUT[kind.variant];
  const code: number[] = kind.variant === 'mov' ? [0xfa] : [0x50, 0xfa]; // CLI | PUSH rax; CLI
  const fill = [layout.initial, layout.initial, layout.initial, layout.initial];
  for (let e = 0; e < layout.entries; e++) {
    const entry = layout.first + e * layout.stride;
    if (kind.variant === 'mov') {
      // MOV r8, imm8; CMP r32, imm32; JZ to the STI at the end of the entries.
      code.push(kind.operand, layout.initial, 0x81, MODRM_CMP[kind.base], ...fill, 0x74, layout.first + layout.entries * layout.stride - (entry + layout.stride));
    } else {
      // CMP r32, imm32; JNZ next; MOV al, imm8; CMP al, imm8 (the original's flags); STI; POP rax; JMP past the relocated CMP.
      code.push(0x81, MODRM_CMP[kind.base], ...fill, 0x75, 0x08, 0xb0, layout.initial, 0x3c, kind.operand, 0xfb, 0x58, 0xeb, layout.relocated + kind.bytes.length - (entry + layout.stride));
    }
  }
  // mov: STI; JZ over the relocated first instruction (ZF from the matching CMP). cmp: STI; POP rax.
  if (kind.variant === 'mov') code.push(0xfb, 0x74, kind.bytes.length);
  else code.push(0xfb, 0x58);
  if (code.length !== layout.relocated) throw new Error(`unwind handler ${kind.tag}: ${code.length} bytes before the relocated code, HVMI has ${layout.relocated}`);
  return { code: Uint8Array.from(code), hypercallOffset: null };
}

/** An unwind site the guest description names. */
export interface UnwindSite {
  readonly tag: number;
  readonly gva: bigint;
}

export interface UnwindCacheContext {
  readonly glue: Glue;
  readonly detours: Detours;
  readonly cloak: MemoryCloak;
  readonly kernel: { readonly base: bigint; readonly size: number; readonly systemCr3: number; readonly paging: PagingFormat };
  /** The rtlpvuLiveRipCheck fix: skip the update while another vCPU is inside the handler. */
  readonly liveRipCheck: () => boolean;
  readonly note: (what: string, detail: NoteDetail) => void;
}

export class UnwindCache {
  private readonly handlers = new Map<Detour, UnwindSiteKind>();

  constructor(private readonly ctx: UnwindCacheContext) {}

  /** The detours of the unwind sites, with their kinds. */
  sites(): readonly { readonly detour: Detour; readonly kind: UnwindSiteKind }[] {
    return [...this.handlers].map(([detour, kind]) => ({ detour, kind }));
  }

  /** Detours every site at init; a site whose bytes are not its tag's instruction is refused. */
  install(sites: readonly UnwindSite[]): void {
    for (const site of sites) {
      const kind = UNWIND_SITE_KINDS.find((k) => k.tag === site.tag);
      if (kind === undefined) throw new IntroError(IntStatus.notSupported, `unwind site at 0x${site.gva.toString(16)}: no handler for tag ${site.tag} (1..8)`);
      const bytes = tryReadGuestVirtual(this.ctx.glue.memory, this.ctx.kernel.systemCr3, site.gva, kind.bytes.length, this.ctx.kernel.paging);
      if (bytes === null || !kind.bytes.every((b, k) => bytes[k] === b)) {
        throw new IntroError(IntStatus.notSupported, `unwind site ${site.tag} at 0x${site.gva.toString(16)} is not '${kind.instruction}'`);
      }
      const detour = this.ctx.detours.install(`RtlpVirtualUnwind${kind.tag}`, site.gva, unwindHandlerTemplate(kind), `RtlpVirtualUnwind${kind.tag}`);
      this.handlers.set(detour, kind);
    }
  }

  /**
   * IntRtlpVirtualUnwindCheckAccess: a read violation with no callback, from a cache handler's
   * relocated instruction, fills a random entry with the byte read and the address — unless
   * another vCPU is inside the handler.
   */
  checkAccess(event: ExitEvent, gla: bigint): IntStatusCode {
    const { glue, kernel } = this.ctx;
    const rip = event.self.rip();
    const end = kernel.base + BigInt(kernel.size);
    if (rip < kernel.base || rip >= end || gla < kernel.base || gla >= end) return IntStatus.notNeededHint;
    const detour = this.ctx.detours.handlerContaining(rip);
    const kind = detour === null ? undefined : this.handlers.get(detour);
    if (detour === null || kind === undefined || detour.handlerCloak === null) return IntStatus.notFound;
    const layout = UNWIND_LAYOUT[kind.variant];
    const slot = glue.random.below(layout.entries);
    const address = event.self.gpr(kind.base);
    const entry = layout.first + slot * layout.stride;

    glue.pauseVcpus();
    try {
      if (this.ctx.liveRipCheck()) {
        for (let vcpu = 0; vcpu < glue.vcpuCount; vcpu++) {
          if (vcpu === event.vcpuId) continue;
          const peer = glue.vcpu(vcpu).rip();
          if (peer >= detour.handler && peer < detour.handler + BigInt(detour.handlerSize)) {
            this.ctx.note('rtlpvu-skip', { vcpu: event.vcpuId, peer: vcpu, peerRip: peer, tag: kind.tag });
            return IntStatus.notNeededHint;
          }
        }
      }
      const read = tryReadGuestVirtual(glue.memory, kernel.systemCr3, BigInt.asUintN(64, address + BigInt(kind.displacement)), 1, kernel.paging);
      if (read === null) return IntStatus.pageNotPresent;
      const low = new Uint8Array(4);
      new DataView(low.buffer).setUint32(0, Number(address & 0xffffffffn), true);
      // Two writes to two instructions, as HVMI makes them (no icache flush: nothing there was
      // decoded by the engine). Through the cloak, so its copy of the handler stays what memory holds.
      this.ctx.cloak.modifyPatched(detour.handlerCloak, entry + layout.valueAt, read);
      this.ctx.cloak.modifyPatched(detour.handlerCloak, entry + layout.addressAt, low);
      this.ctx.note('rtlpvu-update', { vcpu: event.vcpuId, tag: kind.tag, slot, address, value: read[0] });
      return IntStatus.success;
    } finally {
      glue.resumeVcpus();
    }
  }
}
