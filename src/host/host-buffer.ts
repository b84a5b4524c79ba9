import { Control } from '../machine/layout.ts';

/**
 * Shared bytes a vCPU host uses to report why it failed (a worker cannot be asked by message
 * while the hypervisor thread is blocked waiting for it). One fixed slot per vCPU.
 */
export const HOST_ERROR_BYTES = 4096;

export function createHostBuffer(vcpus: number): SharedArrayBuffer {
  return new SharedArrayBuffer(vcpus * HOST_ERROR_BYTES);
}

/** Writes the error text of vCPU `vcpu` (truncated to the slot) and its length. */
export function writeHostError(buffer: SharedArrayBuffer, words: Int32Array, vcpu: number, text: string): void {
  const slot = new Uint8Array(buffer, vcpu * HOST_ERROR_BYTES, HOST_ERROR_BYTES);
  const encoded = new TextEncoder().encode(text);
  const length = Math.min(encoded.length, HOST_ERROR_BYTES);
  slot.set(encoded.subarray(0, length));
  Atomics.store(words, Control.errorLength, length);
}

/** Reads the error text of vCPU `vcpu`, or '' if none was written. */
export function readHostError(buffer: SharedArrayBuffer, words: Int32Array, vcpu: number): string {
  const length = Atomics.load(words, Control.errorLength);
  if (length <= 0) return '';
  const copy = new Uint8Array(buffer, vcpu * HOST_ERROR_BYTES, length).slice();
  return new TextDecoder().decode(copy);
}
