import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/index.js';
import { gradCheck } from './gradcheck.js';
import { AWKWARD, expectClose, getEngine, itF16, randn, randu } from './helpers.js';
import { geluRef, sigmoidRef, siluRef } from '../reference/elementwise.js';

// f64 references for the elementwise family
export const UNARY_REF: Record<string, [(t: Tensor) => Tensor, (x: number) => number, [number, number]]> = {
  neg: [T.neg, (x) => -x, [-3, 3]],
  abs: [T.abs, Math.abs, [-3, 3]],
  exp: [T.exp, Math.exp, [-4, 4]],
  log: [T.log, Math.log, [0.05, 5]],
  sqrt: [T.sqrt, Math.sqrt, [0.05, 5]],
  rsqrt: [T.rsqrt, (x) => 1 / Math.sqrt(x), [0.05, 5]],
  sin: [T.sin, Math.sin, [-3, 3]],
  cos: [T.cos, Math.cos, [-3, 3]],
  tanh: [T.tanh, Math.tanh, [-3, 3]],
  sigmoid: [T.sigmoid, sigmoidRef, [-8, 8]],
  relu: [T.relu, (x) => Math.max(x, 0), [-3, 3]],
  gelu: [T.gelu, geluRef, [-6, 6]],
  silu: [T.silu, siluRef, [-8, 8]],
  square: [T.square, (x) => x * x, [-3, 3]],
  reciprocal: [T.reciprocal, (x) => 1 / x, [0.2, 4]],
};

// What any conforming adapter guarantees for each op over its range in UNARY_REF, from the WGSL
// spec's f32 accuracy table (§ "Floating Point Accuracy"): [rtol, atol]. One ULP of a value v is
// at most 2^-23·|v|. Composite ops inherit the errors of their parts as written in
// kernels/elementwise.wgsl; lavapipe happens to do far better, SwiftShader less so.
const ULP = 2 ** -23;
const UNARY_BOUND: Record<string, [number, number]> = {
  neg: [0, 0], // exact
  abs: [0, 0], // correctly rounded, and exact
  relu: [0, 0], // max: correctly rounded, and exact
  square: [ULP / 2, 0], // x * y: correctly rounded
  reciprocal: [2.5 * ULP, 0], // x / y: 2.5 ULP
  exp: [(3 + 2 * 4) * ULP, 0], // exp: 3 + 2·|x| ULP, |x| ≤ 4
  log: [3 * ULP, 2 ** -21], // log: 3 ULP outside [0.5, 2], absolute 2^-21 inside
  sqrt: [5 * ULP, 0], // sqrt: inherited from 1 / inverseSqrt(x): 2 + 2.5 ULP
  rsqrt: [2 * ULP, 0], // inverseSqrt: 2 ULP
  sin: [0, 2 ** -11], // sin: absolute 2^-11 on [-π, π] (the range tested; nothing is promised outside)
  cos: [0, 2 ** -11], // cos: the same
  // tanh: inherited from sinh / cosh, each from (exp(x) ∓ exp(−x)) / 2 with exp's 3 + 2·|x| ULP;
  // worst near |x| = 2.8 of [-3, 3], where it comes to 2.29e-6 absolute
  tanh: [0, 2.3e-6],
  // sigmoid_: exp(−|x|) with 3 + 2·|x| ULP (|x| ≤ 8: 19), then 1 + e and a division (3 ULP)
  sigmoid: [22 * ULP, 0],
  silu: [23 * ULP, 0], // sigmoid_ times x (0.5 ULP)
  // gelu_: the erfc fit (1.2e-7 relative) times exp of an argument up to 19.3 in magnitude (3 + 2·19.3
  // ULP), plus the f32 rounding of that argument (a few ULP of 19.3, ~5e-6 after exp)
  gelu: [1.3e-5, 0],
};

