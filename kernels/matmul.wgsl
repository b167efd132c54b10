// C[b] = act(opA(A[b]) · opB(B[b]) + bias), accumulated in f32. Driven by src/tensor/ops/matmul.ts.
//
// Design, tuned for lavapipe (figures: bench/matmul-explore.ts, 1024³, per CPU-second):
//   · llvmpipe runs 8 invocations as one 256-bit SIMD vector (a subgroup of 8). Arithmetic is
//     cheap, but every storage-buffer load is executed lane by lane with bounds checks: a vec4
//     load costs about as much as 50–100 vector FMAs, whatever the address pattern (L1-resident
//     data was no faster; uniform addresses no cheaper). Workgroup memory + barriers (coroutines)
//     was slower; more than 64 accumulators per lane spill badly. So loads per FMA rule.
//   · A subgroup owns a tile of TM rows × 32 columns; lane l owns columns 4l … 4l+3 (one vec4 of
//     accumulators per row: 64 values at TM = 16).
//   · A: per block of 4 k, each lane loads one vec4 for every 8 rows; the TM·4 scalars reach all
//     lanes by subgroupBroadcast/Shuffle with constant lanes (an extract and a splat).
//   · B: each lane loads its own 4 columns for each k as one vec4, right before the FMAs that use
//     it (fewer values live across llvmpipe's per-lane load code); for B_COLV the 4 columns' vec4s
//     along K are loaded per block and transposed in registers.
//   Per block of 4 k: TM/8 + 4 vec4 loads, 4·TM broadcasts, 16·TM vector FMAs. At TM = 16 about
//   40 % of the time goes to B's loads, 20 % to A's, 20 % to broadcasts and accumulator spills,
//   20 % to the FMAs themselves.
//   The FMA core is written as calls with literal arguments, not loops: lavapipe lowers shuffles
//   before it unrolls, so a loop index as a lane costs 2–3× (all functions are inlined, so lanes
//   and accumulator indices are constants).
//   Without 8-lane subgroups (NOSG: other adapters, checked by the op) every lane loads the A
//   values it needs itself; same tiling otherwise.
//
// Operand access, chosen by the op from the strides (A is read as [M, K], B as [K, N]):
//   A_ROWV   rows contiguous along K, read as vec4 along K   (row stride, offset ≡ 0 mod 4)
//   A_COLV   contiguous along M ([K, M] stored: a transposed view), vec4 along M (k stride, offset ≡ 0 mod 4)
//   A_SCALAR any strides, scalar loads (4× the load instructions: the slow path)
//   B_ROWV   contiguous along N ([K, N] stored), vec4 along N
//   B_COLV   contiguous along K ([N, K] stored: nn weights with transB), vec4 along K
//   B_SCALAR any strides, scalar loads
//   In the vec4 modes offsets and strides are passed in vec4 units. Rows/columns past the edge are
//   clamped for loads (valid memory, results never stored); in the last partial block of k
//   (K % 4 != 0) both operands are zeroed past K (that memory may hold anything, even NaN).
//
// Bindings: 0 uniform P; 1 A (array<vec4<TA>>, or array<TA> when A_SCALAR); 2 B (likewise);
//           3 C (array<vec4<TC>> when CVEC, else array<TC>): element (b, m, n) at
//             P.offC + (b·M + m)·P.ldc + n — dense [batch, M, N] when offC = 0 and ldc = N, or a block of
//             columns of a wider output (a weight split into row blocks writes its slice; see linear);
//           4 bias (array<TBIAS>, when BIAS); ZB: Z, the pre-activation laid out like C (SAVE_PRE).
// Defines: TA TB TC TBIAS storage types (32- or 16-bit float); the access modes above; TM (8|16);
//          WGS (subgroups per workgroup, side by side along N); CVEC (N % 4 == 0: vec4 stores);
//          BIAS; ACT_NONE|ACT_GELU (erf form)|ACT_SILU|ACT_RELU; SAVE_PRE; ZB; NOSG;
//          A_LANEK (A_COLV with shuffles: k varies across lanes, not components).
// Grid: x = blocks of 32·WGS columns, y = blocks of TM rows (from P.mBase), z = batch (from P.zBase).
//#if !NOSG
enable subgroups;
//#endif

