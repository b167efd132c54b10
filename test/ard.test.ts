// AR&D analysis stages on synthetic data where the truth is known: clips are sparse combinations
// of one direction per label plus noise, and an "SAE" whose encoder columns are those directions
// (monosemantic), sums of two of them (polysemantic) or random directions.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { f16round } from '@petamoriken/float16';
import type { Engine } from '../src/gpu/engine.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { clone, map, mul } from '../src/tensor/ops/elementwise.js';
import { reshape } from '../src/tensor/ops/layout.js';
import { sum } from '../src/tensor/ops/reduce.js';
import { topk } from '../src/tensor/ops/index.js';
import { clipResidualMeans, computeTimelines, readRetrieve, retrieve } from '../src/ard/retrieve.js';
import type { SparseEncoder } from '../src/sae/types.js';
import { readCaptureManifest, runPaths, type CaptureManifest } from '../src/ard/run.js';
import { coherenceScore, normaliseClipVectors, rank, rankFeatures, readFeatures } from '../src/ard/rank.js';
import { averagePrecision, bestF1Threshold, denseCandidates, evalSplits, evaluate, evaluateMethod, prf } from '../src/ard/evaluate.js';
import { canonicalTokens, describeFeatures, namesAgree, summariseCaptions, type ClipInfo } from '../src/ard/describe.js';
import { explain, renderTimeline, segmentsOf } from '../src/ard/explain.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { getEngine, randn, rng } from './helpers.js';
import { retrieveRef } from '../reference/ard.js';

const LABELS = ['alarm', 'female speech', 'male speech', 'ticking', 'rain', 'bell'];
const PARTNER = [1, 0, 3, 2, 5, 4]; // polysemantic features mix these pairs; they never co-occur
const D = 32;
const M = 24;
const K = 2;
const BIAS = -0.25;

interface World {
  dirs: Float32Array[]; // per label, unit
  W: Float32Array; // [D, M]
  mono: number[]; // feature id per label
  poly: number[];
  clips: { labels: number[]; split: string; rows: Float32Array; T: number }[];
  rows: Float32Array; // all rows [N, D]
  N: number;
}

function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** Gram–Schmidt: an orthonormal basis of the span of `vs`. */
function unitBasis(vs: Float32Array[]): Float32Array[] {
  const out: Float32Array[] = [];
  for (const v0 of vs) {
    const v = Float32Array.from(v0);
    for (const u of out) {
      const dot = v.reduce((a, x, j) => a + x * u[j]!, 0);
      for (let j = 0; j < v.length; j++) v[j]! -= dot * u[j]!;
    }
    out.push(unit(v));
  }
  return out;
}

function makeWorld(seed: number, nClips = 120, opts: { secondary?: number; nuisance?: number } = {}): World {
  const secondary = opts.secondary ?? 0.3;
  const nuisance = opts.nuisance ?? 0.6;
  const r = rng(seed);
  const dirs = LABELS.map((_, l) => unit(randn(D, seed * 100 + l)));
  // feature ids shuffled so that "first ids" means nothing
  const ids = Array.from({ length: M }, (_, i) => i);
  for (let i = M - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  const mono = LABELS.map((_, l) => ids[l]!);
  const poly = [0, 2, 4].map((_, i) => ids[6 + i]!);
  const W = new Float32Array(D * M);
  const setCol = (f: number, v: Float32Array) => v.forEach((x, i) => (W[i * M + f] = x));
  LABELS.forEach((_, l) => setCol(mono[l]!, dirs[l]!));
  [0, 2, 4].forEach((a, i) => setCol(poly[i]!, unit(dirs[a]!.map((x, j) => x + dirs[a + 1]![j]!))));
  // the other features: random directions orthogonal to every label direction (they fire on noise
  // only), so top-k competition never takes a planted feature's slot
  for (let i = 9; i < M; i++) {
    const v = randn(D, seed * 1000 + i);
    for (const u of unitBasis(dirs)) {
      const dot = v.reduce((a, x, j) => a + x * u[j]!, 0);
      for (let j = 0; j < D; j++) v[j]! -= dot * u[j]!;
    }
    setCol(ids[i]!, unit(v));
  }
  const clips: World['clips'] = [];
  let N = 0;
  const noise = randn(nClips * 40 * D, seed + 7, 0.15);
  let ni = 0;
  for (let c = 0; c < nClips; c++) {
    const primary = c % 6;
    const labels = [primary];
    if (r() < secondary) {
      let s = Math.floor(r() * 6);
      while (s === primary || s === PARTNER[primary]) s = (s + 1) % 6;
      labels.push(s);
    }
    const g = Math.floor(c / 6) % 5;
    const split = g < 3 ? 'train' : g === 3 ? 'val' : 'test';
    const T = 6 + Math.floor(r() * 15);
    const rows = new Float32Array(T * D);
    // a per-clip nuisance (think speaker or room): shared by all of the clip's tokens, so it does not
    // average out in clip means; it blurs single neurons and random directions more than the
    // label directions
    const offset = randn(D, seed * 7919 + c, nuisance / Math.sqrt(D));
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < D; j++) rows[t * D + j] = noise[ni++]! + offset[j]!;
      for (const l of labels) {
        if (r() >= 0.8) continue;
        const a = 0.8 + 0.4 * r();
        for (let j = 0; j < D; j++) rows[t * D + j]! += a * dirs[l]![j]!;
      }
    }
    clips.push({ labels, split, rows, T });
    N += T;
  }
  const rows = new Float32Array(N * D);
  let at = 0;
  for (const c of clips) {
    rows.set(c.rows, at);
    at += c.rows.length;
  }
  return { dirs, W, mono, poly, clips, rows, N };
}

