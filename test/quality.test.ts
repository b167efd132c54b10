// SAE quality figures (src/ard/quality.ts) on a hand-made SAE and rows whose FVU, L0, dead and
// dense counts and density histogram are worked out by hand below; and feature grouping
// (src/ard/rank.ts groupFeatures) on parallel decoder rows and overlapping H^k sets.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { ShardReader } from '../src/io/shards.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { densityHistogram, qualityFromCounts, saeQuality } from '../src/ard/quality.js';
import type { FeatureEntry } from '../src/ard/rank.js';
import { decoderRowsFromFile, groupFeatures } from '../src/ard/rank.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { trainSaeStage } from '../src/ard/train-sae.js';
import type { CaptureManifest } from '../src/ard/run.js';
import { runPaths } from '../src/ard/run.js';
import { getEngine, randn } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-quality-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// d = 4, m = 6, k = 2. Latents 0–3 read and write the unit axes e0–e3; latents 4 and 5 read
// −(1, 1, 1, 1), which is negative on every row below, so they never fire.
const d = 4;
const m = 6;
const k = 2;
function handSae(engine: Engine, inputScale: number): SparseAutoencoder {
  const W_enc = new Float32Array(d * m);
  const W_dec = new Float32Array(m * d);
  for (let c = 0; c < d; c++) {
    W_enc[c * m + c] = 1;
    W_enc[c * m + 4] = -1;
    W_enc[c * m + 5] = -1;
    W_dec[c * d + c] = 1;
  }
  W_dec[4 * d + 0] = 1;
  W_dec[5 * d + 1] = 1;
  return SparseAutoencoder.fromArrays(engine, { d, m, k }, { W_enc, b_enc: new Float32Array(m), W_dec, b_dec: new Float32Array(d) }, { inputScale });
}

// 20 rows:
//   9 × (3, 0, 0, 0): top 2 = latent 0 (3) and a latent at 0 → one fires; x̂ = x
//   8 × (1, 2, 0, 0): latents 1 and 0 fire; x̂ = x
//   2 × (3, 2, 1, 0): latents 0 and 1 fire, e2 is lost; ‖x − x̂‖² = 1 each
//   1 × (0, 0, 0, 4): latent 3 fires (the other top value is 0); x̂ = x
// firing counts: latent 0: 19, 1: 10, 2: 0, 3: 1, 4: 0, 5: 0 → L0 = 30 / 20 = 1.5
// dead = 3 (2, 4, 5); dense (> 10 % of 20 rows = more than 2) = 2 (0, 1)
// Σ‖x − x̂‖² = 2; Σ‖x‖² = 9·9 + 8·5 + 2·14 + 16 = 165; Σx = (41, 20, 2, 4), so
// Σ‖x − x̄‖² = 165 − ‖Σx‖² / 20 = 165 − 2101 / 20 = 59.95 and FVU = 2 / 59.95.
// log10 densities: 0.95 → −0.022 and 0.5 → −0.301 (bin 19, [−0.5, 0]); 0.05 → −1.301 (bin 17, [−1.5, −1)).
const ROWS: number[][] = [
  ...Array.from({ length: 9 }, () => [3, 0, 0, 0]),
  ...Array.from({ length: 8 }, () => [1, 2, 0, 0]),
  [3, 2, 1, 0],
  [0, 0, 0, 4],
  [3, 2, 1, 0],
];
const FVU = 2 / 59.95;

