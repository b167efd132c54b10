// Weights split into row blocks (src/tensor/blocked.ts): linear writes each block's slice of the output
// columns and embedding gathers each token from its block. Each output element is the same k-sum as
// unsplit (same kernel, same order), so the split results must equal the unsplit ones bit for bit; the
// unsplit ops are themselves checked against f64 references in matmul.test.ts and index-ops.test.ts.
import { describe, expect, it } from 'vitest';
import { RowBlocks, rowBlockRanges } from '../src/tensor/blocked.js';
import { contiguous, embedding, slice, tensor, tidy, type MatmulAct } from '../src/tensor/index.js';
import { linear } from '../src/tensor/ops/matmul.js';
import { getEngine, itF16, randn } from './helpers.js';

const engine = await getEngine();

/** The rows of w split at the given boundaries, each block a dense copy of its own. */
function split(w: ReturnType<typeof tensor>, cuts: number[]): RowBlocks {
  const rows = w.shape[0]!;
  const edges = [0, ...cuts, rows];
  return new RowBlocks(edges.slice(0, -1).map((r0, i) => tidy(() => contiguous(slice(w, 0, r0, edges[i + 1]!)))));
}

describe('row blocks', () => {
  it('rowBlockRanges: even blocks within the limit, one when it fits', () => {
    expect(rowBlockRanges(10, 4, 'f32', 1000)).toEqual([[0, 10]]);
    expect(rowBlockRanges(10, 4, 'f32', 48)).toEqual([[0, 2], [2, 5], [5, 7], [7, 10]]);
    expect(rowBlockRanges(300, 64, 'f16', 12 * 1024)).toHaveLength(4);
    for (const [r0, r1] of rowBlockRanges(151_936, 4096, 'f16', 128 * 2 ** 20)) expect((r1 - r0) * 4096 * 2).toBeLessThanOrEqual(128 * 2 ** 20);
    expect(() => rowBlockRanges(10, 100, 'f32', 399)).toThrow(/a row of 100 f32 values \(400 bytes\) exceeds one storage binding \(399 bytes\)/);
  });

  const cases: { M: number[]; N: number; K: number; cuts: number[]; bias: boolean; act: MatmulAct }[] = [
    { M: [1], N: 13, K: 7, cuts: [5], bias: false, act: 'none' }, // decode-shaped, odd column offsets
    { M: [9], N: 40, K: 33, cuts: [8, 20, 31], bias: true, act: 'gelu' }, // aligned and unaligned slices
    { M: [2, 17], N: 64, K: 16, cuts: [16, 32, 48], bias: true, act: 'silu' }, // batch dims, vec4 stores
    { M: [130], N: 7, K: 129, cuts: [1, 2, 3, 4, 5, 6], bias: false, act: 'relu' }, // one-row blocks
  ];
  async function blockedMatchesWhole(dtype: 'f32' | 'f16'): Promise<void> {
    // f16: the two cases that cover both store paths (each kernel variant compiles slowly on lavapipe)
    for (const [i, c] of cases.entries()) {
      if (dtype === 'f16' && i % 2 === 1) continue;
      const x = tensor(engine, randn(c.M.reduce((a, b) => a * b, 1) * c.K, 10 + i), [...c.M, c.K], dtype);
      const w = tensor(engine, randn(c.N * c.K, 20 + i, 0.3), [c.N, c.K], dtype);
      const b = c.bias ? tensor(engine, randn(c.N, 30 + i), [c.N]) : undefined;
      const blocks = split(w, c.cuts);
      const want = linear(x, w, b, c.act);
      const got = linear(x, blocks, b, c.act);
      expect(got.shape).toEqual(want.shape);
      expect(Array.from(await got.read()), JSON.stringify(c)).toEqual(Array.from(await want.read()));
      for (const t of [x, w, want, got]) t.dispose();
      b?.dispose();
      blocks.dispose();
    }
  }
  it('linear with f32 blocks equals linear with the whole weight, bit for bit', () => blockedMatchesWhole('f32'));
  itF16('linear with f16 blocks equals linear with the whole weight, bit for bit', () => blockedMatchesWhole('f16'));

  it('a 1-D input and a bias view work through blocks; shapes and gradients are refused', async () => {
    const w = tensor(engine, randn(6 * 5, 1), [6, 5]);
    const blocks = split(w, [2, 3]);
    const x = tensor(engine, randn(5, 2), [5]);
    expect(Array.from(await linear(x, blocks).read())).toEqual(Array.from(await linear(x, w).read()));
    expect(() => linear(tensor(engine, randn(4, 3), [4]), blocks)).toThrow(/does not match the weight's 5 inputs/);
    const xg = tensor(engine, randn(5, 2), [1, 5]);
    xg.requiresGrad = true;
    expect(() => linear(xg, blocks)).toThrow(/row blocks has no gradient/);
    blocks.dispose();
    w.dispose();
  });

  it('embedding gathers each token from its block; ids outside the table read 0 as unsplit', async () => {
    const table = tensor(engine, randn(23 * 6, 3), [23, 6]);
    const blocks = split(table, [7, 8, 15]);
    const ids = tensor(engine, [0, 6, 7, 8, 14, 15, 22, 3, 3, -1, 23, 100], [2, 6], 'i32');
    const want = embedding(table, ids);
    const got = embedding(blocks, ids);
    expect(got.shape).toEqual([2, 6, 6]);
    expect(Array.from(await got.read())).toEqual(Array.from(await want.read()));
    const host = await got.read();
    for (const row of [9, 10, 11]) expect(Array.from(host.slice(row * 6, row * 6 + 6))).toEqual([0, 0, 0, 0, 0, 0]);
    for (const t of [table, ids, want, got]) t.dispose();
    blocks.dispose();
  });
});
