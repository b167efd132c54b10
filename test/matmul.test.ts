import { describe, expect, it } from 'vitest';
import { ArdError } from '../src/util/errors.js';
import * as T from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/index.js';
import { MatmulAct, MatmulOptions, linear, matmul } from '../src/tensor/ops/matmul.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, itF16, randn } from './helpers.js';
import { Logical, broadcastBatch, matmulRef, transposeRef } from '../reference/matmul.js';
import { prod } from '../reference/shape.js';

/** Storage for a logical [batch, R, C] stack, transposed in each matrix when `trans`. */
function store(L: Logical, trans: boolean): Float32Array {
  return Float32Array.from(trans ? transposeRef(L).data : L.data);
}

function logical(batch: number[], R: number, C: number, seed: number): Logical {
  return { data: randn(prod(batch) * R * C, seed), batch, R, C };
}

/** Upload L as a GPU tensor stored as [.., R, C] or, transposed, [.., C, R]. */
function upload(e: Awaited<ReturnType<typeof getEngine>>, L: Logical, trans: boolean, dtype: 'f32' | 'f16' = 'f32'): Tensor {
  return T.tensor(e, store(L, trans), [...L.batch, ...(trans ? [L.C, L.R] : [L.R, L.C])], dtype);
}

/** rtol 1e-4; atol 1e-4·sqrt(K) (randn inputs: outputs have magnitude ~sqrt(K)). */
function tolerance(K: number): [number, number] {
  return [1e-4, 1e-4 * Math.sqrt(Math.max(K, 1))];
}

async function checkCase(
  A: Logical,
  B: Logical,
  opts: MatmulOptions & { dtypeA?: 'f32' | 'f16'; dtypeB?: 'f32' | 'f16' },
  what: string,
  bias?: Float32Array,
): Promise<void> {
  const e = await getEngine();
  const a = upload(e, A, Boolean(opts.transA), opts.dtypeA);
  const b = upload(e, B, Boolean(opts.transB), opts.dtypeB);
  const tb = bias ? T.tensor(e, bias, [bias.length]) : undefined;
  const y = matmul(a, b, { ...opts, bias: tb });
  expect(y.shape).toEqual([...broadcastBatch(A.batch, B.batch), A.R, B.C]);
  expect(y.dtype).toBe(opts.dtypeA ?? 'f32');
  const half = opts.dtypeA === 'f16' || opts.dtypeB === 'f16';
  const [rtol, atol] = half ? [1e-2, 1e-2 * Math.sqrt(A.C)] : tolerance(A.C);
  // (f16 callers pass data already rounded to f16: the tolerance covers f16 output rounding)
  expectClose(await y.read(), matmulRef(A, B, bias, opts.act), rtol, atol, what);
  for (const t of [a, b, tb, y]) t?.dispose();
}

// ---- tests --------------------------------------------------------------------------------

