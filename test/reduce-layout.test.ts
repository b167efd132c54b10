import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, itF16, ownTimeout, randn } from './helpers.js';
import { reduceRef } from '../reference/reduce.js';

describe('reductions', () => {
  it('sum/mean/max/min/argmax/argmin along every axis of awkward shapes', async () => {
    const e = await getEngine();
    for (const shape of [[1], [7], [1000], [7, 129], [3, 1000, 2], [129, 1, 7], [300, 140], [2, 50, 200]]) {
      const x = randn(shape.reduce((a, b) => a * b, 1), shape.length);
      const t = T.tensor(e, x, shape);
      for (let axis = 0; axis < shape.length; axis++) {
        expectClose(await T.sum(t, axis).read(), reduceRef(x, shape, axis, 'sum'), 1e-4, 1e-5, `sum ${shape} @${axis}`);
        expectClose(await T.mean(t, axis).read(), reduceRef(x, shape, axis, 'sum').map((v) => v / shape[axis]!), 1e-4, 1e-6, `mean`);
        expectClose(await T.max(t, axis).read(), reduceRef(x, shape, axis, 'max'), 0, 0, 'max');
        expectClose(await T.min(t, axis).read(), reduceRef(x, shape, axis, 'min'), 0, 0, 'min');
        expect(Array.from(await T.argmax(t, axis).read())).toEqual(reduceRef(x, shape, axis, 'argmax'));
        expect(Array.from(await T.argmin(t, axis).read())).toEqual(reduceRef(x, shape, axis, 'argmin'));
      }
      const all = await T.sum(t).read();
      expectClose(all, [x.reduce((a, b) => a + b, 0)], 1e-4, 1e-4, 'sum all');
      t.dispose();
    }
  });

  it('argmax takes the first index on ties; reduces strided views', async () => {
    const e = await getEngine();
    const t = T.tensor(e, [1, 3, 3, 0, 2, 2], [2, 3]);
    expect(Array.from(await T.argmax(t, 1).read())).toEqual([1, 1]);
    const x = randn(7 * 129, 4);
    const view = T.transpose(T.tensor(e, x, [7, 129]));
    const ref = reduceRef(x, [7, 129], 0, 'sum');
    expectClose(await T.sum(view, 1).read(), ref, 1e-4, 1e-5, 'strided sum');
  });

  itF16('reduces f16', async (e) => {
    const x = randn(7 * 129, 4);
    const h = T.tensor(e, x, [7, 129], 'f16');
    expectClose(await T.cast(T.sum(h, 1), 'f32').read(), reduceRef(await h.toFloat32(), [7, 129], 1, 'sum'), 1e-2, 1e-2, 'f16 sum');
  });

  it('gradients of sum, mean, max (no ties) match finite differences', async () => {
    const e = await getEngine();
    const x = randn(3 * 5 * 4, 8);
    const shape = [3, 5, 4];
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.sum(t!, [0, 2]), ([v]) => Float64Array.from(reduceRef(reduceRef(v!, shape, 0, 'sum'), [1, 5, 4], 2, 'sum')));
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.mean(t!, 1, true), ([v]) => Float64Array.from(reduceRef(v!, shape, 1, 'sum').map((s) => s / 5)));
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.sum(t!), ([v]) => Float64Array.of(v!.reduce((a, b) => a + b, 0)));
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.max(t!, 2), ([v]) => Float64Array.from(reduceRef(v!, shape, 2, 'max')));
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.min(t!, 0), ([v]) => Float64Array.from(reduceRef(v!, shape, 0, 'min')));
  });
});

