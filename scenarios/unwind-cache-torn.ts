import {
  defineScenario, dword, eax, ebx, edx, guestAlive, gs, hooksRemoved, imageRestored, Hypercall, notesOf, NtGuest, PerCpu, r8, r12d, r13d, r14, rax, rbx, rcx, REX_W,
  UnwindFunction, withSeg,
  type NtGuest as Guest, type NtGuestBuilder, type RunMemory,
} from '../src/index.ts';

/**
 * A torn update of the RtlpVirtualUnwind cache (hvmi-notes §13.4). Three vCPUs run Windows 7's
 * unwinder over the same code bytes of the hooked page (read-protected: the engine's API hooks
 * are there), so the engine has replaced its byte reads by cache handlers in slack: entries of
 * `MOV al, value; CMP ecx, address; JZ`. Every read that misses the cache faults, and the engine
 * fills a random entry: the value byte, then the address — two immediates of two instructions.
 * HVMI first pauses and looks at every other vCPU's live RIP, and skips the update while one is
 * inside the handler (rtlpvuLiveRipCheck). Without that check, a vCPU that has executed an
 * entry's MOV (the old value) and not yet its CMP compares against the new address, matches,
 * and returns the old byte for it: the unwinder reads code that is not there.
 */

/** Passes of each worker over the code; every pass copies the bytes and counts the REX.W prefixes. */
const PASSES = 4;
/** Bytes per pass: more than the 12 entries of the cache, so it keeps missing. */
const SPAN = 16;
/** Where the scanned code starts, past the detoured API prologues at the top of the hooked page. */
const SCAN_OFFSET = 0x40;
const VCPUS = 3;

/** Where pass `pass` starts: the passes overlap and move, so each address is cached, evicted and read again. */
const passStart = (pass: number): number => SCAN_OFFSET + (pass % 4) * 6;

const copiesOffset = (vcpu: number, pass: number): number => (vcpu * PASSES + pass) * SPAN;
const countsOffset = (vcpu: number, pass: number): number => (vcpu * PASSES + pass) * 4;

/**
 * The worker, on every vCPU: for each pass, RtlpUnwindCopyBytes into this vCPU's row of
 * UnwindCopies and RtlpUnwindCountRex into UnwindCounts.
 */
function addUnwindWorkers(guest: NtGuestBuilder): void {
  guest.data('.data', 'UnwindCopies', VCPUS * PASSES * SPAN, { align: 16 });
  guest.data('.data', 'UnwindCounts', VCPUS * PASSES * 4, { align: 4 });
  guest.code('.text', 'UnwindWorker', (a, symbol) => {
    const pass = a.newLabel('UnwindWorker.pass');
    const hookedPage = symbol('KiHookedPage');
    a.sti();
    a.mov(r13d, withSeg(gs, dword(null, PerCpu.index)));
    a.xor(r12d, r12d);
    a.bind(pass);
    // RCX = the pass's start: the hooked page + SCAN_OFFSET + (pass mod 4) × 6.
    a.mov(ebx, r12d);
    a.and(ebx, 3);
    a.imul(ebx, ebx, 6);
    a.mov(rcx, hookedPage + BigInt(SCAN_OFFSET));
    a.add(rcx, rbx);
    a.mov(r14, rcx);
    // R8 = UnwindCopies + (vcpu × PASSES + pass) × SPAN
    a.mov(eax, r13d);
    a.imul(eax, eax, PASSES);
    a.add(eax, r12d);
    a.mov(ebx, eax); //                              row index, kept for the count
    a.imul(eax, eax, SPAN);
    a.mov(r8, symbol('UnwindCopies'));
    a.add(r8, rax);
    a.mov(edx, SPAN);
    a.call(symbol(UnwindFunction.copyBytes));
    a.mov(rcx, r14);
    a.mov(edx, SPAN);
    a.call(symbol(UnwindFunction.countRex));
    a.mov(rcx, symbol('UnwindCounts'));
    a.mov(dword(rcx, rbx, 4), eax);
    a.add(r12d, 1);
    a.cmp(r12d, PASSES);
    a.jb(pass);
    a.mov(rax, Hypercall.threadDone);
    a.vmcall();
  });
  for (let vcpu = 0; vcpu < VCPUS; vcpu++) guest.thread(vcpu, 'UnwindWorker');
}

/** The code bytes the unwinder reads, as the image was built. */
function codeBytes(guest: Guest, gva: bigint, length: number): Uint8Array {
  const rva = Number(gva - guest.kernel.base);
  const section = guest.kernel.sections.find((s) => rva >= s.virtualAddress && rva + length <= s.virtualAddress + s.bytes.length);
  if (section === undefined) throw new Error(`0x${gva.toString(16)} is not in an image section`);
  return section.bytes.subarray(rva - section.virtualAddress, rva - section.virtualAddress + length);
}

const hex = (value: number | bigint): string => `0x${value.toString(16)}`;

/** The cache handlers' code, as the engine announced it (cloak notes of the RtlpVirtualUnwind detour handlers). */
const CACHE_HANDLERS = 'cache handlers';

function insideCacheHandler(rip: bigint, memory: RunMemory): boolean {
  const regions = (memory.get(CACHE_HANDLERS) as { start: bigint; end: bigint }[] | undefined) ?? [];
  return regions.some((region) => rip >= region.start && rip < region.end);
}

