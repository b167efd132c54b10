// Random access to a file's bytes for header parsing: the file's bytes in memory, or (stream.ts) a
// file read a block at a time. The header and container walks in wav.ts and decode.ts read through
// this, so the whole-file and the streaming readers share one implementation of every rule.

export interface ByteView {
  /** Bytes in the file. */
  readonly length: number;
  /** The byte at `i`; undefined outside [0, length), as a Uint8Array index gives. */
  byte(i: number): number | undefined;
}

/** A ByteView of bytes held in memory. */
export function memoryBytes(b: Uint8Array): ByteView {
  return { length: b.length, byte: (i) => b[i] };
}

/** The bytes [from, to) of a view (clipped to its length), copied. */
export function viewSlice(v: ByteView, from: number, to: number): Uint8Array {
  const end = Math.min(to, v.length);
  const out = new Uint8Array(Math.max(0, end - from));
  for (let i = 0; i < out.length; i++) out[i] = v.byte(from + i)!;
  return out;
}

/** Unsigned little-endian 16-bit integer at `at` (the bytes must lie in the view). */
export function u16le(v: ByteView, at: number): number {
  return v.byte(at)! | (v.byte(at + 1)! << 8);
}

/** Unsigned little-endian 32-bit integer at `at` (the bytes must lie in the view). */
export function u32le(v: ByteView, at: number): number {
  return (v.byte(at)! | (v.byte(at + 1)! << 8) | (v.byte(at + 2)! << 16) | (v.byte(at + 3)! << 24)) >>> 0;
}

/** Signed little-endian 64-bit integer at `at`, as a Number (DataView.getBigInt64's value). */
export function i64le(v: ByteView, at: number): number {
  let x = 0n;
  for (let i = 7; i >= 0; i--) x = (x << 8n) | BigInt(v.byte(at + i)!);
  return Number(BigInt.asIntN(64, x));
}