/** Top-K "SAE": z = topk(relu(x·W + b)), W given; built from broadcast mul + sum (no matmul op needed). */
class TinySae implements SparseEncoder {
  readonly m = M;
  private W3: Tensor;
  private b: Tensor;
  recorded: { values: Tensor; indices: Tensor }[] | null = null;
  constructor(engine: Engine, W: Float32Array, bias = BIAS) {
    this.W3 = tensor(engine, W, [1, D, M]);
    this.b = tensor(engine, new Float32Array(M).fill(bias), [M]);
  }
  encode(x: Tensor): { values: Tensor; indices: Tensor } {
    const B = x.shape[0]!;
    const x3 = reshape(x, [B, D, 1]);
    const prod = mul(x3, this.W3);
    const pre = sum(prod, 1);
    const z = map([pre, this.b], 'max(a + b, 0.0)', { name: 'test_relu', out: 'f32' });
    const out = topk(z, K);
    for (const t of [x3, prod, pre, z]) if (t !== x) t.dispose();
    this.recorded?.push({ values: clone(out.values), indices: map([out.indices], 'a', { name: 'copy', ct: 'i32' }) });
    return out;
  }
  dispose(): void {
    this.W3.dispose();
    this.b.dispose();
  }
}

/** RUN/capture for a world: shards of `shardRows` rows (clips cross shard boundaries). */
function writeRun(run: string, w: World, dtype: 'F32' | 'F16', shardRows: number, layer = 3): CaptureManifest {
  const clips: CaptureManifest['clips'] = [];
  let at = 0;
  w.clips.forEach((c, i) => {
    clips.push({
      id: `clip-${i}`,
      file: `clips/${i}.wav`,
      labels: c.labels.map((l) => LABELS[l]!),
      split: c.split,
      duration: c.T * 0.04,
      rowStart: at,
      rowCount: c.T,
      frameSeconds: 0.04,
    });
    at += c.T;
  });
  const shards: { file: string; rowStart: number; rowCount: number }[] = [];
  for (let s = 0, i = 0; s < w.N; s += shardRows, i++) {
    const n = Math.min(shardRows, w.N - s);
    const file = `layer-${layer}/shard-${String(i).padStart(5, '0')}.safetensors`;
    writeSafetensors(path.join(run, 'capture', file), { acts: { dtype, shape: [n, D], data: w.rows.slice(s * D, (s + n) * D) } });
    shards.push({ file, rowStart: s, rowCount: n });
  }
  const manifest: CaptureManifest = { layers: [layer], d: D, dtype: dtype === 'F16' ? 'f16' : 'f32', positions: 'audio', clips, shards: { [layer]: shards } };
  fs.mkdirSync(path.join(run, 'capture'), { recursive: true });
  fs.writeFileSync(path.join(run, 'capture', 'manifest.json'), JSON.stringify(manifest));
  // an SAE file to hash (content matters, not format)
  writeSafetensors(runPaths(run, layer).sae, { W_enc: { dtype: 'F32', shape: [D, M], data: w.W } }, { m: String(M), d: String(D), k: String(K) });
  return manifest;
}

