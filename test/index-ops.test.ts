import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { crossEntropy, embedding, gather, indexSelect, scatterAdd, topk, topkColumns } from '../src/tensor/ops/index.js';
import { ArdError } from '../src/util/errors.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, itF16, randn, rng } from './helpers.js';
import { gatherRef, indexSelectRef, scatterAddRef } from '../reference/gather.js';
import { prod } from '../reference/shape.js';
import { topkRef } from '../reference/topk.js';
import { xentRef } from '../reference/xent.js';

function randInt(n: number, seed: number, lo: number, hi: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo)));
}

// ---- gather / scatterAdd / indexSelect / embedding ---------------------------------------------

describe('gather and scatterAdd', () => {
  it('gather matches torch.gather semantics on awkward shapes, axes and strided inputs', async () => {
    const e = await getEngine();
    const cases: { shape: number[]; axis: number; idxShape: number[] }[] = [
      { shape: [1], axis: 0, idxShape: [1] },
      { shape: [7], axis: 0, idxShape: [129] },
      { shape: [7, 129], axis: 1, idxShape: [7, 5] },
      { shape: [7, 129], axis: 0, idxShape: [3, 129] },
      { shape: [3, 1000, 2], axis: 1, idxShape: [2, 7, 2] },
      { shape: [129, 1, 7], axis: 2, idxShape: [129, 1, 1] },
    ];
    for (const [c, { shape, axis, idxShape }] of cases.entries()) {
      const x = randn(prod(shape), 10 + c);
      const idx = randInt(prod(idxShape), 20 + c, 0, shape[axis]!);
      const got = await gather(T.tensor(e, x, shape), axis, T.tensor(e, idx, idxShape, 'i32')).read();
      expect(Array.from(got), `gather ${shape}@${axis}`).toEqual(Array.from(gatherRef(x, shape, axis, idx, idxShape), Math.fround));
    }
    // strided x (a transpose) and an index view with an offset; out-of-range indices read 0
    const x = randn(7 * 129, 3);
    const xt = T.transpose(T.tensor(e, x, [7, 129])); // [129, 7]
    const idxAll = Int32Array.from([5, 2, 129, 0, 128, 3, -1, 77, 9, 11, 6, 1, 0, 4]); // 129 and -1: out of range
    const idx = T.slice(T.tensor(e, idxAll, [7, 2], 'i32'), 0, 1); // [6, 2], offset 2
    const xtHost = Array.from({ length: 129 * 7 }, (_, i) => x[(i % 7) * 129 + Math.floor(i / 7)]!);
    const got = await gather(xt, 0, idx).read();
    expect(Array.from(got)).toEqual(Array.from(gatherRef(xtHost, [129, 7], 0, idxAll.slice(2), [6, 2]), Math.fround));
    expect(got[0]).toBe(0);
  });

  it('scatterAdd matches the reference, sums each destination in index order (bit-reproducible)', async () => {
    const e = await getEngine();
    for (const [c, { shape, axis, idxShape }] of [
      { shape: [7, 129], axis: 1, idxShape: [7, 1000] },
      { shape: [129, 7], axis: 0, idxShape: [1000, 7] },
      { shape: [1], axis: 0, idxShape: [7] },
      { shape: [3, 7, 2], axis: 1, idxShape: [2, 129, 1] },
    ].entries()) {
      const base = randn(prod(shape), 30 + c);
      const src = randn(prod(idxShape), 40 + c);
      const idx = randInt(prod(idxShape), 50 + c, 0, shape[axis]!);
      const out = scatterAdd(T.tensor(e, base, shape), axis, T.tensor(e, idx, idxShape, 'i32'), T.tensor(e, src, idxShape));
      expectClose(await out.read(), scatterAddRef(base, shape, axis, idx, idxShape, src), 1e-5, 1e-5, `scatterAdd ${shape}@${axis}`);
    }
    // one destination with 20000 contributions: exactly the f32 sum in index order, every run
    const M = 20000;
    const src = randn(M, 7, 3);
    const idx = new Int32Array(M).map((_, i) => (i % 3 === 0 ? 1 : 0));
    let acc0 = 0;
    let acc1 = 0;
    for (let i = 0; i < M; i++) {
      if (idx[i] === 1) acc1 = Math.fround(acc1 + src[i]!);
      else acc0 = Math.fround(acc0 + src[i]!);
    }
    const runs: number[][] = [];
    for (let r = 0; r < 3; r++) {
      const out = scatterAdd(T.tensor(e, [0.5, -0.25], [2]), 0, T.tensor(e, idx, [M], 'i32'), T.tensor(e, src, [M]));
      runs.push(Array.from(await out.read()));
    }
    expect(runs[0]).toEqual([Math.fround(0.5 + acc0), Math.fround(-0.25 + acc1)]);
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it('gradients of gather and scatterAdd (base and src) match finite differences', async () => {
    const e = await getEngine();
    const shape = [5, 9];
    const idxShape = [4, 12];
    const idx = randInt(prod(idxShape), 61, 0, 9); // repeats: the backward must add them up
    const idxF = Float32Array.from(idx);
    await gradCheck(
      e,
      [{ data: randn(45, 62), shape }, { data: idxF, shape: idxShape, constant: true, dtype: 'i32' }],
      ([x, i]) => gather(x!, 1, i!),
      ([x, i]) => gatherRef(x!, shape, 1, i!, idxShape),
    );
    await gradCheck(
      e,
      [{ data: randn(45, 63), shape }, { data: idxF, shape: idxShape, constant: true, dtype: 'i32' }, { data: randn(48, 64), shape: idxShape }],
      ([b, i, s]) => scatterAdd(b!, 1, i!, s!),
      ([b, i, s]) => scatterAddRef(b!, shape, 1, i!, idxShape, s!),
    );
  });
});

describe('indexSelect and embedding', () => {
  it('indexSelect along each axis with repeated indices; embedding of any ids shape', async () => {
    const e = await getEngine();
    for (const [c, { shape, axis, K }] of [
      { shape: [129, 7], axis: 0, K: 1000 },
      { shape: [7, 129, 3], axis: 1, K: 7 },
      { shape: [1000], axis: 0, K: 1 },
      { shape: [3, 7], axis: 1, K: 129 },
    ].entries()) {
      const x = randn(prod(shape), 70 + c);
      const idx = randInt(K, 80 + c, 0, shape[axis]!);
      const got = await indexSelect(T.tensor(e, x, shape), axis, T.tensor(e, idx, [K], 'i32')).read();
      expect(Array.from(got), `indexSelect ${shape}@${axis}`).toEqual(Array.from(indexSelectRef(x, shape, axis, idx), Math.fround));
    }
    const V = 1000;
    const D = 7;
    const w = randn(V * D, 90);
    const ids = randInt(129 * 3, 91, 0, V);
    ids[5] = V + 3; // out of range → a zero row
    const out = embedding(T.tensor(e, w, [V, D]), T.tensor(e, ids, [3, 129], 'i32'));
    expect(out.shape).toEqual([3, 129, D]);
    const ref = new Float32Array(ids.length * D);
    ids.forEach((id, r) => {
      if (id < V) ref.set(w.subarray(id * D, id * D + D), r * D);
    });
    expect(Array.from(await out.read())).toEqual(Array.from(ref));
  });

  it('gradients of indexSelect (middle axis) and embedding (repeated ids) match finite differences', async () => {
    const e = await getEngine();
    const shape = [3, 6, 4];
    const idx = Float32Array.from([5, 0, 5, 2, 5, 1, 0]);
    await gradCheck(
      e,
      [{ data: randn(72, 100), shape }, { data: idx, shape: [7], constant: true, dtype: 'i32' }],
      ([x, i]) => indexSelect(x!, 1, i!),
      ([x, i]) => indexSelectRef(x!, shape, 1, i!),
    );
    const V = 11;
    const D = 5;
    const ids = Float32Array.from(randInt(2 * 9, 101, 0, V));
    await gradCheck(
      e,
      [{ data: randn(V * D, 102), shape: [V, D] }, { data: ids, shape: [2, 9], constant: true, dtype: 'i32' }],
      ([w, i]) => embedding(w!, i!),
      ([w, i]) => indexSelectRef(w!, [V, D], 0, i!),
    );
  });

  it('the segmented backward is deterministic for a heavily repeated id', async () => {
    const e = await getEngine();
    const V = 7;
    const D = 129;
    const N = 5000;
    const ids = new Int32Array(N).map((_, i) => (i % 10 === 0 ? 3 : 0)); // 4500 hits on row 0
    const g = randn(N * D, 103);
    const results: number[][] = [];
    for (let r = 0; r < 2; r++) {
      const w = T.param(T.zeros(e, [V, D]));
      T.tidy(() => {
        const y = embedding(w, T.tensor(e, ids, [N], 'i32'));
        T.backward(y, T.tensor(e, g, [N, D]));
      });
      results.push(Array.from(await w.grad!.read()));
      w.grad!.dispose();
      w.dispose();
    }
    expect(results[1]).toEqual(results[0]);
    // row 0, column 0: the f32 sum in index order
    let acc = 0;
    for (let i = 0; i < N; i++) if (ids[i] === 0) acc = Math.fround(acc + g[i * D]!);
    expect(results[0]![0]).toBe(acc);
    expect(results[0]![D]).toBe(0); // row 1: never selected
  });
});

// ---- top-k ----------------------------------------------------------------------------------

async function checkTopk(e: Awaited<ReturnType<typeof getEngine>>, x: Float32Array, rows: number, n: number, k: number, what: string, t?: T.Tensor, sorted = true): Promise<void> {
  const xt = t ?? T.tensor(e, x, [rows, n]);
  const { values, indices } = topk(xt, k, { sorted });
  const ref = topkRef(x, rows, n, k);
  let gotI = Array.from(await indices.read());
  let gotV = Array.from(await values.read());
  if (!sorted) {
    // the same k (value, index) pairs per row in any order: put each row in the reference's order
    const rank = (r: number, i: number) => ref.indices.slice(r * k, r * k + k).indexOf(i);
    const perm = Array.from({ length: rows * k }, (_, p) => p);
    for (let r = 0; r < rows; r++) {
      const seg = perm.slice(r * k, r * k + k).sort((a, b) => (rank(r, gotI[a]!) >>> 0) - (rank(r, gotI[b]!) >>> 0));
      perm.splice(r * k, k, ...seg);
    }
    gotI = perm.map((p) => gotI[p]!);
    gotV = perm.map((p) => gotV[p]!);
  }
  const firstBad = gotI.findIndex((v, i) => v !== ref.indices[i]);
  if (firstBad >= 0) {
    const r = Math.floor(firstBad / k);
    throw new Error(`${what}: row ${r} slot ${firstBad % k}: index ${gotI[firstBad]} (value ${gotV[firstBad]}), expected ${ref.indices[firstBad]} (value ${ref.values[firstBad]})`);
  }
  gotV.forEach((v, i) => {
    if (!(Object.is(v, ref.values[i]) || v === ref.values[i])) throw new Error(`${what}: value ${i} is ${v}, expected ${ref.values[i]}`);
  });
  values.dispose();
  indices.dispose();
  if (!t) xt.dispose();
}

describe('topk', () => {
  it('matches a stable sort on awkward sizes, both kernel variants, chunked rows and ties', async () => {
    const e = await getEngine();
    let seed = 200;
    const cases: [number, number, number[]][] = [
      [1, 1, [1]],
      [7, 7, [1, 7]],
      [129, 7, [7]],
      [7, 4097, [1, 7, 32, 256]],
      [1, 65536, [1, 7, 32, 256]],
      [3, 65536, [32, 256]],
      [300, 1000, [7, 32, 128]],
      [300, 1001, [32, 129]],
    ];
    for (const [rows, n, ks] of cases) {
      const x = randn(rows * n, seed++);
      // ties: a quantised copy (many equal values per row)
      const q = x.map((v) => Math.round(v * 4) / 4);
      for (const k of ks) {
        await checkTopk(e, x, rows, n, k, `randn rows=${rows} n=${n} k=${k}`);
        await checkTopk(e, q, rows, n, k, `ties rows=${rows} n=${n} k=${k}`);
      }
    }
  });

  it('sorted: false returns the same k entries per row (radix select where the heap would run)', async () => {
    const e = await getEngine();
    let seed = 260;
    for (const [rows, n, k] of [[300, 1000, 128], [65, 1001, 129], [7, 4097, 256], [5, 9, 9], [260, 33, 5]] as const) {
      const x = randn(rows * n, seed++);
      const q = x.map((v) => Math.round(v * 4) / 4);
      await checkTopk(e, x, rows, n, k, `unsorted randn rows=${rows} n=${n} k=${k}`, undefined, false);
      await checkTopk(e, q, rows, n, k, `unsorted ties rows=${rows} n=${n} k=${k}`, undefined, false);
    }
    // the radix select's last level: more equal keys than its slot list holds (constant rows, two
    // values, -0 next to +0, and NaN / infinities)
    const rows = 256, n = 700;
    const special = [NaN, Infinity, -Infinity, -0, 0, 1e-40, -1e-40, 3.5];
    const r = rng(99);
    const x = Float32Array.from({ length: rows * n }, (_, i) => {
      const row = Math.floor(i / n);
      if (row % 4 === 0) return 1.25;
      if (row % 4 === 1) return r() < 0.5 ? -2 : 2;
      if (row % 4 === 2) return r() < 0.5 ? -0 : 0;
      return special[Math.floor(r() * special.length)]!;
    });
    for (const k of [1, 100, 256]) await checkTopk(e, x, rows, n, k, `unsorted special rows k=${k}`, undefined, false);
  });

  it('topkColumns selects among a column subset in place (heap, filter, chunked rows, an offset view)', async () => {
    const e = await getEngine();
    let seed = 280;
    // [rows, width, chosen columns, k]; the filter variant needs a long row (≥ 16k chosen)
    for (const [rows, width, nCols, k] of [[300, 200, 50, 7], [260, 1030, 1001, 128], [7, 4097, 3000, 32], [3, 9000, 8193, 5]] as const) {
      const x = randn(rows * width + 4, seed++);
      const r = rng(seed++);
      const cols = Array.from({ length: width }, (_, j) => j).sort(() => r() - 0.5).slice(0, nCols);
      const view = T.tensor(e, x, [rows * width + 4]);
      const xt = T.reshape(T.slice(view, 0, 3, 3 + rows * width), [rows, width]); // offset 3: no quad loads
      const ct = T.tensor(e, Int32Array.from(cols), [nCols], 'i32');
      const gathered = new Float32Array(rows * nCols);
      for (let b = 0; b < rows; b++) for (let j = 0; j < nCols; j++) gathered[b * nCols + j] = x[3 + b * width + cols[j]!]!;
      const ref = topkRef(gathered, rows, nCols, k);
      for (const sorted of [true, false]) {
        const { values, indices } = topkColumns(xt, ct, k, { sorted });
        const gi = Array.from(await indices.read());
        const gv = Array.from(await values.read());
        for (let b = 0; b < rows; b++) {
          const want = ref.indices.slice(b * k, b * k + k);
          const got = gi.slice(b * k, b * k + k);
          const what = `rows=${rows} cols=${nCols} k=${k} sorted=${sorted} row ${b}`;
          if (sorted) expect(got, what).toEqual(want);
          else expect([...got].sort((p, q) => p - q), what).toEqual([...want].sort((p, q) => p - q));
          got.forEach((j, s) => expect(gv[b * k + s], what).toBe(gathered[b * nCols + j]));
        }
        values.dispose();
        indices.dispose();
      }
      for (const t of [view, xt, ct]) t.dispose();
    }
    const x = T.tensor(e, randn(20, 1), [4, 5]);
    const c = T.tensor(e, Int32Array.from([0, 2]), [2], 'i32');
    expect(() => topkColumns(x, c, 3)).toThrow(/exceeds the 2 columns/);
    expect(() => topkColumns(x, x, 1)).toThrow(/i32 list/);
    x.dispose();
    c.dispose();
  });

  it('handles constant, sorted and special-valued rows, offset/strided views', async () => {
    const e = await getEngine();
    const n = 4096;
    const rows = 6;
    const x = new Float32Array(rows * n);
    for (let j = 0; j < n; j++) {
      x[j] = 1.5; // all equal: the list overflows and must keep the lowest indices
      x[n + j] = j; // ascending
      x[2 * n + j] = -j; // descending
      x[3 * n + j] = j % 2 ? 0 : -0; // signed zeros are equal
      x[4 * n + j] = j % 97 === 0 ? Infinity : j % 89 === 0 ? -Infinity : Math.sin(j);
      x[5 * n + j] = j % 5 === 0 ? 0 : -1 - j; // mostly one value with scattered ties
    }
    x[4 * n + 10] = NaN;
    for (const k of [1, 7, 32, 256]) await checkTopk(e, x, rows, n, k, `special k=${k}`);
    // the same rows, 300 of them (no chunking: the threshold-and-filter kernel, with and without
    // 16-byte loads), where constant rows overflow the candidate list
    for (const n2 of [1024, 1023]) {
      const many = new Float32Array(300 * n2);
      for (let r = 0; r < 300; r++) many.set(x.subarray((r % rows) * n, (r % rows) * n + n2), r * n2);
      for (const k of [7, 32, 128]) await checkTopk(e, many, 300, n2, k, `special ×300 n=${n2} k=${k}`);
    }

    // a view with an element offset that is not a multiple of 4, and a transposed view
    const big = randn(5 * 1001 + 3, 300);
    const flat = T.tensor(e, big, [big.length]);
    const view = T.reshape(T.slice(flat, 0, 3), [5, 1001]);
    await checkTopk(e, big.subarray(3), 5, 1001, 32, 'offset view', view);
    const m = randn(129 * 33, 301);
    const tr = T.transpose(T.tensor(e, m, [129, 33])); // [33, 129]
    const mt = new Float32Array(33 * 129).map((_, i) => m[(i % 129) * 33 + Math.floor(i / 129)]!);
    await checkTopk(e, mt, 33, 129, 7, 'transposed view', tr);
  });

  itF16('keeps leading dimensions of f16 input; f16 values come back exactly', async (e) => {
    const h = T.tensor(e, randn(2 * 3 * 1000, 302), [2, 3, 1000], 'f16');
    const hv = await h.toFloat32();
    const r = topk(h, 32);
    expect(r.values.shape).toEqual([2, 3, 32]);
    expect(r.values.dtype).toBe('f16');
    const ref = topkRef(hv, 6, 1000, 32);
    expect(Array.from(await r.indices.read())).toEqual(ref.indices);
    expect(Array.from(await r.values.toFloat32())).toEqual(ref.values);
  });

  it('SAE shape [4096, 4096], k = 32 is correct (and timed)', async () => {
    const e = await getEngine();
    const rows = 4096;
    const n = 4096;
    const k = 32;
    const x = randn(rows * n, 400);
    const t = T.tensor(e, x, [rows, n]);
    await e.sync();
    const t0 = performance.now();
    const { values, indices } = topk(t, k);
    await e.sync();
    const ms = performance.now() - t0;
    console.log(`topk [${rows}, ${n}] k=${k}: ${ms.toFixed(1)} ms`);
    const gotI = await indices.read();
    // reference on a sample of rows (a full sort of every row would dominate the test's time)
    for (let r = 0; r < rows; r += 97) {
      const ref = topkRef(x.subarray(r * n, r * n + n), 1, n, k);
      expect(Array.from(gotI.subarray(r * k, r * k + k)), `row ${r}`).toEqual(ref.indices);
    }
    const gotV = await values.read();
    for (let i = 0; i < rows * k; i++) expect(gotV[i]).toBe(x[Math.floor(i / k) * n + gotI[i]!]);
    T.disposeAll(t, values, indices);
  });

  it('gradient of the values reaches exactly the selected entries', async () => {
    const e = await getEngine();
    const rows = 3;
    const n = 40;
    const k = 6;
    // distinct values 0.05 apart (far above the finite-difference step), shuffled per row
    const shuffled = new Float32Array(rows * n);
    const r2 = rng(501);
    for (let r = 0; r < rows; r++) {
      const row = Array.from({ length: n }, (_, j) => (j - n / 2) * 0.05 + r);
      for (let j = row.length - 1; j > 0; j--) {
        const s = Math.floor(r2() * (j + 1));
        [row[j], row[s]] = [row[s]!, row[j]!];
      }
      shuffled.set(row, r * n);
    }
    await gradCheck(
      e,
      [{ data: shuffled, shape: [rows, n] }],
      ([t]) => topk(t!, k).values,
      ([v]) => Float64Array.from(topkRef(v!, rows, n, k).values),
    );
  });

  it('backward still works after the caller disposed the indices', async () => {
    const e = await getEngine();
    const data = Float32Array.from([0.5, 3, -1, 2, 7, 0, 1, 4]);
    const x = T.param(T.tensor(e, data, [2, 4]));
    T.tidy(() => {
      const { values, indices } = topk(x, 2);
      indices.dispose();
      T.backward(T.sum(values));
    });
    expect(Array.from(await x.grad!.read())).toEqual([0, 1, 0, 1, 1, 0, 0, 1]);
    x.grad!.dispose();
    x.dispose();
  });

  it('rejects bad k', async () => {
    const e = await getEngine();
    const x = T.tensor(e, randn(10, 1), [2, 5]);
    expect(() => topk(x, 6)).toThrow(ArdError);
    expect(() => topk(x, 0)).toThrow(ArdError);
    expect(() => topk(T.tensor(e, randn(600, 1), [600]), 257)).toThrow(/k = 257/);
    expect(() => gather(x, 1, T.tensor(e, [0, 1], [1, 2]))).toThrow(/i32/);
  });
});

// ---- cross-entropy --------------------------------------------------------------------------

describe('crossEntropy', () => {
  it('matches log-sum-exp references for every reduction, ignoreIndex and large logits', async () => {
    const e = await getEngine();
    let seed = 600;
    for (const [N, V] of [
      [1, 1],
      [7, 7],
      [129, 1000],
      [1000, 7],
      [7, 40000],
    ] as const) {
      const x = randn(N * V, seed++, 3);
      for (let i = 0; i < x.length; i += 13) x[i] += 60; // large logits: exp would overflow unshifted
      const t = randInt(N, seed++, 0, V);
      for (let r = 1; r < N; r += 3) t[r] = -100;
      const xt = T.tensor(e, x, [N, V]);
      const tt = T.tensor(e, t, [N], 'i32');
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const got = await crossEntropy(xt, tt, { reduction }).read();
        expectClose(got, xentRef(x, N, V, t, -100, reduction), 2e-5, 2e-5, `xent ${N}x${V} ${reduction}`);
      }
      // another ignore index: -100 is now an out-of-range target, so those rows give NaN
      const got = await crossEntropy(xt, tt, { ignoreIndex: t[0]!, reduction: 'none' }).read();
      expectClose(got, xentRef(x, N, V, t, t[0]!, 'none'), 2e-5, 2e-5, `xent ignore=${t[0]}`);
      T.disposeAll(xt, tt);
    }
    // every target ignored: NaN like PyTorch; a target out of range: NaN, never silently fine
    const x = T.tensor(e, randn(6, 1), [2, 3]);
    expect(Number.isNaN(await crossEntropy(x, T.tensor(e, [-100, -100], [2], 'i32')).item())).toBe(true);
    expect(Number.isNaN(await crossEntropy(x, T.tensor(e, [0, 3], [2], 'i32')).item())).toBe(true);
    expect(() => crossEntropy(x, T.tensor(e, [0, 1, 2], [3], 'i32'))).toThrow(ArdError);
  });

  itF16('f16 logits: an f32 loss and an f16 gradient', async (e) => {
    const N = 7;
    const V = 129;
    const h = T.param(T.tensor(e, randn(N * V, 650, 2), [N, V], 'f16'));
    const hv = await h.toFloat32();
    const t = randInt(N, 651, 0, V);
    const loss = T.tidy(() => {
      const l = crossEntropy(h, T.tensor(e, t, [N], 'i32'));
      T.backward(l);
      return l;
    });
    expect(loss.dtype).toBe('f32');
    expectClose([await loss.item()], xentRef(hv, N, V, t, -100, 'mean'), 1e-5, 1e-5, 'f16 xent');
    expect(h.grad!.dtype).toBe('f16');
    const g = await h.grad!.toFloat32();
    const ref = new Float64Array(N * V);
    for (let r = 0; r < N; r++) {
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, hv[r * V + j]!);
      let z = 0;
      for (let j = 0; j < V; j++) z += Math.exp(hv[r * V + j]! - m);
      for (let j = 0; j < V; j++) ref[r * V + j] = (Math.exp(hv[r * V + j]! - m) / z - (j === t[r] ? 1 : 0)) / N;
    }
    expectClose(g, ref, 1e-2, 1e-4, 'f16 xent grad');
    T.disposeAll(h, h.grad, loss);
  });

  it('gradients (mean with ignored rows, sum, none) match finite differences', async () => {
    const e = await getEngine();
    const N = 7;
    const V = 13;
    const t = Float32Array.from([3, -100, 0, 12, -100, 5, 5]);
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      await gradCheck(
        e,
        [{ data: randn(N * V, 700, 2), shape: [N, V] }, { data: t, shape: [N], constant: true, dtype: 'i32' }],
        ([x, tt]) => crossEntropy(x!, tt!, { reduction }),
        ([x, tt]) => xentRef(x!, N, V, tt!, -100, reduction),
      );
    }
  });
});

