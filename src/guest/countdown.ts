import { ecx, type Assembler, type Gpr32 } from '../asm/index.ts';

/**
 * A busy wait of `count` iterations (two steps each: SUB, JNE) in `counter` — how guest code
 * here spends a known number of steps between two actions, so a window has a size a scheduler
 * can land in. `name` labels the loop (unique per call site).
 */
export function emitCountdown(a: Assembler, name: string, count: number, counter: Gpr32 = ecx): void {
  const loop = a.newLabel(name);
  a.mov(counter, count);
  a.bind(loop);
  a.sub(counter, 1);
  a.jne(loop);
}
