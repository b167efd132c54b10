// Attention chunked over queries (scaledDotProductAttention's maxScoreBytes): each query row's scores,
// softmax and weighted sum are independent of the other rows, so chunks must give the same bits as one
// pass — with and without the causal mask (offset per chunk), with grouped kv heads, with a KV cache's
// offset. The one-pass path itself is checked against the f64 reference in nn-ops.test.ts.
import { describe, expect, it } from 'vitest';
import { scaledDotProductAttention } from '../src/tensor/ops/nn.js';
import { tensor } from '../src/tensor/index.js';
import { getEngine, randn } from './helpers.js';

const engine = await getEngine();

describe('attention chunked over queries', () => {
  const cases = [
    { H: 4, Hkv: 4, Tq: 37, Tk: 37, D: 8, causal: false, offset: undefined as number | undefined },
    { H: 4, Hkv: 2, Tq: 29, Tk: 29, D: 16, causal: true, offset: undefined },
    { H: 6, Hkv: 2, Tq: 13, Tk: 40, D: 8, causal: true, offset: 27 }, // a prefill after 27 cached positions
  ];
  for (const c of cases) {
    it(`H ${c.H}/${c.Hkv}, Tq ${c.Tq}, Tk ${c.Tk}${c.causal ? ', causal' : ''}: chunks equal one pass bit for bit`, async () => {
      const q = tensor(engine, randn(c.H * c.Tq * c.D, 1), [c.H, c.Tq, c.D]);
      const k = tensor(engine, randn(c.Hkv * c.Tk * c.D, 2), [c.Hkv, c.Tk, c.D]);
      const v = tensor(engine, randn(c.Hkv * c.Tk * c.D, 3), [c.Hkv, c.Tk, c.D]);
      const opts = { causal: c.causal, causalOffset: c.offset };
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
        expect(Array.from(await got.read()), `${rows} rows per chunk`).toEqual(want);
        got.dispose();
      }
      for (const t of [q, k, v, whole]) t.dispose();
    });
  }
});
