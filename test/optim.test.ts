import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { crossEntropy } from '../src/tensor/ops/index.js';
import { AdamW, SGD, WeightAverage, clipGradNorm } from '../src/tensor/optim.js';
import { ArdError } from '../src/util/errors.js';
import { expectClose, getEngine, randn, rng } from './helpers.js';
import { adamwRef, sgdRef } from '../reference/optim.js';

const SIZES = [1, 7, 129, 1000];

type Engine = Awaited<ReturnType<typeof getEngine>>;

function setGrad(p: T.Tensor, g: Float32Array): void {
  p.grad?.dispose();
  p.grad = T.keep(T.tensor(p.engine, g, p.shape));
}

function makeParams(e: Engine, seed: number): { ps: T.Tensor[]; host: Float64Array[] } {
  const host = SIZES.map((n, i) => Float64Array.from(randn(n, seed + i)));
  const ps = host.map((h) => T.param(T.tensor(e, Float32Array.from(h), [h.length])));
  return { ps, host };
}

describe('AdamW', () => {
  it('matches the PyTorch update over several steps with changing lr; skips params without grad', async () => {
    const e = await getEngine();
    const { ps, host } = makeParams(e, 10);
    const frozen = T.param(T.tensor(e, [1, 2, 3], [3]));
    const opt = new AdamW({ params: [...ps, frozen], lr: 1e-2, betas: [0.8, 0.95], eps: 1e-6, weightDecay: 0.1 });
    const m = host.map((h) => new Float64Array(h.length));
    const v = host.map((h) => new Float64Array(h.length));
    for (let t = 1; t <= 3; t++) {
      opt.lr = [1e-2, 3e-2, 5e-3][t - 1]!;
      ps.forEach((p, i) => {
        const g = randn(p.size, 100 * t + i, t === 2 ? 10 : 1);
        setGrad(p, g);
        adamwRef(host[i]!, g, m[i]!, v[i]!, t, { lr: opt.lr, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 });
      });
      opt.step();
    }
    for (const [i, p] of ps.entries()) expectClose(await p.read(), host[i]!, 1e-5, 1e-6, `param ${i}`);
    expect(Array.from(await frozen.read())).toEqual([1, 2, 3]);
    const st = await opt.state();
    expect(st.steps).toEqual([3, 3, 3, 3, 0]);
    expectClose(st.buffers.m![3]!, m[3]!, 1e-5, 1e-7, 'm');
    expectClose(st.buffers.v![3]!, v[3]!, 1e-5, 1e-9, 'v');
    expect(st.buffers.m![4]).toBeNull();
    opt.zeroGrad();
    expect(ps.every((p) => p.grad === null)).toBe(true);
    opt.dispose();
    T.disposeAll(ps, frozen);
  });

  it('updates a parameter that is a view with an offset in place, touching nothing else', async () => {
    const e = await getEngine();
    const base = randn(20, 20);
    const big = T.tensor(e, base, [20]);
    const p = T.param(T.slice(big, 0, 3, 10)); // 7 elements at offset 3
    const g = randn(7, 21);
    setGrad(p, g);
    const opt = new AdamW({ params: [p], lr: 0.1, weightDecay: 0 });
    opt.step();
    const host = Float64Array.from(base.subarray(3, 10));
    adamwRef(host, g, new Float64Array(7), new Float64Array(7), 1, { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0 });
    const all = await big.read();
    expectClose(all.subarray(3, 10), host, 1e-5, 1e-6, 'view');
    expect(Array.from(all.subarray(0, 3))).toEqual(Array.from(base.subarray(0, 3)));
    expect(Array.from(all.subarray(10))).toEqual(Array.from(base.subarray(10)));
    opt.dispose();
  });

  it('state() / loadState() resume bit-identically; bad states are rejected', async () => {
    const e = await getEngine();
    const a = makeParams(e, 30).ps;
    const b = makeParams(e, 30).ps;
    const oa = new AdamW({ params: a, lr: 0.05 });
    const grads = (t: number) => a.map((p, i) => randn(p.size, 1000 * t + i));
    for (let t = 1; t <= 2; t++) {
      grads(t).forEach((g, i) => setGrad(a[i]!, g));
      oa.step();
    }
    const saved = await oa.state();
    // b: copy a's weights, then the optimiser state
    for (const [i, p] of b.entries()) T.copyInto(p, a[i]!);
    const ob = new AdamW({ params: b, lr: 1 });
    ob.loadState(saved);
    expect(ob.lr).toBe(0.05);
    const g3 = grads(3);
    g3.forEach((g, i) => {
      setGrad(a[i]!, g);
      setGrad(b[i]!, g);
    });
    oa.step();
    ob.step();
    for (let i = 0; i < a.length; i++) expect(Array.from(await b[i]!.read())).toEqual(Array.from(await a[i]!.read()));
    expect(() => ob.loadState({ ...saved, buffers: { ...saved.buffers, m: saved.buffers.m!.slice(1) } })).toThrow(ArdError);
    expect(() => new SGD({ params: b, lr: 0.1 }).loadState(saved)).toThrow(/adamw/);
    const wrong = { ...saved, buffers: { ...saved.buffers, v: saved.buffers.v!.map((x) => x && x.subarray(1)) } };
    expect(() => ob.loadState(wrong)).toThrow(/values/);
    oa.dispose();
    ob.dispose();
    T.disposeAll(a, b);
  });
});

