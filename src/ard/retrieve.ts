// AR&D retrieval: for every (clip, feature) the mean activation over the clip's tokens and the
// coverage (share of its tokens where the feature fires), a representativeness score combining
// them, and per feature the most (H^k) and least (L^k) representative clips.
//
// Capture shards are streamed in batches of rows; each batch is encoded by the SAE (top-k codes)
// on the GPU and scattered into per-clip accumulators by kernels/ard.wgsl (one workgroup per clip
// segment, rows in order: deterministic). The same pass sums the raw residual rows per clip, which
// rank (H/L similarity) and evaluate (neuron and random-direction baselines) use.
//
// Score (documented in the output metadata too):
//   mean_norm[c, f] = mean[c, f] / max_c' mean[c', f]         (in [0, 1]; 0 for a dead feature)
//   score[c, f]     = mean_norm[c, f] × coverage[c, f]        (in [0, 1])
// Why the product (rather than the harmonic mean): it is 0 when either factor is 0, increases
// with both, and cannot be carried by one factor alone, so a clip where the feature is strong but
// brief (a short event in a long clip) or present throughout but faint ranks below one where it is
// both. Since mean = (mean while firing) × coverage, the score is coverage² × the firing strength
// (normalised): it deliberately favours clips the concept fills, which is what a listener checking
// a feature wants to hear. Normalising the mean per feature puts scores in [0, 1] and makes them
// comparable across features (rank uses H and L score means) without changing any clip order.
import * as fs from 'node:fs';
import type { Engine } from '../gpu/engine.js';
import { grid, Params } from '../gpu/engine.js';
import { openSafetensors, toFloat32 } from '../io/safetensors.js';
import { writeSafetensors } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { readJson, writeFileAtomic } from '../util/fs.js';
import type { ShardReader } from '../io/shards.js';
import type { SparseEncoder } from '../sae/types.js';
import type { CaptureManifest } from './run.js';
import { captureShardReader, clearFresh, fileDigest, isFresh, markFresh, readCaptureManifest, runPaths, stageInputsKey } from './run.js';
import { Tensor, empty, tensor } from '../tensor/tensor.js';
import { cast, map, zeros } from '../tensor/ops/elementwise.js';
import { concat, contiguous, reshape, slice, transpose } from '../tensor/ops/layout.js';
import { tidy } from '../tensor/scope.js';
import { max as reduceMax, sum as reduceSum } from '../tensor/ops/reduce.js';
import { topk } from '../tensor/ops/index.js';
import { matmulSteadyRows } from '../tensor/ops/matmul.js';

/** Bump when the meaning of retrieve-L.safetensors changes (invalidates cached results). */
export const RETRIEVE_VERSION = 1;
export const SCORE_FORMULA = 'score = (mean / max over clips of mean) × coverage; coverage = share of tokens with z > 0';

// ---- streaming the capture -------------------------------------------------------------------

/** A batch of consecutive capture rows on the GPU (f32 [rows, d]). */
export interface RowBatch {
  rowStart: number;
  rows: number;
  x: Tensor;
}

/** Rows [rowStart, rowStart + rows) of the reader as f32 [rows, d] on the GPU (f16 shards are cast there). */
export function uploadRows(engine: Engine, reader: ShardReader, rowStart: number, rows: number): Tensor {
  const d = reader.d;
  const pieces = reader.rowBytes(rowStart, rows);
  if (engine.f16 && pieces.every((p) => p.dtype === 'F16')) {
    const raw = empty(engine, [rows, d], 'f16');
    let o = 0;
    for (const p of pieces) {
      engine.write(raw.buffer, o, p.bytes);
      o += p.bytes.byteLength;
    }
    const x = cast(raw, 'f32');
    raw.dispose();
    return x;
  }
  const host = new Float32Array(rows * d);
  let o = 0;
  for (const p of pieces) {
    const f = toFloat32(p.bytes, p.dtype);
    host.set(f, o);
    o += f.length;
  }
  return tensor(engine, host, [rows, d]);
}