describe('SAE quality', () => {
  let engine: Engine;
  let reader: ShardReader;
  beforeAll(async () => {
    engine = await getEngine();
    // two shards, so the batches below also cross a shard boundary
    const a = path.join(tmp, 'a.f32');
    const b = path.join(tmp, 'b.f32');
    fs.writeFileSync(a, Buffer.from(Float32Array.from(ROWS.slice(0, 11).flat()).buffer));
    fs.writeFileSync(b, Buffer.from(Float32Array.from(ROWS.slice(11).flat()).buffer));
    reader = new ShardReader([a, b], d);
  });

  it('measures FVU, L0, dead and dense latents and the density histogram as worked out by hand', async () => {
    const sae = handSae(engine, 1);
    try {
      const q = await saeQuality(engine, sae, reader, { batchRows: 7 });
      expect(q.rows).toBe(20);
      expect([q.d, q.m, q.k]).toEqual([d, m, k]);
      expect(q.fvu).toBeCloseTo(FVU, 6);
      expect(q.explainedVariance).toBeCloseTo(1 - FVU, 6);
      expect(q.l0).toBe(1.5);
      expect(q.dead).toBe(3);
      expect(q.deadShare).toBe(0.5);
      expect(q.dense).toBe(2);
      expect(q.denseShare).toBeCloseTo(2 / 6, 12);
      const want = new Array(20).fill(0);
      want[19] = 2;
      want[17] = 1;
      expect(q.histogram).toEqual({ log10Lo: -10, log10Hi: 0, counts: want, dead: 3 });
    } finally {
      sae.dispose();
    }
  });

  it('gives the same figures whatever the batch size and input scale (the scale cancels in FVU)', async () => {
    const sae = handSae(engine, 0.5);
    try {
      for (const batchRows of [1, 20, 4096]) {
        const q = await saeQuality(engine, sae, reader, { batchRows });
        expect(q.fvu).toBeCloseTo(FVU, 6);
        expect([q.l0, q.dead, q.dense]).toEqual([1.5, 3, 2]);
      }
    } finally {
      sae.dispose();
    }
  });

  it('train-sae stores the quality of the SAE it trained in sae-L.train.json, and adds it to an older one', async () => {
    const run = path.join(tmp, 'run');
    const rows = 256;
    const D = 8;
    fs.mkdirSync(path.join(run, 'capture', 'layer-0'), { recursive: true });
    writeSafetensors(path.join(run, 'capture', 'layer-0', 's0.safetensors'), { acts: { dtype: 'F32', shape: [rows, D], data: randn(rows * D, 4) } });
    const manifest: CaptureManifest = {
      layers: [0], d: D, dtype: 'f32',
      clips: [{ id: 'a', file: 'a.wav', labels: [], split: 'train', duration: 1, rowStart: 0, rowCount: rows, frameSeconds: 0.04 }],
      shards: { '0': [{ file: 'layer-0/s0.safetensors', rowStart: 0, rowCount: rows }] },
    };
    fs.writeFileSync(path.join(run, 'capture', 'manifest.json'), JSON.stringify(manifest));
    const opts = { engine, run, layer: 0, m: 32, k: 4, steps: 20, batchSize: 64, seed: 1 };
    const r = await trainSaeStage(opts);
    const paths = runPaths(run, 0);
    const doc = JSON.parse(fs.readFileSync(paths.saeTrain, 'utf8'));
    expect(doc.quality).toEqual(JSON.parse(JSON.stringify(r.quality)));
    expect(doc.quality.rows).toBe(rows);
    expect(doc.quality.l0).toBeGreaterThan(0);
    expect(doc.quality.l0).toBeLessThanOrEqual(4);
    expect(doc.quality.fvu).toBeGreaterThan(0);
    expect(doc.quality.fvu).toBeLessThan(1.5);
    // the same figures measured again on the saved SAE
    const sae = SparseAutoencoder.load(engine, paths.sae);
    try {
      const again = await saeQuality(engine, sae, new ShardReader([path.join(run, 'capture', 'layer-0', 's0.safetensors')], D));
      expect(again.fvu).toBeCloseTo(doc.quality.fvu, 5);
      expect([again.l0, again.dead, again.dense]).toEqual([doc.quality.l0, doc.quality.dead, doc.quality.dense]);
    } finally {
      sae.dispose();
    }
    // unchanged inputs: skipped, nothing to add
    expect(await trainSaeStage(opts)).toMatchObject({ skipped: true, quality: null });
    // a train.json written before quality was measured gets it on the next (skipped) run
    const { quality: _q, ...old } = doc;
    fs.writeFileSync(paths.saeTrain, JSON.stringify(old));
    const s2 = await trainSaeStage(opts);
    expect(s2.skipped).toBe(true);
    expect(s2.quality!.fvu).toBeCloseTo(doc.quality.fvu, 5);
    const doc2 = JSON.parse(fs.readFileSync(paths.saeTrain, 'utf8'));
    expect(doc2.quality.l0).toBe(doc.quality.l0);
    expect(doc2.log).toEqual(doc.log);
  });

  it('bins densities on their edges exactly and counts "dense" strictly above 10 %', () => {
    // 1000 rows: 100 firings = density 0.1 exactly (log10 −1: bin 18, [−1, −0.5), not dense);
    // 101 is dense (log10 −0.996: bin 18); 1000 = density 1 (log10 0: the last bin, 19);
    // 1 = 1e-3 (log10 −3: bin 14)
    const q = qualityFromCounts([100, 101, 1000, 1, 0], 1000, 1, 4, { d: 4, k: 2 });
    expect(q.dense).toBe(2);
    expect(q.dead).toBe(1);
    expect(q.l0).toBeCloseTo(1.202, 12);
    expect(q.fvu).toBe(0.25);
    expect(q.histogram.counts[17]).toBe(0);
    expect(q.histogram.counts[18]).toBe(2);
    expect(q.histogram.counts[19]).toBe(1);
    expect(q.histogram.counts[14]).toBe(1);
    expect(q.histogram.counts.reduce((a, b) => a + b, 0)).toBe(4);
    // below the lowest edge: the first bin
    expect(densityHistogram([1], 1e12).counts[0]).toBe(1);
  });
});

