import * as fs from 'node:fs';
import * as path from 'node:path';
import { getFloat16, isFloat16Array } from '@petamoriken/float16';
import { ArdError } from '../util/errors.js';

// safetensors layout: u64 LE header length N, N bytes of JSON header, then the data section.
// Tensors are read one at a time with positioned reads, so a multi-GB checkpoint is never held
// in JS memory as a whole.

export type Dtype =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<Dtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export function isDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(SAFETENSORS_DTYPE_BYTES, s);
}

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute offset of the tensor's first byte in `file`. */
  byteOffset: number;
  byteLength: number;
  /** The .safetensors file that holds the tensor. */
  file: string;
}

/** What both a single file and a (sharded) checkpoint offer. */
export interface TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  /** The tensor's raw bytes, in a fresh buffer at offset 0 (so any typed view of it is aligned). */
  read(name: string): Uint8Array;
  /**
   * Bytes [begin, end) of the tensor's data (relative to its first byte), in a fresh buffer: lets a
   * loader stream a large tensor in bounded chunks instead of holding it whole.
   */
  readRange(name: string, begin: number, end: number): Uint8Array;
  /** The tensor converted to f32 (see toFloat32). */
  readFloat32(name: string): Float32Array;
  close(): void;
}

export interface SafetensorsFile extends TensorSource {
  readonly file: string;
  /** Byte length of the JSON header (without the 8-byte length prefix). */
  readonly headerLength: number;
}

export interface Checkpoint extends TensorSource {
  /** What was opened (the directory or file given to openCheckpoint). */
  readonly source: string;
  /** Every .safetensors file, in the order opened. */
  readonly files: string[];
}

// The reference implementation refuses headers over 100 MB; so do we (a corrupt length field
// would otherwise make us allocate gigabytes).
const MAX_HEADER_BYTES = 100_000_000;
// readSync/writeSync take at most 2 GiB - 1 per call.
const IO_CHUNK = 1 << 30;

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function readFully(fd: number, dest: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < dest.byteLength) {
    const want = Math.min(IO_CHUNK, dest.byteLength - done);
    const got = fs.readSync(fd, dest, done, want, position + done);
    if (got === 0) {
      throw new ArdError(
        `${file}: truncated while reading ${what} (got ${done} of ${dest.byteLength} bytes at offset ${position})`,
      );
    }
    done += got;
  }
}