// ---- per-clip accumulation on the GPU --------------------------------------------------------

export interface ClipRange {
  rowStart: number;
  rowCount: number;
}

/** Per-clip sums of SAE codes (activation sum, firing count) and of raw residual rows. */
export class ClipAccumulator {
  readonly sum: Tensor;
  readonly cnt: Tensor;
  readonly rsum: Tensor | null;
  private order: number[]; // clip indices sorted by rowStart
  private disposed = false;

  constructor(
    readonly engine: Engine,
    readonly clips: readonly ClipRange[],
    readonly m: number,
    readonly d: number,
    withResiduals = true,
  ) {
    const n = clips.length;
    this.sum = zeros(engine, [n, m]);
    this.cnt = zeros(engine, [n, m]);
    this.rsum = withResiduals ? zeros(engine, [n, d]) : null;
    this.order = clips.map((_, i) => i).filter((i) => clips[i]!.rowCount > 0).sort((a, b) => clips[a]!.rowStart - clips[b]!.rowStart);
    for (let j = 1; j < this.order.length; j++) {
      const a = clips[this.order[j - 1]!]!;
      const b = clips[this.order[j]!]!;
      if (a.rowStart + a.rowCount > b.rowStart) throw new ArdError(`clip rows overlap (rows ${b.rowStart}…): capture manifest is inconsistent`);
    }
  }

