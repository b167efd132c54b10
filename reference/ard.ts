// f64 reference of the AR&D retrieval family (kernels/ard.wgsl, src/ard/retrieve.ts retrieve).

/**
 * retrieve() from recorded top-k codes, in f64. `rows` [N, d] are the clips' residual rows in order,
 * clip c taking the next clipRows[c]; values / indices [N, k] their codes over m latents. Per clip
 * and feature: mean activation and coverage (share of rows where the feature fires), the score
 * mean / (feature's max mean) × coverage; per clip the mean residual row; per feature H (the p
 * highest-scoring firing clips, ties to the lower clip) and L (the p lowest not in H).
 */
export function retrieveRef(
  clipRows: readonly number[],
  rows: ArrayLike<number>,
  d: number,
  values: ArrayLike<number>,
  indices: ArrayLike<number>,
  k: number,
  m: number,
  p: number,
): { mean: Float64Array; cov: Float64Array; score: Float64Array; resid: Float64Array; H: number[][]; L: number[][] } {
  const n = clipRows.length;
  const mean = new Float64Array(n * m);
  const cov = new Float64Array(n * m);
  const resid = new Float64Array(n * d);
  let row = 0;
  clipRows.forEach((T, ci) => {
    for (let t = 0; t < T; t++, row++) {
      for (let j = 0; j < k; j++) {
        const v = values[row * k + j]!;
        const f = indices[row * k + j]!;
        if (v > 0) {
          mean[ci * m + f] += v;
          cov[ci * m + f] += 1;
        }
      }
      for (let j = 0; j < d; j++) resid[ci * d + j] += rows[row * d + j]!;
    }
    for (let f = 0; f < m; f++) {
      mean[ci * m + f] /= T;
      cov[ci * m + f] /= T;
    }
    for (let j = 0; j < d; j++) resid[ci * d + j] /= T;
  });
  const score = new Float64Array(n * m);
  const H: number[][] = [];
  const L: number[][] = [];
  for (let f = 0; f < m; f++) {
    let mx = 0;
    for (let c = 0; c < n; c++) mx = Math.max(mx, mean[c * m + f]!);
    for (let c = 0; c < n; c++) score[c * m + f] = mx > 0 ? (mean[c * m + f]! / mx) * cov[c * m + f]! : 0;
    const firing = [...Array(n).keys()].filter((c) => cov[c * m + f]! > 0);
    const byDesc = [...firing].sort((a, b) => score[b * m + f]! - score[a * m + f]! || a - b);
    const byAsc = [...firing].sort((a, b) => score[a * m + f]! - score[b * m + f]! || a - b);
    const h = byDesc.slice(0, p);
    H.push(h);
    L.push(byAsc.filter((c) => !h.includes(c)).slice(0, p));
  }
  return { mean, cov, score, resid, H, L };
}
