// f64 reference of the cross-entropy family (kernels/xent.wgsl, ops/index.ts crossEntropy).

/**
 * Cross-entropy of logits x [N, V] against targets t [N]: rows whose target is `ignore` count for
 * nothing; an out-of-range target gives NaN. 'mean' divides by the rows not ignored.
 */
export function xentRef(x: ArrayLike<number>, N: number, V: number, t: ArrayLike<number>, ignore: number, reduction: 'mean' | 'sum' | 'none'): Float64Array {
  const rowLoss = new Float64Array(N);
  let count = 0;
  for (let r = 0; r < N; r++) {
    if (t[r] === ignore) continue;
    count++;
    if (t[r]! < 0 || t[r]! >= V) {
      rowLoss[r] = NaN; // out-of-range target
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, x[r * V + j]!);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(x[r * V + j]! - m);
    rowLoss[r] = m + Math.log(s) - x[r * V + t[r]!]!;
  }
  if (reduction === 'none') return rowLoss;
  const sum = rowLoss.reduce((a, b) => a + b, 0);
  return Float64Array.of(reduction === 'sum' ? sum : sum / count);
}