  /** Segments (clip, row offset in batch, rows) of clips overlapping rows [rowStart, rowStart + rows). */
  segments(rowStart: number, rows: number): Uint32Array {
    const end = rowStart + rows;
    const out: number[] = [];
    // first clip whose range ends after rowStart (binary search over the sorted order)
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = this.clips[this.order[mid]!]!;
      if (c.rowStart + c.rowCount <= rowStart) lo = mid + 1;
      else hi = mid;
    }
    for (let j = lo; j < this.order.length; j++) {
      const ci = this.order[j]!;
      const c = this.clips[ci]!;
      if (c.rowStart >= end) break;
      const a = Math.max(c.rowStart, rowStart);
      const b = Math.min(c.rowStart + c.rowCount, end);
      if (b > a) out.push(ci, a - rowStart, b - a);
    }
    return Uint32Array.from(out);
  }

  /** Add one batch: its top-k codes (null: residual sums only) and its dense rows (for residual sums). */
  add(rowStart: number, rows: number, codes: { values: Tensor; indices: Tensor } | null, x?: Tensor): void {
    if (this.disposed) throw new ArdError('ClipAccumulator used after dispose');
    const segs = this.segments(rowStart, rows);
    const nSeg = segs.length / 3;
    if (nSeg === 0) return;
    const S = tensor(this.engine, segs, [segs.length], 'u32');
    if (codes) {
      const { values, indices } = codes;
      if (values.rank !== 2 || values.shape[0] !== rows || indices.shape[0] !== rows || indices.shape[1] !== values.shape[1]) {
        throw new ArdError(`SAE encode returned values [${values.shape}] / indices [${indices.shape}] for ${rows} rows`);
      }
      if (indices.dtype !== 'i32') throw new ArdError(`SAE encode returned ${indices.dtype} indices (want i32)`);
      const k = values.shape[1]!;
      const v = values.isContiguousIgnoringOffset() ? values : map([values], 'a', { name: 'contiguous' });
      const ix = indices.isContiguousIgnoringOffset() ? indices : map([indices], 'a', { name: 'contiguous', ct: 'i32' });
      this.engine.dispatch({
        kernel: { family: 'ard', defines: { CODES: true, TV: v.dtype } },
        params: new Params().u32(nSeg, k, this.m, v.offset, ix.offset, 0, 0, 0).done(),
        buffers: [S.buffer, v.buffer, ix.buffer, this.sum.buffer, this.cnt.buffer],
        workgroups: grid(nSeg),
      });
      if (v !== values) v.dispose();
      if (ix !== indices) ix.dispose();
    }
    if (x && this.rsum) {
      if (x.rank !== 2 || x.shape[0] !== rows || x.shape[1] !== this.d) throw new ArdError(`residual batch [${x.shape}] is not [${rows}, ${this.d}]`);
      const xd = x.isContiguousIgnoringOffset() ? x : map([x], 'a', { name: 'contiguous' });
      this.engine.dispatch({
        kernel: { family: 'ard', defines: { CODES: false, TV: xd.dtype } },
        params: new Params().u32(nSeg, this.d, 0, xd.offset, 0, 0, 0, 0).done(),
        buffers: [S.buffer, xd.buffer, this.rsum.buffer],
        workgroups: grid(nSeg),
      });
      if (xd !== x) xd.dispose();
    }
    S.dispose();
  }

  /** Per-clip mean residual vectors [nClips, d] (host), without the SAE statistics. */
  async residualMeans(): Promise<Float32Array> {
    if (!this.rsum) throw new ArdError('ClipAccumulator was built without residual sums');
    const rowsT = tensor(this.engine, Float32Array.from(this.clips, (c) => c.rowCount), [this.clips.length, 1]);
    const r = map([this.rsum, rowsT], 'select(0.0, a / b, b > 0.0)', { name: 'ard_div', out: 'f32' });
    rowsT.dispose();
    const out = await r.toFloat32();
    r.dispose();
    return out;
  }

  /** Means, coverage, scores and H/L on the GPU; everything read back to the host. */
  async finish(p: number): Promise<ClipStats> {
    const e = this.engine;
    const n = this.clips.length;
    const rowsHost = Float32Array.from(this.clips, (c) => c.rowCount);
    const rowsT = tensor(e, rowsHost, [n, 1]);
    const div = (a: Tensor) => map([a, rowsT], 'select(0.0, a / b, b > 0.0)', { name: 'ard_div', out: 'f32' });
    const mean = div(this.sum);
    const cov = div(this.cnt);
    const resid = this.rsum ? div(this.rsum) : null;
    const { score, maxMean } = scoreOnGpu(mean, cov);
    const hl = selectHL(score, cov, p);
    const out: ClipStats = {
      nClips: n,
      m: this.m,
      d: this.d,
      p: hl.p,
      mean: await mean.toFloat32(),
      coverage: await cov.toFloat32(),
      score: await score.toFloat32(),
      maxMean: await maxMean.toFloat32(),
      residMean: resid ? await resid.toFloat32() : null,
      rows: rowsHost,
      H: new Int32Array(0),
      L: new Int32Array(0),
      firing: (await hl.firing.read()) as Int32Array,
    };
    out.H = (await hl.H.read()) as Int32Array;
    out.L = finishHL(out.H, (await hl.Lcand.read()) as Int32Array, this.m, hl.p);
    for (const t of [rowsT, mean, cov, score, maxMean, hl.H, hl.Lcand, hl.firing]) t.dispose();
    resid?.dispose();
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.sum.dispose();
    this.cnt.dispose();
    this.rsum?.dispose();
  }
}

export interface ClipStats {
  nClips: number;
  m: number;
  d: number;
  /** H/L length per feature (min(p, nClips)). */
  p: number;
  /** [nClips, m] row-major. */
  mean: Float32Array;
  coverage: Float32Array;
  score: Float32Array;
  /** [m]: max over clips of the mean (the score's normaliser). */
  maxMean: Float32Array;
  /** [nClips, d]: mean residual vector per clip (null when not accumulated). */
  residMean: Float32Array | null;
  /** [nClips]: rows (tokens) per clip. */
  rows: Float32Array;
  /** [m, p] clip indices, most representative first; -1 where a feature fires on fewer clips. */
  H: Int32Array;
  /** [m, p] clip indices, least representative first, disjoint from H; -1 padded. */
  L: Int32Array;
  /** [m]: clips where the feature fires (coverage > 0). */
  firing: Int32Array;
}