let engine: Engine;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-ard-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  engine = await getEngine();
});

const P = 6;
// fewer two-label clips: each planted concept's clips are then clearly alike
const RANK_WORLD = { secondary: 0.1, nuisance: 0.4 };
const LAYER = 3;

describe('retrieve', () => {
  const w = makeWorld(1);
  const run = path.join(tmp, 'run-f32');

  it('matches a plain TS reference (means, coverage, score, residual means, H/L)', async () => {
    writeRun(run, w, 'F32', 400, LAYER);
    const sae = new TinySae(engine, w.W);
    sae.recorded = [];
    const progress: number[] = [];
    const res = await retrieve({ engine, run, layer: LAYER, sae, p: P, batchRows: 100, onProgress: (d) => progress.push(d) });
    expect(res.skipped).toBe(false);
    expect(res.rows).toBe(w.N);
    expect(progress[progress.length - 1]).toBe(w.N);
    // codes the GPU actually produced, concatenated in row order
    const values = new Float32Array(w.N * K);
    const indices = new Int32Array(w.N * K);
    let at = 0;
    for (const c of sae.recorded) {
      const v = await c.values.toFloat32();
      values.set(v, at);
      indices.set((await c.indices.read()) as Int32Array, at);
      at += v.length;
      c.values.dispose();
      c.indices.dispose();
    }
    expect(at).toBe(w.N * K);
    const ref = retrieveRef(w.clips.map((c) => c.T), w.rows, D, values, indices, K, M, P);
    const got = readRetrieve(res.file);
    expect(got.nClips).toBe(w.clips.length);
    expect(got.m).toBe(M);
    const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
      expect(a.length, what).toBe(b.length);
      for (let i = 0; i < a.length; i++) if (Math.abs(a[i]! - b[i]!) > 1e-5 * (1 + Math.abs(b[i]!))) throw new Error(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
    };
    close(got.mean, ref.mean, 'clip_mean');
    close(got.coverage, ref.cov, 'clip_coverage');
    close(got.score, ref.score, 'clip_score');
    close(got.residMean!, ref.resid, 'clip_resid_mean');
    // the SAE-free variant (baseline inputs) gives the same residual means
    close((await clipResidualMeans({ engine, run, layer: LAYER, batchRows: 64 })).residMean, ref.resid, 'clipResidualMeans');
    // the synthetic features really do fire (the test would be vacuous otherwise)
    expect(got.coverage.filter((c) => c > 0).length).toBeGreaterThan(w.clips.length * 3);
    for (let f = 0; f < M; f++) {
      const H = [...got.H.subarray(f * P, (f + 1) * P)].filter((c) => c >= 0);
      const L = [...got.L.subarray(f * P, (f + 1) * P)].filter((c) => c >= 0);
      expect(H, `H of feature ${f}`).toEqual(ref.H[f]);
      expect(L, `L of feature ${f}`).toEqual(ref.L[f]);
      expect(got.firing[f]).toBe(ref.cov.filter((_, i) => i % M === f && ref.cov[i]! > 0).length);
    }
    // H of a planted feature: clips carrying its label
    const f0 = w.mono[0]!;
    for (const c of ref.H[f0]!) expect(w.clips[c]!.labels).toContain(0);
    sae.dispose();
  });

  it('skips when inputs are unchanged, recomputes on force or a changed SAE; batching does not change sums', async () => {
    const sae = new TinySae(engine, w.W);
    const first = readRetrieve(runPaths(run, LAYER).retrieve);
    const again = await retrieve({ engine, run, layer: LAYER, sae, p: P, batchRows: 100 });
    expect(again.skipped).toBe(true);
    const forced = await retrieve({ engine, run, layer: LAYER, sae, p: P, batchRows: 256, force: true });
    expect(forced.skipped).toBe(false);
    // codes are added row by row in row order whatever the batch size: bit-identical sums
    const second = readRetrieve(forced.file);
    expect(Buffer.from(second.mean.buffer).equals(Buffer.from(first.mean.buffer))).toBe(true);
    expect(Buffer.from(second.coverage.buffer).equals(Buffer.from(first.coverage.buffer))).toBe(true);
    const saeFile = runPaths(run, LAYER).sae;
    writeSafetensors(saeFile, { W_enc: { dtype: 'F32', shape: [D, M], data: w.W.map((x) => x * 1.01) } }, { m: String(M) });
    const changed = await retrieve({ engine, run, layer: LAYER, sae, p: P, batchRows: 100 });
    expect(changed.skipped).toBe(false);
    const p4 = await retrieve({ engine, run, layer: LAYER, sae, p: 4, batchRows: 100 });
    expect(p4.skipped).toBe(false); // p is part of the inputs
    expect(readRetrieve(p4.file).H.length).toBe(4 * M);
    sae.dispose();
  });

  it('reads f16 shards (cast on the GPU) and agrees with f16-rounded inputs', async () => {
    const run16 = path.join(tmp, 'run-f16');
    const w16 = { ...w, rows: w.rows.map((x) => f16round(x)) };
    writeRun(run16, w, 'F16', 333, LAYER);
    const run32 = path.join(tmp, 'run-f16ref');
    writeRun(run32, w16, 'F32', 333, LAYER);
    const sae = new TinySae(engine, w.W);
    const a = readRetrieve((await retrieve({ engine, run: run16, layer: LAYER, sae, p: P, batchRows: 128 })).file);
    const b = readRetrieve((await retrieve({ engine, run: run32, layer: LAYER, sae, p: P, batchRows: 77 })).file);
    let worst = 0;
    for (let i = 0; i < a.mean.length; i++) worst = Math.max(worst, Math.abs(a.mean[i]! - b.mean[i]!));
    expect(worst).toBeLessThan(1e-5);
    for (let i = 0; i < a.residMean!.length; i++) expect(Math.abs(a.residMean![i]! - b.residMean![i]!)).toBeLessThan(1e-5);
    sae.dispose();
  });

  it('works with the real SparseAutoencoder (saved, loaded) and agrees with the test encoder', async () => {
    const runS = path.join(tmp, 'run-real-sae');
    writeRun(runS, w, 'F32', 400, LAYER);
    const Wdec = new Float32Array(M * D);
    for (let c = 0; c < D; c++) for (let f = 0; f < M; f++) Wdec[f * D + c] = w.W[c * M + f]!;
    const built = SparseAutoencoder.fromArrays(engine, { d: D, m: M, k: K }, { W_enc: w.W, b_enc: new Float32Array(M).fill(BIAS), W_dec: Wdec, b_dec: new Float32Array(D) });
    const saeFile = runPaths(runS, LAYER).sae;
    await built.save(saeFile);
    built.dispose();
    const real = SparseAutoencoder.load(engine, saeFile);
    const a = readRetrieve((await retrieve({ engine, run: runS, layer: LAYER, sae: real, p: P, batchRows: 300 })).file);
    real.dispose();
    const tiny = new TinySae(engine, w.W);
    const b = readRetrieve((await retrieve({ engine, run: runS, layer: LAYER, sae: tiny, p: P, batchRows: 300, force: true })).file);
    tiny.dispose();
    let worst = 0;
    for (let i = 0; i < a.mean.length; i++) worst = Math.max(worst, Math.abs(a.mean[i]! - b.mean[i]!));
    expect(worst).toBeLessThan(1e-4);
    expect([...a.H]).toEqual([...b.H]);
  });

  it('rejects a manifest whose shards do not cover the clips', async () => {
    const bad = path.join(tmp, 'run-bad');
    const man = writeRun(bad, w, 'F32', 400, LAYER);
    man.shards[LAYER] = man.shards[LAYER]!.slice(1);
    fs.writeFileSync(path.join(bad, 'capture', 'manifest.json'), JSON.stringify(man));
    const sae = new TinySae(engine, w.W);
    await expect(retrieve({ engine, run: bad, layer: LAYER, sae, p: P })).rejects.toThrow(/shards miss row 0/);
    sae.dispose();
  });
});

