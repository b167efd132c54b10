// Attention chunked over queries (scaledDotProductAttention's maxScoreBytes): each query row's scores,
// softmax and weighted sum are independent of the other rows, so chunks must give the same bits as one
// pass (except where the profile picks another matmul kernel for a short chunk) — with and without the causal mask (offset per chunk), with grouped kv heads, with a KV cache's
// offset. The one-pass path itself is checked against the f64 reference in nn-ops.test.ts.
import { describe, expect, it } from 'vitest';
import { scaledDotProductAttention } from '../src/tensor/ops/nn.js';
import { tensor } from '../src/tensor/index.js';
import { expectClose, getEngine, randn } from './helpers.js';

const engine = await getEngine();

describe('attention chunked over queries', () => {
  const cases = [
    { H: 4, Hkv: 4, Tq: 37, Tk: 37, D: 8, causal: false, offset: undefined as number | undefined },
    { H: 4, Hkv: 2, Tq: 29, Tk: 29, D: 16, causal: true, offset: undefined },
    { H: 6, Hkv: 2, Tq: 13, Tk: 40, D: 8, causal: true, offset: 27 }, // a prefill after 27 cached positions
  ];
  for (const c of cases) {
    it(`H ${c.H}/${c.Hkv}, Tq ${c.Tq}, Tk ${c.Tk}${c.causal ? ', causal' : ''}: chunks equal one pass (bit for bit with the lanes kernel)`, async () => {
      const q = tensor(engine, randn(c.H * c.Tq * c.D, 1), [c.H, c.Tq, c.D]);
      const k = tensor(engine, randn(c.Hkv * c.Tk * c.D, 2), [c.Hkv, c.Tk, c.D]);
      const v = tensor(engine, randn(c.Hkv * c.Tk * c.D, 3), [c.Hkv, c.Tk, c.D]);
      const opts = { causal: c.causal, causalOffset: c.offset, variant: 'chunked' as const };
      let d0 = engine.dispatchCount;
      const whole = scaledDotProductAttention(q, k, v, opts);
      const onePass = engine.dispatchCount - d0;
      const want = Array.from(await whole.read());
      const rowBytes = c.H * c.Tk * 4;
      for (const rows of [1, 5, c.Tq - 1]) {
        d0 = engine.dispatchCount;
        const got = scaledDotProductAttention(q, k, v, { ...opts, maxScoreBytes: rows * rowBytes });
        expect(engine.dispatchCount - d0, 'chunked: more passes').toBeGreaterThan(onePass);
        expect(got.shape).toEqual(whole.shape);
        if (engine.profile.matmul.variant !== 'lanes' || rows <= engine.profile.matmul.gemvMaxM) {
          // the GPU profile's kernels (workgroup tiles; a matrix-vector kernel for ≤ 4 rows) sum a dot
          // product in an order, and with multiply-add contraction, that depend on where the row falls in
          // a tile (WGSL allows either): equal to f32 rounding of sums of ≤ 40 terms, not bit for bit
          expectClose(Array.from(await got.read()), want, 1e-5, 1e-6, `${rows} rows per chunk`);
        } else expect(Array.from(await got.read()), `${rows} rows per chunk`).toEqual(want);
        got.dispose();
      }
      for (const t of [q, k, v, whole]) t.dispose();
    });
  }
});