/** score = mean / max_c(mean) × coverage, on the GPU. */
export function scoreOnGpu(mean: Tensor, cov: Tensor): { score: Tensor; maxMean: Tensor } {
  const m = mean.shape[1]!;
  const mx = reduceMax(mean, 0, true); // [1, m]
  const score = map([mean, mx, cov], 'select(0.0, a / b * c, b > 0.0)', { name: 'ard_score', out: 'f32' });
  const maxMean = reshape(mx, [m]);
  if (maxMean !== mx) mx.dispose();
  return { score, maxMean };
}

/**
 * H: the p clips with the highest score (firing clips only). L candidates: the 2p firing clips
 * with the lowest score, least first (finishHL removes H's members and keeps p). Ties keep the
 * lower clip index first (topk's order). -1 pads where a feature fires on too few clips.
 */
export function selectHL(score: Tensor, cov: Tensor, p: number): { H: Tensor; Lcand: Tensor; firing: Tensor; p: number } {
  const n = score.shape[0]!;
  const pp = Math.max(1, Math.min(p, n));
  const sT = transpose(score); // [m, n] views
  const cT = transpose(cov);
  const hsrc = map([sT, cT], 'select(-1.0, a, b > 0.0)', { name: 'ard_hmask', out: 'f32' });
  const h = topk(hsrc, pp);
  // (indices pass through f32: exact below 2^24 clips)
  const H = map([h.indices, h.values], 'select(-1.0, a, b >= 0.0)', { name: 'ard_hpad', out: 'i32' });
  // 2p candidates, so that p remain after removing H's members when the feature fires on ≥ 2p clips
  const q = Math.min(2 * pp, n);
  const lsrc = map([sT, cT], 'select(-3.0e38, -a, b > 0.0)', { name: 'ard_lmask', out: 'f32' });
  const l = topk(lsrc, q);
  const Lcand = map([l.indices, l.values], 'select(-1.0, a, b > -1.0e38)', { name: 'ard_lpad', out: 'i32' });
  const fire = map([cT], 'select(0.0, 1.0, a > 0.0)', { name: 'ard_fire', out: 'f32' });
  const fsum = reduceSum(fire, 1);
  const firing = cast(fsum, 'i32');
  for (const t of [sT, cT, hsrc, h.values, h.indices, lsrc, l.values, l.indices, fire, fsum]) t.dispose();
  return { H, Lcand, firing, p: pp };
}

/** Per feature: the first p L candidates [m, q] that are not in H [m, p] (host; ≤ 3p ints each). */
export function finishHL(H: Int32Array, Lcand: Int32Array, m: number, p: number): Int32Array {
  const q = Lcand.length / m;
  const out = new Int32Array(m * p).fill(-1);
  for (let f = 0; f < m; f++) {
    const hs = new Set<number>();
    for (let j = 0; j < p; j++) if (H[f * p + j]! >= 0) hs.add(H[f * p + j]!);
    let w = 0;
    for (let j = 0; j < q && w < p; j++) {
      const ci = Lcand[f * q + j]!;
      if (ci >= 0 && !hs.has(ci)) out[f * p + w++] = ci;
    }
  }
  return out;
}

// ---- the retrieve stage ------------------------------------------------------------------------

export interface RetrieveOptions {
  engine: Engine;
  run: string;
  layer: number;
  sae: SparseEncoder;
  /** Clips kept per feature in H^k and L^k (default 10). */
  p?: number;
  /** Rows encoded per GPU batch (default 2048). */
  batchRows?: number;
  /** Recompute even when the inputs are unchanged. */
  force?: boolean;
  /** SAE file hashed for the skip check (default RUN/sae-L.safetensors). */
  saeFile?: string;
  /** Identifies the SAE when there is no file to hash. */
  saeHash?: string;
  onProgress?: (rowsDone: number, rowsTotal: number) => void;
}

export interface RetrieveResult {
  file: string;
  skipped: boolean;
  nClips: number;
  m: number;
  d: number;
  p: number;
  rows: number;
  seconds: number;
}