struct Params {
  M: u32, N: u32, K: u32, nbd: u32,
  offA: u32, sAm: u32, sAk: u32, offB: u32,
  sBk: u32, sBn: u32, offBias: u32, mBase: u32,
  zBase: u32, offC: u32, ldc: u32, pad2: u32,
  bshape: vec4<u32>, // collapsed batch dims (≤ 4), innermost last
  bsA: vec4<u32>,    // their strides in A (0 where broadcast)
  bsB: vec4<u32>,    // their strides in B
};

@group(0) @binding(0) var<uniform> P: Params;
//#if A_SCALAR
@group(0) @binding(1) var<storage, read> A: array<${TA}>;
//#else
@group(0) @binding(1) var<storage, read> A: array<vec4<${TA}>>;
//#endif
//#if B_SCALAR
@group(0) @binding(2) var<storage, read> B: array<${TB}>;
//#else
@group(0) @binding(2) var<storage, read> B: array<vec4<${TB}>>;
//#endif
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

const TM = ${TM}u;
//#if NOSG
const RA = TM;      // every lane loads all TM rows (4 k each) itself
//#else
const RA = TM / 8u; // A vec4 loads per lane per block of 4 k
//#endif

var<private> acc: array<vec4<f32>, TM>;
var<private> lane: u32;
var<private> m0: u32;
var<private> nq: u32;               // this lane's first column / 4
var<private> offA: u32;             // batch-adjusted operand offsets
var<private> offB: u32;
var<private> aBase: array<u32, RA>; // ROWV/SCALAR: offset of the row each load r reads; COLV: its vec4 index along M
var<private> bBase: array<u32, 4>;  // ROWV: [0] = vec4 column index; COLV/SCALAR: offsets of the 4 columns
var<private> av: array<vec4<f32>, RA>;

// A values of block kq (k = 4kq … 4kq+3) for load r into av[r]; `tail` zeroes k ≥ K.
fn loadA1(r: u32, kq: u32, tail: bool) {
  let k0 = kq * 4u;
  let kLast = P.K - 1u;
//#if A_ROWV
  var v = vec4<f32>(A[aBase[r] + kq]);
//#endif
//#if A_COLV
//#if NOSG
  // r is a row: pick its component out of the vec4 along M, for each of the 4 k
  let c = min(m0 + r, P.M - 1u) % 4u;
  var v = vec4<f32>(f32(A[offA + min(k0, kLast) * P.sAk + aBase[r]][c]), f32(A[offA + min(k0 + 1u, kLast) * P.sAk + aBase[r]][c]),
                    f32(A[offA + min(k0 + 2u, kLast) * P.sAk + aBase[r]][c]), f32(A[offA + min(k0 + 3u, kLast) * P.sAk + aBase[r]][c]));
//#else
  // lane l reads k = k0 + (l & 3) of rows m0 + 8r + 4(l >> 2) … +3
  var v = vec4<f32>(A[offA + min(k0 + (lane & 3u), kLast) * P.sAk + aBase[r]]);
//#endif
//#endif
//#if A_SCALAR
  var v = vec4<f32>(f32(A[aBase[r] + min(k0, kLast) * P.sAk]), f32(A[aBase[r] + min(k0 + 1u, kLast) * P.sAk]),
                    f32(A[aBase[r] + min(k0 + 2u, kLast) * P.sAk]), f32(A[aBase[r] + min(k0 + 3u, kLast) * P.sAk]));
//#endif
  if (tail) {
//#if A_LANEK
    v = select(vec4<f32>(0.0), v, k0 + (lane & 3u) < P.K);
//#else
    v = select(vec4<f32>(0.0), v, vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(P.K));
//#endif
  }
  av[r] = v;
}

fn loadA(kq: u32, tail: bool) {
//#if NOSG
  for (var r = 0u; r < RA; r++) { loadA1(r, kq, tail); }
//#else
  loadA1(0u, kq, tail);
//#if TM16
  loadA1(1u, kq, tail);
//#endif
//#endif
}