describe('layout', () => {
  it('views: reshape, permute, slice with step, expand, squeeze — materialised correctly', async () => {
    const e = await getEngine();
    const x = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const t = T.tensor(e, x, [2, 3, 4]);
    const p = T.permute(t, [2, 0, 1]); // [4, 2, 3]
    const ref: number[] = [];
    for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) ref.push(x[i * 12 + j * 4 + k]!);
    expect(Array.from(await p.read())).toEqual(ref);
    expect(p.isContiguous).toBe(false);
    const s = T.slice(t, 2, 1, 4, 2); // [2,3,2]: k = 1, 3
    const sref: number[] = [];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (const k of [1, 3]) sref.push(x[i * 12 + j * 4 + k]!);
    expect(Array.from(await s.read())).toEqual(sref);
    const r = T.reshape(p, [8, 3]); // copy (p not dense)
    expect(Array.from(await r.read())).toEqual(ref);
    const ex = T.expand(T.tensor(e, [1, 2, 3], [3, 1]), [2, 3, 4]);
    expect(Array.from(await ex.read())).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    expect(T.squeeze(T.tensor(e, [1, 2], [1, 2, 1])).shape).toEqual([2]);
    expect(T.unsqueeze(t, -1).shape).toEqual([2, 3, 4, 1]);
    expect(() => T.reshape(t, [5, 5])).toThrow(/does not hold 24 elements/);
  });

  it('collapses dims an op can merge: size-1 dims go, runs that every operand steps through densely merge', () => {
    // [B, L, H, hd] read as [B, H, L, hd] into a dense output: no neighbours step alike, 4 dims stay
    const [B, L, H, hd] = [2, 5, 3, 4];
    const c = T.collapseDims([B, H, L, hd], [[L * H * hd, hd, H * hd, 1], [H * L * hd, L * hd, hd, 1]]);
    expect(c).toEqual({ shape: [B, H, L, hd], strides: [[L * H * hd, hd, H * hd, 1], [H * L * hd, L * hd, hd, 1]] });
    expect(T.collapseDims([4, 1, 6], [[6, 0, 1], [6, 6, 1]])).toEqual({ shape: [24], strides: [[1], [1]] });
    expect(T.collapseDims([3, 4, 5], [[0, 5, 1], [20, 5, 1]])).toEqual({ shape: [3, 20], strides: [[0, 1], [20, 1]] });
    expect(T.collapseDims([2, 3, 4], [[1, 8, 2], [12, 4, 1]])).toEqual({ shape: [2, 12], strides: [[1, 2], [12, 1]] }); // 8 = 2·4 and 4 = 1·4
    expect(T.collapseDims([2, 3, 4], [[1, 2, 6], [12, 4, 1]])).toEqual({ shape: [2, 3, 4], strides: [[1, 2, 6], [12, 4, 1]] });
    expect(T.collapseDims([1, 1], [[1, 1], [1, 1]])).toEqual({ shape: [], strides: [[], []] });
  });

  it('permuted copies of awkward shapes, up to 2^24 elements (the f32-reciprocal index path)', async () => {
    const e = await getEngine();
    // the last: 3·5592405 = 2^24 − 1 elements; flat indices near 16777214 divided by 3 come out one
    // too high from the f32 reciprocal alone, so this case fails without the kernel's fix-up
    const cases: [number[], number[]][] = [[[3, 7, 5], [2, 0, 1]], [[2, 3, 5, 7, 11], [4, 2, 0, 3, 1]], [[16, 37, 4, 32], [0, 2, 1, 3]], [[1000, 999], [1, 0]], [[3, 5592405], [1, 0]]];
    for (const [shape, perm] of cases) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = new Float32Array(n);
      for (let i = 0; i < n; i++) x[i] = i; // every value exact in f32 below 2^24
      const got = await T.tidy(() => T.contiguous(T.permute(T.tensor(e, x, shape), perm))).read();
      const inStrides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
      const outShape = perm.map((p) => shape[p]!);
      let bad = -1;
      for (let o = 0; o < n && bad < 0; o++) {
        let rem = o, src = 0;
        for (let d = outShape.length - 1; d >= 0; d--) {
          const k = rem % outShape[d]!;
          rem = Math.floor(rem / outShape[d]!);
          src += k * inStrides[perm[d]!]!;
        }
        if (got[o] !== src) bad = o;
      }
      expect(bad, `shape ${shape} perm ${perm}: first wrong element`).toBe(-1);
    }
  }, ownTimeout(60_000));

  it('concat along any axis, including empty parts', async () => {
    const e = await getEngine();
    const a = randn(2 * 3, 1);
    const b = randn(2 * 5, 2);
    const c = T.concat([T.tensor(e, a, [2, 3]), T.tensor(e, new Float32Array(0), [2, 0]), T.tensor(e, b, [2, 5])], 1);
    expect(c.shape).toEqual([2, 8]);
    const ref = [...a.slice(0, 3), ...b.slice(0, 5), ...a.slice(3), ...b.slice(5)];
    expect(Array.from(await c.read())).toEqual(ref);
  });

  it('concat along dim 0 and copyInto a dense view with an offset write the right rows', async () => {
    const e = await getEngine();
    const a = T.tensor(e, [1, 2, 3, 4], [2, 2]);
    const b = T.tensor(e, [5, 6, 7, 8], [2, 2]);
    expect(Array.from(await T.concat([a, b], 0).read())).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const z = T.zeros(e, [4, 2]);
    T.copyInto(T.slice(z, 0, 2, 4), a);
    expect(Array.from(await z.read())).toEqual([0, 0, 0, 0, 1, 2, 3, 4]);
  });

  it('gradients of permute, slice, expand, concat, reshape', async () => {
    const e = await getEngine();
    const x = randn(24, 3);
    const shape = [2, 3, 4];
    const idx = (i: number, j: number, k: number) => i * 12 + j * 4 + k;
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.contiguous(T.permute(t!, [2, 0, 1])), ([v]) => {
      const o: number[] = [];
      for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) o.push(v![idx(i, j, k)]!);
      return Float64Array.from(o);
    });
    await gradCheck(e, [{ data: x, shape }], ([t]) => T.mul(T.slice(t!, 1, 1, 3), T.slice(t!, 1, 0, 2)), ([v]) => {
      const o: number[] = [];
      for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) for (let k = 0; k < 4; k++) o.push(v![idx(i, j + 1, k)]! * v![idx(i, j, k)]!);
      return Float64Array.from(o);
    });
    await gradCheck(e, [{ data: x.slice(0, 4), shape: [4, 1] }], ([t]) => T.contiguous(T.expand(t!, [3, 4, 5])), ([v]) => {
      const o: number[] = [];
      for (let a = 0; a < 3; a++) for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) o.push(v![i]!);
      return Float64Array.from(o);
    });
    // many slices of one tensor (interleaved, overlapping, a slice of a slice) mixed with a direct
    // use: slice gradients are added in place into one buffer (GradNode.addInto), after a copy of
    // whatever gradient arrived first
    await gradCheck(e, [{ data: x, shape: [6, 4] }], ([t]) => {
      const even = T.slice(t!, 0, 0, 6, 2);
      const odd = T.slice(t!, 0, 1, 6, 2);
      const mid = T.slice(t!, 0, 2, 5);
      const inner = T.slice(T.slice(t!, 1, 1, 3), 0, 3, 6);
      const flat = (a: T.Tensor) => T.reshape(T.contiguous(a), [-1]);
      return T.concat([flat(T.mul(even, odd)), flat(T.mul(mid, mid)), flat(inner), flat(T.mul(t!, t!))], 0);
    }, ([v]) => {
      const at = (r: number, c: number) => v![r * 4 + c]!;
      const o: number[] = [];
      for (let r = 0; r < 3; r++) for (let c = 0; c < 4; c++) o.push(at(2 * r, c) * at(2 * r + 1, c));
      for (let r = 2; r < 5; r++) for (let c = 0; c < 4; c++) o.push(at(r, c) ** 2);
      for (let r = 3; r < 6; r++) for (let c = 1; c < 3; c++) o.push(at(r, c));
      for (let i = 0; i < 24; i++) o.push(v![i]! ** 2);
      return Float64Array.from(o);
    });
    expect(() => T.map([T.tensor(e, [1, 2])], 'o + a', { name: 'bad', readOut: true })).toThrow(/readOut needs an 'into'/);
    await gradCheck(
      e,
      [{ data: x.slice(0, 6), shape: [2, 3] }, { data: x.slice(6, 10), shape: [2, 2] }],
      ([a, b]) => T.reshape(T.concat([a!, b!], 1), [10]),
      ([a, b]) => Float64Array.from([...a!.slice(0, 3), ...b!.slice(0, 2), ...a!.slice(3), ...b!.slice(2)]),
    );
  });
});