export const unwindCacheTorn = defineScenario({
  name: 'unwind-cache-torn',
  title: 'RtlpVirtualUnwind cache updated under a vCPU between an entry’s MOV and CMP',
  description:
    'Three vCPUs scan the same code bytes of the read-protected hooked page through the unwinder, whose byte reads the ' +
    'engine replaced by cache handlers in slack. Each miss fills a random entry: the value, then the address. With ' +
    'the live-RIP check the update waits until no other vCPU is inside the handler; without it, a vCPU between the ' +
    'MOV and the CMP of that entry returns the old byte for the new address.',
  vcpus: VCPUS,
  bugs: [{ name: 'torn unwind cache entry', fixesOff: ['rtlpvuLiveRipCheck'], caughtBy: 'unwind-reads-exact' }],
  bounds: { stepsMax: 400_000, choicesMax: 60_000, slice: 200, pctEvents: 600, timerSteps: 4000, timerMs: 5, clockEverySteps: 1500, freeWallMs: 20_000 },
  setup: () => new NtGuest({ vcpus: VCPUS, iterations: 0, extensions: [addUnwindWorkers] }),
  oracles: [
    {
      name: 'unwind-reads-exact',
      phase: 'end',
      description: 'every byte the unwinder read, and every count of REX.W prefixes, is what the code holds',
      check(world) {
        const { guest } = world;
        const copies = guest.read(guest.symbol('UnwindCopies'), VCPUS * PASSES * SPAN);
        for (let vcpu = 0; vcpu < VCPUS; vcpu++) {
          if (!guest.finished.has(vcpu)) continue;
          for (let pass = 0; pass < PASSES; pass++) {
            const from = guest.symbol('KiHookedPage') + BigInt(passStart(pass));
            const code = codeBytes(guest, from, SPAN);
            const row = copiesOffset(vcpu, pass);
            for (let k = 0; k < SPAN; k++) {
              if (copies[row + k] !== code[k]) {
                const gva = from + BigInt(k);
                // The entries filled for this address: the torn one paired another entry's old byte with it.
                const fills = notesOf(world.events, 'rtlpvu-update').filter((n) => n.event.detail.address === gva && n.event.detail.tag === 1);
                const story = fills.map((n) => `slot ${n.event.detail.slot} by vCPU ${n.event.detail.vcpu} at clock ${n.clock}`).join(', ');
                return (
                  `vCPU ${vcpu}, pass ${pass}: the unwinder read ${hex(copies[row + k])} at ${hex(gva)}, the code there is ${hex(code[k])}` +
                  ` — the cache entry for ${hex(gva)} was filled ${fills.length} time(s) (${story}), while a vCPU sat between that entry's MOV and CMP`
                );
              }
            }
            const count = guest.read32(guest.symbol('UnwindCounts') + BigInt(countsOffset(vcpu, pass)));
            const want = code.filter((b) => b === REX_W).length;
            if (count !== want) return `vCPU ${vcpu}, pass ${pass}: the unwinder counted ${count} REX.W prefixes in ${hex(from)}+${SPAN}, the code has ${want}`;
          }
        }
        return null;
      },
    },
    {
      name: 'workers-finished',
      phase: 'end',
      description: 'every unwinder thread finished its passes',
      check(world) {
        const missing = Array.from({ length: VCPUS }, (_, vcpu) => vcpu).filter((vcpu) => !world.guest.finished.has(vcpu));
        return missing.length === 0 ? null : `the unwinder on vCPU ${missing.join(', ')} did not finish`;
      },
    },
    guestAlive(),
    imageRestored(),
    hooksRemoved(),
  ],
  orderings: [
    {
      name: 'update-vs-peer-in-handler',
      description: "A: the engine fills a cache entry (rtlpvu-update); B: another vCPU stopped inside the cache handlers' code, until it next stops. A during B is the window where an entry can tear under it",
      learn(event, memory) {
        if (event.kind !== 'note' || event.what !== 'cloak' || !String(event.detail.owner).startsWith('detour handler RtlpVirtualUnwind')) return;
        const start = BigInt(event.detail.gva as bigint);
        const regions = (memory.get(CACHE_HANDLERS) as { start: bigint; end: bigint }[] | undefined) ?? [];
        memory.set(CACHE_HANDLERS, [...regions, { start, end: start + BigInt(event.detail.size as number) }]);
      },
      a: { begins: (event) => (event.kind === 'note' && event.what === 'rtlpvu-update' ? { key: 'cache', vcpu: Number(event.detail.vcpu) } : null) },
      b: {
        begins: (event, memory) => (event.kind === 'stop' && event.stop !== 'exit' && insideCacheHandler(event.rip, memory) ? { key: 'cache', vcpu: event.vcpu } : null),
        ends: (event, inside) => event.kind === 'stop' && event.vcpu === inside.vcpu,
      },
    },
  ],
  windows: [
    {
      name: 'cache-filled',
      description: 'a read that missed the cache filled an entry',
      reached: (world) => notesOf(world.events, 'rtlpvu-update').length > 0,
    },
    {
      name: 'update-skipped-peer-inside',
      description: 'an update was skipped because another vCPU was inside the handler',
      reached: (world) => notesOf(world.events, 'rtlpvu-skip').length > 0,
    },
  ],
});
