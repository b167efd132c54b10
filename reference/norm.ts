// f64 references of the normalisation family (kernels/norm.wgsl, ops/nn.ts layerNorm, rmsNorm).
import { lastAxis } from './shape.js';

/** LayerNorm over the last axis (biased variance); bias may be null. */
export function layerNormRef(x: ArrayLike<number>, shape: readonly number[], w: ArrayLike<number>, b: ArrayLike<number> | null, eps: number): Float64Array {
  const { rows, n } = lastAxis(shape);
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let j = 0; j < n; j++) mean += x[r * n + j]!;
    mean /= n;
    let v = 0;
    for (let j = 0; j < n; j++) v += (x[r * n + j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / n + eps);
    for (let j = 0; j < n; j++) out[r * n + j] = (x[r * n + j]! - mean) * rstd * w[j]! + (b ? b[j]! : 0);
  }
  return out;
}

/** Qwen2 RMSNorm over the last axis: x·rsqrt(mean(x²) + eps)·w. */
export function rmsNormRef(x: ArrayLike<number>, shape: readonly number[], w: ArrayLike<number>, eps: number): Float64Array {
  const { rows, n } = lastAxis(shape);
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss += x[r * n + j]! ** 2;
    const rstd = 1 / Math.sqrt(ss / n + eps);
    for (let j = 0; j < n; j++) out[r * n + j] = x[r * n + j]! * rstd * w[j]!;
  }
  return out;
}