describe('WeightAverage', () => {
  it('keeps an EMA (decay ramped up) and a uniform mean of parameters that change, views with offsets included', async () => {
    const e = await getEngine();
    const { ps, host } = makeParams(e, 40);
    const base = randn(20, 41);
    const big = T.tensor(e, base, [20]);
    const view = T.param(T.slice(big, 0, 3, 10)); // 7 elements at offset 3
    const all = [...ps, view];
    const cur = [...host.map((h) => Float64Array.from(h)), Float64Array.from(base.subarray(3, 10))];
    const ema = new WeightAverage(all);
    const mean = new WeightAverage(all);
    const refEma = cur.map((c) => Float64Array.from(c));
    const refSum = cur.map((c) => Float64Array.from(c));
    const decay = 0.9;
    for (let t = 1; t <= 5; t++) {
      // new parameter values (as an optimiser step would leave them)
      all.forEach((p, i) => {
        const v = randn(p.size, 500 + 10 * t + i);
        T.copyInto(p, T.tensor(e, v, p.shape));
        cur[i] = Float64Array.from(v);
      });
      ema.ema(decay);
      mean.mean();
      const d = Math.min(decay, (1 + t) / (10 + t));
      refEma.forEach((r, i) => r.forEach((x, j) => (r[j] = d * x + (1 - d) * cur[i]![j]!)));
      refSum.forEach((r, i) => r.forEach((x, j) => (r[j] = x + cur[i]![j]!)));
    }
    expect(ema.updates).toBe(5);
    for (let i = 0; i < all.length; i++) {
      expect(ema.average(i).shape).toEqual(all[i]!.shape);
      expectClose(await ema.average(i).read(), refEma[i]!, 1e-5, 1e-6, `ema ${i}`);
      expectClose(await mean.average(i).read(), refSum[i]!.map((x) => x / 6), 1e-5, 1e-6, `mean ${i}`);
    }
    // the parameters themselves are untouched by the averaging
    expectClose(await view.read(), cur[cur.length - 1]!, 0, 0, 'view');
    // state round trip: a restored average continues identically
    const restored = new WeightAverage(all);
    restored.loadState(await ema.state());
    ema.ema(decay);
    restored.ema(decay);
    for (let i = 0; i < all.length; i++) expect(Array.from(await restored.average(i).read())).toEqual(Array.from(await ema.average(i).read()));
    expect(() => restored.update(1.5)).toThrow(/decay/);
    const st = await ema.state();
    expect(() => restored.loadState({ ...st, buffers: st.buffers.slice(1) })).toThrow(ArdError);
    expect(() => restored.loadState({ ...st, buffers: st.buffers.map((b) => b.subarray(1)) })).toThrow(/values/);
    for (const w of [ema, mean, restored]) w.dispose();
    T.disposeAll(ps, view, big);
  });
});

describe('SGD', () => {
  it('matches PyTorch for plain, momentum+dampening+decay and Nesterov', async () => {
    const e = await getEngine();
    for (const [c, o] of [
      { lr: 0.1, momentum: 0, dampening: 0, nesterov: false, wd: 0 },
      { lr: 0.05, momentum: 0.9, dampening: 0.1, nesterov: false, wd: 0.01 },
      { lr: 0.02, momentum: 0.8, dampening: 0, nesterov: true, wd: 0.001 },
    ].entries()) {
      const { ps, host } = makeParams(e, 40 + c * 10);
      const opt = new SGD({ params: ps, lr: o.lr, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.wd });
      const bufs = host.map((h) => (o.momentum ? new Float64Array(h.length) : null));
      for (let t = 1; t <= 3; t++) {
        ps.forEach((p, i) => {
          const g = randn(p.size, 200 * t + i + c);
          setGrad(p, g);
          sgdRef(host[i]!, g, bufs[i]!, t === 1, o);
        });
        opt.step();
      }
      for (const [i, p] of ps.entries()) expectClose(await p.read(), host[i]!, 1e-5, 1e-6, `sgd case ${c} param ${i}`);
      const st = await opt.state();
      if (o.momentum) expectClose(st.buffers.momentum![2]!, bufs[2]!, 1e-5, 1e-6, 'momentum buffer');
      opt.dispose();
      T.disposeAll(ps);
    }
    expect(() => new SGD({ params: [T.tensor(e, [1], [1], 'i32')], lr: 0.1 })).toThrow(ArdError);
  });
});

