// The GPU profile's matmul kernels, forced with tune.variant so they are checked on any adapter and
// profile: the workgroup-memory tiled kernel (kernels/matmul_tiled.wgsl, 64² and 128² tiles) and the
// matrix-vector kernel for M ≤ 4 (kernels/matmul_gemv.wgsl, with and without subgroup reductions),
// against the f64 reference at sizes that are not tile multiples, in every operand layout, with
// batches, strided views, the fused epilogue and f16 operands. (matmul.test.ts and blocked.test.ts
// run on these kernels as a whole under ARDGPU_PROFILE=gpu, gradients and output slices included.)
import { describe, expect, it } from 'vitest';
import * as T from '../src/tensor/index.js';
import { Tensor } from '../src/tensor/index.js';
import { MatmulAct, MatmulOptions, MatmulTuning, matmul } from '../src/tensor/ops/matmul.js';
import { expectClose, getEngine, itF16, randn } from './helpers.js';
import { Logical, matmulRef, transposeRef } from '../reference/matmul.js';
import { prod } from '../reference/shape.js';

const e = await getEngine();

function logical(batch: number[], R: number, C: number, seed: number, data?: Float32Array): Logical {
  return { data: data ?? randn(prod(batch) * R * C, seed), batch, R, C };
}

function upload(L: Logical, trans: boolean, dtype: 'f32' | 'f16' = 'f32'): Tensor {
  const d = Float32Array.from(trans ? transposeRef(L).data : L.data);
  return T.tensor(e, d, [...L.batch, ...(trans ? [L.C, L.R] : [L.R, L.C])], dtype);
}

async function roundF16(d: ArrayLike<number>): Promise<Float32Array> {
  const t = T.tensor(e, d, [d.length], 'f16');
  const r = await t.toFloat32();
  t.dispose();
  return r;
}

async function check(A: Logical, B: Logical, opts: MatmulOptions & { dtype?: 'f32' | 'f16' }, what: string, bias?: Float32Array): Promise<void> {
  const a = upload(A, Boolean(opts.transA), opts.dtype);
  const b = upload(B, Boolean(opts.transB), opts.dtype);
  const tb = bias ? T.tensor(e, bias, [bias.length]) : undefined;
  const y = matmul(a, b, { ...opts, bias: tb });
  const K = A.C;
  const [rtol, atol] = opts.dtype === 'f16' ? [1e-2, 1e-2 * Math.sqrt(K)] : [1e-4, 1e-4 * Math.sqrt(Math.max(K, 1))];
  expectClose(await y.read(), matmulRef(A, B, bias, opts.act), rtol, atol, what);
  for (const t of [a, b, tb, y]) t?.dispose();
}

const TILED: MatmulTuning[] = [
  { variant: 'tiled', tile: 64 },
  { variant: 'tiled', tile: 128 },
];
const GEMV: MatmulTuning[] = [
  { variant: 'gemv' },
  { variant: 'gemv', gemvSubgroups: false },
];
const name = (t: MatmulTuning) => `${t.variant}${t.tile ?? ''}${t.gemvSubgroups === false ? ' no-sg' : ''}`;