describe('matmul', () => {
  // M, N, K: 1, 7, 129, 1000 and sizes that are not multiples of the 16×32 tile or of 4
  const SHAPES: [number, number, number][] = [
    [1, 1, 1],
    [7, 129, 1000],
    [1000, 7, 129],
    [129, 1000, 7],
    [33, 64, 20],
    [36, 100, 24],
  ];

  it('matches an f64 reference at awkward sizes in every transpose combination', async () => {
    for (const [M, N, K] of SHAPES) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const A = logical([], M, K, M * 31 + K);
          const B = logical([], K, N, N * 17 + K);
          await checkCase(A, B, { transA, transB }, `M${M} N${N} K${K} transA=${transA} transB=${transB}`);
        }
      }
    }
  });

  it('broadcasts batch dims like torch.matmul (2-D weights, size-1 batch dims)', async () => {
    const cases: [number[], number[], boolean][] = [
      [[2, 3], [], false], // activations × shared weights
      [[2, 3], [], true], // … stored [out, in]
      [[2, 1], [3], false],
      [[], [4], true], // one matrix against a batch
      [[3], [3], false],
    ];
    for (const [ba, bb, transB] of cases) {
      const A = logical(ba, 36, 24, ba.length * 7 + 1);
      const B = logical(bb, 24, 100, bb.length * 5 + 2);
      await checkCase(A, B, { transB }, `batch ${JSON.stringify(ba)} × ${JSON.stringify(bb)} transB=${transB}`);
    }
  });

  it('reads strided views in place: slices, transposes, expanded and permuted batches', async () => {
    const e = await getEngine();
    const [M, N, K] = [36, 100, 24];
    const big = randn(40 * 30, 3);
    const tBig = T.tensor(e, big, [40, 30]);
    const bData = randn(K * N, 4);
    const tb = T.tensor(e, bData, [K, N]);
    const B: Logical = { data: bData, batch: [], R: K, C: N };
    const sliceOf = (r0: number, c0: number): Logical => {
      const d = new Float32Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) d[m * K + k] = big[(r0 + m) * 30 + c0 + k]!;
      return { data: d, batch: [], R: M, C: K };
    };
    // row stride 30 (not a multiple of 4: scalar path) at offset 0 and at an odd offset
    for (const [r0, c0] of [[0, 0], [3, 5]] as const) {
      const v = T.slice(T.slice(tBig, 0, r0, r0 + M), 1, c0, c0 + K);
      const y = matmul(v, tb);
      const [rtol, atol] = tolerance(K);
      expectClose(await y.read(), matmulRef(sliceOf(r0, c0), B), rtol, atol, `slice at ${r0},${c0}`);
      y.dispose();
      v.dispose();
    }
    // an aligned padded view: rows of 28 in a [36, 28] tensor, first 24 columns (vec4 path, K tail masked)
    const pad = randn(M * 28, 5);
    const tPad = T.tensor(e, pad, [M, 28]);
    const vPad = T.slice(tPad, 1, 0, K);
    const padL: Logical = { data: Float32Array.from({ length: M * K }, (_, i) => pad[Math.floor(i / K) * 28 + (i % K)]!), batch: [], R: M, C: K };
    let y = matmul(vPad, tb);
    expectClose(await y.read(), matmulRef(padL, B), ...tolerance(K), 'padded rows');
    y.dispose();
    // a transposed view passed without transA is read column-major in place
    const At = logical([], K, M, 6); // stored [K, M]
    const tAt = T.tensor(e, At.data, [K, M]);
    const view = T.transpose(tAt);
    y = matmul(view, tb);
    const opA: Logical = { data: store({ ...At }, true), batch: [], R: M, C: K };
    expectClose(await y.read(), matmulRef(opA, B), ...tolerance(K), 'transposed view');
    y.dispose();
    // …and a transposed view with transA is plain row-major again
    const tA2 = T.tensor(e, opA.data, [M, K]);
    y = matmul(T.transpose(tA2), tb, { transA: true });
    expectClose(await y.read(), matmulRef(opA, B), ...tolerance(K), 'transposed view, transA');
    y.dispose();
    // expanded (stride-0) batch and permuted batch dims
    const A3 = logical([3, 2], M, K, 7); // [3, 2, M, K], used as [2, 3, M, K] via permute
    const tA3 = T.tensor(e, A3.data, [3, 2, M, K]);
    const perm = T.permute(tA3, [1, 0, 2, 3]);
    const permData = new Float32Array(A3.data.length);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) permData.set((A3.data as Float32Array).subarray((j * 2 + i) * M * K, (j * 2 + i + 1) * M * K), (i * 3 + j) * M * K);
    const bExp = T.expand(T.reshape(tb, [1, K, N]), [3, K, N]);
    y = matmul(perm, bExp);
    expectClose(await y.read(), matmulRef({ data: permData, batch: [2, 3], R: M, C: K }, { ...B, batch: [1] }), ...tolerance(K), 'permuted × expanded');
    y.dispose();
    for (const t of [tBig, tb, tPad, vPad, tAt, view, tA2, tA3, perm, bExp]) t.dispose();

    // a caller's buffer whose size is not a multiple of 16 bytes: rows of 3 at stride 4, the last
    // row ending 4 bytes before the end of a 140-byte buffer (vec4 reads there would be clamped)
    const rows = 9;
    const raw = randn(4 * rows - 1, 8);
    const buf = e.device.createBuffer({ size: raw.byteLength, usage: 0x80 | 0x08 | 0x04 });
    e.write(buf, 0, raw);
    const wrapped = T.fromBuffer(e, buf, [raw.length]);
    const v3 = wrapped.view([rows, 3], [4, 1], 0);
    const B3 = logical([], 3, 70, 9);
    const tB3 = T.tensor(e, B3.data, [3, 70]);
    y = matmul(v3, tB3);
    const v3L: Logical = { data: Float32Array.from({ length: rows * 3 }, (_, i) => raw[Math.floor(i / 3) * 4 + (i % 3)]!), batch: [], R: rows, C: 3 };
    expectClose(await y.read(), matmulRef(v3L, B3), ...tolerance(3), 'odd-sized caller buffer');
    for (const t of [y, v3, wrapped, tB3]) t.dispose();
    buf.destroy();
  });

  it('fuses bias and each activation into the epilogue', async () => {
    const acts: [MatmulAct, boolean][] = [['none', false], ['relu', true], ['gelu', false], ['gelu', true], ['silu', false]];
    for (const [act, transB] of acts) {
      const A = logical([2], 33, 20, 11);
      const B = logical([], 20, 70, 12);
      await checkCase(A, B, { transB, act }, `bias + ${act} transB=${transB}`, randn(70, 13));
    }
  });

  itF16('takes f16 operands (f32 accumulation, output in a\'s dtype)', async (e) => {
    for (const [dtypeA, dtypeB, transB] of [['f16', 'f16', false], ['f16', 'f16', true], ['f32', 'f16', true], ['f16', 'f32', false]] as const) {
      {
        // round the data to f16 first so the reference sees what the kernel reads
        const A = logical([], 36, 129, 21);
        const B = logical([], 129, 100, 22);
        const a = dtypeA === 'f16' ? { ...A, data: await roundF16(e, A.data) } : A;
        const b = dtypeB === 'f16' ? { ...B, data: await roundF16(e, B.data) } : B;
        await checkCase(a, b, { transB, dtypeA, dtypeB }, `${dtypeA} × ${dtypeB} transB=${transB}`);
      }
    }
  });

  it('the path without 8-lane subgroups (other adapters) gives the same results', async () => {
    // one case per A access mode (the only part that differs): row vec4, column vec4, scalar
    const cases: [number, number, number, boolean, boolean][] = [
      [7, 129, 1000, false, false],
      [36, 100, 24, true, true],
      [33, 64, 21, false, true],
    ];
    for (const [M, N, K, transA, transB] of cases) {
      const A = logical([], M, K, 41);
      const B = logical([], K, N, 42);
      await checkCase(A, B, { transA, transB, tune: { noSubgroups: true, tm: 8 } }, `no subgroups M${M} N${N} K${K} ${transA} ${transB}`);
    }
  });

  it('workgroups of several subgroups (tune.wgs) give the same results', async () => {
    // the default is one subgroup per workgroup; wider ones split N across subgroups, with partial
    // column blocks at the edge
    const cases: [number, number, number, boolean, boolean, number][] = [
      [37, 300, 29, false, false, 4],
      [20, 70, 33, true, true, 2],
      [16, 520, 8, false, true, 8],
    ];
    for (const [M, N, K, transA, transB, wgs] of cases) {
      const A = logical([], M, K, 43);
      const B = logical([], K, N, 44);
      await checkCase(A, B, { transA, transB, tune: { wgs } }, `wgs ${wgs} M${M} N${N} K${K} ${transA} ${transB}`);
    }
  });

  it('linear(x, W, b) is x·Wᵀ + b with W stored [out, in]', async () => {
    const e = await getEngine();
    const X = logical([2], 9, 24, 51);
    const W = logical([], 40, 24, 52); // [out, in]
    const bias = randn(40, 53);
    const y = linear(upload(e, X, false), T.tensor(e, W.data, [40, 24]), T.tensor(e, bias, [40]), 'gelu');
    const WT: Logical = { data: store(W, true), batch: [], R: 24, C: 40 };
    expectClose(await y.read(), matmulRef(X, WT, bias, 'gelu'), ...tolerance(24), 'linear');
  });

  it('handles 1-D operands, empty dims and K = 0', async () => {
    const e = await getEngine();
    const v = randn(20, 61);
    const B = logical([], 20, 70, 62);
    let y = matmul(T.tensor(e, v, [20]), T.tensor(e, B.data, [20, 70]));
    expect(y.shape).toEqual([70]);
    expectClose(await y.read(), matmulRef({ data: v, batch: [], R: 1, C: 20 }, B), ...tolerance(20), 'vector × matrix');
    y = matmul(T.tensor(e, B.data, [20, 70]), T.tensor(e, randn(70, 63), [70]));
    expect(y.shape).toEqual([20]);
    y = matmul(T.zeros(e, [0, 5]), T.zeros(e, [5, 3]));
    expect(y.shape).toEqual([0, 3]);
    const bias = randn(3, 64);
    y = matmul(T.zeros(e, [4, 0]), T.zeros(e, [0, 3]), { bias: T.tensor(e, bias, [3]), act: 'relu' });
    expectClose(await y.read(), Array.from({ length: 12 }, (_, i) => Math.max(bias[i % 3]!, 0)), 1e-6, 1e-7, 'K = 0');
  });

  it('frees its intermediates (forward, 1-D reshapes, backward)', async () => {
    const e = await getEngine();
    const x = T.param(T.tensor(e, randn(2 * 9 * 24, 91), [2, 9, 24]));
    const w = T.param(T.tensor(e, randn(40 * 24, 92), [40, 24]));
    const b = T.param(T.tensor(e, randn(40, 93), [40]));
    const v = T.tensor(e, randn(24, 94), [24]);
    const step = () => {
      T.tidy(() => {
        T.backward(T.sum(linear(x, w, b, 'silu')));
      });
      T.disposeAll(x.grad, w.grad, b.grad);
      x.grad = w.grad = b.grad = null;
      T.tidy(() => void e.noGradScope(() => matmul(T.tensor(e, randn(24, 95), [1, 24]), w, { transB: true })));
      T.tidy(() => void matmul(w, v)); // 1-D b (reshaped in and out) with autograd: the scope frees it
      e.noGradScope(() => matmul(w, v)).dispose(); // without autograd the op frees its reshapes itself
    };
    step();
    await e.sync();
    const before = e.memory().liveBytes;
    for (let i = 0; i < 3; i++) step();
    await e.sync();
    expect(e.memory().liveBytes).toBe(before);
    T.disposeAll(x, w, b, v);
  });

  it('rejects mismatched shapes with one-line errors', async () => {
    const e = await getEngine();
    const a = T.zeros(e, [4, 5]);
    expect(() => matmul(a, T.zeros(e, [6, 3]))).toThrow(ArdError);
    expect(() => matmul(a, T.zeros(e, [6, 3]))).toThrow(/inner dimensions/);
    expect(() => matmul(T.zeros(e, [2, 4, 5]), T.zeros(e, [3, 5, 3]))).toThrow(/batch/);
    expect(() => matmul(a, T.zeros(e, [5, 3]), { bias: T.zeros(e, [4]) })).toThrow(/bias/);
    expect(() => matmul(a, T.zeros(e, [5, 3], 'i32'))).toThrow(/float/);
  });
});