function inputsKey(o: RetrieveOptions, saeFile: string, p: number, m: number): string {
  let sae = o.saeHash;
  if (sae === undefined) {
    if (!fs.existsSync(saeFile)) throw new ArdError(`${saeFile}: SAE file not found (give saeFile or saeHash so results can be cached)`);
    sae = fileDigest(saeFile);
  }
  return stageInputsKey('retrieve', { version: RETRIEVE_VERSION, layer: o.layer, p, m, sae, capture: fileDigest(runPaths(o.run, o.layer).manifest) });
}

export async function retrieve(o: RetrieveOptions): Promise<RetrieveResult> {
  const t0 = performance.now();
  const paths = runPaths(o.run, o.layer);
  const manifest = readCaptureManifest(o.run);
  const saeFile = o.saeFile ?? paths.sae;
  const m = o.sae.m;
  if (!Number.isInteger(m) || m <= 0) throw new ArdError(`retrieve: the SAE's number of latents m = ${m} is not a positive integer`);
  const p = o.p ?? 10;
  if (!Number.isInteger(p) || p < 1 || p > 256) throw new ArdError(`retrieve: p = ${p} must be an integer in [1, 256]`);
  const batchRows = o.batchRows ?? 2048;
  if (!Number.isInteger(batchRows) || batchRows < 1) throw new ArdError(`retrieve: batchRows = ${batchRows} must be a positive integer`);
  const key = inputsKey(o, saeFile, p, m);
  const nClips = manifest.clips.length;
  if (!o.force && isFresh(paths.retrieve, key)) {
    return { file: paths.retrieve, skipped: true, nClips, m, d: manifest.d, p: Math.min(p, nClips), rows: 0, seconds: 0 };
  }
  clearFresh(paths.retrieve);
  const stats = await accumulateRun(o.engine, o.run, manifest, o.layer, o.sae, m, p, batchRows, o.onProgress);
  writeRetrieve(paths.retrieve, stats, { inputsHash: key, layer: String(o.layer) });
  markFresh(paths.retrieve, key);
  const rows = stats.rows.reduce((a, b) => a + b, 0);
  return { file: paths.retrieve, skipped: false, nClips, m, d: manifest.d, p: stats.p, rows, seconds: (performance.now() - t0) / 1000 };
}

/** Stream the layer's capture through the SAE and reduce per clip (no file written). */
export async function accumulateRun(
  engine: Engine,
  run: string,
  manifest: CaptureManifest,
  layer: number,
  sae: SparseEncoder,
  m: number,
  p: number,
  batchRows: number,
  onProgress?: (done: number, total: number) => void,
): Promise<ClipStats> {
  const reader = captureShardReader(run, manifest, layer);
  const acc = new ClipAccumulator(engine, manifest.clips, m, manifest.d, true);
  try {
    const total = reader.totalRows;
    let batches = 0;
    for (let r = 0; r < total; r += batchRows) {
      const n = Math.min(batchRows, total - r);
      const x = uploadRows(engine, reader, r, n);
      const codes = engine.noGradScope(() => sae.encode(x));
      acc.add(r, n, codes, x);
      codes.values.dispose();
      codes.indices.dispose();
      x.dispose();
      // bound the work queued ahead of the GPU (and let progress mean something)
      if (++batches % 4 === 0 || r + n >= total) {
        await engine.sync();
        onProgress?.(r + n, total);
      }
    }
    return await acc.finish(p);
  } finally {
    acc.dispose();
  }
}

/**
 * Per-clip mean residual vectors of a layer's capture, streamed through the GPU segment reduction
 * (no SAE): the inputs of evaluate's neuron and random-direction baselines. retrieve stores the
 * same numbers as clip_resid_mean; use this when only the baselines are wanted.
 */
