// Exact reference of the Top-K family (kernels/topk.wgsl, ops/index.ts topk) by sorting each row.

/** Sorted descending, NaN first, ties by lower index; -0 equals +0. */
export function topkRef(x: ArrayLike<number>, rows: number, n: number, k: number): { values: number[]; indices: number[] } {
  const values: number[] = [];
  const indices: number[] = [];
  const idx = new Array<number>(n);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < n; j++) idx[j] = j;
    const v = (j: number) => x[r * n + j]!;
    idx.sort((a, b) => {
      const va = v(a);
      const vb = v(b);
      const na = Number.isNaN(va);
      const nb = Number.isNaN(vb);
      if (na || nb) return na && nb ? a - b : na ? -1 : 1;
      return va !== vb ? (vb > va ? 1 : -1) : a - b;
    });
    for (let j = 0; j < k; j++) {
      indices.push(idx[j]!);
      values.push(v(idx[j]!));
    }
  }
  return { values, indices };
}
