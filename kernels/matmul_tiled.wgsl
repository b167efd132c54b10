// C[b] = act(opA(A[b]) · opB(B[b]) + bias), accumulated in f32: the GPU profile's matmul for M > 4
// (src/tensor/ops/matmul.ts picks it; kernels/matmul.wgsl stays the CPU profile's).
//
// Design (for hardware GPUs: many warps per SM, fast workgroup memory, coalesced loads):
//   · A workgroup of 256 invocations (16 × 16) owns a BM × BM output tile (BM = 64 or 128); each
//     invocation a TR × TR register micro-tile (TR = BM / 16: 4×4 or 8×8 accumulators) whose rows
//     and columns are vec4 groups interleaved 16 apart (row vec4 ty + 16q, column vec4 tx + 16q), so
//     neighbouring invocations read neighbouring vec4s of workgroup memory and store neighbouring
//     vec4s of C (no bank conflicts, coalesced stores).
//   · k advances in tiles of BK (16 at BM = 64, 8 at BM = 128: 1024 elements of each operand per
//     tile, 4 per invocation). Tiles are double-buffered in workgroup memory (2 × 16 KiB… exactly
//     the 16 KiB WebGPU guarantees, all f32): while the FMAs run on tile t, the global loads of
//     tile t+1 are already in flight into registers; one barrier per tile.
//   · Global loads are scalar with any strides (every operand layout, transposed views, batch
//     broadcast), arranged so that consecutive invocations read consecutive addresses along the
//     operand's contiguous dimension (A_KFAST / B_NFAST say which dimension that is). Rows, columns
//     and k past the edge load 0 (clamped addresses, so never out of bounds).
//   · Half-precision operands are converted on load; workgroup memory and accumulators are f32
//     (no 16-bit type may be named in this file unless used: the registry enables the extension on it).
//
// Bindings: 0 uniform P (the same Params block as kernels/matmul.wgsl, offsets and strides in
//           elements); 1 A (array<TA>); 2 B (array<TB>); 3 C (array<vec4<TC>> when CVEC, else
//           array<TC>): element (b, m, n) at P.offC + (b·M + m)·P.ldc + n; 4 bias (array<TBIAS>, BIAS);
//           ZB: Z, the pre-activation laid out like C (SAVE_PRE).
// Defines: TA TB TC TBIAS; BM (64|128); BK; A_KFAST (A's k stride is 1, else its m stride);
//          B_NFAST (B's n stride is 1, else its k stride); CVEC (N, ldc, offC ≡ 0 mod 4); BIAS;
//          ACT_NONE|ACT_GELU|ACT_SILU|ACT_RELU; SAVE_PRE; ZB.
// Workgroup: 256 invocations. Grid: x = N / BM column tiles, y = M / BM row tiles (from P.mBase),
//           z = batch (from P.zBase).

struct Params {
  M: u32, N: u32, K: u32, nbd: u32,
  offA: u32, sAm: u32, sAk: u32, offB: u32,
  sBk: u32, sBn: u32, offBias: u32, mBase: u32,
  zBase: u32, offC: u32, ldc: u32, pad2: u32,
  bshape: vec4<u32>,
  bsA: vec4<u32>,
  bsB: vec4<u32>,
};

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<${TA}>;
@group(0) @binding(2) var<storage, read> B: array<${TB}>;
//#if CVEC
@group(0) @binding(3) var<storage, read_write> C: array<vec4<${TC}>>;
//#else
@group(0) @binding(3) var<storage, read_write> C: array<${TC}>;
//#endif
//#if BIAS
@group(0) @binding(4) var<storage, read> Bias: array<${TBIAS}>;
//#endif
//#if SAVE_PRE
//#if CVEC
@group(0) @binding(${ZB}) var<storage, read_write> Z: array<vec4<${TC}>>;
//#else
@group(0) @binding(${ZB}) var<storage, read_write> Z: array<${TC}>;
//#endif
//#endif

const BM = ${BM}u;
const BK = ${BK}u;
const TR = BM / 16u;        // micro-tile rows = columns
const QV = TR / 4u;         // vec4 groups per micro-tile side
const LPT = BM * BK / 256u; // elements of each operand one invocation loads per k tile
const TILE4 = BK * BM / 4u; // vec4s of one buffered operand tile

// [buffer][k][m / 4] and [buffer][k][n / 4]
var<workgroup> As: array<vec4<f32>, 2u * TILE4>;
var<workgroup> Bs: array<vec4<f32>, 2u * TILE4>;