describe('elementwise', () => {
  it('unary ops match f64 references within what WGSL guarantees at awkward sizes', async () => {
    const e = await getEngine();
    for (const [name, [op, ref, [lo, hi]]] of Object.entries(UNARY_REF)) {
      const [rtol, atol] = UNARY_BOUND[name]!;
      for (const n of AWKWARD) {
        const x = randu(n, n + name.length, lo, hi);
        const y = T.tidy(() => op(T.tensor(e, x)));
        expectClose(await y.read(), Array.from(x, ref), rtol, atol, `${name}[${n}]`);
        y.dispose();
      }
    }
  });

  it('binary ops broadcast like NumPy, including strided views', async () => {
    const e = await getEngine();
    const a = randn(7 * 129, 1);
    const b = randn(129, 2);
    const refs: [string, (x: Tensor, y: Tensor) => Tensor, (x: number, y: number) => number][] = [
      ['add', T.add, (x, y) => x + y],
      ['sub', T.sub, (x, y) => x - y],
      ['mul', T.mul, (x, y) => x * y],
      ['div', T.div, (x, y) => x / y],
      ['maximum', T.maximum, Math.max],
      ['minimum', T.minimum, Math.min],
    ];
    const ta = T.tensor(e, a, [7, 129]);
    const tb = T.tensor(e, b, [129]);
    for (const [name, op, ref] of refs) {
      const y = op(ta, tb);
      expectClose(await y.read(), Array.from(a, (v, i) => ref(v, b[i % 129]!)), 1e-5, 1e-7, name);
      y.dispose();
    }
    // column broadcast [7,1] against a transposed view [7,129]ᵀ → [129, 7]
    const col = T.tensor(e, randn(7, 3), [7, 1]);
    const tv = T.transpose(T.tensor(e, randn(129 * 7, 4), [129, 7]));
    const y = T.add(tv, col);
    const tvh = await T.contiguous(tv).read();
    const colh = await col.read();
    expectClose(await y.read(), Array.from(tvh, (v, i) => v + colh[Math.floor(i / 129)]!), 1e-6, 1e-7, 'strided');
    for (const t of [ta, tb, col, tv, y]) t.dispose();
  });

  it('where, comparisons, clamp, pow, affine and casts', async () => {
    const e = await getEngine();
    const a = randn(1000, 5);
    const b = randn(1000, 6);
    const ta = T.tensor(e, a);
    const tb = T.tensor(e, b);
    const gt = T.gt(ta, tb);
    expect(Array.from(await gt.read())).toEqual(Array.from(a, (v, i) => (v > b[i]! ? 1 : 0)));
    const w = T.where(gt, ta, tb);
    expectClose(await w.read(), Array.from(a, (v, i) => Math.max(v, b[i]!)), 0, 0, 'where');
    expectClose(await T.clamp(ta, -0.5, 0.25).read(), Array.from(a, (v) => Math.min(0.25, Math.max(-0.5, v))), 0, 0, 'clamp');
    // pow(|x|, 3), inherited from exp2(y = 3·log2|x|) (3 + 2·|y| ULP; log2: 3 ULP, or 2^-21 absolute
    // on [0.5, 2]): under 5e-6 relative for 0.46 ≤ |x| ≤ 4.3, about 1e-5 at |x| = 0.01, where the
    // absolute 1e-6 allows 100 times more
    expectClose(await T.powScalar(ta, 3).read(), Array.from(a, (v) => v ** 3), 1e-5, 1e-6, 'pow3');
    expectClose(await T.affine(ta, 2.5, -1).read(), Array.from(a, (v) => 2.5 * v - 1), 1e-6, 1e-7, 'affine');
    const ints = T.cast(T.affine(ta, 10), 'i32');
    expect(Array.from(await ints.read())).toEqual(Array.from(a, (v) => (Math.fround(10 * v) | 0)));
    const back = T.cast(ints, 'f32');
    expect(Array.from(await back.read())).toEqual(Array.from(a, (v) => (Math.fround(10 * v) | 0)));
    const iw = T.where(T.gt(ints, T.full(e, [1], 0, 'i32')), ints, T.full(e, [1], -7, 'i32'));
    expect(Array.from(await iw.read())).toEqual(Array.from(a, (v) => ((Math.fround(10 * v) | 0) > 0 ? (Math.fround(10 * v) | 0) : -7)));
  });

  itF16('f16 storage within 1e-2 relative', async (e) => {
    for (const n of AWKWARD) {
      const x = randu(n, n, -3, 3);
      const h = T.cast(T.tensor(e, x), 'f16');
      expect(h.dtype).toBe('f16');
      const y = T.gelu(T.mul(h, h));
      expect(y.dtype).toBe('f16');
      expectClose(await T.cast(y, 'f32').read(), Array.from(x, (v) => UNARY_REF.gelu![1](v * v)), 1e-2, 1e-3, `f16[${n}]`);
      // host round trip of f16 data
      const up = T.tensor(e, x, [n], 'f16');
      expectClose(await up.toFloat32(), x, 1e-3, 1e-4, 'f16 upload');
    }
  });

  it('creation: full, zeros, arange (2-D grid beyond 65535 workgroups)', async () => {
    const e = await getEngine();
    const n = 65535 * 256 + 1000;
    const t = T.arange(e, n, 0, 1, 'u32');
    const h = await t.read();
    expect(h.length).toBe(n);
    expect(h[n - 1]).toBe(n - 1);
    expect(h[65535 * 256]).toBe(65535 * 256);
    t.dispose();
    expect(Array.from(await T.full(e, [3], 2.5).read())).toEqual([2.5, 2.5, 2.5]);
  });

  it('gradients of unary ops match finite differences', async () => {
    const e = await getEngine();
    for (const [name, [op, ref, [lo, hi]]] of Object.entries(UNARY_REF)) {
      if (name === 'relu' || name === 'abs') continue; // kinks: checked below away from 0
      const x = randu(13, name.length, lo, hi);
      await gradCheck(e, [{ data: x, shape: [13] }], ([t]) => op(t!), ([v]) => v!.map(ref), { eps: 1e-3 });
    }
    const away = Float32Array.from(randu(13, 3, 0.2, 2), (v, i) => (i % 2 ? v : -v));
    await gradCheck(e, [{ data: away, shape: [13] }], ([t]) => T.relu(t!), ([v]) => v!.map((x) => Math.max(x, 0)));
    await gradCheck(e, [{ data: away, shape: [13] }], ([t]) => T.abs(t!), ([v]) => v!.map(Math.abs));
  });

  it('gradients of binary ops with broadcasting match finite differences', async () => {
    const e = await getEngine();
    const a = randn(21, 7);
    const b = randu(7, 8, 0.5, 2);
    const cases: [string, (x: Tensor, y: Tensor) => Tensor, (x: number, y: number) => number][] = [
      ['add', T.add, (x, y) => x + y],
      ['sub', T.sub, (x, y) => x - y],
      ['mul', T.mul, (x, y) => x * y],
      ['div', T.div, (x, y) => x / y],
    ];
    for (const [name, op, ref] of cases) {
      await gradCheck(
        e,
        [{ data: a, shape: [3, 7] }, { data: b, shape: [7] }],
        ([x, y]) => op(x!, y!),
        ([x, y]) => x!.map((v, i) => ref(v, y![i % 7]!)),
        { seed: name.length },
      );
    }
    // max/min away from ties
    const c = Float32Array.from(a, (v) => v + 5);
    await gradCheck(e, [{ data: c, shape: [3, 7] }, { data: b, shape: [7] }], ([x, y]) => T.minimum(x!, y!), ([x, y]) => x!.map((v, i) => Math.min(v, y![i % 7]!)));
    await gradCheck(
      e,
      [{ data: a, shape: [21] }, { data: b.slice(0, 1), shape: [1] }, { data: randn(21, 9), shape: [21] }],
      ([x, s, y]) => T.where(T.gt(x!, T.full(e, [1], 0)), T.mul(x!, s!), y!),
      ([x, s, y]) => x!.map((v, i) => (v > 0 ? v * s![0]! : y![i]!)),
    );
    await gradCheck(e, [{ data: randu(9, 3, 0.5, 2), shape: [9] }], ([x]) => T.powScalar(x!, 2.5), ([x]) => x!.map((v) => v ** 2.5));
    await gradCheck(e, [{ data: randn(9, 4), shape: [9] }], ([x]) => T.powScalar(x!, 3), ([x]) => x!.map((v) => v ** 3));
    await gradCheck(e, [{ data: randn(9, 4), shape: [9] }], ([x]) => T.affine(x!, -2, 1), ([x]) => x!.map((v) => -2 * v + 1));
    await gradCheck(e, [{ data: randn(9, 4), shape: [9] }], ([x]) => T.clamp(x!, -0.3, 0.4), ([x]) => x!.map((v) => Math.min(0.4, Math.max(-0.3, v))));
  });
});