export async function clipResidualMeans(o: { engine: Engine; run: string; layer: number; batchRows?: number; onProgress?: (done: number, total: number) => void }): Promise<{ residMean: Float32Array; rows: Float32Array; nClips: number; d: number }> {
  const manifest = readCaptureManifest(o.run);
  const reader = captureShardReader(o.run, manifest, o.layer);
  const acc = new ClipAccumulator(o.engine, manifest.clips, 0, manifest.d, true);
  const B = o.batchRows ?? 4096;
  try {
    const total = reader.totalRows;
    let batches = 0;
    for (let r = 0; r < total; r += B) {
      const n = Math.min(B, total - r);
      const x = uploadRows(o.engine, reader, r, n);
      acc.add(r, n, null, x);
      x.dispose();
      if (++batches % 8 === 0 || r + n >= total) {
        await o.engine.sync();
        o.onProgress?.(r + n, total);
      }
    }
    const residMean = await acc.residualMeans();
    return { residMean, rows: Float32Array.from(manifest.clips, (c) => c.rowCount), nClips: manifest.clips.length, d: manifest.d };
  } finally {
    acc.dispose();
  }
}

export function writeRetrieve(file: string, s: ClipStats, meta: Record<string, string> = {}): void {
  const t: Record<string, { dtype: 'F32' | 'I32'; shape: number[]; data: ArrayBufferView }> = {
    clip_mean: { dtype: 'F32', shape: [s.nClips, s.m], data: s.mean },
    clip_coverage: { dtype: 'F32', shape: [s.nClips, s.m], data: s.coverage },
    clip_score: { dtype: 'F32', shape: [s.nClips, s.m], data: s.score },
    clip_rows: { dtype: 'F32', shape: [s.nClips], data: s.rows },
    feature_max_mean: { dtype: 'F32', shape: [s.m], data: s.maxMean },
    feature_firing: { dtype: 'I32', shape: [s.m], data: s.firing },
    H: { dtype: 'I32', shape: [s.m, s.p], data: s.H },
    L: { dtype: 'I32', shape: [s.m, s.p], data: s.L },
  };
  if (s.residMean) t.clip_resid_mean = { dtype: 'F32', shape: [s.nClips, s.d], data: s.residMean };
  writeSafetensors(file, t, {
    ...meta,
    nClips: String(s.nClips),
    m: String(s.m),
    d: String(s.d),
    p: String(s.p),
    version: String(RETRIEVE_VERSION),
    score: SCORE_FORMULA,
  });
}

/** Reads RUN/retrieve-L.safetensors back into ClipStats. */
export function readRetrieve(file: string): ClipStats {
  if (!fs.existsSync(file)) throw new ArdError(`${file}: not found (run retrieve first)`);
  const f = openSafetensors(file);
  try {
    const need = (name: string) => {
      if (!f.tensors.has(name)) throw new ArdError(`${file}: tensor '${name}' missing`);
      return f.tensors.get(name)!;
    };
    const i32 = (name: string) => {
      const b = f.read(name);
      return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    };
    const mi = need('clip_mean');
    const [nClips, m] = mi.shape as [number, number];
    const Hi = need('H');
    const resid = f.tensors.get('clip_resid_mean');
    return {
      nClips,
      m,
      d: resid ? resid.shape[1]! : Number(f.metadata.d ?? 0),
      p: Hi.shape[1]!,
      mean: f.readFloat32('clip_mean'),
      coverage: f.readFloat32('clip_coverage'),
      score: f.readFloat32('clip_score'),
      maxMean: f.readFloat32('feature_max_mean'),
      residMean: resid ? f.readFloat32('clip_resid_mean') : null,
      rows: f.readFloat32('clip_rows'),
      H: i32('H'),
      L: i32('L'),
      firing: i32('feature_firing'),
    };
  } finally {
    f.close();
  }
}

// ---- per-token activations of chosen features (timelines) ---------------------------------------

/**
 * Per-token activations of `features` from top-k codes read back to the host: out[j][t] = z of
 * features[j] at row t (0 where it is not among the row's k codes or z ≤ 0).
 */