var<private> acc: array<vec4<f32>, TR * QV>; // row i of the micro-tile, column group q: acc[i·QV + q]
var<private> ra: array<f32, LPT>;
var<private> rb: array<f32, LPT>;
var<private> offA: u32;
var<private> offB: u32;
var<private> m0: u32;
var<private> n0: u32;

// A tile element e → (m, k) inside the tile, consecutive e along A's contiguous dimension.
fn aPos(e: u32) -> vec2<u32> {
//#if A_KFAST
  return vec2<u32>(e / BK, e % BK);
//#else
  return vec2<u32>(e % BM, e / BM);
//#endif
}
fn bPos(e: u32) -> vec2<u32> { // (k, n)
//#if B_NFAST
  return vec2<u32>(e / BM, e % BM);
//#else
  return vec2<u32>(e % BK, e / BK);
//#endif
}

fn loadTile(t: u32, li: u32) {
  let k0 = t * BK;
  for (var i = 0u; i < LPT; i++) {
    let e = li + 256u * i;
    let pa = aPos(e);
    let m = m0 + pa.x;
    let ka = k0 + pa.y;
    let va = f32(A[offA + min(m, P.M - 1u) * P.sAm + min(ka, P.K - 1u) * P.sAk]);
    ra[i] = select(0.0, va, m < P.M && ka < P.K);
    let pb = bPos(e);
    let kb = k0 + pb.x;
    let n = n0 + pb.y;
    let vb = f32(B[offB + min(kb, P.K - 1u) * P.sBk + min(n, P.N - 1u) * P.sBn]);
    rb[i] = select(0.0, vb, n < P.N && kb < P.K);
  }
}

fn storeTile(buf: u32, li: u32) {
  for (var i = 0u; i < LPT; i++) {
    let e = li + 256u * i;
    let pa = aPos(e);
    As[buf * TILE4 + pa.y * (BM / 4u) + pa.x / 4u][pa.x % 4u] = ra[i];
    let pb = bPos(e);
    Bs[buf * TILE4 + pb.x * (BM / 4u) + pb.y / 4u][pb.y % 4u] = rb[i];
  }
}

fn computeTile(buf: u32, tx: u32, ty: u32) {
  for (var k = 0u; k < BK; k++) {
    let base = buf * TILE4 + k * (BM / 4u);
    var a: array<vec4<f32>, QV>;
    var b: array<vec4<f32>, QV>;
    for (var q = 0u; q < QV; q++) {
      a[q] = As[base + ty + 16u * q];
      b[q] = Bs[base + tx + 16u * q];
    }
    for (var qa = 0u; qa < QV; qa++) {
      for (var r = 0u; r < 4u; r++) {
        let av = vec4<f32>(a[qa][r]);
        let i = (qa * 4u + r) * QV;
        for (var qb = 0u; qb < QV; qb++) {
          acc[i + qb] = fma(av, b[qb], acc[i + qb]);
        }
      }
    }
  }
}

//#include "matmul_epilogue.wgsl"

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let tx = li % 16u;
  let ty = li / 16u;
  m0 = P.mBase + wg.y * BM;
  n0 = wg.x * BM;

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

  for (var i = 0u; i < TR * QV; i++) { acc[i] = vec4<f32>(0.0); }
  let nT = (P.K + BK - 1u) / BK;
  loadTile(0u, li);
  storeTile(0u, li);
  workgroupBarrier();
  for (var t = 0u; t < nT; t++) {
    let next = t + 1u < nT;
    // the next tile's loads go out before this tile's FMAs; its buffer was last read in tile t-1,
    // which every invocation finished before the barrier that ended it
    if (next) { loadTile(t + 1u, li); }
    computeTile(t % 2u, tx, ty);
    if (next) { storeTile((t + 1u) % 2u, li); }
    workgroupBarrier();
  }

  // ---- epilogue: bias, activation, stores ----
  let cBase = P.offC + zi * P.M * P.ldc;
  for (var qb = 0u; qb < QV; qb++) {
    let n = n0 + (tx + 16u * qb) * 4u;
    if (n >= P.N) { continue; }
    let bias = bias4(n);
    for (var qa = 0u; qa < QV; qa++) {
      for (var r = 0u; r < 4u; r++) {
        let m = m0 + (ty + 16u * qa) * 4u + r;
        if (m >= P.M) { continue; }
        store4(acc[(qa * 4u + r) * QV + qb], bias, cBase + m * P.ldc + n, n);
      }
    }
  }
}