describe('feature grouping', () => {
  const feature = (id: number, H: number[]): FeatureEntry => ({
    id,
    scores: {} as FeatureEntry['scores'],
    H: H.map((clip) => ({ clip, id: `c${clip}`, score: 1, mean: 1, coverage: 1 })),
    L: [],
  });
  // decoder rows (d = 4) by feature id
  const s = Math.SQRT1_2;
  const rows: Record<number, number[]> = {
    10: [1, 0, 0, 0],
    11: [0, 1, 0, 0],
    12: [0.99, 0.141, 0, 0], // cos with 10 = 0.99 / ‖(0.99, 0.141)‖ ≈ 0.990: grouped with 10
    13: [0, 0, 1, 0],
    14: [0, 0, s, s], //         cos with 13 = 0.707: not parallel enough
    15: [-1, 0, 0, 0], //        antiparallel to 10: a different concept
    16: [0, 0, 0, 1],
  };
  const decoder = { d: 4, row: (id: number) => Float32Array.from(rows[id]!) };
  // in rank order; H sets: 11 and 16 share 3 of 4 clips (Jaccard 3/5 = 0.6): grouped;
  // 13 and 14 share 2 of 4 (2/6): not; 16 and 12 share nothing
  const ranked = () => [
    feature(11, [1, 2, 3, 4]),
    feature(10, [5, 6, 7, 8]),
    feature(13, [9, 10, 11, 12]),
    feature(12, [13, 14, 15, 16]),
    feature(14, [9, 10, 20, 21]),
    feature(15, [5, 6, 22, 23]),
    feature(16, [2, 3, 4, 30]),
  ];

  it('groups parallel decoder directions and mostly shared H^k sets under the best-ranked member', () => {
    const f = ranked();
    expect(groupFeatures(f, decoder)).toBe(5);
    expect(Object.fromEntries(f.map((e) => [e.id, e.group]))).toEqual({ 11: 11, 10: 10, 13: 13, 12: 10, 14: 14, 15: 15, 16: 11 });
    expect(f.filter((e) => e.members).map((e) => [e.id, e.members])).toEqual([
      [11, [11, 16]],
      [10, [10, 12]],
      [13, [13]],
      [14, [14]],
      [15, [15]],
    ]);
  });

  it('links transitively, and without decoder rows groups by H^k alone', () => {
    const f = ranked();
    // 14 takes 3 of 13's 4 clips (Jaccard 0.6: 13–14 linked) and a direction nearly parallel to
    // 16's (cos 1/√1.01 ≈ 0.995: 14–16 linked); 16 is linked to 11 by H^k: one group under 11
    f[4]!.H = [9, 10, 11, 21].map((clip) => ({ clip, id: `c${clip}`, score: 1, mean: 1, coverage: 1 }));
    const r2 = { d: 4, row: (id: number) => Float32Array.from(id === 14 ? [0, 0, 0.1, 1] : rows[id]!) };
    expect(groupFeatures(f, r2)).toBe(3);
    expect(f[0]!.members).toEqual([11, 13, 14, 16]);
    expect(f.map((e) => e.group)).toEqual([11, 10, 11, 10, 11, 15, 11]);
    expect(f.filter((e) => e.members).map((e) => e.id)).toEqual([11, 10, 15]);

    const g = ranked();
    expect(groupFeatures(g, null)).toBe(6);
    expect(g.map((e) => e.group)).toEqual([11, 10, 13, 12, 14, 15, 11]);
  });

  it('reads decoder rows from an SAE file', () => {
    const file = path.join(tmp, 'sae.safetensors');
    const W_dec = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    writeSafetensors(file, { W_dec: { dtype: 'F32', shape: [3, 4], data: W_dec } }, {});
    const r = decoderRowsFromFile(file)!;
    expect(r.d).toBe(4);
    expect(Array.from(r.row(1))).toEqual([5, 6, 7, 8]);
    expect(() => r.row(3)).toThrow(/outside W_dec's 3 rows/);
    const encoderOnly = path.join(tmp, 'enc.safetensors');
    writeSafetensors(encoderOnly, { W_enc: { dtype: 'F32', shape: [4, 3], data: W_dec } }, {});
    expect(decoderRowsFromFile(encoderOnly)).toBeNull();
  });
});
