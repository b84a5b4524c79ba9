import type { PagingFormat } from '../machine/page-tables.ts';
import type { EngineDecoder } from './decoder.ts';
import type { Glue, NoteDetail, VcpuAccess } from './glue.ts';
import { tryReadGuestVirtual } from './kernvm.ts';
import type { CloakRegion, MemoryCloak } from './memcloak.ts';
import { jumpPatch } from './memtable-handler.ts';
import type { SlackAllocator } from './slack.ts';
import { IntStatus, IntroError } from './status.ts';

/**
 * API hooks by detour (detours.c, reduced): the first instructions of a kernel function are
 * replaced by a JMP to a handler in slack that raises INT3 to the engine, runs the relocated
 * instructions and jumps back. Both patches are cloaked, so the page holding the API becomes
 * read- and write-protected in EPT — which is what puts compiler switch tables sharing that page
 * under a storm of read violations (the reason mem-tables exist).
 */

/**
 * The handler a detour gets (HVMI's DETOUR_HANDLER): its code up to the relocated instructions,
 * which follow, then a JMP back past the patch.
 */
export interface HandlerTemplate {
  /** Handler bytes before the relocated instructions (RelocatedCodeOffset = its length). */
  readonly code: Uint8Array;
  /** Offset of the INT3 that tells the engine of a call, or null: the handler never exits (HypercallOffset 0xFF). */
  readonly hypercallOffset: number | null;
}

/** An API hook's handler: INT3 (the engine sees the call), then the relocated prologue. */
export const API_HANDLER: HandlerTemplate = { code: Uint8Array.of(0xcc), hypercallOffset: 0 };

export interface Detour {
  readonly name: string;
  /** A kind the owner gives it (HVMI's detour tag), e.g. 'api' or 'RtlpVirtualUnwind5'. */
  readonly tag: string;
  readonly api: bigint;
  /** The relocated original instructions. */
  readonly prologue: Uint8Array;
  readonly handler: bigint;
  readonly handlerSize: number;
  /** Where the relocated instructions start in the handler. */
  readonly relocatedOffset: number;
  readonly hypercallOffset: number | null;
  /** Calls the engine saw (INT3 exits at the handler). */
  hits: number;
  /** Called on every hit, in the order they were attached (a scenario's own handling of the call). */
  readonly callbacks: DetourCallback[];
  apiCloak: CloakRegion | null;
  handlerCloak: CloakRegion | null;
}

/** A call of a detoured API, as a callback sees it: the calling vCPU (stopped at the handler's INT3) and the detour. */
export interface DetourCall {
  readonly vcpuId: number;
  readonly exitTicket: number;
  readonly self: VcpuAccess;
  readonly detour: Detour;
}

export type DetourCallback = (call: DetourCall) => void;

export interface DetoursContext {
  readonly glue: Glue;
  readonly decoder: EngineDecoder;
  readonly slack: SlackAllocator;
  readonly cloak: MemoryCloak;
  readonly systemCr3: number;
  readonly paging: PagingFormat;
  readonly note: (what: string, detail: NoteDetail) => void;
}

const JMP_LENGTH = 5;

export class Detours {
  private readonly list: Detour[] = [];

  constructor(private readonly ctx: DetoursContext) {}

  detours(): readonly Detour[] {
    return this.list;
  }