// ---- the FMA core ----
// Written as calls with literal arguments rather than loops: lavapipe does not unroll the loops
// before lowering, so a loop index left in a shuffle lane or an accumulator index costs 2–3×.
// All functions are inlined, so every lane and index below ends up a constant.

// acc[8r + c] += A[m0 + 8r + c][k] · b for c = 0…7, where lane c holds A[m0 + 8r + c][k] in s.
fn rows8(r: u32, s: f32, b: vec4<f32>) {
  let i = 8u * r;
//#if NOSG
  // no shuffles: s is unused, each lane holds every row in av
  acc[i] = fma(vec4<f32>(av[i][kkCur]), b, acc[i]);
  acc[i + 1u] = fma(vec4<f32>(av[i + 1u][kkCur]), b, acc[i + 1u]);
  acc[i + 2u] = fma(vec4<f32>(av[i + 2u][kkCur]), b, acc[i + 2u]);
  acc[i + 3u] = fma(vec4<f32>(av[i + 3u][kkCur]), b, acc[i + 3u]);
  acc[i + 4u] = fma(vec4<f32>(av[i + 4u][kkCur]), b, acc[i + 4u]);
  acc[i + 5u] = fma(vec4<f32>(av[i + 5u][kkCur]), b, acc[i + 5u]);
  acc[i + 6u] = fma(vec4<f32>(av[i + 6u][kkCur]), b, acc[i + 6u]);
  acc[i + 7u] = fma(vec4<f32>(av[i + 7u][kkCur]), b, acc[i + 7u]);
//#else
  acc[i] = fma(vec4<f32>(subgroupBroadcast(s, 0u)), b, acc[i]);
  acc[i + 1u] = fma(vec4<f32>(subgroupBroadcast(s, 1u)), b, acc[i + 1u]);
  acc[i + 2u] = fma(vec4<f32>(subgroupBroadcast(s, 2u)), b, acc[i + 2u]);
  acc[i + 3u] = fma(vec4<f32>(subgroupBroadcast(s, 3u)), b, acc[i + 3u]);
  acc[i + 4u] = fma(vec4<f32>(subgroupBroadcast(s, 4u)), b, acc[i + 4u]);
  acc[i + 5u] = fma(vec4<f32>(subgroupBroadcast(s, 5u)), b, acc[i + 5u]);
  acc[i + 6u] = fma(vec4<f32>(subgroupBroadcast(s, 6u)), b, acc[i + 6u]);
  acc[i + 7u] = fma(vec4<f32>(subgroupBroadcast(s, 7u)), b, acc[i + 7u]);
//#endif
}

//#if A_LANEK
// A_COLV: row 8r + 4h + c sits in component c of lane kk + 4h's load r.
fn rows8col(r: u32, kk: u32, b: vec4<f32>) {
  let i = 8u * r;
  let v = av[r];
  acc[i] = fma(vec4<f32>(subgroupShuffle(v.x, kk)), b, acc[i]);
  acc[i + 1u] = fma(vec4<f32>(subgroupShuffle(v.y, kk)), b, acc[i + 1u]);
  acc[i + 2u] = fma(vec4<f32>(subgroupShuffle(v.z, kk)), b, acc[i + 2u]);
  acc[i + 3u] = fma(vec4<f32>(subgroupShuffle(v.w, kk)), b, acc[i + 3u]);
  acc[i + 4u] = fma(vec4<f32>(subgroupShuffle(v.x, kk + 4u)), b, acc[i + 4u]);
  acc[i + 5u] = fma(vec4<f32>(subgroupShuffle(v.y, kk + 4u)), b, acc[i + 5u]);
  acc[i + 6u] = fma(vec4<f32>(subgroupShuffle(v.z, kk + 4u)), b, acc[i + 6u]);
  acc[i + 7u] = fma(vec4<f32>(subgroupShuffle(v.w, kk + 4u)), b, acc[i + 7u]);
}
//#endif

var<private> kkCur: u32;
var<private> bt: array<vec4<f32>, 4>; // B_COLV: the block's B, transposed to one vec4 per k

