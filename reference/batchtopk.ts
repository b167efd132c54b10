// Plain TypeScript references of kernels/batchtopk.wgsl (tests only).

/** The t-th largest of z[b, s] over b < B, s < kc (z [B, kTot], values ≥ 0). */
export function batchThresholdRef(z: ArrayLike<number>, B: number, kTot: number, kc: number, t: number): number {
  const v: number[] = [];
  for (let b = 0; b < B; b++) for (let s = 0; s < kc; s++) v.push(Math.max(0, z[b * kTot + s]!));
  v.sort((a, c) => c - a);
  return v[t - 1]!;
}

/** z with the first kc columns' values below theta set to 0. */
export function thresholdCodesRef(z: ArrayLike<number>, B: number, kTot: number, kc: number, theta: number): Float64Array {
  const out = Float64Array.from(z);
  for (let b = 0; b < B; b++) for (let s = 0; s < kc; s++) if (out[b * kTot + s]! < theta) out[b * kTot + s] = 0;
  return out;
}