describe('rank', () => {
  it('coherenceScore: closed forms agree with explicit pairwise means', () => {
    const d = 5;
    const n = 7;
    const raw = randn(n * d, 3);
    const v = normaliseClipVectors(raw, new Array(n).fill(1), n, d);
    const H = [0, 2, 5];
    const L = [1, 6];
    const dot = (a: number, b: number) => [...Array(d).keys()].reduce((s, j) => s + v[a * d + j]! * v[b * d + j]!, 0);
    let w = 0;
    let np = 0;
    for (const a of H) for (const b of H) if (a !== b) (w += dot(a, b)), np++;
    let x = 0;
    for (const a of H) for (const b of L) x += dot(a, b);
    const s = coherenceScore(v, d, H, L);
    expect(s.within).toBeCloseTo(w / np, 6);
    expect(s.cross).toBeCloseTo(x / (H.length * L.length), 6);
    expect(s.coherence).toBeCloseTo(w / np - x / 6, 6);
  });

  it('puts the planted monosemantic features first, polysemantic ones below', async () => {
    const w = makeWorld(2, 240, RANK_WORLD);
    const run = path.join(tmp, 'run-rank');
    writeRun(run, w, 'F32', 1000, LAYER);
    const sae = new TinySae(engine, w.W);
    // p = 12: with fewer top clips a polysemantic feature's H is often one-sided by chance
    await retrieve({ engine, run, layer: LAYER, sae, p: 12, batchRows: 512 });
    sae.dispose();
    const out = rank({ run, layer: LAYER, C: 12, maxFiringShare: 0.9 });
    if (process.env.ARD_DEBUG) console.log(JSON.stringify({ mono: w.mono, poly: w.poly, f: out.features.map((f) => [f.id, f.scores, f.H.map((c) => w.clips[c.clip]!.labels.join('+')).join(' '), f.L.map((c) => w.clips[c.clip]!.labels.join('+')).join(' ')]), ex: out.excluded }, null, 1));
    const ids = out.features.map((f) => f.id);
    expect(new Set(ids.slice(0, 6))).toEqual(new Set(w.mono));
    const monoMin = Math.min(...out.features.filter((f) => w.mono.includes(f.id)).map((f) => f.scores.mono));
    for (const f of out.features) if (w.poly.includes(f.id)) expect(f.scores.mono).toBeLessThan(monoMin);
    // H of every kept planted feature is made of clips with its label; its L holds none
    for (const f of out.features.slice(0, 6)) {
      const l = w.mono.indexOf(f.id);
      for (const c of f.H) expect(w.clips[c.clip]!.labels).toContain(l);
      expect(f.L.length).toBeGreaterThan(0);
      expect(f.scores.hMean).toBeGreaterThan(f.scores.lMean);
      expect(f.H[0]!.id).toBe(`clip-${f.H[0]!.clip}`);
    }
    const file = readFeatures(runPaths(run, LAYER).features);
    expect(file.features.length).toBeLessThanOrEqual(12);
    expect(file.method).toMatch(/cosine/);
    // exclusion reasons are counted: a stricter share excludes more
    const strict = rankFeatures(readRetrieve(runPaths(run, LAYER).retrieve), readCaptureManifest(run), { C: 12, maxFiringShare: 0.05 });
    expect(Object.keys(strict.excluded).join(';')).toMatch(/more than 5% of clips/);
  });
});