describe('autograd accumulation', () => {
  it('leaves get their own gradient buffers: summed uses, and one gradient passed on to two leaves', async () => {
    const e = await getEngine();
    const a = T.param(T.tensor(e, [1, 2, 3], [3]));
    const b = T.param(T.tensor(e, [4, 5, 6], [3]));
    const c = T.param(T.tensor(e, [7, 8, 9], [3]));
    T.tidy(() => {
      // x = a + b is used twice, so its gradient is a sum (2 + 3 = 5 per element), which add's
      // backward hands unchanged to both a and b; c is used twice directly (its own sum)
      const x = T.add(a, b);
      const y = T.add(T.add(T.mul(x, T.full(e, [3], 2)), T.mul(x, T.full(e, [3], 3))), T.mul(T.add(c, c), T.full(e, [3], 1)));
      T.backward(T.sum(y));
    });
    expect(Array.from(await a.grad!.read())).toEqual([5, 5, 5]);
    expect(Array.from(await b.grad!.read())).toEqual([5, 5, 5]);
    expect(Array.from(await c.grad!.read())).toEqual([2, 2, 2]);
    expect(a.grad!.buffer).not.toBe(b.grad!.buffer);
    // scaling one gradient in place (as clipping does) leaves the other alone
    T.clipGradNorm([a], 1e-3);
    expect(Array.from(await b.grad!.read())).toEqual([5, 5, 5]);
    T.zeroGrad([a, b, c]);
    T.disposeAll([a, b, c]);
  });
});
