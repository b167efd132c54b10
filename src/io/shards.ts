// Activation shards on disk: the one reader of the [rows, d] files capture writes (and of raw
// row-major files). SAE training reads them shard by shard as a RowSource; retrieval reads row
// ranges across shard boundaries as raw bytes (so f16 shards can be cast on the GPU).
import * as fs from 'node:fs';
import { ArdError } from '../util/errors.js';
import { openSafetensors, toFloat32 } from './safetensors.js';

/** One block of rows (a shard). `read` returns rows·d f32 values. */
export interface RowShard {
  readonly rows: number;
  read(): Float32Array | Promise<Float32Array>;
}

/** Rows of width d, as a list of shards. */
export interface RowSource {
  readonly d: number;
  readonly shards: readonly RowShard[];
}

export interface ShardFile {
  file: string;
  /** raw files: element type (default f32) */
  dtype?: 'f32' | 'f16';
  /** safetensors: tensor name (default 'acts', else the only 2-D tensor) */
  tensor?: string;
  /** Rows the shard must hold (checked against the file; e.g. from a capture manifest). */
  rows?: number;
}

export type ShardDtype = 'F32' | 'F16' | 'BF16';

/** Raw little-endian bytes of consecutive rows, as stored. */
export interface RowBytes {
  bytes: Uint8Array;
  dtype: ShardDtype;
}

/** A shard of a ShardReader: its rows, where they start in the reader's row order, its bytes. */
export interface StoredShard extends RowShard {
  readonly file: string;
  readonly rowStart: number;
  readonly dtype: ShardDtype;
  readBytes(): Uint8Array;
}

/**
 * Shards on disk, in the given order: `.safetensors` files holding a [rows, d] F32/F16/BF16
 * tensor, or raw little-endian row-major files of f32 (or f16 with dtype 'f16').
 */
export class ShardReader implements RowSource {
  readonly shards: StoredShard[];
  readonly totalRows: number;
  private cache: { index: number; bytes: Uint8Array } | null = null;

  constructor(files: readonly (string | ShardFile)[], readonly d: number, opts: { dtype?: 'f32' | 'f16'; tensor?: string } = {}) {
    if (!Number.isInteger(d) || d <= 0) throw new ArdError(`ShardReader: d = ${d} must be a positive integer`);
    if (!files.length) throw new ArdError('ShardReader: no shard files given');
    let at = 0;
    this.shards = files.map((f0) => {
      const f: ShardFile = typeof f0 === 'string' ? { file: f0 } : f0;
      const s = f.file.endsWith('.safetensors') ? safetensorsShard(f.file, d, at, f.tensor ?? opts.tensor, f.rows) : rawShard(f.file, d, at, f.dtype ?? opts.dtype ?? 'f32', f.rows);
      at += s.rows;
      return s;
    });
    this.totalRows = at;
  }

  /** Rows [rowStart, rowStart + rows) as stored, one piece per shard touched (the last shard read is kept). */
  rowBytes(rowStart: number, rows: number): RowBytes[] {
    const end = rowStart + rows;
    if (!Number.isInteger(rowStart) || !Number.isInteger(rows) || rowStart < 0 || rows < 0 || end > this.totalRows) {
      throw new ArdError(`${this.shards[this.shards.length - 1]!.file}: rows ${rowStart}…${end} asked of shards holding ${this.totalRows} rows`);
    }
    const out: RowBytes[] = [];
    let at = rowStart;
    for (let i = 0; i < this.shards.length && at < end; i++) {
      const s = this.shards[i]!;
      if (s.rowStart + s.rows <= at) continue;
      const n = Math.min(end, s.rowStart + s.rows) - at;
      const bpe = s.dtype === 'F32' ? 4 : 2;
      const off = (at - s.rowStart) * this.d * bpe;
      out.push({ bytes: this.shardBytes(i).subarray(off, off + n * this.d * bpe), dtype: s.dtype });
      at += n;
    }
    return out;
  }

  private shardBytes(i: number): Uint8Array {
    if (this.cache?.index !== i) this.cache = { index: i, bytes: this.shards[i]!.readBytes() };
    return this.cache.bytes;
  }
}

function checkRows(file: string, name: string, shape: readonly number[], d: number, rows: number | undefined): void {
  if (shape.length !== 2 || shape[1] !== d || (rows !== undefined && shape[0] !== rows)) {
    throw new ArdError(`${file}: ${name} has shape [${shape.join(', ')}], expected [${rows ?? 'rows'}, ${d}]`);
  }
}

function rawShard(file: string, d: number, rowStart: number, dtype: 'f32' | 'f16', want?: number): StoredShard {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read shard (${e.code ?? e.message})`);
  }
  const bpe = dtype === 'f16' ? 2 : 4;
  if (size % (d * bpe)) throw new ArdError(`${file}: ${size} bytes is not a whole number of ${dtype} rows of width ${d}`);
  const rows = size / (d * bpe);
  checkRows(file, 'the file', [rows, d], d, want);
  const stored: ShardDtype = dtype === 'f16' ? 'F16' : 'F32';
  const readBytes = () => {
    const buf = fs.readFileSync(file);
    if (buf.byteLength !== size) throw new ArdError(`${file}: changed size while reading (${buf.byteLength} bytes, was ${size})`);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  };
  return { file, rowStart, rows, dtype: stored, readBytes, read: () => toFloat32(readBytes(), stored).slice() };
}

function safetensorsShard(file: string, d: number, rowStart: number, name: string | undefined, want: number | undefined): StoredShard {
  const f = openSafetensors(file);
  let tname: string;
  let rows: number;
  let dtype: ShardDtype;
  try {
    const cands = [...f.tensors.values()].filter((t) => t.shape.length === 2);
    const info = name ? f.tensors.get(name) : (f.tensors.get('acts') ?? (cands.length === 1 ? cands[0] : undefined));
    if (!info) throw new ArdError(`${file}: ${name ? `no tensor '${name}'` : "no tensor 'acts' and not exactly one 2-D tensor"}`);
    checkRows(file, info.name, info.shape, d, want);
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new ArdError(`${file}: ${info.name} is ${info.dtype}, expected F32, F16 or BF16`);
    tname = info.name;
    rows = info.shape[0]!;
    dtype = info.dtype;
  } finally {
    f.close();
  }
  const readBytes = () => {
    const g = openSafetensors(file);
    try {
      return g.read(tname);
    } finally {
      g.close();
    }
  };
  return { file, rowStart, rows, dtype, readBytes, read: () => toFloat32(readBytes(), dtype).slice() };
}
