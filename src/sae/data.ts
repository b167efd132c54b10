// Training rows for the SAE: shards of [rows, d] activations (io/shards.ts's ShardReader) or an
// in-memory array, streamed in shuffled batches. The stream is a pure function of (seed, batch index): epoch e visits the shards in a
// seeded order, a window of consecutive shards is loaded and its rows permuted, and batches are
// cut from the concatenation of all epochs. Resuming at batch t rebuilds only the window it needs.
import type { RowShard, RowSource } from '../io/shards.js';
import { ArdError } from '../util/errors.js';
import { mixSeed, permutation } from './rng.js';

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
