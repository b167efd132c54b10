import { Float16Array } from '@petamoriken/float16';
import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { conv1d, layerNorm, logSoftmax, rmsNorm, rope, ropeInvFreq, scaledDotProductAttention, softmax, unfold1d, conv1dTimeMajor } from '../src/tensor/ops/nn.js';
import { conv1dOutLength, conv1dRef } from '../reference/conv1d.js';
import { layerNormRef, rmsNormRef } from '../reference/norm.js';
import { ropeRef } from '../reference/rope.js';
import { prod } from '../reference/shape.js';
import { attentionRef, logSoftmaxRef, softmaxRef } from '../reference/softmax.js';
import { unfold1dRef } from '../reference/unfold.js';
import { ArdError } from '../src/util/errors.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, itF16, randn, randu } from './helpers.js';

const f16round = (x: Float32Array) => Float32Array.from(Float16Array.from(x));

/** Run `f` on an engine tensor built from `data`, read the result back as f32. */
async function run1(data: Float32Array, shape: number[], f: (t: T.Tensor) => T.Tensor, dtype: 'f32' | 'f16' = 'f32'): Promise<Float32Array> {
  const e = await getEngine();
  const y = T.tidy(() => f(T.tensor(e, data, shape, dtype)));
  const out = await y.toFloat32();
  y.dispose();
  return out;
}

