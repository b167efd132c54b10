// Top-K SAE: custom sparse ops against dense autograd, the full loss against finite differences,
// decoder geometry, training on synthetic sparse data, AuxK, checkpoint/resume, save/load, memory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { backward, param } from '../src/tensor/autograd.js';
import { tidy } from '../src/tensor/scope.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { add, mul, relu, sub } from '../src/tensor/ops/elementwise.js';
import { reshape } from '../src/tensor/ops/layout.js';
import { sum } from '../src/tensor/ops/reduce.js';
import { matmul } from '../src/tensor/ops/matmul.js';
import { BatchStream, MemorySource } from '../src/sae/data.js';
import { ShardReader } from '../src/io/shards.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { SAE_FORMAT, SparseAutoencoder, saeLossFromCodes } from '../src/sae/model.js';
import { loadSae } from '../src/sae/load.js';
import { ArdError } from '../src/util/errors.js';
import { SparseCodes, encodeTopK, normalizeRows, projectParallel, saeTuning, sparseDecode } from '../src/sae/ops.js';
import { Rng } from '../src/sae/rng.js';
import { trainSae } from '../src/sae/train.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, randn, rng } from './helpers.js';

let engine: Engine;
let tmp: string;
beforeAll(async () => {
  engine = await getEngine();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-sae-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** distinct random latent ids per row */
function randomIdx(B: number, kTot: number, m: number, seed: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(B * kTot);
  for (let b = 0; b < B; b++) {
    const used = new Set<number>();
    for (let s = 0; s < kTot; s++) {
      let j: number;
      do j = Math.floor(r() * m);
      while (used.has(j));
      used.add(j);
      out[b * kTot + s] = j;
    }
  }
  return out;
}

async function grads(ts: Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) {
    if (!t.grad) throw new Error(`${t} got no gradient`);
    out.push((await t.grad.read()) as Float32Array);
    t.grad.dispose();
    t.grad = null;
  }
  return out;
}

describe.each([
  ['fused decoder backward', 1 << 20, true, true],
  ['fused, a row block per CSR chunk', 16, true, true],
  ['dz by latent, a row block per CSR chunk', 16, true, false],
  ['dz by row', 1 << 20, false, false],
])('sparse ops vs dense autograd (%s)', (_name, rowBlockBytes, dzByLatent, fusedDecoderGrad) => {
  beforeAll(() => {
    Object.assign(saeTuning, { rowBlockBytes, dzByLatent, fusedDecoderGrad });
  });
  afterAll(() => {
    // back to the profile's choices (the GPU profile's differ from the CPU profile's)
    for (const k of ['rowBlockBytes', 'dzByLatent', 'fusedDecoderGrad'] as const) delete saeTuning[k];
  });
  // widths: one vec4 column tile, and d/4 = 75 vec4s over 16 lanes × 8 (a partial tile; past the
  // fused decoder backward's d ≤ 256, so dz runs by latent)
  it.each([12, 300])('sparseDecode: forward and gradients (z, W_dec, b_dec) over both code ranges, d = %i', async (d) => {
    const B = 300, m = 40, k = 3, kAux = 4, kTot = k + kAux;
    const zh = Float32Array.from(randn(B * kTot, 1), (v) => Math.abs(v) + 0.1);
    zh[5] = 0; // a zero code: no gradient reaches it (it came out of a ReLU)
    const ih = randomIdx(B, kTot, m, 2);
    const wdh = randn(m * d, 3);
    const bdh = randn(d, 4);
    const gh = randn(B * d, 5);
    for (const [lo, hi, bias] of [[0, k, true], [k, kTot, false]] as const) {
      const z = param(tensor(engine, zh, [B, kTot]));
      const idx = tensor(engine, ih, [B, kTot], 'i32');
      const W = param(tensor(engine, wdh, [m, d]));
      const bd = param(tensor(engine, bdh, [d]));
      const codes: SparseCodes = { z, idx, k, kAux, m, csr: new Map() };
      const fwd = tidy(() => {
        const y = sparseDecode(codes, W, bias ? bd : null, [lo, hi]);
        backward(sum(mul(y, tensor(engine, gh, [B, d]))));
        return y;
      });
      const [gz, gW, gb] = await grads(bias ? [z, W, bd] : [z, W]);
      // dense: Z [B, m] with the codes of the range scattered in
      const Zh = new Float32Array(B * m);
      for (let b = 0; b < B; b++) for (let s = lo; s < hi; s++) Zh[b * m + ih[b * kTot + s]!] = zh[b * kTot + s]!;
      const Zd = param(tensor(engine, Zh, [B, m]));
      const Wd = param(tensor(engine, wdh, [m, d]));
      const bdd = param(tensor(engine, bdh, [d]));
      const ref = tidy(() => {
        let y = matmul(Zd, Wd);
        if (bias) y = add(y, bdd);
        backward(sum(mul(y, tensor(engine, gh, [B, d]))));
        return y;
      });
      expectClose(await fwd.read(), await ref.read(), 1e-4, 1e-5, 'decode forward');
      const [gZd, gWd, gbd] = await grads(bias ? [Zd, Wd, bdd] : [Zd, Wd]);
      expectClose(gW!, gWd!, 1e-4, 1e-5, 'dW_dec');
      if (bias) expectClose(gb!, gbd!, 1e-4, 1e-5, 'db_dec');
      const want = new Float32Array(B * kTot);
      for (let b = 0; b < B; b++) {
        for (let s = lo; s < hi; s++) if (zh[b * kTot + s]! > 0) want[b * kTot + s] = gZd![b * m + ih[b * kTot + s]!]!;
      }
      expectClose(gz!, want, 1e-4, 1e-5, 'dz');
      expect(want.some((v) => v !== 0)).toBe(true);
      for (const t of [z, idx, W, bd, fwd, Zd, Wd, bdd, ref]) t.dispose();
    }
  });

  it.each([16, 260])('encodeTopK (+AuxK): codes match the reference, gradients match dense autograd, d = %i', async (d) => {
    const B = 260, m = 48, k = 4, kAux = 5, kTot = k + kAux;
    const xh = randn(B * d, 11);
    const weh = randn(d * m, 12, 0.5);
    const beh = randn(m, 13, 0.5);
    const bdh = randn(d, 14, 0.3);
    const deadH = new Float32Array(m);
    for (let j = 0; j < m; j += 3) deadH[j] = 1; // every third latent dead
    const wz = randn(B * kTot, 15);
    const x = tensor(engine, xh, [B, d]);
    const We = param(tensor(engine, weh, [d, m]));
    const be = param(tensor(engine, beh, [m]));
    const bd = param(tensor(engine, bdh, [d]));
    const dead = tensor(engine, Int32Array.from(Array.from(deadH).flatMap((v, j) => (v ? [j] : []))), [m / 3], 'i32');
    const { z, idx } = tidy(() => {
      const c = encodeTopK(x, We, be, bd, k, { kAux, dead });
      backward(sum(mul(c.z, tensor(engine, wz, [B, kTot]))));
      return { z: c.z, idx: c.idx };
    });
    const zh = (await z.read()) as Float32Array;
    const ih = (await idx.read()) as Int32Array;
    const [gWe, gbe, gbd] = await grads([We, be, bd]);
    // reference pre-activations (f64) and selections
    const pre = new Float64Array(B * m);
    for (let b = 0; b < B; b++)
      for (let j = 0; j < m; j++) {
        let s = beh[j]!;
        for (let c = 0; c < d; c++) s += (xh[b * d + c]! - bdh[c]!) * weh[c * m + j]!;
        pre[b * m + j] = s;
      }
    const Wdense = new Float32Array(B * m);
    let auxLive = 0;
    for (let b = 0; b < B; b++) {
      const row = Array.from(pre.subarray(b * m, (b + 1) * m));
      const order = row.map((v, j) => j).sort((p, q) => row[q]! - row[p]! || p - q);
      const deadOrder = order.filter((j) => deadH[j]);
      // AuxK codes are the top kAux dead latents as a set (in no particular order)
      const auxGot = Array.from(ih.subarray(b * kTot + k, (b + 1) * kTot));
      expect([...auxGot].sort((p, q) => p - q)).toEqual(deadOrder.slice(0, kAux).sort((p, q) => p - q));
      for (let s = 0; s < kTot; s++) {
        const want = s < k ? order[s]! : ih[b * kTot + s]!;
        expect(ih[b * kTot + s]).toBe(want);
        expectClose([zh[b * kTot + s]!], [Math.max(0, row[want]!)], 1e-4, 1e-5, 'z'); // a d-long f32 dot product
        Wdense[b * m + want]! += wz[b * kTot + s]!;
        if (s >= k && row[want]! > 0) auxLive++;
      }
    }
    expect(auxLive).toBeGreaterThan(0); // AuxK codes carry gradient in this test
    const We2 = param(tensor(engine, weh, [d, m]));
    const be2 = param(tensor(engine, beh, [m]));
    const bd2 = param(tensor(engine, bdh, [d]));
    tidy(() => {
      const p = add(matmul(sub(x, bd2), We2), be2);
      backward(sum(mul(relu(p), tensor(engine, Wdense, [B, m]))));
    });
    const [rWe, rbe, rbd] = await grads([We2, be2, bd2]);
    expectClose(gWe!, rWe!, 1e-4, 1e-5, 'dW_enc');
    expectClose(gbe!, rbe!, 1e-4, 1e-5, 'db_enc');
    expectClose(gbd!, rbd!, 1e-4, 1e-5, 'db_dec');
    for (const t of [x, We, be, bd, dead, z, idx, We2, be2, bd2]) t.dispose();
  });

});

describe('SAE loss and decoder geometry', () => {
  it('full SAE loss (MSE + AuxK) passes a finite-difference gradient check', async () => {
    const B = 5, d = 8, m = 20, k = 3, kAux = 3, alpha = 1 / 32;
    const deadH = new Float32Array(m);
    for (let j = 1; j < m; j += 2) deadH[j] = 1;
    let e0: Float64Array | null = null; // AuxK target, held constant like the GPU side's detached e
    await gradCheck(
      engine,
      [
        { data: randn(B * d, 21), shape: [B, d], constant: true },
        { data: randn(d * m, 22, 0.5), shape: [d, m] },
        { data: randn(m, 23, 0.5), shape: [m] },
        { data: randn(m * d, 24, 0.5), shape: [m, d] },
        { data: randn(d, 25, 0.2), shape: [d] },
        { data: Float32Array.from(Array.from(deadH).flatMap((v, j) => (v ? [j] : []))), shape: [m / 2], constant: true, dtype: 'i32' },
      ],
      ([x, We, be, Wd, bd, dead]) => {
        const codes = encodeTopK(x!, We!, be!, bd!, k, { kAux, dead: dead! });
        return reshape(saeLossFromCodes(x!, codes, Wd!, bd!, alpha).loss, [1]);
      },
      ([x, We, be, Wd, bd, dead]) => {
        let sse = 0;
        const eh = new Float64Array(B * d);
        const rows: { j: number; z: number; aux: boolean }[][] = [];
        for (let b = 0; b < B; b++) {
          const pre: number[] = [];
          for (let j = 0; j < m; j++) {
            let s = be![j]!;
            for (let c = 0; c < d; c++) s += (x![b * d + c]! - bd![c]!) * We![c * m + j]!;
            pre.push(s);
          }
          const order = pre.map((_, j) => j).sort((p, q) => pre[q]! - pre[p]! || p - q);
          const main = order.slice(0, k).map((j) => ({ j, z: Math.max(0, pre[j]!), aux: false }));
          const aux = order.filter((j) => deadH[j]).slice(0, kAux).map((j) => ({ j, z: Math.max(0, pre[j]!), aux: true }));
          rows.push([...main, ...aux]);
          for (let c = 0; c < d; c++) {
            let y = bd![c]!;
            for (const e of main) y += e.z * Wd![e.j * d + c]!;
            const r = x![b * d + c]! - y;
            sse += r * r;
            eh[b * d + c] = r;
          }
        }
        e0 ??= eh;
        let num = 0;
        let den = 0;
        for (let b = 0; b < B; b++)
          for (let c = 0; c < d; c++) {
            let y = 0;
            for (const e of rows[b]!) if (e.aux) y += e.z * Wd![e.j * d + c]!;
            const t = e0[b * d + c]! - y;
            num += t * t;
            den += e0[b * d + c]! ** 2;
          }
        return Float64Array.of(sse / (B * d) + (alpha * num) / den);
      },
      { eps: 1e-3, rtol: 2e-3, atol: 2e-5, maxCoords: 400 },
    );
  });

  it('decoder geometry: gradient projection and row normalisation', async () => {
    const m = 6, d = 8;
    const wh = randn(m * d, 31);
    const W = tensor(engine, wh, [m, d]);
    normalizeRows(W);
    const wn = (await W.read()) as Float32Array;
    const g = tensor(engine, randn(m * d, 32), [m, d]);
    projectParallel(W, g);
    const gp = (await g.read()) as Float32Array;
    for (let j = 0; j < m; j++) {
      let n2 = 0, dot = 0, scaleRef = 0;
      for (let c = 0; c < d; c++) {
        n2 += wn[j * d + c]! ** 2;
        dot += wn[j * d + c]! * gp[j * d + c]!;
        scaleRef += wh[j * d + c]! ** 2;
      }
      expect(Math.abs(n2 - 1)).toBeLessThan(1e-5);
      expect(Math.abs(dot)).toBeLessThan(1e-5);
      // same direction as before
      expectClose([wn[j * d]! * Math.sqrt(scaleRef)], [wh[j * d]!], 1e-5, 1e-6, 'direction');
    }
    W.dispose();
    g.dispose();
  });
});

/** Rows = sparse positive combinations of `nTrue` random unit directions (in the first `sub` coordinates) + offset + noise. */
function synthData(n: number, d: number, nTrue: number, active: number, seed: number, offset = 0.3, noise = 0.02) {
  // its own seed stream: the SAE's init uses the same generator, and must not start at the answer
  const r = new Rng(seed);
  const dirs = new Float32Array(nTrue * d);
  for (let j = 0; j < nTrue; j++) {
    let n2 = 0;
    for (let c = 0; c < d; c++) {
      const v = r.normal();
      dirs[j * d + c] = v;
      n2 += v * v;
    }
    for (let c = 0; c < d; c++) dirs[j * d + c]! /= Math.sqrt(n2);
  }
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < active; a++) {
      const j = r.int(nTrue);
      const coef = 0.5 + 1.5 * r.next();
      for (let c = 0; c < d; c++) x[i * d + c]! += coef * dirs[j * d + c]!;
    }
    for (let c = 0; c < d; c++) x[i * d + c]! += offset + noise * r.normal();
  }
  return { x, dirs };
}