describe('GPU-profile matmul kernels', () => {
  it('tiled: every transpose combination at sizes that are not tile multiples', async () => {
    const shapes: [number, number, number][] = [
      [5, 1, 1],
      [129, 131, 37], // one past 128 in M, N; K not a multiple of 8 or 16
      [70, 9, 130],
      [17, 200, 3],
    ];
    for (const tune of TILED) {
      // 128² tiles: the shape past one tile in M and N only (each case compiles slowly on SwiftShader)
      for (const [M, N, K] of tune.tile === 128 ? shapes.slice(1, 2) : shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            await check(logical([], M, K, M + K), logical([], K, N, N + 3 * K), { transA, transB, tune }, `${name(tune)} M${M} N${N} K${K} ${transA} ${transB}`);
          }
        }
      }
    }
  });

  it('gemv: M = 1…4 in every layout (vec4 and scalar K reads, K tails)', async () => {
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [1, 13, 1027], // K ≡ 3 mod 4, > 256 vec4 steps' worth of lanes
      [2, 70, 64],
      [3, 5, 9],
      [4, 257, 130],
    ];
    for (const tune of GEMV) {
      for (const [M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            await check(logical([], M, K, 7 * M + K), logical([], K, N, N + K), { transA, transB, tune }, `${name(tune)} M${M} N${N} K${K} ${transA} ${transB}`);
          }
        }
      }
    }
  });

  it('batches (broadcast 2-D weights, size-1 dims), bias and every activation', async () => {
    const acts: MatmulAct[] = ['none', 'relu', 'gelu', 'silu'];
    for (const tune of [...TILED, ...GEMV]) {
      const M = tune.variant === 'gemv' ? 3 : 67;
      for (const [i, act] of acts.entries()) {
        const transB = i % 2 === 1;
        const A = logical([2, 3], M, 21, 100 + i);
        const B = logical(i < 2 ? [] : [3], 21, 38, 200 + i);
        await check(A, B, { transB, act, tune }, `${name(tune)} batch ${act} transB=${transB}`, randn(38, 300 + i));
      }
    }
  });

  it('reads strided views in place: slices at odd offsets, transposed views, permuted × expanded batches', async () => {
    const [N, K] = [37, 24];
    const big = randn(80 * 30, 3);
    const tBig = T.tensor(e, big, [80, 30]);
    const bData = randn(K * N, 4);
    const tb = T.tensor(e, bData, [K, N]);
    const B: Logical = { data: bData, batch: [], R: K, C: N };
    for (const tune of [...TILED, ...GEMV]) {
      const M = tune.variant === 'gemv' ? 4 : 70;
      const [r0, c0] = [3, 5];
      const v = T.slice(T.slice(tBig, 0, r0, r0 + M), 1, c0, c0 + K);
      const sl = new Float32Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) sl[m * K + k] = big[(r0 + m) * 30 + c0 + k]!;
      let y = matmul(v, tb, { tune });
      expectClose(await y.read(), matmulRef(logical([], M, K, 0, sl), B), 1e-4, 1e-3, `${name(tune)} slice`);
      y.dispose();
      // B as a transposed view of a [N, K] tensor, sliced in K (k stride 1, odd row stride)
      const wData = randn(N * 30, 5);
      const tw = T.tensor(e, wData, [N, 30]);
      const wv = T.transpose(T.slice(tw, 1, 1, 1 + K));
      const wL = new Float32Array(K * N);
      for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) wL[k * N + n] = wData[n * 30 + 1 + k]!;
      const A = logical([], M, K, 6);
      const ta = upload(A, false);
      y = matmul(ta, wv, { tune });
      expectClose(await y.read(), matmulRef(A, logical([], K, N, 0, wL)), 1e-4, 1e-3, `${name(tune)} transposed sliced B`);
      y.dispose();
      // permuted batch of A × expanded B
      const A3 = logical([3, 2], M, K, 7);
      const tA3 = T.tensor(e, A3.data, [3, 2, M, K]);
      const perm = T.permute(tA3, [1, 0, 2, 3]);
      const permData = new Float32Array(A3.data.length);
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) permData.set((A3.data as Float32Array).subarray((j * 2 + i) * M * K, (j * 2 + i + 1) * M * K), (i * 3 + j) * M * K);
      const bExp = T.expand(T.reshape(tb, [1, K, N]), [3, K, N]);
      y = matmul(perm, bExp, { tune });
      expectClose(await y.read(), matmulRef({ data: permData, batch: [2, 3], R: M, C: K }, { ...B, batch: [1] }), 1e-4, 1e-3, `${name(tune)} permuted × expanded`);
      for (const t of [y, v, tw, wv, ta, tA3, perm, bExp]) t.dispose();
    }
    tBig.dispose();
    tb.dispose();
  });

  itF16('f16 operands, f32 accumulation', async () => {
    // one layout per variant: each f16 variant compiles for seconds on lavapipe
    for (const [i, tune] of [...TILED, ...GEMV].entries()) {
      const M = tune.variant === 'gemv' ? 2 : 67;
      for (const transB of [i % 2 === 1]) {
        const A = logical([], M, 131, 21);
        const B = logical([], 131, 45, 22);
        await check({ ...A, data: await roundF16(A.data) }, { ...B, data: await roundF16(B.data) }, { transB, dtype: 'f16', tune }, `${name(tune)} f16 transB=${transB}`);
      }
    }
  });

  it('gemv refuses M > 4', () => {
    const a = T.tensor(e, randn(5 * 3, 1), [5, 3]);
    const b = T.tensor(e, randn(3 * 2, 2), [3, 2]);
    expect(() => matmul(a, b, { tune: { variant: 'gemv' } })).toThrow(/gemv kernel takes M ≤ 4, got M=5/);
    a.dispose();
    b.dispose();
  });
});