describe('evaluate', () => {
  it('AP, threshold, precision/recall/F1 match hand-computed values', () => {
    // AP = (1/1 + 2/3 + 3/6) / 3
    expect(averagePrecision([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 0, 1, 0, 0, 1])).toBeCloseTo((1 + 2 / 3 + 0.5) / 3, 10);
    // ties form one step: 0.5·1 + 0.5·(2/3)
    expect(averagePrecision([0.9, 0.8, 0.8, 0.3], [1, 1, 0, 0])).toBeCloseTo(0.5 + 1 / 3, 10);
    expect(averagePrecision([0.1, 0.2], [0, 0])).toBeNaN();
    // F1 over prefixes: 0.5, 0.4, 0.667, 0.571, 0.5, 0.667 → first best (higher threshold) between 0.7 and 0.6
    const t = bestF1Threshold([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 0, 1, 0, 0, 1]);
    expect(t.threshold).toBeCloseTo(0.65, 10);
    expect(t.f1).toBeCloseTo(2 / 3, 10);
    const r = prf([0.66, 0.64, 0.9, 0.1], [1, 1, 0, 0], 0.65);
    expect(r).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5 });
    expect(prf([0.1], [1], 0.5)).toEqual({ precision: 0, recall: 0, f1: 0 });
  });

  it('evaluateMethod picks the best validation candidate and reports test figures', () => {
    const clips = [
      { labels: ['x'], split: 'val' },
      { labels: [], split: 'val' },
      { labels: ['x'], split: 'val' },
      { labels: [], split: 'val' },
      { labels: ['x'], split: 'test' },
      { labels: ['x'], split: 'test' },
      { labels: [], split: 'test' },
      { labels: [], split: 'test' },
    ];
    const sp = evalSplits(clips);
    // candidate 0 is noise on val; candidate 1 ranks val perfectly
    const val = Float32Array.from([0.1, 0.9, 0.2, 0.3, 0.8, 0.7, 0.9, 0.1]); // rows: val clips × 2 candidates
    const test = Float32Array.from([0.0, 0.66, 0.0, 0.64, 0.0, 0.9, 0.0, 0.1]);
    const res = evaluateMethod(denseCandidates(val, 4, 2), denseCandidates(test, 4, 2), sp);
    const x = res.perLabel.x!;
    expect(x.feature).toBe(1);
    expect(x.valAp).toBeCloseTo(1, 10);
    expect(x.threshold).toBeCloseTo(0.5, 6); // midpoint of 0.7 (last positive) and 0.3
    // test: 0.66, 0.64 positive; 0.9 negative, 0.1 negative → predicted {0.66, 0.64, 0.9}
    expect(x.precision).toBeCloseTo(2 / 3, 5);
    expect(x.recall).toBe(1);
    expect(x.f1).toBeCloseTo(0.8, 5);
    expect(x.ap).toBeCloseTo(0.5 * 0.5 + 0.5 * (2 / 3), 5);
    expect(res.map).toBeCloseTo(x.ap, 10);
  });

  it('SAE features beat neurons and random directions on planted data; name accuracy uses synonyms', async () => {
    const w = makeWorld(4, 180);
    const run = path.join(tmp, 'run-eval');
    writeRun(run, w, 'F32', 2000, LAYER);
    const sae = new TinySae(engine, w.W);
    await retrieve({ engine, run, layer: LAYER, sae, p: P, batchRows: 1024 });
    sae.dispose();
    const feats = rank({ run, layer: LAYER, C: 20, maxFiringShare: 0.9 });
    // names as a captioner might give them: three right via synonyms, one wrong
    const names: Record<number, string> = { 0: 'beeping', 1: 'a woman talking', 2: 'male voice', 3: 'rain' };
    for (const f of feats.features) {
      const l = w.mono.indexOf(f.id);
      if (l in names) f.name = names[l];
    }
    fs.writeFileSync(runPaths(run, LAYER).features, JSON.stringify(feats));
    const ev = evaluate({ run, layer: LAYER, seed: 1 });
    if (process.env.ARD_DEBUG) console.log(JSON.stringify([ev.sae, ev.neurons, ev.random].map((r) => [r.map, r.f1])));
    if (process.env.ARD_DEBUG) console.log(JSON.stringify(Object.entries(ev.ablations!.rows).map(([k, r]) => [k, r.mono, r.f1, r.map, r.kept, r.labelsCovered])));
    expect(ev.labels).toEqual([...LABELS].sort());
    expect(ev.sae.map).toBeGreaterThan(0.9);
    expect(ev.sae.map).toBeGreaterThan(ev.neurons.map + 0.05);
    expect(ev.sae.map).toBeGreaterThan(ev.random.map + 0.05);
    expect(ev.sae.f1).toBeGreaterThan(ev.neurons.f1);
    // ablation table: chosen representatives are far more coherent than random ones; neurons trail
    const ab = ev.ablations!.rows;
    expect(ab.ard.mono).toBeGreaterThan(3 * ab.random.mono);
    expect(ab.ard.map).toBeGreaterThan(ab.neurons.map + 0.2);
    for (const [l, label] of LABELS.entries()) expect(ev.sae.perLabel[label]!.feature).toBe(w.mono[l]);
    expect(ev.named).toBe(4);
    expect(ev.name_accuracy).toBeCloseTo(0.75, 10);
    expect(ev.name_mismatches).toEqual([expect.objectContaining({ name: 'rain', label: 'ticking' })]);
    expect(JSON.parse(fs.readFileSync(runPaths(run, LAYER).eval, 'utf8')).random.directions).toBe(M);
  });
});