/** How many true directions have a decoder row with cosine > 0.9. */
function recovered(wd: Float32Array, dirs: Float32Array, d: number): number {
  const m = wd.length / d;
  const nTrue = dirs.length / d;
  let n = 0;
  for (let t = 0; t < nTrue; t++) {
    let best = -1;
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += wd[j * d + c]! * dirs[t * d + c]!;
      best = Math.max(best, s);
    }
    if (best > 0.9) n++;
  }
  return n;
}

describe('SparseAutoencoder', () => {
  it('init: unit-norm decoder rows and W_enc = W_decᵀ', async () => {
    const d = 8, m = 12;
    const sae = SparseAutoencoder.init(engine, { d, m, k: 3, seed: 5 });
    const we = (await sae.W_enc.read()) as Float32Array;
    const wd = (await sae.W_dec.read()) as Float32Array;
    for (let j = 0; j < m; j++) {
      let n2 = 0;
      for (let c = 0; c < d; c++) {
        n2 += wd[j * d + c]! ** 2;
        expect(we[c * m + j]).toBe(wd[j * d + c]);
      }
      expect(Math.abs(n2 - 1)).toBeLessThan(1e-5);
    }
    expect(new Set(wd).size).toBeGreaterThan(m * d - 2); // not a constant fill
    sae.dispose();
  });

  it('trains on synthetic sparse data: low FVU, true directions recovered, unit-norm decoder, no memory growth over 1000 steps', async () => {
    const d = 32, m = 64, k = 4, nTrue = 32;
    const { x, dirs } = synthData(8192, d, nTrue, 3, 777);
    const before = engine.memory().liveBytes;
    const live: number[] = [];
    const logs: number[] = [];
    const { sae, metrics } = await trainSae({
      engine, source: x, d, m, k, steps: 1000, batchSize: 256, lr: 3e-3, seed: 1, logEvery: 100,
      onLog: (l) => {
        if (!l.final) {
          live.push(engine.memory().liveBytes);
          logs.push(l.fvu);
        }
      },
    });
    // live memory does not grow from log to log (100 steps apart); it may only move by the size of
    // the dead-latent list AuxK uses (≤ 256 bytes here), where one leaked tensor per step would add ≥ 25 kB
    expect(live.length).toBe(10);
    expect(Math.max(...live.slice(1)) - Math.min(...live.slice(1))).toBeLessThanOrEqual(512);
    expect(logs[9]!).toBeLessThan(logs[0]!);
    expect(metrics.fvu).toBeLessThan(0.05);
    expect(metrics.l0).toBeGreaterThan(3.5);
    expect(metrics.l0).toBeLessThanOrEqual(k);
    expect(metrics.deadShare).toBeLessThan(0.35); // 64 latents for 32 directions: some are spare
    expect(metrics.inputScale).toBeGreaterThan(0);
    const wd = (await sae.W_dec.read()) as Float32Array;
    expect(recovered(wd, dirs, d)).toBeGreaterThanOrEqual(0.9 * nTrue);
    for (let j = 0; j < m; j++) {
      let n2 = 0;
      for (let c = 0; c < d; c++) n2 += wd[j * d + c]! ** 2;
      expect(Math.abs(n2 - 1)).toBeLessThan(1e-4);
    }
    // encode / encodeDense / decode agree with each other (caller's units)
    const xt = tensor(engine, x.subarray(0, 16 * d), [16, d]);
    const enc = sae.encode(xt);
    const denseT = sae.encodeDense(xt);
    const dense = (await denseT.read()) as Float32Array;
    const vals = (await enc.values.read()) as Float32Array;
    const ids = (await enc.indices.read()) as Int32Array;
    for (let b = 0; b < 16; b++) for (let s = 0; s < k; s++) expect(dense[b * m + ids[b * k + s]!]).toBe(vals[b * k + s]);
    expect(dense.filter((v) => v !== 0).length).toBeLessThanOrEqual(16 * k);
    const recT = sae.decode(enc);
    const rec = (await recT.read()) as Float32Array;
    let err = 0, tot = 0;
    for (let i = 0; i < 16 * d; i++) {
      err += (rec[i]! - x[i]!) ** 2;
      tot += x[i]! ** 2;
    }
    expect(err / tot).toBeLessThan(0.05);
    for (const t of [xt, enc.values, enc.indices, denseT, recT]) t.dispose();
    sae.dispose();
    await engine.sync();
    expect(engine.memory().liveBytes).toBe(before);
  });

  it('AuxK revives dead latents', async () => {
    // a large mean offset with b_dec started at 0 kills latents that point away from it; the
    // features they could carry stay in the residual, which AuxK trains them on
    const d = 64, m = 64, k = 4, nTrue = 48;
    const { x } = synthData(8192, d, nTrue, 3, 778, 0.5);
    const run = (kAux: number) =>
      trainSae({ engine, source: x, d, m, k, kAux, steps: 600, batchSize: 256, lr: 3e-3, seed: 2, logEvery: 1000, bDecInit: 'zero', deadTokens: 12800 });
    const off = await run(0);
    const on = await run(16);
    expect(off.metrics.deadShare).toBeGreaterThan(0.25);
    expect(on.metrics.deadShare).toBeLessThan(off.metrics.deadShare - 0.12);
    expect(on.metrics.fvu).toBeLessThan(off.metrics.fvu);
    expect(on.metrics.auxLoss).not.toBeNull();
    off.sae.dispose();
    on.sae.dispose();
  });

  it('checkpoint + resume reproduces an uninterrupted run exactly; save/load round-trips', async () => {
    const d = 16, m = 32, k = 3;
    const { x } = synthData(2048, d, 24, 2, 779);
    const opts = { engine, source: new MemorySource(x, d, 512), d, m, k, kAux: 8, steps: 40, batchSize: 64, lr: 2e-3, seed: 3, logEvery: 1000, deadTokens: 320, deadCheckEvery: 5 };
    const full = await trainSae(opts);
    const ckpt = path.join(tmp, 'ckpt.safetensors');
    const first = await trainSae({ ...opts, checkpointPath: ckpt, checkpointEvery: 10, stopAt: 20 });
    expect(first.metrics.steps).toBe(20);
    first.sae.dispose();
    expect(fs.existsSync(ckpt)).toBe(true);
    const resumed = await trainSae({ ...opts, checkpointPath: ckpt, checkpointEvery: 10 });
    expect(resumed.metrics.resumedFrom).toBe(20);
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      const a = (await full.sae[name].read()) as Float32Array;
      const b = (await resumed.sae[name].read()) as Float32Array;
      expect(Array.from(b)).toEqual(Array.from(a));
    }
    expect(resumed.metrics.fvu).toBe(full.metrics.fvu);
    // a checkpoint from other options is refused
    await expect(trainSae({ ...opts, k: 4, checkpointPath: ckpt })).rejects.toThrow(/k = 3/);

    // save / load
    full.sae.layer = 7;
    full.sae.provenance = { source: 'synthetic', seed: 779 };
    const file = path.join(tmp, 'sae.safetensors');
    await full.sae.save(file);
    const back = SparseAutoencoder.load(engine, file);
    expect([back.d, back.m, back.k, back.layer, back.inputScale]).toEqual([d, m, k, 7, full.sae.inputScale]);
    expect(back.provenance).toEqual({ source: 'synthetic', seed: 779 });
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
      expect(Array.from((await back[name].read()) as Float32Array)).toEqual(Array.from((await full.sae[name].read()) as Float32Array));
    }
    const xt = tensor(engine, x.subarray(0, 8 * d), [8, d]);
    const e1 = full.sae.encode(xt);
    const e2 = back.encode(xt);
    expect(Array.from((await e2.indices.read()) as Int32Array)).toEqual(Array.from((await e1.indices.read()) as Int32Array));
    expect(Array.from((await e2.values.read()) as Float32Array)).toEqual(Array.from((await e1.values.read()) as Float32Array));
    for (const t of [xt, e1.values, e1.indices, e2.values, e2.indices]) t.dispose();
    // a file that is not an SAE is refused with its name
    const bad = path.join(tmp, 'bad.safetensors');
    fs.writeFileSync(bad, 'not a safetensors file at all');
    expect(() => SparseAutoencoder.load(engine, bad)).toThrow(/bad\.safetensors/);
    for (const s of [full.sae, resumed.sae, back]) s.dispose();
  });
});

