// The GPU profile's SAE kernels (kernels/sae_gpu.wgsl): the radix-sort CSR, the multi-workgroup scan,
// db_dec = −W_enc·db_enc, dz by latent and the dW rows with staged entries, each against the plain
// references (reference/sae.ts) on seeded inputs whose sizes are no multiple of any workgroup; and one
// whole SAE training step under the GPU profile against the CPU profile's.
// Both engines are made here with an explicit profile, so ARDGPU_PROFILE does not change this file
// (vitest.config.ts runs it once per adapter).
//
// Bounds: an f32 sum of n terms, in any order and with any bracketing, is within γ(n) = n·u/(1 − n·u)
// (u = 2^-24) of Σ|terms| from the exact sum; a product rounded before it is added costs one more
// rounding. So a kernel output is checked as |got − exact| ≤ γ(n + 2)·Σ|terms| (exact: the f64
// reference on the same f32 inputs), and two f32 computations of one quantity differ by at most twice
// that. Integer results (the CSR, the scan) must be equal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/gpu/engine.js';
import { backward, param, zeroGrad } from '../src/tensor/autograd.js';
import { tidy } from '../src/tensor/scope.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { mul } from '../src/tensor/ops/elementwise.js';
import { sum } from '../src/tensor/ops/reduce.js';
import { AdamW } from '../src/tensor/optim.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { SparseCodes, buildCsr, matvecNeg, projectParallel, rowsGrad, saeTuning, scanExclusiveU32, sparseDecode } from '../src/sae/ops.js';
import { csrRef, dzRef, matvecNegRef, rowsGradRef, saeStepRef } from '../reference/sae.js';
import { getEngine, randn, rng } from './helpers.js';

const U = 2 ** -24;
const gamma = (n: number) => (n * U) / (1 - n * U);

let cpu: Engine;
let gpu: Engine;
beforeAll(async () => {
  await getEngine(); // fails unless the adapter is the one the run asks for
  cpu = await Engine.create({ profileKind: 'cpu' });
  gpu = await Engine.create({ profileKind: 'gpu' });
});
afterAll(() => {
  cpu?.destroy();
  gpu?.destroy();
  for (const k of Object.keys(saeTuning)) delete (saeTuning as Record<string, unknown>)[k];
});

/** |got − want| ≤ tol·mag elementwise (+ a denormal-sized floor); names the worst element. */
function expectWithin(got: ArrayLike<number>, want: ArrayLike<number>, mag: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = -1, excess = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    const lim = tol * mag[i]! + 1e-30;
    if (!(err <= lim) && (worst < 0 || err - lim > excess)) [worst, excess] = [i, err - lim];
  }
  expect(worst, worst < 0 ? what : `${what}[${worst}]: got ${got[worst]}, want ${want[worst]}, bound ${tol * mag[worst]!}`).toBe(-1);
}

/** Latent ids [B, kTot]: random (repeats within a row allowed), some outside [0, m), latent `hot` in column 0 of every row. */
function ids(B: number, kTot: number, m: number, seed: number, opts: { invalid?: boolean; hot?: number } = {}): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: B * kTot }, (_, i) => {
    if (opts.hot !== undefined && i % kTot === 0) return opts.hot;
    if (opts.invalid && r() < 0.05) return r() < 0.5 ? -1 - Math.floor(r() * 5) : m + Math.floor(r() * 5);
    return Math.floor(r() * m);
  });
}

const withTuning = async (t: typeof saeTuning, fn: () => Promise<void>) => {
  Object.assign(saeTuning, t);
  try {
    await fn();
  } finally {
    for (const k of Object.keys(t)) delete (saeTuning as Record<string, unknown>)[k];
  }
};