export function openSafetensors(file: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e: any) {
    throw new ArdError(`${file}: cannot open (${e.code ?? e.message})`);
  }
  try {
    return parseOpen(file, fd);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function parseOpen(file: string, fd: number): SafetensorsFile {
  const size = fs.fstatSync(fd).size;
  if (size < 8) throw new ArdError(`${file}: too short for a safetensors file (${size} bytes)`);
  const lenBuf = new Uint8Array(8);
  readFully(fd, lenBuf, 0, file, 'header length');
  const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (n64 > BigInt(size - 8)) {
    throw new ArdError(`${file}: header length ${n64} exceeds the file size (${size} bytes); not a safetensors file or truncated`);
  }
  const n = Number(n64);
  if (n > MAX_HEADER_BYTES) throw new ArdError(`${file}: header length ${n} is larger than the 100 MB limit`);
  if (n < 2) throw new ArdError(`${file}: header length ${n} is too small for a JSON header`);
  const headerBytes = new Uint8Array(n);
  readFully(fd, headerBytes, 8, file, 'header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new ArdError(`${file}: header is not valid UTF-8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e: any) {
    throw new ArdError(`${file}: header is not valid JSON (${e.message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new ArdError(`${file}: header is not a JSON object`);
  }

  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        throw new ArdError(`${file}: __metadata__ is not an object`);
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new ArdError(`${file}: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${file}: tensor ${JSON.stringify(name)}`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new ArdError(`${where}: header entry is not an object`);
    }
    const { dtype, shape, data_offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) throw new ArdError(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new ArdError(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
      !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new ArdError(`${where}: data_offsets ${JSON.stringify(data_offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = data_offsets as [number, number];
    if (end < begin) throw new ArdError(`${where}: data_offsets [${begin}, ${end}] end before they begin`);
    const expected = numel(shape) * SAFETENSORS_DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new ArdError(
        `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype} ${fmtShape(shape)} needs ${expected}`,
      );
    }
    if (end > dataSize) {
      throw new ArdError(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes); file truncated?`,
      );
    }
    spans.push({ name, begin, end });
    tensors.set(name, { name, dtype, shape: shape.slice(), byteOffset: dataStart + begin, byteLength: end - begin, file });
  }

  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const p = spans[i - 1]!;
    const c = spans[i]!;
    // Empty tensors occupy no bytes and may share an offset with anything.
    if (c.begin < p.end && c.end > c.begin) {
      throw new ArdError(
        `${file}: tensors ${JSON.stringify(p.name)} [${p.begin}, ${p.end}] and ${JSON.stringify(c.name)} [${c.begin}, ${c.end}] overlap`,
      );
    }
  }

  let open = true;
  const info = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new ArdError(`${file}: no tensor named ${JSON.stringify(name)}`);
    return t;
  };
  const readRange = (name: string, begin: number, end: number): Uint8Array => {
    if (!open) throw new ArdError(`${file}: read after close`);
    const t = info(name);
    if (!(Number.isSafeInteger(begin) && Number.isSafeInteger(end) && 0 <= begin && begin <= end && end <= t.byteLength)) {
      throw new ArdError(`${file}: bytes [${begin}, ${end}) are outside tensor ${JSON.stringify(name)} (${t.byteLength} bytes)`);
    }
    const out = new Uint8Array(end - begin);
    readFully(fd, out, t.byteOffset + begin, file, `tensor ${JSON.stringify(name)}`);
    return out;
  };
  const read = (name: string): Uint8Array => readRange(name, 0, info(name).byteLength);
  return {
    file,
    headerLength: n,
    tensors,
    metadata,
    read,
    readRange,
    readFloat32: (name) => toFloat32(read(name), info(name).dtype),
    close() {
      if (open) {
        open = false;
        fs.closeSync(fd);
      }
    },
  };
}

/**
 * Opens a Hugging Face checkpoint: `dir/model.safetensors`, or the shards listed in
 * `dir/model.safetensors.index.json` (its `weight_map` maps tensor name → shard file). A path to a
 * single .safetensors file also works.
 */
export function openCheckpoint(dirOrFile: string): Checkpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(dirOrFile);
  } catch (e: any) {
    throw new ArdError(`${dirOrFile}: cannot open checkpoint (${e.code ?? e.message})`);
  }
  if (st.isFile()) {
    if (dirOrFile.endsWith('.index.json')) return openSharded(dirOrFile, dirOrFile);
    return single(dirOrFile, openSafetensors(dirOrFile));
  }
  const one = path.join(dirOrFile, 'model.safetensors');
  const index = path.join(dirOrFile, 'model.safetensors.index.json');
  if (fs.existsSync(one)) return single(dirOrFile, openSafetensors(one));
  if (fs.existsSync(index)) return openSharded(dirOrFile, index);
  throw new ArdError(`${dirOrFile}: neither model.safetensors nor model.safetensors.index.json found`);
}

function single(source: string, f: SafetensorsFile): Checkpoint {
  return {
    source,
    files: [f.file],
    tensors: f.tensors,
    metadata: f.metadata,
    read: f.read,
    readRange: f.readRange,
    readFloat32: f.readFloat32,
    close: f.close,
  };
}

function openSharded(source: string, indexFile: string): Checkpoint {
  let index: any;
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e: any) {
    throw new ArdError(`${indexFile}: cannot read shard index (${e.code ?? e.message})`);
  }
  const weightMap = index?.weight_map;
  if (weightMap === null || typeof weightMap !== 'object' || Array.isArray(weightMap)) {
    throw new ArdError(`${indexFile}: weight_map is missing or not an object`);
  }
  const dir = path.dirname(indexFile);
  const shardNames: string[] = [];
  for (const [name, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '') {
      throw new ArdError(`${indexFile}: weight_map[${JSON.stringify(name)}] is not a file name`);
    }
    if (!shardNames.includes(shard)) shardNames.push(shard);
  }
  if (shardNames.length === 0) throw new ArdError(`${indexFile}: weight_map is empty`);

  const shards = new Map<string, SafetensorsFile>();
  const closeAll = () => {
    for (const s of shards.values()) s.close();
  };
  try {
    for (const s of shardNames) shards.set(s, openSafetensors(path.join(dir, s)));
    const tensors = new Map<string, TensorInfo>();
    const owner = new Map<string, SafetensorsFile>();
    for (const [name, shard] of Object.entries(weightMap as Record<string, string>)) {
      const f = shards.get(shard)!;
      const t = f.tensors.get(name);
      if (!t) throw new ArdError(`${indexFile}: tensor ${JSON.stringify(name)} is mapped to ${shard}, which does not contain it`);
      tensors.set(name, t);
      owner.set(name, f);
    }
    // Tensors a shard holds beyond the index: keep them reachable, but a name in two shards is ambiguous.
    for (const f of shards.values()) {
      for (const [name, t] of f.tensors) {
        const o = owner.get(name);
        if (o === undefined) {
          tensors.set(name, t);
          owner.set(name, f);
        } else if (o !== f && !(name in weightMap)) {
          throw new ArdError(`${indexFile}: tensor ${JSON.stringify(name)} appears in both ${o.file} and ${f.file}`);
        }
      }
    }
    const metadata: Record<string, string> = {};
    const md = index?.metadata;
    if (md && typeof md === 'object') {
      for (const [k, v] of Object.entries(md)) metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
    }
    const get = (name: string): SafetensorsFile => {
      const f = owner.get(name);
      if (!f) throw new ArdError(`${source}: no tensor named ${JSON.stringify(name)}`);
      return f;
    };
    return {
      source,
      files: [...shards.values()].map((s) => s.file),
      tensors,
      metadata,
      read: (name) => get(name).read(name),
      readRange: (name, begin, end) => get(name).readRange(name, begin, end),
      readFloat32: (name) => get(name).readFloat32(name),
      close: closeAll,
    };
  } catch (e) {
    closeAll();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// dtype conversion

let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (!f16Table) {
    // All 65536 half values, decoded once by the reference library.
    f16Table = new Float32Array(65536);
    const dv = new DataView(new ArrayBuffer(2));
    for (let i = 0; i < 65536; i++) {
      dv.setUint16(0, i, true);
      f16Table[i] = getFloat16(dv, 0, true);
    }
  }
  return f16Table;
}

let e4m3Table: Float32Array | undefined;
function fp8e4m3Table(): Float32Array {
  if (!e4m3Table) {
    // OCP "E4M3FN": bias 7, no infinities, S.1111.111 is NaN.
    e4m3Table = new Float32Array(256);
    for (let b = 0; b < 256; b++) {
      const s = b & 0x80 ? -1 : 1;
      const e = (b >> 3) & 0xf;
      const m = b & 7;
      let v: number;
      if (e === 15 && m === 7) v = NaN;
      else if (e === 0) v = (m / 8) * 2 ** -6;
      else v = (1 + m / 8) * 2 ** (e - 7);
      e4m3Table[b] = s * v;
    }
  }
  return e4m3Table;
}

/** Aligned typed view over bytes when possible, else over an aligned copy. */
function view<T>(bytes: Uint8Array, size: number, Ctor: new (b: ArrayBufferLike, o: number, n: number) => T): T {
  const n = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, n);
  const copy = bytes.slice();
  return new Ctor(copy.buffer, 0, n);
}

/**
 * Converts raw little-endian tensor bytes to f32. For F32 input the result may share memory with
 * `bytes`. 64-bit integers lose precision beyond 2^24, as any f32 does.
 */
export function toFloat32(bytes: Uint8Array, dtype: Dtype): Float32Array {
  const size = SAFETENSORS_DTYPE_BYTES[dtype];
  if (size === undefined) throw new ArdError(`toFloat32: unknown dtype ${JSON.stringify(dtype)}`);
  if (bytes.byteLength % size !== 0) {
    throw new ArdError(`toFloat32: ${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  const n = bytes.byteLength / size;
  switch (dtype) {
    case 'F32':
      return view(bytes, 4, Float32Array);
    case 'F64':
      return Float32Array.from(view(bytes, 8, Float64Array));
    case 'F16': {
      const src = view(bytes, 2, Uint16Array);
      const t = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[src[i]!]!;
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of an f32.
      const src = view(bytes, 2, Uint16Array);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case 'F8_E5M2': {
      // e5m2 is the top byte of an f16.
      const t = halfTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[bytes[i]! << 8]!;
      return out;
    }
    case 'F8_E4M3': {
      const t = fp8e4m3Table();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = t[bytes[i]!]!;
      return out;
    }
    case 'I64': {
      const src = view(bytes, 8, BigInt64Array);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'U64': {
      const src = view(bytes, 8, BigUint64Array);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'I32': return Float32Array.from(view(bytes, 4, Int32Array));
    case 'U32': return Float32Array.from(view(bytes, 4, Uint32Array));
    case 'I16': return Float32Array.from(view(bytes, 2, Int16Array));
    case 'U16': return Float32Array.from(view(bytes, 2, Uint16Array));
    case 'I8': return Float32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(bytes);
  }
}

/** f32 → IEEE half bits, round to nearest even; overflow gives ±Inf, NaN stays NaN. */
export function toFloat16Bits(f32: Float32Array): Uint16Array {
  const src = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToHalf(src[i]!);
  return out;
}

function f32BitsToHalf(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): value = m · 2^(exp-150), half units are 2^-24.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // a carry into the exponent is still correct
  return sign | h;
}

/** f32 → bfloat16 bits, round to nearest even; NaN stays NaN. */
export function toBFloat16Bits(f32: Float32Array): Uint16Array {
  const src = new Uint32Array(f32.buffer, f32.byteOffset, f32.length);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < src.length; i++) {
    const u = src[i]!;
    if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) out[i] = (u >>> 16) | 0x40;
    else out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// writer

export interface TensorToWrite {
  dtype: Dtype;
  shape: number[];
  /**
   * Raw little-endian element data whose byte length matches dtype × shape. A Float32Array is
   * converted when dtype is F16 or BF16. A function is called only when the tensor is written, so a
   * large checkpoint can be produced one tensor at a time.
   */
  data: ArrayBufferView | (() => ArrayBufferView);
}

function tensorBytes(name: string, t: TensorToWrite, file: string): Uint8Array {
  let d: unknown = typeof t.data === 'function' ? t.data() : t.data;
  if (d instanceof Float32Array && (t.dtype === 'F16' || t.dtype === 'BF16')) {
    d = t.dtype === 'F16' ? toFloat16Bits(d) : toBFloat16Bits(d);
  }
  let bytes: Uint8Array;
  if (ArrayBuffer.isView(d)) bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  else if (isFloat16Array(d)) bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  else throw new ArdError(`${file}: tensor ${JSON.stringify(name)}: data is not a typed array`);
  const want = numel(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
  if (bytes.byteLength !== want) {
    throw new ArdError(
      `${file}: tensor ${JSON.stringify(name)}: ${bytes.byteLength} data bytes but ${t.dtype} ${fmtShape(t.shape)} needs ${want}`,
    );
  }
  return bytes;
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.byteLength - done));
  }
}

/**
 * Writes a safetensors file through a temporary file and a rename. Tensors are laid out by element
 * size (largest first) then name, and the header is padded to 8 bytes, so every tensor is aligned
 * to its element size in the file.
 */
export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorToWrite> | ReadonlyMap<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const entries: [string, TensorToWrite][] =
    tensors instanceof Map
      ? [...(tensors as ReadonlyMap<string, TensorToWrite>).entries()]
      : Object.entries(tensors as Record<string, TensorToWrite>);
  for (const [name, t] of entries) {
    if (name === '__metadata__' || name === '') throw new ArdError(`${file}: invalid tensor name ${JSON.stringify(name)}`);
    if (!isDtype(t.dtype)) throw new ArdError(`${file}: tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new ArdError(`${file}: tensor ${JSON.stringify(name)}: bad shape ${JSON.stringify(t.shape)}`);
    }
  }
  entries.sort(([na, a], [nb, b]) => SAFETENSORS_DTYPE_BYTES[b.dtype] - SAFETENSORS_DTYPE_BYTES[a.dtype] || (na < nb ? -1 : na > nb ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ArdError(`${file}: metadata ${k} is not a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of entries) {
    const len = numel(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hb = enc.encode(json);
  const pad = (8 - (hb.byteLength % 8)) % 8;
  if (pad) hb = enc.encode(json + ' '.repeat(pad));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(hb.byteLength), true);

  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  try {
    writeFully(fd, prefix);
    writeFully(fd, hb);
    for (const [name, t] of entries) writeFully(fd, tensorBytes(name, t, file));
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}
