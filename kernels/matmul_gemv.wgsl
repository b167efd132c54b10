// C[b] = act(opA(A[b]) · opB(B[b]) + bias) for M ≤ 4 rows (decode steps, lm_head): the GPU profile's
// matrix-vector path (src/tensor/ops/matmul.ts picks it). Such a product is bound by reading B once,
// so the kernel is arranged for coalesced, vectorised B loads and no wasted FMAs (MR = M rows exactly).
//
// Two layouts:
//   KFAST (B contiguous along K: nn weights [out, in] with transB): a workgroup of 256 owns GC = 4
//     columns; every invocation walks K in vec4 steps 256 apart (neighbours read neighbouring vec4s
//     of each weight row) keeping MR·GC vec4 partial sums, then the workgroup reduces them:
//     subgroupAdd, one slot per subgroup (taken with an atomic: no assumption about how invocations
//     map to subgroups), and MR·GC invocations add the slots (SG); without subgroups, a tree in
//     workgroup memory, one vec4 (the GC columns) per invocation and row.
//   otherwise (B contiguous along N, or any strides): a workgroup of 256 owns 64 columns, one per
//     invocation in each of 4 slices of K (neighbours read neighbouring columns); the 4 slices are
//     added through workgroup memory.
// A_VEC / B_VEC (KFAST only): A's rows / B's columns are read as vec4 along K (offsets and strides
// in vec4 units; the last partial vec4 is zeroed past K); else scalar reads (element units).
//
// Bindings: 0 uniform P (the Params block of kernels/matmul.wgsl); 1 A; 2 B; 3 C (array<TC>):
//           element (b, m, n) at P.offC + (b·M + m)·P.ldc + n; 4 bias (BIAS); ZB: Z (SAVE_PRE).
// Defines: TA TB TC TBIAS; MR (rows, 1–4); KFAST; A_VEC; B_VEC; SG (subgroups); BIAS;
//          ACT_NONE|ACT_GELU|ACT_SILU|ACT_RELU; SAVE_PRE; ZB.
// Workgroup: 256. Grid: column group x + y·P.gridX (x ≤ 65535), z = batch (from P.zBase).
//#if SG
enable subgroups;
//#endif

struct Params {
  M: u32, N: u32, K: u32, nbd: u32,
  offA: u32, sAm: u32, sAk: u32, offB: u32,
  sBk: u32, sBn: u32, offBias: u32, mBase: u32,
  zBase: u32, offC: u32, ldc: u32, gridX: u32,
  bshape: vec4<u32>,
  bsA: vec4<u32>,
  bsB: vec4<u32>,
};

@group(0) @binding(0) var<uniform> P: Params;
//#if A_VEC
@group(0) @binding(1) var<storage, read> A: array<vec4<${TA}>>;
//#else
@group(0) @binding(1) var<storage, read> A: array<${TA}>;
//#endif
//#if B_VEC
@group(0) @binding(2) var<storage, read> B: array<vec4<${TB}>>;
//#else
@group(0) @binding(2) var<storage, read> B: array<${TB}>;
//#endif
@group(0) @binding(3) var<storage, read_write> C: array<${TC}>;
//#if BIAS
@group(0) @binding(4) var<storage, read> Bias: array<${TBIAS}>;
//#endif
//#if SAVE_PRE
@group(0) @binding(${ZB}) var<storage, read_write> Z: array<${TC}>;
//#endif

const MR = ${MR}u;
//#if KFAST
const GC = 4u;
//#else
const GC = 64u;
//#endif

var<private> offA: u32;
var<private> offB: u32;

//#if KFAST
var<private> acc: array<vec4<f32>, MR * GC>; // acc[m·GC + c]: partial sums of row m, column c
//#if SG
var<workgroup> slots: atomic<u32>;
var<workgroup> part: array<f32, 64u * MR * GC>; // [subgroup slot][m·GC + c]; subgroups ≥ 4 lanes
//#else
var<workgroup> red: array<vec4<f32>, 256>;
//#endif
//#else
var<workgroup> part: array<f32, 256u * MR>; // [slice·64 + column][m]
//#endif
var<workgroup> sums: array<f32, MR * GC>;

