// Included (//#include "erfc.wgsl", src/gpu/registry.ts) by kernels/elementwise.wgsl and
// kernels/matmul_epilogue.wgsl: not a kernel family of its own. One erfc for GELU everywhere, so the
// matmul's fused GELU matches the standalone op bit for bit.

// erfc with fractional error < 1.2e-7 (Chebyshev fit, Numerical Recipes §6.2): keeps GELU's
// negative tail accurate in relative terms.
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
          t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
          t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, x >= 0.0);
}