describe('loadSae', () => {
  it("dispatches on the file's format metadata; an unknown or missing format is a one-line error naming the file", async () => {
    const d = 8, m = 16, k = 2;
    const sae = SparseAutoencoder.init(engine, { d, m, k, seed: 2, inputScale: 0.5 });
    const file = path.join(tmp, 'dispatch.safetensors');
    await sae.save(file);
    const back = loadSae(engine, file);
    expect(back).toBeInstanceOf(SparseAutoencoder);
    expect([back.d, back.m, back.inputScale]).toEqual([d, m, 0.5]);
    // the seam's decoder row is W_dec's row
    const row = back.decoderRow(5);
    expect(row.shape).toEqual([1, d]);
    expect(Array.from((await row.read()) as Float32Array)).toEqual(Array.from(((await sae.W_dec.read()) as Float32Array).subarray(5 * d, 6 * d)));
    row.dispose();
    expect(() => back.decoderRow(m)).toThrow(/latent 16 is outside 0–15/);
    back.dispose();
    const tensors = {
      W_enc: { dtype: 'F32' as const, shape: [d, m], data: new Float32Array(d * m) },
      b_enc: { dtype: 'F32' as const, shape: [m], data: new Float32Array(m) },
      W_dec: { dtype: 'F32' as const, shape: [m, d], data: new Float32Array(m * d) },
      b_dec: { dtype: 'F32' as const, shape: [d], data: new Float32Array(d) },
    };
    const other = path.join(tmp, 'other-arch.safetensors');
    writeSafetensors(other, tensors, { ...sae.metadata(), format: JSON.stringify('jumprelu-sae-9') });
    expect(() => loadSae(engine, other)).toThrow(ArdError);
    expect(() => loadSae(engine, other)).toThrow(`${other}: unknown SAE format 'jumprelu-sae-9' (known formats: ${SAE_FORMAT})`);
    // the class refuses a file of another format too
    expect(() => SparseAutoencoder.load(engine, other)).toThrow(/is not ardgpu-topk-sae-1/);
    const proto = path.join(tmp, 'proto.safetensors');
    writeSafetensors(proto, tensors, { ...sae.metadata(), format: 'constructor' });
    expect(() => loadSae(engine, proto)).toThrow(/unknown SAE format 'constructor'/);
    const none = path.join(tmp, 'no-format.safetensors');
    const { format: _f, ...rest } = sae.metadata();
    writeSafetensors(none, tensors, rest);
    expect(() => loadSae(engine, none)).toThrow(`${none}: no 'format' in the metadata`);
    sae.dispose();
  });
});