//#if KFAST
// Row m of A (k = 4kq … 4kq+3), zeroed past K.
fn loadA4(m: u32, kq: u32) -> vec4<f32> {
  let k0 = kq * 4u;
//#if A_VEC
  var v = vec4<f32>(A[offA + m * P.sAm + kq]);
//#else
  let kl = P.K - 1u;
  let r = offA + m * P.sAm;
  var v = vec4<f32>(f32(A[r + min(k0, kl) * P.sAk]), f32(A[r + min(k0 + 1u, kl) * P.sAk]),
                    f32(A[r + min(k0 + 2u, kl) * P.sAk]), f32(A[r + min(k0 + 3u, kl) * P.sAk]));
//#endif
  return select(vec4<f32>(0.0), v, vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(P.K));
}
// Column n of B, likewise.
fn loadB4(n: u32, kq: u32) -> vec4<f32> {
  let k0 = kq * 4u;
  let nc = min(n, P.N - 1u);
//#if B_VEC
  var v = vec4<f32>(B[offB + nc * P.sBn + kq]);
//#else
  let kl = P.K - 1u;
  let c = offB + nc * P.sBn;
  var v = vec4<f32>(f32(B[c + min(k0, kl) * P.sBk]), f32(B[c + min(k0 + 1u, kl) * P.sBk]),
                    f32(B[c + min(k0 + 2u, kl) * P.sBk]), f32(B[c + min(k0 + 3u, kl) * P.sBk]));
//#endif
  return select(vec4<f32>(0.0), v, vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(P.K));
}
//#endif

//#include "matmul_epilogue.wgsl"

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32
//#if SG
  , @builtin(subgroup_invocation_id) sgLane: u32
//#endif
) {
  let g = wg.x + wg.y * P.gridX; // column group
  let nBase = g * GC;
  let zi = P.zBase + wg.z;
  var z = zi;
  offA = P.offA;
  offB = P.offB;
  for (var d = i32(P.nbd) - 1; d >= 0; d--) {
    let n = P.bshape[d];
    let i = z % n;
    z = z / n;
    offA += i * P.bsA[d];
    offB += i * P.bsB[d];
  }

//#if KFAST
  for (var i = 0u; i < MR * GC; i++) { acc[i] = vec4<f32>(0.0); }
  let nKq = (P.K + 3u) / 4u;
  for (var kq = li; kq < nKq; kq += 256u) {
    var a: array<vec4<f32>, MR>;
    for (var m = 0u; m < MR; m++) { a[m] = loadA4(m, kq); }
    for (var c = 0u; c < GC; c++) {
      let b = loadB4(nBase + c, kq);
      for (var m = 0u; m < MR; m++) { acc[m * GC + c] = fma(a[m], b, acc[m * GC + c]); }
    }
  }
//#if SG
  var s: array<f32, MR * GC>;
  for (var i = 0u; i < MR * GC; i++) { s[i] = subgroupAdd(dot(acc[i], vec4<f32>(1.0))); }
  if (sgLane == 0u) {
    let slot = atomicAdd(&slots, 1u);
    for (var i = 0u; i < MR * GC; i++) { part[slot * MR * GC + i] = s[i]; }
  }
  workgroupBarrier();
  let nSlots = atomicLoad(&slots);
  if (li < MR * GC) {
    var t = 0.0;
    for (var j = 0u; j < nSlots; j++) { t += part[j * MR * GC + li]; }
    sums[li] = t;
  }
//#else
  for (var m = 0u; m < MR; m++) {
    red[li] = vec4<f32>(dot(acc[m * GC], vec4<f32>(1.0)), dot(acc[m * GC + 1u], vec4<f32>(1.0)),
                        dot(acc[m * GC + 2u], vec4<f32>(1.0)), dot(acc[m * GC + 3u], vec4<f32>(1.0)));
    workgroupBarrier();
    for (var h = 128u; h > 0u; h = h / 2u) {
      if (li < h) { red[li] += red[li + h]; }
      workgroupBarrier();
    }
    if (li < GC) { sums[m * GC + li] = red[0][li]; }
    workgroupBarrier();
  }
//#endif
//#else
  // one column per invocation and slice of K
  let col = li % 64u;
  let slice = li / 64u;
  let n = min(nBase + col, P.N - 1u);
  var accs: array<f32, MR>;
  for (var k = slice; k < P.K; k += 4u) {
    let b = f32(B[offB + k * P.sBk + n * P.sBn]);
    for (var m = 0u; m < MR; m++) { accs[m] = fma(f32(A[offA + m * P.sAm + k * P.sAk]), b, accs[m]); }
  }
  for (var m = 0u; m < MR; m++) { part[li * MR + m] = accs[m]; }
  workgroupBarrier();
  if (li < 64u) {
    for (var m = 0u; m < MR; m++) {
      // slices added in a fixed order
      sums[m * GC + li] = ((part[li * MR + m] + part[(li + 64u) * MR + m]) + part[(li + 128u) * MR + m]) + part[(li + 192u) * MR + m];
    }
  }
//#endif
  workgroupBarrier();

  // ---- epilogue: bias, activation, stores (one invocation per output) ----
  if (li < MR * GC) {
    let m = li / GC;
    let c = li % GC;
    let nn = nBase + c;
    if (nn < P.N) {
      store1(sums[m * GC + c], P.offC + (zi * P.M + m) * P.ldc + nn, nn);
    }
  }
}
