// Included (//#include "matmul_epilogue.wgsl", src/gpu/registry.ts) by kernels/matmul.wgsl,
// matmul_tiled.wgsl and matmul_gemv.wgsl: not a kernel family of its own. The epilogue every
// matmul kernel ends with: bias, activation, the bounds-checked store of C and of the pre-activation Z.
// Needs from the including file: P (with N, offBias), C (array<vec4<TC>> when CVEC, else array<TC>),
// Bias (BIAS), Z laid out like C (SAVE_PRE); the defines TC, BIAS, ACT_*, CVEC, SAVE_PRE.

//#include "erfc.wgsl"
fn act(x: vec4<f32>) -> vec4<f32> {
//#if ACT_GELU
  return vec4<f32>(0.5 * x.x * erfc_(-x.x * 0.70710678118654752), 0.5 * x.y * erfc_(-x.y * 0.70710678118654752),
                   0.5 * x.z * erfc_(-x.z * 0.70710678118654752), 0.5 * x.w * erfc_(-x.w * 0.70710678118654752));
//#endif
//#if ACT_SILU
  // x·sigmoid(x), stable on both sides
  let e = exp(-abs(x));
  return x * select(e / (1.0 + e), 1.0 / (1.0 + e), x >= vec4<f32>(0.0));
//#endif
//#if ACT_RELU
  return max(x, vec4<f32>(0.0));
//#endif
//#if ACT_NONE
  return x;
//#endif
}
fn act1(x: f32) -> f32 {
//#if ACT_GELU
  return 0.5 * x * erfc_(-x * 0.70710678118654752);
//#endif
//#if ACT_SILU
  let e = exp(-abs(x));
  return x * select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
//#endif
//#if ACT_RELU
  return max(x, 0.0);
//#endif
//#if ACT_NONE
  return x;
//#endif
}

// Bias of columns n … n+3 (clamped to the last column: columns past N are never stored).
fn bias4(n: u32) -> vec4<f32> {
  var bias = vec4<f32>(0.0);
//#if BIAS
  for (var j = 0u; j < 4u; j++) { bias[j] = f32(Bias[P.offBias + min(n + j, P.N - 1u)]); }
//#endif
  return bias;
}

// Columns n … n+3 of one row of C: acc (+ bias when BIAS), activated; o is the element offset of
// column n (≡ 0 mod 4 when CVEC); columns past N are not stored.
fn store4(acc: vec4<f32>, bias: vec4<f32>, o: u32, n: u32) {
  var pre = acc;
//#if BIAS
  pre += bias;
//#endif
  let y = act(pre);
//#if CVEC
  C[o / 4u] = vec4<${TC}>(y);
//#if SAVE_PRE
  Z[o / 4u] = vec4<${TC}>(pre);
//#endif
//#else
  for (var j = 0u; j < 4u; j++) {
    if (n + j < P.N) {
      C[o + j] = ${TC}(y[j]);
//#if SAVE_PRE
      Z[o + j] = ${TC}(pre[j]);
//#endif
    }
  }
//#endif
}

//#if !CVEC
// One element (column n < N) of C: acc (+ bias when BIAS), activated, at element offset o.
fn store1(acc: f32, o: u32, n: u32) {
  var pre = acc;
//#if BIAS
  pre += f32(Bias[P.offBias + n]);
//#endif
  C[o] = ${TC}(act1(pre));
//#if SAVE_PRE
  Z[o] = ${TC}(pre);
//#endif
}
//#endif
