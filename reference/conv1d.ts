// f64 reference of the direct 1-D convolution family (kernels/conv1d.wgsl, ops/nn.ts conv1d).

/** Output length of a 1-D convolution: ⌊(T + 2p − K)/s⌋ + 1. */
export function conv1dOutLength(T: number, K: number, stride = 1, padding = 0): number {
  return Math.floor((T + 2 * padding - K) / stride) + 1;
}

/** torch conv1d: x [B, Cin, T] (B = 1 for [Cin, T]), w [Cout, Cin, K] → [B, Cout, Tout] flat. */
export function conv1dRef(
  x: ArrayLike<number>,
  xShape: readonly number[],
  w: ArrayLike<number>,
  wShape: readonly number[],
  bias: ArrayLike<number> | null,
  opts: { stride?: number; padding?: number } = {},
): Float64Array {
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  const B = xShape.length === 3 ? xShape[0]! : 1;
  const Cin = xShape[xShape.length - 2]!;
  const T = xShape[xShape.length - 1]!;
  const [Cout, , K] = wShape as [number, number, number];
  const Tout = conv1dOutLength(T, K, stride, pad);
  const out = new Float64Array(B * Cout * Tout);
  for (let b = 0; b < B; b++) {
    for (let o = 0; o < Cout; o++) {
      for (let t = 0; t < Tout; t++) {
        let acc = bias ? bias[o]! : 0;
        for (let i = 0; i < Cin; i++) {
          for (let k = 0; k < K; k++) {
            const tau = t * stride + k - pad;
            if (tau >= 0 && tau < T) acc += w[(o * Cin + i) * K + k]! * x[(b * Cin + i) * T + tau]!;
          }
        }
        out[(b * Cout + o) * Tout + t] = acc;
      }
    }
  }
  return out;
}
