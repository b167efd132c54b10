// BatchTopK kernels (kernels/batchtopk.wgsl) against their references, and the gradient of an SAE
// reconstruction through batch-thresholded codes against finite differences.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { tensor } from '../src/tensor/tensor.js';
import { batchThreshold, encodeTopK, sparseDecode, thresholdCodes } from '../src/sae/ops.js';
import { batchThresholdRef, thresholdCodesRef } from '../reference/batchtopk.js';
import { mulberry32 } from '../src/util/random.js';
import { getEngine, randn } from './helpers.js';
import { gradCheck } from './gradcheck.js';

let engine: Engine;
beforeAll(async () => {
  engine = await getEngine();
});

/** Codes ≥ 0 with zeros and ties (values on a grid of 1/16) and AuxK columns after kc. */
function codes(B: number, kTot: number, seed: number, grid = true): Float32Array {
  const u = mulberry32(seed);
  return Float32Array.from({ length: B * kTot }, () => {
    const r = u();
    if (r < 0.15) return 0;
    const v = 4 * u();
    return grid ? Math.round(v * 16) / 16 : v;
  });
}

describe('batchtopk kernels', () => {
  it.each([
    [37, 13, 11, [1, 2, 100, 37 * 11]],
    [300, 40, 33, [1, 150, 4321, 300 * 33]],
    [5, 3, 3, [1, 7, 15]],
  ])('SELECT and MASK match the reference: B = %i, kTot = %i, kc = %i', async (B, kTot, kc, ts) => {
    for (const [i, grid] of [[0, true], [1, false]] as const) {
      const h = codes(B, kTot, 10 * B + kc + i, grid);
      for (const t of ts) {
        const z = tensor(engine, h, [B, kTot]);
        const theta = batchThreshold(z, kc, t);
        const want = batchThresholdRef(h, B, kTot, kc, t);
        expect((await theta.read())[0], `t = ${t}`).toBe(want);
        thresholdCodes(z, kc, theta);
        expect(Array.from(await z.read())).toEqual(Array.from(thresholdCodesRef(h, B, kTot, kc, want)));
        // at least t candidates survive (ties at theta are kept), the AuxK columns are untouched
        const after = (await z.read()) as Float32Array;
        let kept = 0;
        for (let b = 0; b < B; b++) for (let s = 0; s < kc; s++) if (after[b * kTot + s]! >= want && after[b * kTot + s]! > 0) kept++;
        if (want > 0) expect(kept).toBeGreaterThanOrEqual(t);
        for (let b = 0; b < B; b++) for (let s = kc; s < kTot; s++) expect(after[b * kTot + s]).toBe(h[b * kTot + s]);
        z.dispose();
        theta.dispose();
      }
    }
  });

  it('refuses a rank outside the batch', () => {
    const z = tensor(engine, new Float32Array(12), [3, 4]);
    expect(() => batchThreshold(z, 4, 13)).toThrow(/t = 13 must be in \[1, B·kc = 12\]/);
    expect(() => batchThreshold(z, 5, 1)).toThrow(/kc = 5/);
    z.dispose();
  });

  it('SAE reconstruction through batch-thresholded codes passes a finite-difference gradient check', async () => {
    const B = 6, d = 8, m = 20, kc = 5, t = 12; // k = 2 per row on average, up to 5 in one row
    const ref = ([x, We, be, Wd, bd]: Float64Array[]) => {
      const rows: { j: number; z: number }[][] = [];
      const all: number[] = [];
      for (let b = 0; b < B; b++) {
        const pre: number[] = [];
        for (let j = 0; j < m; j++) {
          let s = be![j]!;
          for (let c = 0; c < d; c++) s += (x![b * d + c]! - bd![c]!) * We![c * m + j]!;
          pre.push(s);
        }
        const top = pre.map((_, j) => j).sort((p, q) => pre[q]! - pre[p]! || p - q).slice(0, kc).map((j) => ({ j, z: Math.max(0, pre[j]!) }));
        rows.push(top);
        all.push(...top.map((e) => e.z));
      }
      const theta = [...all].sort((p, q) => q - p)[t - 1]!;
      const y = new Float64Array(B * d);
      for (let b = 0; b < B; b++)
        for (let c = 0; c < d; c++) {
          let v = bd![c]!;
          for (const e of rows[b]!) if (e.z >= theta) v += e.z * Wd![e.j * d + c]!;
          y[b * d + c] = v;
        }
      return y;
    };
    await gradCheck(
      engine,
      [
        { data: randn(B * d, 31), shape: [B, d], constant: true },
        { data: randn(d * m, 32, 0.5), shape: [d, m] },
        { data: randn(m, 33, 0.5), shape: [m] },
        { data: randn(m * d, 34, 0.5), shape: [m, d] },
        { data: randn(d, 35, 0.2), shape: [d] },
      ],
      ([x, We, be, Wd, bd]) => {
        const c = encodeTopK(x!, We!, be!, bd!, kc);
        const theta = batchThreshold(c.z, kc, t);
        thresholdCodes(c.z, kc, theta);
        return sparseDecode(c, Wd!, bd!);
      },
      ref,
      { eps: 1e-3, rtol: 2e-2, atol: 2e-3 },
    );
  });
});

