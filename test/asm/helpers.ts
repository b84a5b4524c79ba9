/** Test helpers: decode bytes back with iced and compare against expectations. */
import iced from 'iced-x86';
import { Assembler, hexBytes } from '../../src/asm/index.ts';

export interface Decoded {
  readonly ip: bigint;
  readonly code: string;
  readonly length: number;
  readonly nearBranchTarget: bigint | null;
  readonly ipRelAddress: bigint | null;
}

/** Decodes every instruction in `bytes` (64-bit) with iced. */
export function decodeAll(bytes: Uint8Array, ip: bigint): Decoded[] {
  const d = new iced.Decoder(64, bytes, iced.DecoderOptions.None);
  d.ip = ip;
  const out: Decoded[] = [];
  try {
    while (d.canDecode) {
      const i = d.decode();
      try {
        const isBranch = i.flowControl === iced.FlowControl.UnconditionalBranch || i.flowControl === iced.FlowControl.ConditionalBranch || i.flowControl === iced.FlowControl.Call;
        out.push({
          ip: i.ip,
          code: iced.Code[i.code] as string,
          length: i.length,
          nearBranchTarget: isBranch && i.op0Kind === iced.OpKind.NearBranch64 ? i.nearBranchTarget : null,
          ipRelAddress: i.isIpRelMemoryOperand ? i.ipRelMemoryAddress : null,
        });
      } finally {
        i.free();
      }
    }
  } finally {
    d.free();
  }
  return out;
}

/** Assembles `fn`'s output at `base` and returns the hex string. */
export function asmHex(fn: (a: Assembler) => void, base = 0x1000n): string {
  const a = new Assembler(base);
  fn(a);
  return hexBytes(a.assemble().bytes);
}

/** Assembles and returns the iced Code names of the decoded instructions. */
export function asmCodes(fn: (a: Assembler) => void, base = 0x1000n): string[] {
  const a = new Assembler(base);
  fn(a);
  const out = a.assemble();
  return decodeAll(out.bytes, base).map((d) => d.code);
}