describe('describe', () => {
  it('summarises captions into a short concept name', () => {
    expect(summariseCaptions(['a woman speaking', 'a woman is talking', 'female voice speaking'])).toEqual({ name: 'female speech', support: 1 });
    // the bigram is in half of the captions: it wins
    expect(summariseCaptions(['a clock ticking', 'steady ticking', 'ticking of a clock', 'a ticking sound'])).toEqual({ name: 'clock ticking', support: 0.5 });
    expect(summariseCaptions(['a clock ticking', 'steady ticking', 'regular ticking', 'ticking'])).toEqual({ name: 'ticking', support: 1 });
    expect(summariseCaptions(['an alarm beeping', 'a beeping alarm', 'a repeating alarm', 'an alarm']).name).toBe('alarm');
    expect(summariseCaptions(['a bell ringing', 'a ringing bell', 'a bell being struck']).name).toBe('bell');
    expect(summariseCaptions(['water dripping', 'water dripping from a tap', 'drops of water']).name).toBe('water drip');
    expect(summariseCaptions(['a man speaking over rain', 'a man talking', 'male speech with rain', 'a dog barking'])).toEqual({ name: 'male speech', support: 0.75 });
    expect(summariseCaptions(['the sound of', '', 'audio'])).toEqual({ name: 'unknown', support: 0 });
    // no bigram in half: the top unigram
    expect(summariseCaptions(['a siren wailing', 'distant siren', 'a police siren', 'car horn']).name).toBe('siren');
  });

  it('names agree with labels through synonyms and stems', () => {
    expect(namesAgree('female speech', 'female speech')).toBe(true);
    expect(namesAgree('a woman talking', 'female speech')).toBe(true);
    expect(namesAgree('beeping', 'alarm')).toBe(true);
    expect(namesAgree('clock tick', 'ticking')).toBe(true);
    expect(namesAgree('humming engine', 'engine hum')).toBe(true);
    expect(namesAgree('dripping water', 'water drip')).toBe(true);
    expect(namesAgree('speech', 'female speech')).toBe(false);
    expect(namesAgree('male speech', 'female speech')).toBe(false);
    expect(namesAgree('rain', 'ticking')).toBe(false);
    expect([...canonicalTokens('A woman is speaking')]).toEqual(['female', 'speech']);
  });

  it('describeFeatures captions H clips through a pluggable describer and writes names', async () => {
    const run = path.join(tmp, 'run-describe');
    const w = makeWorld(5, 60);
    writeRun(run, w, 'F32', 5000, LAYER);
    const feats = {
      layer: LAYER, p: 2, C: 2, method: '', nClips: 60, m: M, excluded: {},
      features: [
        { id: 7, scores: {}, H: [{ clip: 1, id: 'clip-1', score: 1, mean: 1, coverage: 1 }, { clip: 7, id: 'clip-7', score: 1, mean: 1, coverage: 1 }], L: [] },
      ],
    };
    fs.writeFileSync(runPaths(run, LAYER).features, JSON.stringify(feats));
    const seen: number[] = [];
    const describer = { caption: async (c: ClipInfo) => (seen.push(c.index), `a woman talking (${c.id})`) };
    const out = await describeFeatures({ run, layer: LAYER, describer });
    expect(seen).toEqual([1, 7]);
    expect(out.features[0]!.name).toBe('female speech');
    expect(readFeatures(runPaths(run, LAYER).features).features[0]!.captions).toEqual(['a woman talking (clip-1)', 'a woman talking (clip-7)']);
    // unchanged features, capture and describer: skipped, no caption asked for
    const again = await describeFeatures({ run, layer: LAYER, describer });
    expect(again.skipped).toBe(true);
    expect(seen).toEqual([1, 7]);
    // another describer is a changed input: its names replace the first one's
    const other = { id: 'other', caption: async (c: ClipInfo) => (seen.push(c.index), 'a bell ringing') };
    const third = await describeFeatures({ run, layer: LAYER, describer: other });
    expect(third.skipped).toBeUndefined();
    expect(seen).toEqual([1, 7, 1, 7]);
    expect(readFeatures(runPaths(run, LAYER).features).features[0]!.name).toBe('bell');
  });

  it('describeFeatures with captionMany: the clips of several features captioned in one call, same names as one by one', async () => {
    const run = path.join(tmp, 'run-describe-many');
    writeRun(run, makeWorld(5, 60), 'F32', 5000, LAYER);
    const H = (clips: number[]) => clips.map((clip) => ({ clip, id: `clip-${clip}`, score: 1, mean: 1, coverage: 1 }));
    const feats = {
      layer: LAYER, p: 3, C: 3, method: '', nClips: 60, m: M, excluded: {},
      features: [{ id: 7, scores: {}, H: H([1, 7]), L: [] }, { id: 9, scores: {}, H: H([7, 9, 11]), L: [] }, { id: 12, scores: {}, H: H([2]), L: [] }],
    };
    const text = (c: ClipInfo) => (c.index % 2 ? `a woman talking (${c.id})` : 'a bell ringing');
    fs.writeFileSync(runPaths(run, LAYER).features, JSON.stringify(feats));
    const one = await describeFeatures({ run, layer: LAYER, describer: { id: 'd', caption: async (c: ClipInfo) => text(c) } });
    fs.writeFileSync(runPaths(run, LAYER).features, JSON.stringify(feats));
    const calls: number[][] = [];
    const batched = {
      id: 'd',
      caption: async (): Promise<string> => {
        throw new Error('caption() called');
      },
      captionMany: async (cs: ClipInfo[]) => (calls.push(cs.map((c) => c.index)), cs.map(text)),
    };
    const many = await describeFeatures({ run, layer: LAYER, describer: batched, batchClips: 4 });
    // batches of ≥ 4 new clips, whole features at a time, each clip once
    expect(calls).toEqual([[1, 7, 9, 11], [2]]);
    expect(many.features.map((f) => [f.name, f.captions])).toEqual(one.features.map((f) => [f.name, f.captions]));
  });
});