describe('training data', () => {
  it('ShardReader (raw f16, safetensors f32) + BatchStream: every row once per epoch, shuffled, reproducible at any batch', async () => {
    const d = 4;
    const rowsA = 10, rowsB = 14;
    // row r holds r in every column (exact in f16)
    const a = new Float32Array(rowsA * d).map((_, i) => Math.floor(i / d));
    const b = new Float32Array(rowsB * d).map((_, i) => rowsA + Math.floor(i / d));
    const fileA = path.join(tmp, 'a.f16');
    fs.writeFileSync(fileA, Buffer.from(new Uint16Array(Array.from(a, (v) => f16bits(v))).buffer));
    const fileB = path.join(tmp, 'b.safetensors');
    writeSafetensors(fileB, { acts: { dtype: 'F32', shape: [rowsB, d], data: b } });
    const src = new ShardReader([{ file: fileA, dtype: 'f16' }, fileB], d);
    expect(src.shards.map((s) => s.rows)).toEqual([rowsA, rowsB]);
    const B = 6;
    const stream = new BatchStream(src, { batchSize: B, seed: 9, windowShards: 1 });
    const seen: number[] = [];
    for (let t = 0; t < 8; t++) {
      const x = await stream.batch(t);
      for (let r = 0; r < B; r++) {
        expect(x[r * d + 3]).toBe(x[r * d]); // rows stay whole
        seen.push(x[r * d]!);
      }
    }
    const total = rowsA + rowsB;
    for (const epoch of [0, 1]) {
      const part = seen.slice(epoch * total, (epoch + 1) * total);
      expect([...part].sort((p, q) => p - q)).toEqual(Array.from({ length: total }, (_, i) => i));
    }
    expect(seen.slice(0, total)).not.toEqual(seen.slice(total)); // epochs are shuffled differently
    expect(seen.slice(0, total)).not.toEqual(Array.from({ length: total }, (_, i) => i));
    // a fresh stream gives the same batch 5 without replaying 0..4 (resume)
    const again = new BatchStream(src, { batchSize: B, seed: 9, windowShards: 1 });
    expect(Array.from(await again.batch(5))).toEqual(Array.from(await stream.batch(5)));
    expect(() => new ShardReader([path.join(tmp, 'missing.f32')], d)).toThrow(/missing\.f32/);
    fs.writeFileSync(path.join(tmp, 'odd.f32'), Buffer.alloc(4 * d + 4));
    expect(() => new ShardReader([path.join(tmp, 'odd.f32')], d)).toThrow(/odd\.f32.*whole number/);
  });
});

/** f16 bits of a small non-negative integer (exact). */
function f16bits(v: number): number {
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(v));
  const frac = v / 2 ** e - 1;
  return ((e + 15) << 10) | Math.round(frac * 1024);
}
