// The GPU profile's top-k (kernels/topk_row.wgsl: one workgroup per row) and SAE workgroup reductions
// (the *_wg entries of kernels/sae.wgsl), on an engine made with profileKind 'gpu' so that every run
// checks them, whatever ARDGPU_PROFILE says: top-k against the exact sorting reference (ties, NaN,
// ±0, rows up to 65,536 wide, column subsets), the SAE ops against the CPU profile's kernels.
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/gpu/engine.js';
import * as T from '../src/tensor/index.js';
import { topk, topkColumns } from '../src/tensor/ops/index.js';
import { normalizeRows, projectParallel, reconLoss } from '../src/sae/ops.js';
import { topkRef } from '../reference/topk.js';
import { expectClose, getEngine, randn, rng } from './helpers.js';

const cpu = await getEngine();
const gpu = await Engine.create({ profileKind: 'gpu' });
afterAll(() => gpu.destroy());

async function checkTopk(x: Float32Array, rows: number, n: number, k: number, what: string): Promise<void> {
  const t = T.tensor(gpu, x, [rows, n]);
  const { values, indices } = topk(t, k);
  const ref = topkRef(x, rows, n, k);
  const gotI = Array.from(await indices.read());
  const gotV = Array.from(await values.read());
  const bad = gotI.findIndex((v, i) => v !== ref.indices[i] || !(Object.is(gotV[i], ref.values[i]) || gotV[i] === ref.values[i]));
  expect(bad, `${what}: slot ${bad}: ${gotI[bad]} (${gotV[bad]}) expected ${ref.indices[bad]} (${ref.values[bad]})`).toBe(-1);
  for (const u of [t, values, indices]) u.dispose();
}

describe('GPU-profile top-k and SAE reductions', () => {
  it('the gpu engine takes the row kernel and the workgroup reductions', () => {
    expect([gpu.profile.topk.variant, gpu.profile.sae.wgReductions]).toEqual(['row', true]);
  });

  it('top-k, one workgroup per row: awkward widths up to 65,536, ties, k up to 256', async () => {
    let seed = 500;
    const cases: [number, number, number[]][] = [
      [1, 1, [1]],
      [3, 7, [7]],
      [5, 4097, [1, 33, 256]],
      [1, 65536, [256]],
      [130, 1001, [129]],
    ];
    for (const [rows, n, ks] of cases) {
      const x = randn(rows * n, seed++);
      const q = x.map((v) => Math.round(v * 4) / 4); // many equal values: the index bytes decide
      for (const k of ks) {
        await checkTopk(x, rows, n, k, `randn ${rows}×${n} k=${k}`);
        await checkTopk(q, rows, n, k, `ties ${rows}×${n} k=${k}`);
      }
    }
  });

  it('top-k: constant rows, NaN, infinities, ±0, denormals; a column subset', async () => {
    const rows = 12, n = 700;
    const special = [NaN, Infinity, -Infinity, -0, 0, 1e-40, -1e-40, 3.5];
    const r = rng(9);
    const x = Float32Array.from({ length: rows * n }, (_, i) => {
      const row = Math.floor(i / n);
      if (row % 3 === 0) return 1.25;
      if (row % 3 === 1) return r() < 0.5 ? -0 : 0;
      return special[Math.floor(r() * special.length)]!;
    });
    for (const k of [1, 100, 256]) await checkTopk(x, rows, n, k, `special k=${k}`);
    // topkColumns: element j of a row is x[row, cols[j]]
    const [R, N, C] = [9, 300, 77];
    const xs = randn(R * N, 31);
    const cols = Int32Array.from({ length: C }, (_, j) => (j * 37) % N);
    const gathered = new Float32Array(R * C);
    for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) gathered[i * C + j] = xs[i * N + cols[j]!]!;
    const xt = T.tensor(gpu, xs, [R, N]);
    const ct = T.tensor(gpu, cols, [C], 'i32');
    const { indices } = topkColumns(xt, ct, 20);
    expect(Array.from(await indices.read())).toEqual(topkRef(gathered, R, C, 20).indices);
    for (const u of [xt, ct, indices]) u.dispose();
  });

  it('SAE decoder projection, row normalisation and loss agree with the CPU profile\'s kernels', async () => {
    const out: number[][][] = [];
    for (const e of [cpu, gpu]) {
      const [m, d, B] = [70, 36, 301];
      const W = T.tensor(e, randn(m * d, 1), [m, d]);
      const G = T.tensor(e, randn(m * d, 2), [m, d]);
      normalizeRows(W);
      projectParallel(W, G);
      const x = T.tensor(e, randn(B * d, 3), [B, d]);
      const xh = T.tensor(e, randn(B * d, 4), [B, d]);
      const eh = T.tensor(e, randn(B * d, 5), [B, d]);
      const withAux = reconLoss(x, xh, eh, 0.03);
      const noAux = reconLoss(x, xh, null, 0);
      out.push(await Promise.all([W, G, withAux.loss, withAux.stats, noAux.loss].map(async (t) => Array.from(await t.read()))));
      for (const t of [W, G, x, xh, eh, withAux.loss, withAux.stats, noAux.loss, noAux.stats]) t.dispose();
    }
    const names = ['normalized W', 'projected G', 'loss', 'stats', 'loss without AuxK'];
    // (G after projection is a difference of similar terms: absolute tolerance)
    names.forEach((n, i) => expectClose(out[1]![i]!, out[0]![i]!, 1e-5, 1e-5, n));
    // unit rows
    const W = out[1]![0]!;
    for (let j = 0; j < 70; j++) expect(Math.hypot(...W.slice(j * 36, j * 36 + 36))).toBeCloseTo(1, 5);
  });
});