describe('clipGradNorm', () => {
  it('computes the global norm on the GPU and scales every gradient', async () => {
    const e = await getEngine();
    const sizes = [...SIZES, 100_003]; // the last one spans many partial sums
    const ps = sizes.map((n) => T.param(T.zeros(e, [n])));
    const noGrad = T.param(T.zeros(e, [5]));
    const gs = sizes.map((n, i) => randn(n, 300 + i));
    gs.forEach((g, i) => setGrad(ps[i]!, g));
    let sq = 0;
    for (const g of gs) for (const v of g) sq += v * v;
    const ref = Math.sqrt(sq);
    const norm = clipGradNorm([...ps, noGrad], 2.5);
    expect(norm.shape).toEqual([1]);
    expectClose([await norm.item()], [ref], 1e-5, 0, 'norm');
    const s = 2.5 / (ref + 1e-6);
    for (const [i, p] of ps.entries()) expectClose(await p.grad!.read(), Array.from(gs[i]!, (v) => v * s), 1e-5, 1e-7, `scaled grad ${i}`);
    // below the bound: gradients unchanged
    const n2 = clipGradNorm(ps, 1e9);
    expectClose([await n2.item()], [2.5], 1e-5, 0, 'norm after clipping');
    const before = await ps[2]!.grad!.read();
    clipGradNorm(ps, 1e9);
    expect(Array.from(await ps[2]!.grad!.read())).toEqual(Array.from(before));
    // no gradients at all: norm 0
    expect(await clipGradNorm([noGrad], 1).item()).toBe(0);
    T.disposeAll(ps, noGrad, norm, n2);
    for (const p of ps) p.grad?.dispose();
  });
});

describe('training', () => {
  it('a 2-layer MLP learns a toy classification with AdamW; 1000 steps in tidy() do not grow memory', async () => {
    const e = await getEngine();
    // three interleaved 2-D spirals' worth of blobs: not linearly separable
    const B = 96;
    const C = 3;
    const H = 24;
    const r = rng(7);
    const xs = new Float32Array(B * 2);
    const ys = new Int32Array(B);
    for (let i = 0; i < B; i++) {
      const c = i % C;
      const t = (i / B) * 3 + c * ((2 * Math.PI) / C);
      const rad = 0.3 + (i / B) * 0.7;
      xs[2 * i] = rad * Math.cos(t) + (r() - 0.5) * 0.05;
      xs[2 * i + 1] = rad * Math.sin(t) + (r() - 0.5) * 0.05;
      ys[i] = c;
    }
    const x = T.tensor(e, xs, [B, 2]);
    const y = T.tensor(e, ys, [B], 'i32');
    const init = (n: number, seed: number, s: number) => T.param(T.tensor(e, randn(n, seed, s), [n]));
    const w1 = T.param(T.tensor(e, randn(2 * H, 1, 1), [2, H]));
    const b1 = init(H, 2, 0.1);
    const w2 = T.param(T.tensor(e, randn(H * C, 3, 1 / Math.sqrt(H)), [H, C]));
    const b2 = init(C, 4, 0.1);
    const params = [w1, b1, w2, b2];
    // [n, k] @ [k, m] from existing ops: broadcast multiply, sum over k
    const mm = (a: T.Tensor, b: T.Tensor) => T.sum(T.mul(T.unsqueeze(a, 2), T.unsqueeze(b, 0)), 1);
    const forward = () => crossEntropy(T.add(mm(T.tanh(T.add(mm(x, w1), b1)), w2), b2), y);
    const opt = new AdamW({ params, lr: 0.03, weightDecay: 1e-4 });
    const step = () =>
      T.tidy(() => {
        opt.zeroGrad();
        const loss = forward();
        T.backward(loss);
        clipGradNorm(params, 5);
        opt.step();
      });
    const loss0 = await T.tidy(() => forward()).item();
    let live10 = -1;
    const t0 = performance.now();
    for (let s = 1; s <= 1000; s++) {
      step();
      if (s === 10) {
        await e.sync();
        live10 = e.memory().liveBytes;
      }
      if (s % 100 === 0) await e.sync();
    }
    await e.sync();
    const live1000 = e.memory().liveBytes;
    const ms = performance.now() - t0;
    const lossT = T.tidy(() => forward());
    const loss = await lossT.item();
    lossT.dispose();
    console.log(`MLP: loss ${loss0.toFixed(4)} → ${loss.toFixed(4)} in 1000 AdamW steps (${ms.toFixed(0)} ms); live bytes ${live10} / ${live1000}`);
    expect(loss0).toBeGreaterThan(0.9);
    expect(loss).toBeLessThan(0.1);
    expect(live1000).toBe(live10);
    opt.dispose();
    opt.zeroGrad();
    T.disposeAll(params, x, y);
  });
});
