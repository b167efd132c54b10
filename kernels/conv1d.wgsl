// Direct 1-D convolution (cross-correlation, like torch.nn.Conv1d) and its gradients.
//   x [B, Cin, T], w [Cout, Cin, K], bias [Cout] → y [B, Cout, Tout], Tout = ⌊(T + 2p − K)/s⌋ + 1
//   y[b, o, t] = bias[o] + Σ_{i,k} w[o, i, k] · x[b, i, t·s + k − p]   (x is 0 outside [0, T))
// Exactly one mode per module (their bindings differ):
//   FWD (entry main):   0 P; 1 X; 2 W; [3 BIAS when BIAS]; ${O_BINDING} O (dense)
//                       a thread computes 4 output channels × 4 time steps; workgroup 16×4 threads,
//                       grid (⌈Tout/64⌉, ⌈Cout/16⌉, B)
//   GX (entry grad_x):  0 P; 1 G; 2 W; 3 DX (dense) — dx[b,i,τ] = Σ_{o,k: τ+p−k = t·s} w[o,i,k]·g[b,o,t]
//                       a thread computes 4 input channels × 4 time steps; grid (⌈T/64⌉, ⌈Cin/16⌉, B)
//   GW (entry grad_w):  0 P; 1 G; 2 X; 3 DW (dense) — dw[o,i,k] = Σ_{b,t} g[b,o,t]·x[b,i,t·s+k−p]
//                       a thread computes 4 output channels of one (i, k); workgroup 64×1,
//                       grid (⌈Cin·K/64⌉, ⌈Cout/4⌉)
// Defines: TX TW TB TG TO storage types; BIAS; FWD | GX | GW. Accumulates in f32. Inputs start at
// the P.off* element offsets; outputs are dense from 0. No shared memory (registers pay on llvmpipe).
struct Params {
  B: u32,
  Cin: u32,
  T: u32,
  Cout: u32,
  K: u32,
  Tout: u32,
  stride: u32,
  pad: u32,
  offX: u32,
  offW: u32,
  offB: u32,
  offG: u32,
};

@group(0) @binding(0) var<uniform> P: Params;

//#if FWD
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read> W: array<${TW}>;
//#if BIAS
@group(0) @binding(3) var<storage, read> BIAS: array<${TB}>;
//#endif
@group(0) @binding(${O_BINDING}) var<storage, read_write> O: array<${TO}>;

// x[b, i, τ] with zero padding outside [0, T).
fn xat(row: u32, tau: i32) -> f32 {
  let inside = tau >= 0 && tau < i32(P.T);
  return select(0.0, f32(X[row + u32(clamp(tau, 0, i32(P.T) - 1))]), inside);
}

@compute @workgroup_size(16, 4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t0 = gid.x * 4u;
  let o0 = gid.y * 4u;
  let b = gid.z;
  if (t0 >= P.Tout || o0 >= P.Cout) { return; }
  let ck = P.Cin * P.K;
  // clamped channel rows: lanes past Cout compute garbage that is never written
  let w0 = P.offW + min(o0, P.Cout - 1u) * ck;
  let w1 = P.offW + min(o0 + 1u, P.Cout - 1u) * ck;
  let w2 = P.offW + min(o0 + 2u, P.Cout - 1u) * ck;
  let w3 = P.offW + min(o0 + 3u, P.Cout - 1u) * ck;
  let s = i32(P.stride);
  let tau0 = i32(t0) * s - i32(P.pad);
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var i = 0u; i < P.Cin; i++) {
    let row = P.offX + (b * P.Cin + i) * P.T;
    for (var k = 0u; k < P.K; k++) {
      let tau = tau0 + i32(k);
      let xv = vec4<f32>(xat(row, tau), xat(row, tau + s), xat(row, tau + 2 * s), xat(row, tau + 3 * s));
      let wk = i * P.K + k;
      a0 += f32(W[w0 + wk]) * xv;
      a1 += f32(W[w1 + wk]) * xv;
      a2 += f32(W[w2 + wk]) * xv;
      a3 += f32(W[w3 + wk]) * xv;
    }
  }
  var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
  for (var a = 0u; a < 4u; a++) {
    let o = o0 + a;
    if (o >= P.Cout) { break; }
    var v = acc[a];
//#if BIAS
    v += vec4<f32>(f32(BIAS[P.offB + o]));
//#endif
    let base = (b * P.Cout + o) * P.Tout + t0;
    for (var j = 0u; j < 4u; j++) {
      if (t0 + j < P.Tout) { O[base + j] = ${TO}(v[j]); }
    }
  }
}
//#endif

