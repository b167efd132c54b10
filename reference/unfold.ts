// f64 reference of the 1-D unfold (im2col) family (kernels/unfold.wgsl, ops/nn.ts unfold1d).
import { conv1dOutLength } from './conv1d.js';

/** unfold1d: x [Cin, T] (row-major) → cols [Tout, Cin·K], cols[t, c·K + k] = x[c, t·s + k − p] or 0. */
export function unfold1dRef(x: ArrayLike<number>, Cin: number, T: number, K: number, stride = 1, pad = 0): Float64Array {
  const Tout = conv1dOutLength(T, K, stride, pad);
  const out = new Float64Array(Tout * Cin * K);
  for (let t = 0; t < Tout; t++) {
    for (let c = 0; c < Cin; c++) {
      for (let k = 0; k < K; k++) {
        const tau = t * stride + k - pad;
        if (tau >= 0 && tau < T) out[t * Cin * K + c * K + k] = x[c * T + tau]!;
      }
    }
  }
  return out;
}