describe('GPU-profile SAE kernels', () => {
  it('the gpu engine takes the radix CSR, staged entries and workgroup reductions; the cpu engine none of them', () => {
    expect([gpu.profile.sae.csrSort, gpu.profile.sae.entryStaging, gpu.profile.sae.wgReductions, gpu.profile.sae.fusedDecoderGrad, gpu.profile.sae.rowBlockBytes]).toEqual(['radix', true, true, false, null]);
    expect([cpu.profile.sae.csrSort, cpu.profile.sae.entryStaging, cpu.profile.sae.wgReductions]).toEqual(['chunks', false, false]);
  });

  it('exclusive scan over 1024-element blocks, three levels (1,048,613 elements) and tiny ones', async () => {
    for (const n of [1, 1000, 1025, 1024 * 1024 + 37]) {
      const r = rng(n);
      const a = Uint32Array.from({ length: n }, () => Math.floor(r() * 8));
      const t = tensor(gpu, a, [n], 'u32');
      scanExclusiveU32(t, n);
      const got = (await t.read()) as Uint32Array;
      const want = new Uint32Array(n);
      for (let i = 1; i < n; i++) want[i] = want[i - 1]! + a[i - 1]!;
      const bad = want.findIndex((v, i) => v !== got[i]);
      expect(bad, `n = ${n}: element ${bad}: ${got[bad]} expected ${want[bad]}`).toBe(-1);
      t.dispose();
    }
  });

  // [B, kTot, m, lo, hi, ids]: 1–3 radix passes (m + 1 up to 2^17), tiles cut mid-row, a latent in every row
  const csrCases: [number, number, number, number, number, { invalid?: boolean; hot?: number }][] = [
    [1, 1, 1000, 0, 1, {}],
    [37, 12, 4099, 0, 7, { invalid: true }],
    [37, 12, 4099, 7, 12, { invalid: true }],
    [1000, 32, 1000, 0, 32, { hot: 5 }],
    [1000, 33, 4099, 0, 32, { invalid: true, hot: 4098 }],
    [300, 9, 70000, 0, 9, { invalid: true }],
    [5, 3, 1, 0, 3, { invalid: true }],
    [5, 3, 10, 3, 3, {}],
  ];
  it.each(csrCases)('CSR by radix sort: B %i, kTot %i, m %i, columns [%i, %i): the reference, and the counting sort exactly', async (B, kTot, m, lo, hi, o) => {
    const ih = ids(B, kTot, m, B * 7 + m, o);
    const ref = csrRef(ih, B, kTot, m, lo, hi);
    const out: { rowStart: Uint32Array; list: Uint32Array; sizes: Uint32Array }[] = [];
    for (const e of [gpu, cpu]) {
      const idx = tensor(e, ih, [B, kTot], 'i32');
      const c = buildCsr(idx, m, [lo, hi]);
      const rowStart = (await c.rowStart.read()) as Uint32Array;
      const list = ((await c.list.read()) as Uint32Array).slice(0, rowStart[m]);
      const chunkEnd = (await c.chunkEnd.read()) as Uint32Array;
      // the bucket sizes: the last chunk's end inside each bucket
      const sizes = Uint32Array.from({ length: m }, (_, j) => chunkEnd[j * c.nC + c.nC - 1]!);
      out.push({ rowStart, list, sizes });
      for (const t of [idx, c.rowStart, c.list, c.chunkEnd]) t.dispose();
    }
    const [g, c] = out as [(typeof out)[0], (typeof out)[0]];
    expect(Array.from(g.rowStart)).toEqual(Array.from(ref.rowStart));
    expect(Array.from(g.list)).toEqual(Array.from(ref.list));
    expect(Array.from(g.sizes)).toEqual(Array.from({ length: m }, (_, j) => ref.rowStart[j + 1]! - ref.rowStart[j]!));
    expect(Array.from(c.rowStart)).toEqual(Array.from(g.rowStart));
    expect(Array.from(c.list)).toEqual(Array.from(g.list));
  });

  it.each([
    [1, 1000],
    [37, 4099],
    [300, 1000],
  ])('db_dec = −W_enc·db_enc, one workgroup per output: d %i, m %i (subgroupAdd and tree; reproducible)', async (d, m) => {
    const Wh = randn(d * m, d + m);
    const vh = randn(m, 3);
    const ref = matvecNegRef(Wh, vh, d, m);
    const W = tensor(gpu, Wh, [d, m]);
    const v = tensor(gpu, vh, [m]);
    const variants = gpu.profile.sae.wgSubgroups ? [true, false] : [false];
    for (const sg of variants) {
      await withTuning({ wgSubgroups: sg }, async () => {
        const a = matvecNeg(W, v);
        const b = matvecNeg(W, v);
        const got = (await a.read()) as Float32Array;
        expectWithin(got, ref.value, ref.mag, gamma(m + 2), `−W·v (${sg ? 'subgroups' : 'tree'})`);
        expect(Array.from((await b.read()) as Float32Array)).toEqual(Array.from(got));
        a.dispose();
        b.dispose();
      });
    }
    W.dispose();
    v.dispose();
  });

  // [B, k, kAux, m, d, hot latent]: a bucket of B entries spans several staging batches of ≤ 256
  const gradCases: [number, number, number, number, number, number | undefined][] = [
    [1, 1, 0, 1000, 4, undefined],
    [37, 7, 5, 4099, 36, undefined],
    [1000, 32, 3, 1000, 100, 17],
    [100, 7, 0, 1000, 1028, 9],
  ];
  it.each(gradCases)('dz and dW rows with staged entries: B %i, k %i (+%i AuxK), m %i, d %i', async (B, k, kAux, m, d, hot) => {
    const kTot = k + kAux;
    const ih = ids(B, kTot, m, B + d, { hot });
    const zh = Float32Array.from(randn(B * kTot, 1), (v) => (v < -0.8 ? 0 : Math.abs(v))); // some zero codes
    const Wh = randn(m * d, 2);
    const Gh = randn(B * d, 3);
    const gz = randn(B * kTot, 4); // the encoder's incoming gradient
    const variants = gpu.profile.sae.wgSubgroups ? [true, false] : [false];
    for (const sg of variants) {
      await withTuning({ wgSubgroups: sg }, async () => {
        for (const [lo, hi] of kAux ? [[0, k], [k, kTot]] : [[0, k]]) {
          const n = B; // the longest bucket
          const z = param(tensor(gpu, zh, [B, kTot]));
          const idx = tensor(gpu, ih, [B, kTot], 'i32');
          const W = param(tensor(gpu, Wh, [m, d]));
          const G = tensor(gpu, Gh, [B, d]);
          const g = tensor(gpu, gz, [B, kTot]);
          const codes: SparseCodes = { z, idx, k, kAux, m, csr: new Map() };
          // (the encoder's pass first: it builds the CSR outside tidy, which would dispose it)
          const enc = rowsGrad(codes, g, G, [lo!, hi!], { bias: true });
          tidy(() => backward(sum(mul(sparseDecode(codes, W, null, [lo!, hi!]), G))));
          const dz = (await z.grad!.read()) as Float32Array;
          const dW = (await W.grad!.read()) as Float32Array;
          const dzR = dzRef(zh, ih, Gh, Wh, B, kTot, m, d, lo!, hi!);
          expectWithin(dz, dzR.value, dzR.mag, gamma(d + 2), `dz [${lo}, ${hi}) ${sg ? 'subgroups' : 'tree'}`);
          expect(dzR.value.some((v) => v !== 0)).toBe(true);
          const dec = rowsGradRef(zh, null, ih, Gh, B, kTot, m, d, lo!, hi!);
          expectWithin(dW, dec.out, dec.mag, gamma(n + 2), `dW_dec rows [${lo}, ${hi})`);
          const er = rowsGradRef(zh, gz, ih, Gh, B, kTot, m, d, lo!, hi!);
          expectWithin((await enc.out.read()) as Float32Array, er.out, er.mag, gamma(n + 2), `dW_enc rows [${lo}, ${hi})`);
          expectWithin((await enc.ob!.read()) as Float32Array, er.ob, er.obMag, gamma(n + 2), `db_enc [${lo}, ${hi})`);
          for (const t of [z.grad!, W.grad!, z, idx, W, G, g, enc.out, enc.ob!]) t.dispose();
          for (const c of codes.csr.values()) for (const t of [c.rowStart, c.list, c.chunkEnd]) t.dispose();
        }
      });
    }
  });

  it('a whole training step (AuxK, projection, AdamW, renormalisation) under the GPU profile equals the CPU profile\'s within the f32 error bounds', async () => {
    const [B, d, m, k, kAux, lr, eps] = [300, 64, 1000, 7, 32, 1e-3, 1e-8];
    const xh = randn(B * d, 41);
    const bDec = randn(d, 42, 0.2);
    const dead = Int32Array.from({ length: m / 4 }, (_, i) => 4 * i + 1);
    type Run = { loss: number; z: Float32Array; idx: Int32Array; p0: Float32Array[]; grads: Float32Array[]; p1: Float32Array[] };
    const run = async (e: Engine): Promise<Run> => {
      const sae = SparseAutoencoder.init(e, { d, m, k, seed: 3, bDec });
      const opt = new AdamW({ params: sae.parameters, lr, eps, weightDecay: 0 });
      const x = tensor(e, xh, [B, d]);
      const deadT = tensor(e, dead, [dead.length], 'i32');
      const rd = (ts: Tensor[]) => Promise.all(ts.map(async (t) => (await t.read()) as Float32Array));
      const p0 = await rd(sae.parameters);
      const L = sae.loss(x, { kAux, dead: deadT });
      backward(L.loss);
      projectParallel(sae.W_dec, sae.W_dec.grad!);
      const grads = await rd(sae.parameters.map((p) => p.grad!));
      const out = { loss: ((await L.loss.read()) as Float32Array)[0]!, z: (await L.codes.z.read()) as Float32Array, idx: (await L.codes.idx.read()) as Int32Array, p0, grads };
      opt.step();
      zeroGrad(sae.parameters);
      sae.normalizeDecoder();
      const p1 = await rd(sae.parameters);
      opt.dispose();
      sae.dispose();
      for (const t of [x, deadT, L.loss, L.xhat]) t.dispose();
      return { ...out, p1 };
    };
    const c = await run(cpu);
    const g = await run(gpu);
    // the same codes: Top-K exactly, AuxK as a set per row (its order is unspecified)
    const kTot = k + kAux;
    for (let b = 0; b < B; b++) {
      const row = (r: Run) => Array.from(r.idx.subarray(b * kTot, (b + 1) * kTot));
      expect(row(g).slice(0, k), `row ${b}`).toEqual(row(c).slice(0, k));
      expect(row(g).slice(k).sort((p, q) => p - q), `row ${b} AuxK`).toEqual(row(c).slice(k).sort((p, q) => p - q));
    }
    const [We, be, Wd, bd] = c.p0 as [Float32Array, Float32Array, Float32Array, Float32Array];
    for (let i = 0; i < 4; i++) expect(Array.from(g.p0[i]!)).toEqual(Array.from(c.p0[i]!));
    // (each engine's codes in its own AuxK order; the gradients do not depend on that order)
    const refOf = (r: Run) => saeStepRef({ x: xh, W_enc: We, b_enc: be, W_dec: Wd, b_dec: bd, idx: r.idx, B, d, m, k, kAux, alpha: 1 / 32 });
    const ref = refOf(c);
    // the bounds are first order: 1 % on top covers the neglected higher-order terms
    const slack = 1.01;
    // no code sits within its error bound of 0 (the ReLU would decide differently): the premise of the bounds
    expect(ref.pre.value.every((v, i) => Math.abs(v) > 2 * ref.pre.err[i]!)).toBe(true);
    const names = ['dW_enc', 'db_enc', 'dW_dec (projected)', 'db_dec'];
    const refs = [ref.dW_enc, ref.db_enc, ref.dW_dec, ref.db_dec];
    for (const [r, what] of [[c, 'cpu'], [g, 'gpu']] as const) {
      const own = r === c ? ref : refOf(r);
      const zRef = own.pre.value.map((v) => Math.max(0, v));
      expectWithin(r.z, zRef, own.pre.err, slack, `${what} codes`);
      expectWithin([r.loss], ref.loss.value, ref.loss.err, slack, `${what} loss`);
      refs.forEach((q, i) => expectWithin(r.grads[i]!, q.value, q.err, slack, `${what} ${names[i]}`));
    }
    // AdamW's first step moves p by lr·ĝ/(|ĝ| + eps): two gradients within e of the exact one move it
    // alike up to lr·2e·eps/(|g| − e + eps)², or by up to 2·lr where the sign is in doubt; the update's
    // own roundings (a division, a square root, a few products: 2.5 + 2 + 4 ulp) are ≤ 16u·lr + 2u·|p|.
    const stepBound = (q: { value: Float64Array; err: Float64Array }, p: Float32Array) =>
      Float64Array.from(q.value, (v, i) => {
        const e = slack * q.err[i]!;
        const a = Math.abs(v);
        const move = a > e ? (lr * 2 * e * eps) / (a - e + eps) ** 2 : 2 * lr;
        return move + 2 * (16 * U * lr + 2 * U * (Math.abs(p[i]!) + lr));
      });
    for (const i of [0, 1, 3]) {
      const bound = stepBound(refs[i]!, c.p1[i]!);
      expectWithin(g.p1[i]!, c.p1[i]!, bound, 1, `${names[i]} parameter after the step`);
    }
    // W_dec rows are then scaled to unit norm: a change δ of a row w moves w/‖w‖ by at most 2‖δ‖₂/‖w‖ in
    // each element; the norm's sum (d + 2 roundings), inverseSqrt (2 ulp) and the product add (d + 8)·u·|ŵ|
    // to each engine's result.
    const wdBound = stepBound(refs[2]!, Wd);
    const bound = new Float64Array(m * d);
    for (let j = 0; j < m; j++) {
      let n2 = 0, w2 = 0;
      for (let cc = 0; cc < d; cc++) {
        n2 += wdBound[j * d + cc]! ** 2;
        const w = Wd[j * d + cc]! - lr * Math.sign(refs[2]!.value[j * d + cc]!);
        w2 += w * w;
      }
      for (let cc = 0; cc < d; cc++) bound[j * d + cc] = (2 * Math.sqrt(n2)) / (Math.sqrt(w2) - Math.sqrt(n2)) + 2 * (d + 8) * U * Math.abs(c.p1[2]![j * d + cc]!);
    }
    expectWithin(g.p1[2]!, c.p1[2]!, bound, 1, 'W_dec after the step and renormalisation');
  });
});