//#if GX
@group(0) @binding(1) var<storage, read> G: array<${TG}>;
@group(0) @binding(2) var<storage, read> W: array<${TW}>;
@group(0) @binding(3) var<storage, read_write> DX: array<${TO}>;

// g[row, (τ + p − k) / s] when that is a whole, in-range output step; else 0.
fn gat(row: u32, num: i32) -> f32 {
  let s = i32(P.stride);
  let t = num / s;
  let ok = num >= 0 && t * s == num && t < i32(P.Tout);
  return select(0.0, f32(G[row + u32(clamp(t, 0, i32(P.Tout) - 1))]), ok);
}

@compute @workgroup_size(16, 4)
fn grad_x(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t0 = gid.x * 4u;
  let i0 = gid.y * 4u;
  let b = gid.z;
  if (t0 >= P.T || i0 >= P.Cin) { return; }
  let c0 = min(i0, P.Cin - 1u) * P.K;
  let c1 = min(i0 + 1u, P.Cin - 1u) * P.K;
  let c2 = min(i0 + 2u, P.Cin - 1u) * P.K;
  let c3 = min(i0 + 3u, P.Cin - 1u) * P.K;
  let ck = P.Cin * P.K;
  let n0 = i32(t0 + P.pad);
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var o = 0u; o < P.Cout; o++) {
    let row = P.offG + (b * P.Cout + o) * P.Tout;
    let wo = P.offW + o * ck;
    for (var k = 0u; k < P.K; k++) {
      let num = n0 - i32(k);
      let gv = vec4<f32>(gat(row, num), gat(row, num + 1), gat(row, num + 2), gat(row, num + 3));
      a0 += f32(W[wo + c0 + k]) * gv;
      a1 += f32(W[wo + c1 + k]) * gv;
      a2 += f32(W[wo + c2 + k]) * gv;
      a3 += f32(W[wo + c3 + k]) * gv;
    }
  }
  var acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
  for (var a = 0u; a < 4u; a++) {
    let i = i0 + a;
    if (i >= P.Cin) { break; }
    let base = (b * P.Cin + i) * P.T + t0;
    for (var j = 0u; j < 4u; j++) {
      if (t0 + j < P.T) { DX[base + j] = ${TO}(acc[a][j]); }
    }
  }
}
//#endif

//#if GW
@group(0) @binding(1) var<storage, read> G: array<${TG}>;
@group(0) @binding(2) var<storage, read> X: array<${TX}>;
@group(0) @binding(3) var<storage, read_write> DW: array<${TO}>;

@compute @workgroup_size(64)
fn grad_w(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ik = gid.x;
  let o0 = gid.y * 4u;
  let ck = P.Cin * P.K;
  if (ik >= ck || o0 >= P.Cout) { return; }
  let i = ik / P.K;
  let k = ik % P.K;
  let s = i32(P.stride);
  let o1 = min(o0 + 1u, P.Cout - 1u);
  let o2 = min(o0 + 2u, P.Cout - 1u);
  let o3 = min(o0 + 3u, P.Cout - 1u);
  var acc = vec4<f32>(0.0);
  for (var b = 0u; b < P.B; b++) {
    let xrow = P.offX + (b * P.Cin + i) * P.T;
    let g0 = P.offG + (b * P.Cout + o0) * P.Tout;
    let g1 = P.offG + (b * P.Cout + o1) * P.Tout;
    let g2 = P.offG + (b * P.Cout + o2) * P.Tout;
    let g3 = P.offG + (b * P.Cout + o3) * P.Tout;
    // only output steps whose tap lands inside [0, T) contribute
    let lo = max(0, (i32(P.pad) - i32(k) + s - 1) / s);
    let hiNum = i32(P.T) - 1 + i32(P.pad) - i32(k); // (integer division truncates: keep it ≥ 0)
    let hi = select(0, min(i32(P.Tout), hiNum / s + 1), hiNum >= 0);
    for (var t = lo; t < hi; t++) {
      let xv = f32(X[xrow + u32(t * s + i32(k) - i32(P.pad))]);
      let tu = u32(t);
      acc += xv * vec4<f32>(f32(G[g0 + tu]), f32(G[g1 + tu]), f32(G[g2 + tu]), f32(G[g3 + tu]));
    }
  }
  for (var a = 0u; a < 4u; a++) {
    if (o0 + a < P.Cout) { DW[(o0 + a) * ck + ik] = ${TO}(acc[a]); }
  }
}
//#endif
