// Elementwise map over up to three strided inputs with broadcasting (stride 0), rank ≤ 8.
//
// Bindings: 0 uniform P; 1 A (array<${TA}>); 2 B (array<${TB}>, when NIN ≥ 2);
//           3 C (array<${TC}>, when NIN = 3); last: O (array<${TO}>, dense, row-major).
// Defines:  NIN 1|2|3, TA/TB/TC/TO storage types, CT compute type, EXPR (uses a, b, c, P.alpha,
//           P.beta and the index helpers), CONTIG (all inputs dense with the output's shape: no
//           index arithmetic, the common case), OUT_STRIDED (O is a strided view: offO + Σ k·so;
//           used to copy into a slice of a bigger tensor); READ_OUT (EXPR may read O's current
//           value as o: in-place accumulation, e.g. a gradient added into its region); RANK (strided path: the rank after the
//           op merged the dims it could, a constant so the index loop unrolls); FASTDIV (strided
//           path, fewer than 2^24 elements: divides by an f32 reciprocal with an exact ±1 fix-up;
//           llvmpipe runs an integer division lane by lane, which made permuted copies ~6× slower
//           than dense ones).
// Workgroup: 256 threads, one element each; grid may be 2-D (x ≤ 65535) for > 16M elements.

struct Params {
  n: u32,
  pad: u32, // the rank is the RANK define (a constant loop bound, so the index loop unrolls)
  offA: u32,
  offB: u32,
  offC: u32,
  alpha: f32,
  beta: f32,
  offO: u32,
  shape: array<vec4<u32>, 2>,
  sa: array<vec4<u32>, 2>,
  sb: array<vec4<u32>, 2>,
  sc: array<vec4<u32>, 2>,
  so: array<vec4<u32>, 2>,
  inv: array<vec4<f32>, 2>, // 1 / shape[d]
};

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<${TA}>;
//#if IN2
@group(0) @binding(2) var<storage, read> B: array<${TB}>;
//#endif
//#if IN3
@group(0) @binding(3) var<storage, read> C: array<${TC}>;
//#endif
@group(0) @binding(${OUT_BINDING}) var<storage, read_write> O: array<${TO}>;

fn dim(arr: array<vec4<u32>, 2>, i: u32) -> u32 {
  return arr[i / 4u][i % 4u];
}
fn dimf(arr: array<vec4<f32>, 2>, i: u32) -> f32 {
  return arr[i / 4u][i % 4u];
}

//#include "erfc.wgsl"
fn gelu_(x: f32) -> f32 { return 0.5 * x * erfc_(-x * 0.70710678118654752); }
fn gelu_grad_(x: f32) -> f32 {
  return 0.5 * erfc_(-x * 0.70710678118654752) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
fn sigmoid_(x: f32) -> f32 {
  // stable on both sides
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn silu_(x: f32) -> f32 { return x * sigmoid_(x); }
fn silu_grad_(x: f32) -> f32 { let s = sigmoid_(x); return s * (1.0 + x * (1.0 - s)); }

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.n) { return; }
//#if CONTIG
  let ia = P.offA + i;
  let io = P.offO + i;
  let ib = P.offB + i;
  let ic = P.offC + i;
//#else
  var rem = i;
  var ia = P.offA;
  var ib = P.offB;
  var ic = P.offC;
  var io = P.offO;
  for (var d = ${RANK}i - 1; d >= 0; d--) {
    let du = u32(d);
    let size = dim(P.shape, du);
//#if FASTDIV
    var q = u32(f32(rem) * dimf(P.inv, du)); // off by at most one
    let r = i32(rem) - i32(q * size);
    q = select(select(q, q + 1u, r >= i32(size)), q - 1u, r < 0i);
//#else
    let q = rem / size;
//#endif
    let k = rem - q * size;
    rem = q;
    ia += k * dim(P.sa, du);
    ib += k * dim(P.sb, du);
    ic += k * dim(P.sc, du);
    io += k * dim(P.so, du);
  }
//#endif
  let a = ${CT}(A[ia]);
//#if IN2
  let b = ${CT}(B[ib]);
//#endif
//#if IN3
  let c = ${CT}(C[ic]);
//#endif
//#if READ_OUT
  let o = ${CT}(O[io]);
//#endif
  O[io] = ${TO}(${EXPR}); // io = offO + i for a dense output (it may be a view into a bigger tensor)
}