// One k of block kq: load B's 4 columns for it, then TM rows of FMAs.
fn kStep(kq: u32, kk: u32, tail: bool) {
  let k0 = kq * 4u;
  let k = min(k0 + kk, P.K - 1u);
  kkCur = kk;
//#if B_ROWV
  var b = vec4<f32>(B[offB + k * P.sBk + bBase[0]]);
//#endif
//#if B_COLV
  var b = bt[kk];
//#endif
//#if B_SCALAR
  var b = vec4<f32>(f32(B[bBase[0] + k * P.sBk]), f32(B[bBase[1] + k * P.sBk]),
                    f32(B[bBase[2] + k * P.sBk]), f32(B[bBase[3] + k * P.sBk]));
//#endif
  if (tail) { b = select(vec4<f32>(0.0), b, k0 + kk < P.K); }
//#if NOSG
  rows8(0u, 0.0, b);
//#if TM16
  rows8(1u, 0.0, b);
//#endif
//#else
//#if A_LANEK
  rows8col(0u, kk, b);
//#if TM16
  rows8col(1u, kk, b);
//#endif
//#else
  rows8(0u, av[0][kk], b);
//#if TM16
  rows8(1u, av[1][kk], b);
//#endif
//#endif
//#endif
}

fn fmaBlock(kq: u32, tail: bool) {
//#if B_COLV
  // one vec4 along K per column, transposed into one vec4 over the columns per k
  let w0 = vec4<f32>(B[bBase[0] + kq]);
  let w1 = vec4<f32>(B[bBase[1] + kq]);
  let w2 = vec4<f32>(B[bBase[2] + kq]);
  let w3 = vec4<f32>(B[bBase[3] + kq]);
  bt[0] = vec4<f32>(w0.x, w1.x, w2.x, w3.x);
  bt[1] = vec4<f32>(w0.y, w1.y, w2.y, w3.y);
  bt[2] = vec4<f32>(w0.z, w1.z, w2.z, w3.z);
  bt[3] = vec4<f32>(w0.w, w1.w, w2.w, w3.w);
//#endif
  kStep(kq, 0u, tail);
  kStep(kq, 1u, tail);
  kStep(kq, 2u, tail);
  kStep(kq, 3u, tail);
}

//#include "matmul_epilogue.wgsl"

@compute @workgroup_size(${WGS} * 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  lane = li % 8u;
  m0 = P.mBase + wg.y * TM;
  nq = (wg.x * ${WGS}u + li / 8u) * 8u + lane;

  // batch offsets (uniform per workgroup)
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

  let mLast = P.M - 1u;
  let nLast = P.N - 1u;
  for (var r = 0u; r < RA; r++) {
//#if NOSG
    let row = min(m0 + r, mLast);
//#else
    let row = min(m0 + 8u * r + lane, mLast);
//#endif
//#if A_COLV
//#if NOSG
    aBase[r] = row / 4u;
//#else
    aBase[r] = min(m0 + 8u * r + 4u * (lane >> 2u), mLast) / 4u;
//#endif
//#else
    aBase[r] = offA + row * P.sAm;
//#endif
  }
//#if B_ROWV
  bBase[0] = min(nq, nLast / 4u);
//#else
  for (var j = 0u; j < 4u; j++) { bBase[j] = offB + min(nq * 4u + j, nLast) * P.sBn; }
//#endif

  for (var i = 0u; i < TM; i++) { acc[i] = vec4<f32>(0.0); }
  // one loop over blocks of 4 k; only the last may be partial (one copy of the unrolled body
  // keeps compile time down)
  let kFull = P.K / 4u;
  let nBlocks = (P.K + 3u) / 4u;
  for (var kq = 0u; kq < nBlocks; kq++) {
    let tail = kq == kFull;
    loadA(kq, tail);
    fmaBlock(kq, tail);
  }

  // ---- epilogue: bias, activation, stores ----
  let n0 = nq * 4u;
  if (n0 >= P.N) { return; }
  let bias = bias4(n0);
  let cBase = P.offC + zi * P.M * P.ldc;
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m < P.M) { store4(acc[i], bias, cBase + m * P.ldc + n0, n0); }
  }
}
