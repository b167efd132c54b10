// Training rows for the SAE: shards of [rows, d] activations (raw f32/f16 files, or safetensors
// with a 2-D tensor, 'acts' as written by capture) or an in-memory array, streamed in shuffled
// batches. The stream is a pure function of (seed, batch index): epoch e visits the shards in a
// seeded order, a window of consecutive shards is loaded and its rows permuted, and batches are
// cut from the concatenation of all epochs. Resuming at batch t rebuilds only the window it needs.
import * as fs from 'node:fs';
import { openSafetensors, toFloat32 } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { mixSeed, permutation } from './rng.js';

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

export function totalRows(src: RowSource): number {
  return src.shards.reduce((a, s) => a + s.rows, 0);
}

/** Rows held in memory, cut into shards of `shardRows` (so that shuffling windows apply too). */
export class MemorySource implements RowSource {
  readonly shards: RowShard[];
  constructor(readonly data: Float32Array, readonly d: number, shardRows?: number) {
    if (!Number.isInteger(d) || d <= 0) throw new ArdError(`MemorySource: d = ${d} must be a positive integer`);
    if (data.length % d) throw new ArdError(`MemorySource: ${data.length} values are not whole rows of ${d}`);
    const n = data.length / d;
    const per = Math.max(1, shardRows ?? n);
    this.shards = [];
    for (let r = 0; r < n; r += per) {
      const rows = Math.min(per, n - r);
      const view = data.subarray(r * d, (r + rows) * d);
      this.shards.push({ rows, read: () => view });
    }
  }
}

export interface ShardFile {
  file: string;
  /** raw files: element type (default f32) */
  dtype?: 'f32' | 'f16';
  /** safetensors: tensor name (default 'acts', else the only 2-D tensor) */
  tensor?: string;
}

/**
 * Shards on disk: `.safetensors` files holding a [rows, d] F32/F16/BF16 tensor, or raw
 * little-endian row-major files of f32 (or f16 with dtype 'f16').
 */
export class ShardReader implements RowSource {
  readonly shards: RowShard[];
  constructor(files: readonly (string | ShardFile)[], readonly d: number, opts: { dtype?: 'f32' | 'f16'; tensor?: string } = {}) {
    if (!Number.isInteger(d) || d <= 0) throw new ArdError(`ShardReader: d = ${d} must be a positive integer`);
    if (!files.length) throw new ArdError('ShardReader: no shard files given');
    this.shards = files.map((f0) => {
      const f: ShardFile = typeof f0 === 'string' ? { file: f0 } : f0;
      return f.file.endsWith('.safetensors') ? safetensorsShard(f.file, d, f.tensor ?? opts.tensor) : rawShard(f.file, d, f.dtype ?? opts.dtype ?? 'f32');
    });
  }
}

function rawShard(file: string, d: number, dtype: 'f32' | 'f16'): RowShard {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (e: any) {
    throw new ArdError(`${file}: cannot read shard (${e.code ?? e.message})`);
  }
  const bpe = dtype === 'f16' ? 2 : 4;
  if (size % (d * bpe)) throw new ArdError(`${file}: ${size} bytes is not a whole number of ${dtype} rows of width ${d}`);
  const rows = size / (d * bpe);
  return {
    rows,
    read: () => {
      const buf = fs.readFileSync(file);
      if (buf.byteLength !== size) throw new ArdError(`${file}: changed size while training (${buf.byteLength} bytes, was ${size})`);
      const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
      return toFloat32(bytes, dtype === 'f16' ? 'F16' : 'F32').slice();
    },
  };
}

function safetensorsShard(file: string, d: number, name?: string): RowShard {
  const f = openSafetensors(file);
  let tname: string;
  let rows: number;
  try {
    const cands = [...f.tensors.values()].filter((t) => t.shape.length === 2);
    const info = name ? f.tensors.get(name) : (f.tensors.get('acts') ?? (cands.length === 1 ? cands[0] : undefined));
    if (!info) throw new ArdError(`${file}: ${name ? `no tensor '${name}'` : "no tensor 'acts' and not exactly one 2-D tensor"}`);
    if (info.shape.length !== 2 || info.shape[1] !== d) throw new ArdError(`${file}: ${info.name} has shape [${info.shape.join(', ')}], expected [rows, ${d}]`);
    if (info.dtype !== 'F32' && info.dtype !== 'F16' && info.dtype !== 'BF16') throw new ArdError(`${file}: ${info.name} is ${info.dtype}, expected F32, F16 or BF16`);
    tname = info.name;
    rows = info.shape[0]!;
  } finally {
    f.close();
  }
  return {
    rows,
    read: () => {
      const g = openSafetensors(file);
      try {
        return g.readFloat32(tname).slice();
      } finally {
        g.close();
      }
    },
  };
}