describe('memory', () => {
  it('forward + backward of every op inside tidy() leaves no live buffers behind', async () => {
    const e = await getEngine();
    const w = T.param(T.tensor(e, randn(50 * 8, 800), [50, 8]));
    const ids = T.tensor(e, randInt(3 * 7, 801, 0, 50), [3, 7], 'i32');
    const tgt = T.tensor(e, randInt(21, 802, 0, 8), [21], 'i32');
    const gi = T.tensor(e, randInt(21 * 2, 803, 0, 8), [21, 2], 'i32');
    const step = () =>
      T.tidy(() => {
        w.grad?.dispose();
        w.grad = null;
        const h = T.reshape(embedding(w, ids), [21, 8]);
        const top = topk(h, 3).values;
        const picked = gather(h, 1, gi);
        const sel = indexSelect(h, 0, T.slice(tgt, 0, 0, 5));
        const loss = T.add(T.add(crossEntropy(h, tgt), T.sum(top)), T.add(T.sum(picked), T.sum(scatterAdd(sel, 1, T.slice(gi, 0, 0, 5), T.slice(picked, 0, 0, 5)))));
        T.backward(loss);
      });
    step();
    await e.sync();
    const live1 = e.memory().liveBytes;
    for (let i = 0; i < 4; i++) step();
    await e.sync();
    expect(e.memory().liveBytes).toBe(live1);
    expect(w.grad).not.toBeNull();
    T.disposeAll(w, w.grad, ids, tgt, gi);
  });
});
