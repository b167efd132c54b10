// 1-D unfold (im2col) and its adjoint, so that a convolution runs as one matmul:
//   x [Cin, T] (any strides) → cols [Tout, Cin·K],  cols[t, c·K + k] = x[c, t·s + k − p]
//   (0 where t·s + k − p falls outside [0, T)), Tout = ⌊(T + 2p − K)/s⌋ + 1.
// Then conv1d(x, w, b) = (cols · w.reshape(Cout, Cin·K)ᵀ + b)ᵀ, time-major.
// Entry `main` (UNFOLD): 0 P; 1 X (f32, element (c, τ) at offX + c·sc + τ·st); 2 O (dense cols).
//   Workgroup 64 threads along a row of cols; grid (⌈Cin·K/64⌉, Tout).
// Entry `fold` (FOLD, the backward): 0 P; 1 G (cols' gradient, dense from offG); 2 DX (dense [Cin, T]):
//   dx[c, τ] = Σ_k g[t, c·K + k] over the k with τ + p − k = t·s, 0 ≤ t < Tout (a gather: no atomics).
//   Workgroup 64 threads along τ; grid (⌈T/64⌉, Cin).
struct Params {
  Cin: u32,
  T: u32,
  K: u32,
  stride: u32,
  pad: u32,
  Tout: u32,
  offX: u32,
  sc: u32,
  st: u32,
  offG: u32,
};

@group(0) @binding(0) var<uniform> P: Params;

//#if UNFOLD
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  let t = gid.y;
  let ck = P.Cin * P.K;
  if (r >= ck || t >= P.Tout) { return; }
  let c = r / P.K;
  let k = r - c * P.K;
  let tau = i32(t * P.stride + k) - i32(P.pad);
  var v = 0.0;
  if (tau >= 0 && u32(tau) < P.T) { v = X[P.offX + c * P.sc + u32(tau) * P.st]; }
  O[t * ck + r] = v;
}
//#endif

//#if FOLD
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> DX: array<f32>;

@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>) {
  let tau = gid.x;
  let c = gid.y;
  if (tau >= P.T || c >= P.Cin) { return; }
  let ck = P.Cin * P.K;
  var acc = 0.0;
  for (var k = 0u; k < P.K; k++) {
    let num = i32(tau + P.pad) - i32(k);
    if (num >= 0 && u32(num) % P.stride == 0u) {
      let t = u32(num) / P.stride;
      if (t < P.Tout) { acc += G[P.offG + t * ck + c * P.K + k]; }
    }
  }
  DX[c * P.T + tau] = acc;
}
//#endif