/** Round through f16 on the GPU (what an f16 tensor of this data holds). */
async function roundF16(e: Awaited<ReturnType<typeof getEngine>>, d: ArrayLike<number>): Promise<Float32Array> {
  const t = T.tensor(e, d, [d.length], 'f16');
  const r = await t.toFloat32();
  t.dispose();
  return r;
}

describe('matmul gradients', () => {
  const M = 5;
  const K = 6;
  const N = 7;
  const refOf = (transA: boolean, transB: boolean, batchA: number[], act: MatmulAct, withBias: boolean) => (xs: Float64Array[]) => {
    const A: Logical = { data: transA ? transposeRef({ data: xs[0]!, batch: batchA, R: K, C: M }).data : xs[0]!, batch: batchA, R: M, C: K };
    const B: Logical = { data: transB ? transposeRef({ data: xs[1]!, batch: [], R: N, C: K }).data : xs[1]!, batch: [], R: K, C: N };
    return matmulRef(A, B, withBias ? xs[2] : undefined, act);
  };

  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]]) {
    it(`dA, dB by finite differences (transA=${transA}, transB=${transB}, batch broadcast over 2-D B)`, async () => {
      const e = await getEngine();
      const batchA = [2];
      await gradCheck(
        e,
        [
          { data: randn(2 * M * K, 71), shape: [2, ...(transA ? [K, M] : [M, K])] },
          { data: randn(K * N, 72), shape: transB ? [N, K] : [K, N] },
        ],
        ([a, b]) => matmul(a!, b!, { transA, transB }),
        refOf(transA, transB, batchA, 'none', false),
      );
    });
  }

  for (const act of ['none', 'relu', 'gelu', 'silu'] as MatmulAct[]) {
    it(`dA, dB, dBias through the fused ${act} epilogue`, async () => {
      const e = await getEngine();
      await gradCheck(
        e,
        [
          { data: randn(M * K, 81), shape: [M, K] },
          { data: randn(N * K, 82), shape: [N, K] },
          { data: randn(N, 83, 0.5), shape: [N] },
        ],
        ([a, b, bias]) => linear(a!, b!, bias, act),
        refOf(false, true, [], act, true),
        // relu's kink: keep the finite-difference step well inside most pre-activations
        { eps: act === 'relu' ? 1e-4 : 1e-3 },
      );
    });
  }
});