export interface StreamOptions {
  batchSize: number;
  seed: number;
  /** Shards loaded and shuffled together (default: as many as fit in maxWindowBytes, ≥ 1). */
  windowShards?: number;
  maxWindowBytes?: number;
  /** Multiply every value by this (input normalisation). */
  scale?: number;
}

/** Shuffled batches; `batch(t)` is batch t of the run, a pure function of (source, options, t). */
export class BatchStream {
  readonly rows: number;
  private readonly windowShards: number;
  private cache: { key: string; data: Float32Array; perm: Uint32Array; start: number; rows: number } | null = null;
  private readonly d: number;

  constructor(readonly source: RowSource, readonly opts: StreamOptions) {
    this.d = source.d;
    this.rows = totalRows(source);
    if (this.rows === 0) throw new ArdError('training data: no rows');
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new ArdError(`batch size ${opts.batchSize} must be a positive integer`);
    const maxBytes = opts.maxWindowBytes ?? 512 << 20;
    const biggest = Math.max(...source.shards.map((s) => s.rows));
    this.windowShards = Math.max(1, opts.windowShards ?? Math.floor(maxBytes / Math.max(1, biggest * this.d * 4)));
  }

  /** Rows [t·B, (t+1)·B) of the endless shuffled stream, as f32 [B, d]. */
  async batch(t: number): Promise<Float32Array> {
    const B = this.opts.batchSize;
    const d = this.d;
    const out = new Float32Array(B * d);
    let pos = t * B;
    let filled = 0;
    while (filled < B) {
      const epoch = Math.floor(pos / this.rows);
      const off = pos - epoch * this.rows;
      const w = await this.window(epoch, off);
      const take = Math.min(B - filled, w.start + w.rows - off);
      for (let i = 0; i < take; i++) {
        const r = w.perm[off - w.start + i]!;
        out.set(w.data.subarray(r * d, (r + 1) * d), (filled + i) * d);
      }
      filled += take;
      pos += take;
    }
    const s = this.opts.scale ?? 1;
    if (s !== 1) for (let i = 0; i < out.length; i++) out[i]! *= s;
    return out;
  }

  /** The loaded, permuted window of `epoch` that holds epoch-offset `off`. */
  private async window(epoch: number, off: number) {
    const shards = this.source.shards;
    const order = permutation(shards.length, mixSeed(this.opts.seed, epoch, 1));
    let start = 0;
    for (let w0 = 0; w0 < order.length; w0 += this.windowShards) {
      const ids = Array.from(order.subarray(w0, w0 + this.windowShards));
      const rows = ids.reduce((a, i) => a + shards[i]!.rows, 0);
      if (off < start + rows) {
        const key = `${epoch}:${w0}`;
        if (this.cache?.key !== key) {
          this.cache = null; // free the previous window before loading the next
          const data = new Float32Array(rows * this.d);
          let at = 0;
          for (const i of ids) {
            const part = await shards[i]!.read();
            if (part.length !== shards[i]!.rows * this.d) throw new ArdError(`training data: shard ${i} returned ${part.length} values, expected ${shards[i]!.rows * this.d}`);
            data.set(part, at);
            at += part.length;
          }
          this.cache = { key, data, perm: permutation(rows, mixSeed(this.opts.seed, epoch, 2, w0)), start, rows };
        }
        return this.cache!;
      }
      start += rows;
    }
    throw new ArdError(`training data: offset ${off} beyond ${this.rows} rows`);
  }
}

/** Mean squared norm and mean row of up to `maxRows` rows taken evenly from the source. */
export async function dataStats(source: RowSource, maxRows = 65536): Promise<{ meanSq: number; mean: Float64Array; rows: number; sample: Float32Array }> {
  const d = source.d;
  const n = totalRows(source);
  const want = Math.min(n, maxRows);
  const mean = new Float64Array(d);
  const sample = new Float32Array(want * d);
  let sq = 0;
  let got = 0;
  let base = 0;
  for (const s of source.shards) {
    // rows of this shard that fall on the even grid i·n/want
    const first = Math.ceil((base * want) / n);
    const last = Math.ceil(((base + s.rows) * want) / n);
    if (last > first) {
      const data = await s.read();
      for (let i = first; i < last && got < want; i++) {
        const r = Math.min(s.rows - 1, Math.floor((i * n) / want) - base);
        const row = data.subarray(r * d, (r + 1) * d);
        sample.set(row, got * d);
        for (let c = 0; c < d; c++) {
          const v = row[c]!;
          mean[c]! += v;
          sq += v * v;
        }
        got++;
      }
    }
    base += s.rows;
  }
  for (let c = 0; c < d; c++) mean[c]! /= got;
  return { meanSq: sq / got, mean, rows: got, sample: sample.subarray(0, got * d) };
}