describe('softmax', () => {
  it('matches the f64 reference at awkward sizes (f32, 1e-4), incl. widths above the workgroup', async () => {
    const cases: [number[], number][] = [
      [[1, 1], 1],
      [[7, 7], 1],
      [[3, 129], 0.5],
      [[129, 7], 1],
      [[2, 1000], 1],
      [[1, 4097], 0.25],
      [[2, 3, 5, 9], 1],
    ];
    for (const [shape, scale] of cases) {
      const x = randn(prod(shape), shape.length * 100 + shape[shape.length - 1]!, 3);
      expectClose(await run1(x, shape, (t) => softmax(t, { scale })), softmaxRef(x, shape, { scale }), 1e-4, 1e-9, `softmax${JSON.stringify(shape)}`);
      expectClose(await run1(x, shape, (t) => logSoftmax(t, { scale })), logSoftmaxRef(x, shape, { scale }), 1e-4, 1e-6, `logSoftmax${JSON.stringify(shape)}`);
    }
  });

  it('is numerically stable for large logits (no overflow, rows sum to 1)', async () => {
    const shape = [4, 1000];
    const x = randn(prod(shape), 5, 2).map((v, i) => v + (i < 2000 ? 1000 : -1000));
    const y = await run1(x, shape, (t) => softmax(t));
    expectClose(y, softmaxRef(x, shape), 1e-4, 1e-9, 'softmax(±1000 + x)');
    for (let r = 0; r < 4; r++) expect(Math.abs(y.subarray(r * 1000, (r + 1) * 1000).reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
    expectClose(await run1(x, shape, (t) => logSoftmax(t)), logSoftmaxRef(x, shape), 1e-4, 1e-5, 'logSoftmax(±1000 + x)');
  });

  it('masks causally: default offset Tk − Tq, explicit offsets, rows with no visible key', async () => {
    const shape = [2, 5, 9]; // Tq = 5, Tk = 9 (a KV cache of 4 earlier steps)
    const x = randn(prod(shape), 11, 2);
    for (const causalOffset of [undefined, 0, 4, -2, 20]) {
      const opts = { causal: true, causalOffset, scale: 0.35 };
      const y = await run1(x, shape, (t) => softmax(t, opts));
      expectClose(y, softmaxRef(x, shape, opts), 1e-4, 1e-9, `causal softmax offset ${causalOffset}`);
      const ly = await run1(x, shape, (t) => logSoftmax(t, opts));
      const lr = logSoftmaxRef(x, shape, opts);
      expectClose(ly, lr, 1e-4, 1e-6, `causal logSoftmax offset ${causalOffset}`);
      for (let i = 0; i < lr.length; i++) if (lr[i] === -Infinity) expect(ly[i]).toBe(-Infinity);
    }
    // the default offset lets the last query see every key, the first only 5 of 9
    const y = await run1(x, shape, (t) => softmax(t, { causal: true }));
    expect(y[4 * 9 + 8]).toBeGreaterThan(0);
    expect(y[5]).toBe(0);
    expect(y[4]).toBeGreaterThan(0);
    // square scores with a wide row: plain lower-triangular mask
    const sq = [1, 129, 129];
    const xs = randn(prod(sq), 12);
    expectClose(await run1(xs, sq, (t) => softmax(t, { causal: true })), softmaxRef(xs, sq, { causal: true, causalOffset: 0 }), 1e-4, 1e-9, 'causal 129×129');
  });

  itF16('f16 storage matches the reference within 1e-2', async (e) => {
    for (const shape of [[7, 129], [3, 1000], [2, 4, 6]]) {
      const x = f16round(randn(prod(shape), shape[1]!, 3));
      const y = T.tidy(() => softmax(T.tensor(e, x, shape, 'f16'), { causal: shape.length === 3, scale: 0.7 }));
      expect(y.dtype).toBe('f16');
      expectClose(await y.toFloat32(), softmaxRef(x, shape, { causal: shape.length === 3, scale: 0.7 }), 1e-2, 1e-4, `f16 softmax${JSON.stringify(shape)}`);
      y.dispose();
      const causal = shape.length === 3; // masked entries must come back as f16 -inf
      const ly = await run1(x, shape, (t) => logSoftmax(t, { causal }), 'f16');
      const lr = logSoftmaxRef(x, shape, { causal });
      expectClose(ly, lr, 1e-2, 1e-3, `f16 logSoftmax${JSON.stringify(shape)}`);
      if (causal) expect(ly[3]).toBe(-Infinity); // query 0 sees keys 0..2 of 6
      for (let i = 0; i < lr.length; i++) if (lr[i] === -Infinity) expect(ly[i]).toBe(-Infinity);
    }
  });

  it('gradients match finite differences (plain, scaled, causal, wide rows)', async () => {
    const e = await getEngine();
    const check = (shape: number[], seed: number, opts: { causal?: boolean; causalOffset?: number; scale?: number }) =>
      gradCheck(e, [{ data: randn(prod(shape), seed), shape }], ([x]) => softmax(x!, opts), ([x]) => softmaxRef(x!, shape, opts));
    await check([3, 7], 1, {});
    await check([2, 4, 6], 2, { causal: true, scale: 0.5 });
    await check([5, 5], 3, { causal: true, causalOffset: -1 });
    await check([2, 1000], 4, { scale: 2 });
    await check([2, 129], 5, { causal: true, causalOffset: 100 });
    const lcheck = (shape: number[], seed: number, opts: { causal?: boolean; scale?: number }) =>
      gradCheck(e, [{ data: randn(prod(shape), seed), shape }], ([x]) => logSoftmax(x!, opts), ([x]) => logSoftmaxRef(x!, shape, opts));
    await lcheck([3, 7], 6, { scale: 0.3 });
    await lcheck([2, 1000], 7, {});
    // causal log-softmax gives -inf where masked: check its backward through exp (= softmax)
    const shape = [2, 3, 8];
    await gradCheck(e, [{ data: randn(48, 8), shape }], ([x]) => T.exp(logSoftmax(x!, { causal: true })), ([x]) => softmaxRef(x!, shape, { causal: true }));
  });
});

describe('layerNorm / rmsNorm', () => {
  const cases: number[][] = [
    [1, 1],
    [7, 7],
    [129, 129],
    [3, 1000],
    [2, 4097],
    [1000, 7],
    [2, 3, 33],
  ];
  it('match the f64 references at awkward sizes (f32, 1e-4), with and without bias', async () => {
    for (const shape of cases) {
      const n = shape[shape.length - 1]!;
      const seed = prod(shape);
      const x = randn(prod(shape), seed, 2);
      const w = randu(n, seed + 1, 0.5, 1.5);
      const b = randn(n, seed + 2);
      const tag = JSON.stringify(shape);
      expectClose(await run1(x, shape, (t) => layerNorm(t, T.tensor(t.engine, w), T.tensor(t.engine, b), 1e-5)), layerNormRef(x, shape, w, b, 1e-5), 1e-4, 1e-5, `layerNorm${tag}`);
      expectClose(await run1(x, shape, (t) => layerNorm(t, T.tensor(t.engine, w), null, 1e-5)), layerNormRef(x, shape, w, null, 1e-5), 1e-4, 1e-5, `layerNorm(no bias)${tag}`);
      expectClose(await run1(x, shape, (t) => rmsNorm(t, T.tensor(t.engine, w), 1e-6)), rmsNormRef(x, shape, w, 1e-6), 1e-4, 1e-6, `rmsNorm${tag}`);
    }
  });

  it('layerNorm keeps its precision when the mean dwarfs the spread', async () => {
    const shape = [5, 1000];
    const x = randn(5000, 21).map((v) => 300 + v);
    const w = randu(1000, 22, 0.5, 1.5);
    // f32 inputs near 300 carry ~3e-5 absolute rounding: compare against the same rounded values
    expectClose(await run1(x, shape, (t) => layerNorm(t, T.tensor(t.engine, w), null)), layerNormRef(x, shape, w, null, 1e-5), 1e-4, 1e-3, 'layerNorm(300 + x)');
  });

  itF16('f16 storage (x and weights) within 1e-2', async (e) => {
    const shape = [7, 129];
    const x = f16round(randn(prod(shape), 31, 2));
    const w = f16round(randu(129, 32, 0.5, 1.5));
    const b = f16round(randn(129, 33));
    const ln = await run1(x, shape, (t) => layerNorm(t, T.tensor(e, w, [129], 'f16'), T.tensor(e, b, [129], 'f16')), 'f16');
    expectClose(ln, layerNormRef(x, shape, w, b, 1e-5), 1e-2, 1e-2, 'f16 layerNorm');
    const rn = await run1(x, shape, (t) => rmsNorm(t, T.tensor(e, w, [129], 'f16')), 'f16');
    expectClose(rn, rmsNormRef(x, shape, w, 1e-6), 1e-2, 1e-2, 'f16 rmsNorm');
  });

  it('gradients for x, weight and bias match finite differences (one and many row chunks)', async () => {
    const e = await getEngine();
    for (const shape of [[5, 7], [3, 129], [2, 1000], [300, 7]]) {
      const n = shape[1]!;
      const seed = prod(shape);
      const inputs = [
        { data: randn(prod(shape), seed), shape },
        { data: randu(n, seed + 1, 0.5, 1.5), shape: [n] },
        { data: randn(n, seed + 2), shape: [n] },
      ];
      await gradCheck(e, inputs, ([x, w, b]) => layerNorm(x!, w!, b!, 1e-5), ([x, w, b]) => layerNormRef(x!, shape, w!, b!, 1e-5));
      await gradCheck(e, inputs.slice(0, 2), ([x, w]) => rmsNorm(x!, w!, 1e-6), ([x, w]) => rmsNormRef(x!, shape, w!, 1e-6));
    }
    // only the weight wants a gradient (x constant), and bias-free LayerNorm
    const shape = [4, 9];
    await gradCheck(
      e,
      [{ data: randn(36, 41), shape, constant: true }, { data: randu(9, 42, 0.5, 1.5), shape: [9] }],
      ([x, w]) => layerNorm(x!, w!, null),
      ([x, w]) => layerNormRef(x!, shape, w!, null, 1e-5),
    );
  });
});

describe('rope', () => {
  it('inverse frequencies are HF f32 values of 1/θ^(2k/D)', () => {
    const f = ropeInvFreq(10000, 128);
    expect(f.length).toBe(64);
    for (let k = 0; k < 64; k++) expect(Math.abs(f[k]! - 10000 ** (-(2 * k) / 128))).toBeLessThanOrEqual(2e-7 * 10000 ** (-(2 * k) / 128));
  });

  it('matches the reference in both layouts, packed heads, start positions and position tensors', async () => {
    const e = await getEngine();
    // [T, H, D] with a KV-cache start position
    let shape = [7, 3, 8];
    let x = randn(prod(shape), 51);
    expectClose(await run1(x, shape, (t) => rope(t, 5)), ropeRef(x, shape, 5), 1e-5, 1e-6, 'rope thd start 5');
    // packed [T, H·D]
    shape = [7, 24];
    expectClose(await run1(x, shape, (t) => rope(t, 0, { headDim: 8, theta: 500 })), ropeRef(x, shape, 0, { headDim: 8, theta: 500 }), 1e-5, 1e-6, 'rope packed');
    // [B, H, T, D] with per-batch position ids (B·T)
    shape = [2, 3, 7, 16];
    x = randn(prod(shape), 52);
    const pos = Int32Array.from({ length: 14 }, (_, i) => (i < 7 ? i : 3 * i + 11));
    const posT = T.tensor(e, pos, [2, 7], 'i32');
    expectClose(await run1(x, shape, (t) => rope(t, posT, { layout: 'htd' })), ropeRef(x, shape, pos, { layout: 'htd' }), 1e-5, 1e-6, 'rope htd positions');
    // [B, T, H, D] with one position row shared by the batch
    shape = [2, 7, 3, 16];
    const pos1 = T.tensor(e, pos.subarray(7), [7], 'i32');
    expectClose(await run1(x, shape, (t) => rope(t, pos1)), ropeRef(x, shape, pos.subarray(7)), 1e-5, 1e-6, 'rope thd shared positions');
    posT.dispose();
    pos1.dispose();
    // Qwen2's D = 128 at long-context positions (angles up to ~5000 rad)
    shape = [129, 2, 128];
    x = randn(prod(shape), 53);
    expectClose(await run1(x, shape, (t) => rope(t, 4000, { theta: 1e6 })), ropeRef(x, shape, 4000, { theta: 1e6 }), 1e-5, 1e-5, 'rope D=128 at 4000');
    // angles up to 2^24 rad, far outside the [-π, π] where WGSL's sin/cos promise anything
    shape = [9, 1, 128];
    x = randn(prod(shape), 57);
    expectClose(await run1(x, shape, (t) => rope(t, 2 ** 24 - 9)), ropeRef(x, shape, 2 ** 24 - 9), 1e-5, 1e-5, 'rope D=128 at 2^24 − 9');
  });

  itF16('f16 storage within 1e-2', async () => {
    const shape = [9, 2, 64];
    const x = f16round(randn(prod(shape), 54));
    expectClose(await run1(x, shape, (t) => rope(t, 3), 'f16'), ropeRef(x, shape, 3), 1e-2, 1e-2, 'f16 rope');
  });

  it('bad arguments throw ArdError', async () => {
    const e = await getEngine();
    const shape = [9, 2, 64];
    const x = f16round(randn(prod(shape), 54));
    const t = T.tensor(e, x, shape);
    expect(() => rope(t, 0, { headDim: 7 })).toThrow(ArdError);
    expect(() => rope(t, 0, { headDim: 48 })).toThrow(ArdError);
    expect(() => rope(T.tensor(e, x.subarray(0, 128), [2, 64]), 0)).toThrow(ArdError);
    const badPos = T.tensor(e, [1, 2, 3], [3], 'i32');
    expect(() => rope(t, badPos)).toThrow(ArdError);
    badPos.dispose();
    t.dispose();
  });

  it('gradients (rotation by −angle) match finite differences', async () => {
    const e = await getEngine();
    let shape = [5, 2, 8];
    await gradCheck(e, [{ data: randn(80, 55), shape }], ([x]) => rope(x!, 3), ([x]) => ropeRef(x!, shape, 3));
    shape = [2, 2, 3, 6];
    const pos = Int32Array.from([4, 9, 2, 0, 1, 7]);
    const posT = T.tensor(e, pos, [2, 3], 'i32');
    await gradCheck(e, [{ data: randn(72, 56), shape }], ([x]) => rope(x!, posT, { layout: 'htd', theta: 100 }), ([x]) => ropeRef(x!, shape, pos, { layout: 'htd', theta: 100 }));
    posT.dispose();
  });
});

describe('conv1d', () => {
  const cases: { x: number[]; w: number[]; stride: number; padding: number; bias: boolean }[] = [
    { x: [3, 7], w: [4, 3, 3], stride: 1, padding: 1, bias: true }, // Whisper conv1 shape, unbatched
    { x: [2, 5, 129], w: [7, 5, 3], stride: 2, padding: 1, bias: true }, // Whisper conv2 shape
    { x: [1, 1], w: [1, 1, 1], stride: 1, padding: 0, bias: false },
    { x: [4, 1000], w: [6, 4, 3], stride: 1, padding: 1, bias: true },
    { x: [2, 3, 11], w: [5, 3, 5], stride: 3, padding: 2, bias: false },
  ];
  it('matches the f64 reference (f32, 1e-4)', async () => {
    const e = await getEngine();
    for (const c of cases) {
      const seed = prod(c.x) + prod(c.w);
      const x = randn(prod(c.x), seed);
      const w = randn(prod(c.w), seed + 1, 0.5);
      const b = c.bias ? randn(c.w[0]!, seed + 2) : null;
      const y = T.tidy(() => conv1d(T.tensor(e, x, c.x), T.tensor(e, w, c.w), b ? T.tensor(e, b) : null, c));
      const Tout = conv1dOutLength(c.x[c.x.length - 1]!, c.w[2]!, c.stride, c.padding);
      expect(y.shape).toEqual(c.x.length === 3 ? [c.x[0], c.w[0], Tout] : [c.w[0], Tout]);
      expectClose(await y.read(), conv1dRef(x, c.x, w, c.w, b, c), 1e-4, 1e-5, `conv1d ${JSON.stringify(c)}`);
      y.dispose();
    }
  });

  itF16('f16 storage within 1e-2', async (e) => {
    const x = f16round(randn(2 * 6 * 33, 61));
    const w = f16round(randn(8 * 6 * 3, 62, 0.4));
    const y = T.tidy(() => conv1d(T.tensor(e, x, [2, 6, 33], 'f16'), T.tensor(e, w, [8, 6, 3], 'f16'), null, { stride: 2, padding: 1 }));
    expect(y.dtype).toBe('f16');
    expectClose(await y.toFloat32(), conv1dRef(x, [2, 6, 33], w, [8, 6, 3], null, { stride: 2, padding: 1 }), 1e-2, 1e-2, 'f16 conv1d');
    y.dispose();
  });

  it('bad shapes throw ArdError', async () => {
    const e = await getEngine();
    const x = T.tensor(e, randn(12, 63), [3, 4]);
    expect(() => conv1d(x, T.tensor(e, randn(12, 64), [2, 2, 3]))).toThrow(ArdError);
    expect(() => conv1d(x, T.tensor(e, randn(30, 65), [2, 3, 5]))).toThrow(ArdError);
    expect(() => conv1d(x, T.tensor(e, randn(18, 66), [2, 3, 3]), null, { stride: 0 })).toThrow(ArdError);
  });

  it('gradients for x, w and bias match finite differences (strides 1–3, padding)', async () => {
    const e = await getEngine();
    for (const c of [cases[0]!, cases[1]!, cases[4]!, { x: [2, 2, 9], w: [3, 2, 3], stride: 2, padding: 0, bias: true }]) {
      const seed = prod(c.x) + 7;
      const xs = c.x;
      const ws = c.w;
      const inputs = [
        { data: randn(prod(xs), seed), shape: xs },
        { data: randn(prod(ws), seed + 1, 0.5), shape: ws },
        ...(c.bias ? [{ data: randn(ws[0]!, seed + 2), shape: [ws[0]!] }] : []),
      ];
      await gradCheck(
        e,
        inputs,
        ([x, w, b]) => conv1d(x!, w!, b ?? null, c),
        ([x, w, b]) => conv1dRef(x!, xs, w!, ws, b ?? null, c),
      );
    }
  });
});

describe('unfold1d', () => {
  const cases = [
    { Cin: 3, T: 7, K: 3, stride: 1, padding: 1 },
    { Cin: 80, T: 201, K: 3, stride: 1, padding: 1 }, // the audio encoder's conv1 (Cin·K = 240: not a multiple of 64)
    { Cin: 5, T: 129, K: 3, stride: 2, padding: 1 },
    { Cin: 1, T: 1, K: 1, stride: 1, padding: 0 },
    { Cin: 3, T: 11, K: 5, stride: 3, padding: 2 },
    { Cin: 4, T: 1000, K: 3, stride: 2, padding: 0 },
  ];
  it('matches the reference on dense and strided inputs; conv1d as unfold + matmul equals the conv reference', async () => {
    const e = await getEngine();
    for (const c of cases) {
      const x = randn(c.Cin * c.T, c.Cin * 31 + c.T);
      const want = unfold1dRef(x, c.Cin, c.T, c.K, c.stride, c.padding);
      const Tout = conv1dOutLength(c.T, c.K, c.stride, c.padding);
      const y = T.tidy(() => unfold1d(T.tensor(e, x, [c.Cin, c.T]), c.K, c));
      expect(y.shape).toEqual([Tout, c.Cin * c.K]);
      expectClose(await y.read(), want, 0, 0, `unfold1d ${JSON.stringify(c)}`);
      // the same x stored time-major [T, Cin] behind an offset, read through a transposed view
      const tm = new Float32Array(5 + c.Cin * c.T);
      for (let ci = 0; ci < c.Cin; ci++) for (let t = 0; t < c.T; t++) tm[5 + t * c.Cin + ci] = x[ci * c.T + t]!;
      const y2 = T.tidy(() => unfold1d(T.transpose(T.reshape(T.slice(T.tensor(e, tm, [tm.length]), 0, 5), [c.T, c.Cin]), 0, 1), c.K, c));
      expectClose(await y2.read(), want, 0, 0, `unfold1d strided ${JSON.stringify(c)}`);
      T.disposeAll(y, y2);
    }
    // a convolution through it (conv1dTimeMajor), all time steps and the first few
    const [Cin, Tn, Cout, K] = [6, 37, 5, 3];
    const x = randn(Cin * Tn, 71);
    const w = randn(Cout * Cin * K, 72, 0.5);
    const b = randn(Cout, 73);
    const want = conv1dRef(x, [Cin, Tn], w, [Cout, Cin, K], b, { stride: 2, padding: 1 }); // [Cout, 19]
    const y = T.tidy(() => T.contiguous(T.transpose(conv1dTimeMajor(T.tensor(e, x, [Cin, Tn]), T.tensor(e, w, [Cout, Cin, K]), T.tensor(e, b), { stride: 2, padding: 1 }))));
    expectClose(await y.read(), want, 1e-4, 1e-5, 'conv via unfold');
    const y5 = T.tidy(() => conv1dTimeMajor(T.tensor(e, x, [Cin, Tn]), T.tensor(e, w, [Cout, Cin, K]), T.tensor(e, b), { stride: 2, padding: 1, rows: 5 }));
    expect(y5.shape).toEqual([5, Cout]);
    const first5 = Array.from({ length: 5 * Cout }, (_, i) => want[(i % Cout) * 19 + Math.floor(i / Cout)]!);
    expectClose(await y5.read(), first5, 1e-4, 1e-5, 'conv via unfold, 5 rows');
    T.disposeAll(y, y5);
    const bad = T.tensor(e, randn(12, 74), [3, 4]);
    expect(() => unfold1d(bad, 7)).toThrow(/shorter than the kernel/);
    expect(() => unfold1d(bad, 3, { stride: 0 })).toThrow(ArdError);
    expect(() => unfold1d(T.reshape(bad, [12]), 3)).toThrow(/must be \[Cin, T\]/);
    bad.dispose();
  });

  it('gradient matches finite differences (strides 1–3, padding, a transposed input)', async () => {
    const e = await getEngine();
    for (const c of [cases[0]!, cases[2]!, cases[4]!, { Cin: 2, T: 9, K: 3, stride: 2, padding: 0 }]) {
      await gradCheck(e, [{ data: randn(c.Cin * c.T, c.T + 5), shape: [c.Cin, c.T] }], ([x]) => unfold1d(x!, c.K, c), ([x]) => unfold1dRef(x!, c.Cin, c.T, c.K, c.stride, c.padding));
    }
    // input time-major [T, Cin], transposed: the gradient reaches the time-major tensor
    const [Cin, Tn] = [3, 10];
    await gradCheck(
      e,
      [{ data: randn(Cin * Tn, 81), shape: [Tn, Cin] }],
      ([x]) => unfold1d(T.transpose(x!, 0, 1), 3, { stride: 2, padding: 1 }),
      ([x]) => {
        const cm = new Float64Array(Cin * Tn);
        for (let t = 0; t < Tn; t++) for (let ci = 0; ci < Cin; ci++) cm[ci * Tn + t] = x![t * Cin + ci]!;
        return unfold1dRef(cm, Cin, Tn, 3, 2, 1);
      },
    );
  });
});

describe('scaledDotProductAttention', () => {
  /** Repeat each of the Hkv heads of [B, Hkv, T, D] rep times (HF repeat_kv) → [B·Hkv·rep, T, D]. */
  const repeatKv = (x: ArrayLike<number>, B: number, Hkv: number, rep: number, Tn: number, D: number) => {
    const out = new Float64Array(B * Hkv * rep * Tn * D);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < Hkv * rep; h++)
        for (let i = 0; i < Tn * D; i++) out[((b * Hkv * rep + h) * Tn * D) + i] = x[((b * Hkv + Math.floor(h / rep)) * Tn * D) + i]!;
    return out;
  };
  const ref = (q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, B: number, H: number, Hkv: number, Tq: number, Tk: number, D: number, Dv: number, opts = {}) =>
    attentionRef(q, repeatKv(k, B, Hkv, H / Hkv, Tk, D), repeatKv(v, B, Hkv, H / Hkv, Tk, Dv), B * H, Tq, Tk, D, Dv, opts);

  it('matches the reference: single head, GQA with a KV cache, causal, strided q', async () => {
    const e = await getEngine();
    // one head, awkward sizes, no mask
    let q = randn(7 * 16, 91), k = randn(129 * 16, 92), v = randn(129 * 5, 93);
    let y = T.tidy(() => scaledDotProductAttention(T.tensor(e, q, [7, 16]), T.tensor(e, k, [129, 16]), T.tensor(e, v, [129, 5])));
    expect(y.shape).toEqual([7, 5]);
    expectClose(await y.read(), attentionRef(q, k, v, 1, 7, 129, 16, 5), 1e-4, 1e-5, 'attention 7×129');
    y.dispose();
    // [B, H, Tq, D] with 2 kv heads for 4 query heads, 4 cached steps, causal (B = 1: matmul's
    // kernel for two batch dims takes ~15 s to compile on lavapipe; the lead-dim code is the same)
    const [B, H, Hkv, Tq, Tk, D, Dv] = [1, 4, 2, 5, 9, 8, 6];
    q = randn(B * H * Tq * D, 94);
    k = randn(B * Hkv * Tk * D, 95);
    v = randn(B * Hkv * Tk * Dv, 96);
    y = T.tidy(() => scaledDotProductAttention(T.tensor(e, q, [B, H, Tq, D]), T.tensor(e, k, [B, Hkv, Tk, D]), T.tensor(e, v, [B, Hkv, Tk, Dv]), { causal: true }));
    expect(y.shape).toEqual([B, H, Tq, Dv]);
    expectClose(await y.read(), ref(q, k, v, B, H, Hkv, Tq, Tk, D, Dv, { causal: true }), 1e-4, 1e-5, 'GQA causal attention');
    y.dispose();
    // q as a transposed [Tq, H, D] projection output (Qwen2 layout), explicit scale and offset
    const qThd = new Float32Array(H * Tq * D);
    for (let h = 0; h < H; h++) for (let t = 0; t < Tq; t++) for (let d = 0; d < D; d++) qThd[(t * H + h) * D + d] = q[(h * Tq + t) * D + d]!;
    const opts = { causal: true, causalOffset: 1, scale: 0.3 };
    y = T.tidy(() => scaledDotProductAttention(T.transpose(T.tensor(e, qThd, [Tq, H, D]), 0, 1), T.tensor(e, k.subarray(0, Hkv * Tk * D), [Hkv, Tk, D]), T.tensor(e, v.subarray(0, Hkv * Tk * Dv), [Hkv, Tk, Dv]), opts));
    expectClose(await y.read(), ref(q, k, v, 1, H, Hkv, Tq, Tk, D, Dv, opts), 1e-4, 1e-5, 'attention with strided q');
    y.dispose();
    expect(() => scaledDotProductAttention(T.tensor(e, q, [B, H, Tq, D]), T.tensor(e, k.subarray(0, 3 * Tk * D), [1, 3, Tk, D]), T.tensor(e, v.subarray(0, 3 * Tk * Dv), [1, 3, Tk, Dv]))).toThrow(ArdError);
  });

  it('gradients for q, k and v match finite differences (GQA, causal)', async () => {
    const e = await getEngine();
    const [H, Hkv, Tq, Tk, D, Dv] = [4, 2, 3, 5, 4, 3];
    await gradCheck(
      e,
      [
        { data: randn(H * Tq * D, 97), shape: [H, Tq, D] },
        { data: randn(Hkv * Tk * D, 98), shape: [Hkv, Tk, D] },
        { data: randn(Hkv * Tk * Dv, 99), shape: [Hkv, Tk, Dv] },
      ],
      ([q, k, v]) => scaledDotProductAttention(q!, k!, v!, { causal: true }),
      ([q, k, v]) => ref(q!, k!, v!, 1, H, Hkv, Tq, Tk, D, Dv, { causal: true }),
    );
  });
});

describe('views and argument checks', () => {
  it('read strided views and offset slices in place or via a copy, with gradients', async () => {
    const e = await getEngine();
    const big = randn(4 * 6 * 10, 71);
    const bigT = T.tensor(e, big, [4, 6, 10]);
    // rows 1..2 of the first axis: dense with an offset; a transpose: strided
    const sub = Array.from(big.subarray(60, 180));
    const tr = new Float32Array(4 * 10 * 6);
    for (let a = 0; a < 4; a++) for (let i = 0; i < 6; i++) for (let j = 0; j < 10; j++) tr[(a * 10 + j) * 6 + i] = big[(a * 6 + i) * 10 + j]!;
    const w = randu(10, 72, 0.5, 1.5);
    const wBig = T.tensor(e, Float32Array.from([9, 9, ...w]));
    const got = T.tidy(() => {
      const sl = T.slice(bigT, 0, 1, 3);
      const wv = T.slice(wBig, 0, 2);
      return [
        softmax(sl, { causal: true }),
        layerNorm(sl, wv, null),
        rmsNorm(T.transpose(bigT, 1, 2), T.slice(wBig, 0, 2, 8)),
        rope(T.reshape(sl, [2, 6, 5, 2]), 1),
        conv1d(sl, T.tensor(e, randn(3 * 6 * 3, 73), [3, 6, 3]), null, { padding: 1 }),
      ];
    });
    expectClose(await got[0]!.read(), softmaxRef(sub, [2, 6, 10], { causal: true }), 1e-4, 1e-9, 'softmax(slice)');
    expectClose(await got[1]!.read(), layerNormRef(sub, [2, 6, 10], w, null, 1e-5), 1e-4, 1e-5, 'layerNorm(slice, weight slice)');
    expectClose(await got[2]!.read(), rmsNormRef(tr, [4, 10, 6], w.subarray(0, 6), 1e-6), 1e-4, 1e-6, 'rmsNorm(transpose)');
    expectClose(await got[3]!.read(), ropeRef(sub, [2, 6, 5, 2], 1), 1e-5, 1e-6, 'rope(slice)');
    expectClose(await got[4]!.read(), conv1dRef(sub, [2, 6, 10], randn(3 * 6 * 3, 73), [3, 6, 3], null, { padding: 1 }), 1e-4, 1e-5, 'conv1d(slice)');
    for (const t of got) t.dispose();
    bigT.dispose();
    wBig.dispose();
    // gradient through a transposed input
    const shape = [6, 4];
    await gradCheck(
      e,
      [{ data: randn(24, 74), shape }, { data: randu(6, 75, 0.5, 1.5), shape: [6] }],
      ([x, w]) => layerNorm(T.transpose(x!, 0, 1), w!, null),
      ([x, w]) => {
        const t = new Float64Array(24);
        for (let i = 0; i < 6; i++) for (let j = 0; j < 4; j++) t[j * 6 + i] = x![i * 4 + j]!;
        return layerNormRef(t, [4, 6], w!, null, 1e-5);
      },
    );
  });

  it('bad arguments throw ArdError', async () => {
    const e = await getEngine();
    const x = T.tensor(e, randn(12, 81), [3, 4]);
    const w3 = T.tensor(e, [1, 1, 1]);
    expect(() => layerNorm(x, w3, null)).toThrow(ArdError);
    expect(() => rmsNorm(x, w3)).toThrow(ArdError);
    expect(() => layerNorm(x, T.tensor(e, [1, 1, 1, 1]), w3)).toThrow(ArdError);
    expect(() => softmax(x, { causalOffset: 0.5, causal: true })).toThrow(ArdError);
    expect(() => softmax(T.tensor(e, [1, 2], [2], 'i32'))).toThrow(ArdError);
    expect(() => rmsNorm(x, T.tensor(e, [1, 1, 1, 1]), -1)).toThrow(ArdError);
  });
});