export function featureActivations(values: ArrayLike<number>, indices: ArrayLike<number>, rows: number, k: number, features: readonly number[]): Float32Array[] {
  const slot = new Map<number, number>();
  features.forEach((f, j) => slot.set(f, j));
  const out = features.map(() => new Float32Array(rows));
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < k; j++) {
      const s = slot.get(indices[r * k + j]!);
      const v = values[r * k + j]!;
      if (s !== undefined && v > 0) out[s]![r] = v;
    }
  }
  return out;
}

/** Encode rows already on the GPU and return the chosen features' per-token activations. */
export async function encodeFeatureActivations(engine: Engine, sae: SparseEncoder, x: Tensor, features: readonly number[]): Promise<Float32Array[]> {
  const rows = x.shape[0]!;
  const codes = engine.noGradScope(() => sae.encode(x));
  try {
    const k = codes.values.shape[1]!;
    const v = await codes.values.toFloat32();
    const ix = await codes.indices.read();
    return featureActivations(v, ix, rows, k, features);
  } finally {
    codes.values.dispose();
    codes.indices.dispose();
  }
}

/**
 * Row blocks [from, to) covering [0, rows), each of at least `minRows` rows (one block when there
 * are fewer): blocks for which matmul takes the kernels one product over all the rows takes
 * (matmulSteadyRows), so encoding them one by one gives what encoding all the rows at once gives.
 */
export function steadyBlocks(rows: number, minRows: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < rows; r += minRows) out.push([r, Math.min(rows, r + minRows)]);
  // a short tail joins the block before it
  if (out.length > 1 && out.at(-1)![1] - out.at(-1)![0] < minRows) out.at(-2)![1] = out.pop()![1];
  return out;
}

/**
 * encodeFeatureActivations over rows handed over a part at a time (a long clip's windows), with
 * memory bounded by the block size, not by the rows' count. Rows wait (on the GPU, so that windows
 * keep being computed while earlier ones wait) until there are enough for a block of at least
 * `minRows` (matmulSteadyRows) that leaves as many for the last block, so every block takes the
 * kernels one call over all the rows would and the activations, concatenated, are that call's bit
 * for bit (all the rows in one block when there are fewer).
 */
export class FeatureActivationStream {
  private pending: Tensor[] = [];
  private pendingRows = 0;
  private ended = false;

  constructor(
    private readonly engine: Engine,
    private readonly sae: SparseEncoder,
    private readonly features: readonly number[],
    private readonly d: number,
    private readonly minRows = matmulSteadyRows(engine),
  ) {
    if (!(Number.isInteger(minRows) && minRows >= 1)) throw new ArdError(`FeatureActivationStream: minRows = ${minRows} must be a positive integer`);
  }

  /**
   * Adds rows [r, d] (f32: a tensor, which the stream disposes, or row-major host data); returns
   * the activations ([feature][row]) of the rows encoded now, or null.
   */
  async push(rows: Tensor | Float32Array): Promise<Float32Array[] | null> {
    if (this.ended) throw new Error('FeatureActivationStream: push after end');
    let t: Tensor;
    if (rows instanceof Float32Array) {
      if (rows.length % this.d) throw new ArdError(`explain: ${rows.length} values are not rows of d = ${this.d}`);
      t = tensor(this.engine, rows, [rows.length / this.d, this.d]);
    } else {
      t = rows;
      if (t.rank !== 2 || t.shape[1] !== this.d) {
        t.dispose();
        throw new ArdError(`explain: rows [${t.shape.join(', ')}] are not [r, ${this.d}]`);
      }
    }
    if (!t.shape[0]) {
      t.dispose();
      return null;
    }
    this.pending.push(t);
    this.pendingRows += t.shape[0]!;
    if (this.pendingRows < 2 * this.minRows) return null;
    return this.encode(this.pendingRows - this.minRows);
  }

  /** The activations of the rows still waiting (none: arrays of length 0). */
  async end(): Promise<Float32Array[]> {
    this.ended = true;
    if (!this.pendingRows) return this.features.map(() => new Float32Array(0));
    return this.encode(this.pendingRows);
  }