describe('BatchTopK SAE', () => {
  it('trains with the batch threshold, stores an inference threshold, round-trips, exports to SAELens as JumpReLU', async () => {
    const { trainSae } = await import('../src/sae/train.js');
    const { SparseAutoencoder } = await import('../src/sae/model.js');
    const { readSaeArrays } = await import('../src/sae/formats/common.js');
    const { writeSaelens } = await import('../src/sae/formats/saelens.js');
    const { openSafetensors } = await import('../src/io/safetensors.js');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const d = 16, m = 64, k = 4, B = 256;
    const rows = randn(2048 * d, 41);
    await expect(trainSae({ engine, source: randn(64 * d, 40), d, m, k, steps: 1, batchSize: 64, arch: 'jumprelu' as any })).rejects.toThrow(/unknown architecture 'jumprelu'/);
    const { sae, metrics } = await trainSae({ engine, source: rows, d, m, k, steps: 40, batchSize: B, arch: 'batchtopk', seed: 1 });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-btk-'));
    try {
      expect(sae.arch).toBe('batchtopk');
      expect(sae.kMax).toBe(16);
      expect(sae.threshold).toBeGreaterThan(0);
      // the batch keeps k·B codes (ties at the threshold kept too)
      expect(metrics.l0).toBeGreaterThanOrEqual(k);
      expect(metrics.l0).toBeLessThan(k + 0.05);
      // inference: one threshold, rows use what they need (mean near k, varying per row)
      const x = tensor(engine, rows.subarray(0, B * d), [B, d]);
      const c = sae.encode(x);
      expect(c.values.shape).toEqual([B, 16]);
      const z = (await c.values.read()) as Float32Array;
      const perRow = Array.from({ length: B }, (_, b) => z.subarray(b * 16, (b + 1) * 16).filter((v) => v > 0).length);
      const l0 = perRow.reduce((a, v) => a + v, 0) / B;
      expect(l0).toBeGreaterThan(k / 2);
      expect(l0).toBeLessThan(2 * k);
      expect(Math.max(...perRow)).toBeGreaterThan(Math.min(...perRow));
      for (const v of z) if (v > 0) expect(v).toBeGreaterThanOrEqual(sae.threshold! * (1 - 1e-6));
      // the threshold is calibrated on the run's last batches: there, codes ≥ θ number exactly k per row
      // on average (random data: no ties); the mean of the batch thresholds would not give that
      const { BatchStream, MemorySource } = await import('../src/sae/data.js');
      const { calibrateThreshold, CALIBRATION_BATCHES } = await import('../src/sae/train.js');
      const stream = new BatchStream(new MemorySource(rows, d), { batchSize: B, seed: 1, scale: sae.inputScale });
      expect(await calibrateThreshold(sae, stream, 40 - CALIBRATION_BATCHES, 40, B)).toBe(sae.threshold);
      let kept = 0;
      for (let s = 40 - CALIBRATION_BATCHES; s < 40; s++) {
        const xs = tensor(engine, await stream.batch(s), [B, d]);
        const cs = encodeTopK(xs, sae.W_enc, sae.b_enc, sae.b_dec, sae.kMax, {}, { csr: false });
        const zs = (await cs.z.read()) as Float32Array;
        for (const v of zs) if (v > 0 && v >= sae.threshold!) kept++;
        for (const t of [xs, cs.z, cs.idx]) t.dispose();
      }
      expect(kept).toBe(k * B * CALIBRATION_BATCHES);
      // save / load keeps the architecture, the threshold and the codes
      const file = path.join(tmp, 'sae.safetensors');
      await sae.save(file);
      const back = SparseAutoencoder.load(engine, file);
      expect([back.arch, back.threshold, back.k, back.kMax]).toEqual(['batchtopk', sae.threshold, k, 16]);
      const c2 = back.encode(x);
      expect(Array.from((await c2.values.read()) as Float32Array)).toEqual(Array.from(z));
      // SAELens JumpReLU (sae_lens/saes/jumprelu_sae.py: relu(pre) · (pre > threshold), pre = (x − b_dec)·W_enc + b_enc)
      const dir = path.join(tmp, 'saelens');
      writeSaelens(dir, await readSaeArrays(sae), sae.inputScale, { layer: 2, threshold: sae.threshold });
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'cfg.json'), 'utf8'));
      expect(cfg.architecture).toBe('jumprelu');
      expect(cfg.k).toBeUndefined();
      const f = openSafetensors(path.join(dir, 'sae_weights.safetensors'));
      const [We, be, bd, th] = ['W_enc', 'b_enc', 'b_dec', 'threshold'].map((n) => f.readFloat32(n).slice());
      f.close();
      expect(th!.length).toBe(m);
      const ids = (await c.indices.read()) as Int32Array;
      let matched = 0;
      for (let b = 0; b < 32; b++) {
        const dense = new Float64Array(m);
        for (let s = 0; s < 16; s++) if (z[b * 16 + s]! > 0) dense[ids[b * 16 + s]!] = z[b * 16 + s]!;
        const jr = new Float64Array(m);
        for (let j = 0; j < m; j++) {
          let pre = be![j]!;
          for (let q = 0; q < d; q++) pre += (rows[b * d + q]! - bd![q]!) * We![q * m + j]!;
          jr[j] = pre > th![j]! ? Math.max(0, pre) : 0;
        }
        // the same latents fire (rows with more than kMax above θ would differ; none here)
        if (jr.every((v, j) => (v > 0) === (dense[j]! > 0) && Math.abs(v - dense[j]!) < 1e-3 * (1 + v))) matched++;
      }
      expect(matched).toBeGreaterThanOrEqual(31);
      for (const t of [x, c.values, c.indices, c2.values, c2.indices]) t.dispose();
      back.dispose();
    } finally {
      sae.dispose();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});