describe('explain and timelines', () => {
  it('segments and terminal timeline', () => {
    const a = [0, 0.5, 0.6, 0, 0.2, 0, 0, 0, 1.0, 0];
    expect(segmentsOf(a, 0.1)).toEqual([
      { start: 0.1, end: 0.5, peak: 0.6 },
      { start: 0.8, end: 0.9, peak: 1 },
    ]);
    expect(segmentsOf(a, 0.1, 0, 0)).toHaveLength(3);
    const tl = renderTimeline([{ label: 'alarm', activations: a, scale: 1 }], 0.1, 10);
    const row = tl.split('\n')[0]!;
    expect(row).toBe('alarm │ ▃▅ ▂   ▇ │ 1.00');
    expect(tl).toMatch(/1\.0s/);
  });

  it('explain finds which planted features fire when', async () => {
    const w = makeWorld(6, 12);
    const sae = new TinySae(engine, w.W);
    // 10 rows: alarm in rows 0–3, ticking in rows 6–9, nothing in 4–5
    const T = 10;
    const x = new Float32Array(T * D);
    for (let t = 0; t < T; t++) {
      const l = t < 4 ? 0 : t >= 6 ? 3 : -1;
      if (l >= 0) for (let j = 0; j < D; j++) x[t * D + j] = w.dirs[l]![j]!;
    }
    const features = [
      { id: w.mono[0]!, name: 'alarm', scores: { maxMean: 0.75 } },
      { id: w.mono[3]!, name: 'ticking', scores: { maxMean: 0.75 } },
      { id: w.mono[4]!, name: 'rain', scores: { maxMean: 0.75 } },
    ] as any;
    const ex = await explain({ engine, sae, acts: x, d: D, frameSeconds: 0.5, features });
    expect(ex.duration).toBe(5);
    expect(ex.features.map((f) => f.name)).toEqual(['alarm', 'ticking']);
    expect(ex.features[0]!.segments).toEqual([{ start: 0, end: 2, peak: 0.75 }]);
    expect(ex.features[1]!.segments).toEqual([{ start: 3, end: 5, peak: 0.75 }]);
    expect(ex.timeline.split('\n')).toHaveLength(4);
    expect(ex.timeline).toMatch(/alarm \(#\d+\)\s+│▇▇▇▇      │ 0\.75/);
    sae.dispose();
  });

  it('computeTimelines writes per-token activations of kept features on their H/L clips', async () => {
    const run = path.join(tmp, 'run-rank');
    const feats = readFeatures(runPaths(run, LAYER).features);
    const w = makeWorld(2, 240, RANK_WORLD);
    const sae = new TinySae(engine, w.W);
    const f = feats.features[0]!;
    const tl = await computeTimelines({ engine, run, layer: LAYER, sae, want: [{ feature: f.id, clips: [f.H[0]!.clip, f.L[0]!.clip] }] });
    sae.dispose();
    const h = tl.features[f.id]![f.H[0]!.clip]!;
    expect(h).toHaveLength(w.clips[f.H[0]!.clip]!.T);
    // its mean over tokens is retrieve's clip mean
    const mean = h.reduce((a, b) => a + b, 0) / h.length;
    expect(mean).toBeCloseTo(f.H[0]!.mean, 3);
    expect(JSON.parse(fs.readFileSync(runPaths(run, LAYER).timelines, 'utf8')).frameSeconds[f.H[0]!.clip]).toBe(0.04);
  });
});