  /**
   * Hooks `name` at `api` with a handler made from `template` (an API hook by default). Throws
   * IntroError when the prologue cannot be relocated.
   */
  install(name: string, api: bigint, template: HandlerTemplate = API_HANDLER, tag = 'api'): Detour {
    const { decoder, slack, cloak, glue, systemCr3 } = this.ctx;
    const bytes = tryReadGuestVirtual(glue.memory, systemCr3, api, 32, this.ctx.paging);
    if (bytes === null) throw new IntroError(IntStatus.pageNotPresent, `detour ${name}: 0x${api.toString(16)} is not mapped`);
    let length = 0;
    while (length < JMP_LENGTH) {
      const ins = decoder.decode(bytes.subarray(length), api + BigInt(length));
      if (ins === null) throw new IntroError(IntStatus.notSupported, `detour ${name}: undecodable byte at +${length}`);
      // Only position-independent instructions can run from the handler.
      if (ins.branchTarget !== null || ins.accesses.some((a) => a.base === null && a.index === null) || ins.isInt3 || ins.intVector >= 0) {
        throw new IntroError(IntStatus.notSupported, `detour ${name}: '${ins.text}' at +${length} cannot be relocated`);
      }
      length += ins.length;
    }
    const prologue = bytes.slice(0, length);
    const relocatedOffset = template.code.length;
    const handlerSize = relocatedOffset + length + JMP_LENGTH;
    const allocation = slack.alloc(handlerSize, `detour ${name}`);
    if (allocation.gva === null) throw new IntroError(allocation.status, `detour ${name}: ${allocation.detail}`);
    const handler = allocation.gva;
    const code = new Uint8Array(handlerSize);
    code.set(template.code);
    code.set(prologue, relocatedOffset);
    code.set(jumpPatch(handler + BigInt(relocatedOffset + length), api + BigInt(length), JMP_LENGTH), relocatedOffset + length);
    const detour: Detour = {
      name, tag, api, prologue, handler, handlerSize, relocatedOffset, hypercallOffset: template.hypercallOffset,
      hits: 0, callbacks: [], apiCloak: null, handlerCloak: null,
    };
    glue.pauseVcpus();
    try {
      detour.handlerCloak = cloak.cloak(handler, systemCr3, new Uint8Array(handlerSize), code, `detour handler ${name}`);
      detour.apiCloak = cloak.cloak(api, systemCr3, prologue, jumpPatch(api, handler, length), `detour ${name}`);
    } catch (error) {
      // Nothing may stay behind for a detour that does not exist: the handler's bytes and slack.
      if (detour.handlerCloak !== null) cloak.uncloak(detour.handlerCloak);
      slack.free(handler);
      throw error;
    } finally {
      glue.resumeVcpus();
    }
    this.list.push(detour);
    this.ctx.note('detour', { name, api, handler });
    return detour;
  }

  /** The live detour of the API at `api`, if any. */
  at(api: bigint): Detour | null {
    return this.list.find((d) => d.api === api && d.apiCloak !== null) ?? null;
  }

  /** The detour whose INT3 is at `rip` (IntDetGetByAddress), counting the call. */
  hit(rip: bigint): Detour | null {
    const detour = this.list.find((d) => d.hypercallOffset !== null && d.handler + BigInt(d.hypercallOffset) === rip && d.handlerCloak !== null);
    if (detour !== undefined) detour.hits++;
    return detour ?? null;
  }

  /** The live detour whose handler holds `rip` (IntDetGetAddrAndTag). */
  handlerContaining(rip: bigint): Detour | null {
    return this.list.find((d) => d.handlerCloak !== null && rip >= d.handler && rip < d.handler + BigInt(d.handlerSize)) ?? null;
  }

  /**
   * IntDetDisableAllHooks: the prologues come back and each handler's INT3 becomes a NOP of the
   * same size, so a thread already inside a handler runs on through it.
   */
  disable(): void {
    for (const detour of this.list) {
      if (detour.apiCloak !== null) {
        this.ctx.cloak.uncloak(detour.apiCloak);
        detour.apiCloak = null;
      }
      if (detour.handlerCloak !== null && detour.hypercallOffset !== null) this.ctx.cloak.modifyPatched(detour.handlerCloak, detour.hypercallOffset, Uint8Array.of(0x90));
    }
  }

  /** IntDetUninit: handlers go (their slack zeroed by the uncloak, then freed). */
  uninit(): void {
    for (const detour of this.list) {
      if (detour.apiCloak !== null) this.ctx.cloak.uncloak(detour.apiCloak);
      if (detour.handlerCloak !== null) this.ctx.cloak.uncloak(detour.handlerCloak);
      detour.apiCloak = null;
      detour.handlerCloak = null;
      this.ctx.slack.free(detour.handler);
    }
    this.list.length = 0;
  }
}