  /** Frees the rows still waiting (after a failure). */
  dispose(): void {
    this.ended = true;
    for (const t of this.pending) t.dispose();
    this.pending = [];
    this.pendingRows = 0;
  }

  /** Encodes the first `n` waiting rows. */
  private async encode(n: number): Promise<Float32Array[]> {
    const total = this.pendingRows;
    const parts = this.pending;
    this.pending = [];
    this.pendingRows = 0;
    let all: Tensor;
    try {
      all = parts.length === 1 ? parts[0]! : tidy(() => concat(parts, 0));
    } finally {
      if (parts.length > 1) for (const p of parts) p.dispose();
    }
    let x = all;
    if (n < total) {
      x = tidy(() => contiguous(slice(all, 0, 0, n)));
      this.pending = [tidy(() => contiguous(slice(all, 0, n, total)))];
      this.pendingRows = total - n;
      all.dispose();
    }
    try {
      return await encodeFeatureActivations(this.engine, this.sae, x, this.features);
    } finally {
      x.dispose();
    }
  }
}

export interface TimelineFile {
  layer: number;
  /** timelines[featureId][clipIndex] = activation per token. */
  features: Record<string, Record<string, number[]>>;
  /** Seconds per token row, per clip index. */
  frameSeconds: Record<string, number>;
}

export interface TimelineOptions {
  engine: Engine;
  run: string;
  layer: number;
  sae: SparseEncoder;
  /** (feature, clips) pairs; default: every feature of RUN/features-L.json with its H and L clips. */
  want?: { feature: number; clips: number[] }[];
  batchRows?: number;
}

/** Computes activation-over-time of kept features on their H/L clips → RUN/timelines-L.json. */
export async function computeTimelines(o: TimelineOptions): Promise<TimelineFile> {
  const paths = runPaths(o.run, o.layer);
  const manifest = readCaptureManifest(o.run);
  let want = o.want;
  if (!want) {
    const doc = readJson<any>(paths.features);
    const list: any[] = Array.isArray(doc) ? doc : doc.features ?? [];
    want = list.map((f) => ({ feature: f.id, clips: [...(f.H ?? []), ...(f.L ?? [])].map((c: any) => c.clip) }));
  }
  // clip → features wanted on it
  const byClip = new Map<number, number[]>();
  for (const w of want) for (const c of w.clips) byClip.set(c, [...(byClip.get(c) ?? []), w.feature]);
  const reader = captureShardReader(o.run, manifest, o.layer);
  const out: TimelineFile = { layer: o.layer, features: {}, frameSeconds: {} };
  const clips = [...byClip.keys()].sort((a, b) => manifest.clips[a]!.rowStart - manifest.clips[b]!.rowStart);
  const minRows = matmulSteadyRows(o.engine);
  for (const ci of clips) {
    const c = manifest.clips[ci];
    if (!c) throw new ArdError(`${paths.features}: clip index ${ci} not in the capture manifest`);
    out.frameSeconds[ci] = c.frameSeconds;
    const feats = [...new Set(byClip.get(ci)!)];
    if (c.rowCount === 0) continue;
    // a long clip's rows a block at a time (each block encodes as all the rows at once would)
    const lines = feats.map(() => new Array<number>(c.rowCount));
    for (const [from, to] of steadyBlocks(c.rowCount, minRows)) {
      const x = uploadRows(o.engine, reader, c.rowStart + from, to - from);
      let acts: Float32Array[];
      try {
        acts = await encodeFeatureActivations(o.engine, o.sae, x, feats);
      } finally {
        x.dispose();
      }
      feats.forEach((_, j) => {
        const a = acts[j]!;
        for (let r = 0; r < a.length; r++) lines[j]![from + r] = Math.round(a[r]! * 1e4) / 1e4;
      });
    }
    feats.forEach((f, j) => {
      (out.features[f] ??= {})[ci] = lines[j]!;
    });
  }
  // many small arrays: one line keeps the file small
  writeFileAtomic(paths.timelines, JSON.stringify(out) + '\n');
  return out;
}
