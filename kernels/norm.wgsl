// LayerNorm and RMSNorm over the last axis of a dense [rows, n] view, and their gradients.
//   LN:  y = (x − μ)·r·w + b,   r = 1/sqrt(mean((x − μ)²) + eps)   (biased variance, like torch)
//   RMS: y = x·r·w,             r = 1/sqrt(mean(x²) + eps)          (Qwen2; computed in f32)
// Exactly one mode per module (their bindings differ):
//   FWD (entry main):    0 P; 1 X; 2 W; [3 B when BIAS]; ${O_BINDING} O (dense);
//                        [${S_BINDING} S when STATS: f32 (μ, r) per row, saved for the backward]
//   GX  (entry grad_x):  0 P; 1 X; 2 W; 3 G; 4 S; 5 DX (dense)
//                        LN: dx = r·(gw − mean(gw) − x̂·mean(gw·x̂)); RMS: r·(gw − x̂·mean(gw·x̂))
//   GW  (entry grad_w):  0 P; 1 X; 2 G; 3 S; 4 DW; [5 DB when BIAS] — f32 partial sums over rows:
//                        DW[chunk, c] = Σ g·x̂, DB[chunk, c] = Σ g over the chunk's rows
// Defines: TX TW TB TG TO storage types; RMS; BIAS; STATS; FWD | GX | GW.
// P.tpr: threads per row (a power of two ≤ 64), a run-time value so one pipeline serves all widths.
// Workgroup: 64 threads. FWD/GX: 64/tpr rows, lanes stride over a row, then a shared-memory tree;
//            the LayerNorm variance is combined from per-lane (count, mean, M2) (Chan et al.), so a
//            large mean does not cancel. GW: one column per thread, grid (columns/64, chunks).
struct Params {
  rows: u32,
  n: u32,
  eps: f32,
  offX: u32,
  offW: u32,
  offB: u32,
  offG: u32,
  chunkRows: u32,
  tpr: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
};

const WG = 64u;

@group(0) @binding(0) var<uniform> P: Params;

//#if !GW
var<workgroup> sa: array<f32, WG>;
var<workgroup> sb: array<f32, WG>;
//#if !RMS
var<workgroup> sc: array<f32, WG>;
//#endif
//#endif

//#if FWD
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read> W: array<${TW}>;
//#if BIAS
@group(0) @binding(3) var<storage, read> B: array<${TB}>;
//#endif
@group(0) @binding(${O_BINDING}) var<storage, read_write> O: array<${TO}>;
//#if STATS
@group(0) @binding(${S_BINDING}) var<storage, read_write> S: array<f32>;
//#endif

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let tpr = P.tpr;
  let row = (wg.x + wg.y * nwg.x) * (WG / tpr) + li / tpr;
  let lane = li % tpr;
  let live = row < P.rows;
  var len = 0u;
  if (live) { len = P.n; }
  let base = P.offX + row * P.n;
//#if RMS
  var ss = 0.0;
  for (var j = lane; j < len; j += tpr) { let v = f32(X[base + j]); ss += v * v; }
  sa[li] = ss;
  workgroupBarrier();
  for (var st = tpr / 2u; st > 0u; st = st / 2u) {
    if (lane < st) { sa[li] = sa[li] + sa[li + st]; }
    workgroupBarrier();
  }
  ss = sa[li - lane];
  let mu = 0.0;
  let r = inverseSqrt(ss / f32(P.n) + P.eps);
//#else
  // this lane's count, mean and Σ(x − mean)², two passes over its own elements
  var cnt = 0.0;
  var sum = 0.0;
  for (var j = lane; j < len; j += tpr) { sum += f32(X[base + j]); cnt += 1.0; }
  var mean = select(0.0, sum / cnt, cnt > 0.0);
  var m2 = 0.0;
  for (var j = lane; j < len; j += tpr) { let d = f32(X[base + j]) - mean; m2 += d * d; }
  sa[li] = cnt;
  sb[li] = mean;
  sc[li] = m2;
  workgroupBarrier();
  for (var st = tpr / 2u; st > 0u; st = st / 2u) {
    if (lane < st) {
      let na = sa[li];
      let nb = sa[li + st];
      let nn = na + nb;
      if (nb > 0.0) {
        let d = sb[li + st] - sb[li];
        sb[li] = sb[li] + d * (nb / nn);
        sc[li] = sc[li] + sc[li + st] + d * d * (na * nb / nn);
        sa[li] = nn;
      }
    }
    workgroupBarrier();
  }
  mean = sb[li - lane];
  m2 = sc[li - lane];
  let mu = mean;
  let r = inverseSqrt(m2 / f32(P.n) + P.eps);
//#endif
  if (!live) { return; }
  let o = row * P.n;
  for (var j = lane; j < P.n; j += tpr) {
//#if RMS
    // x̂ is rounded to the storage type before the weight, as HF's Qwen2RMSNorm does
    var y = f32(${TO}(f32(X[base + j]) * r)) * f32(W[P.offW + j]);
//#else
    var y = (f32(X[base + j]) - mu) * r * f32(W[P.offW + j]);
//#endif
//#if BIAS
    y += f32(B[P.offB + j]);
//#endif
    O[o + j] = ${TO}(y);
  }
//#if STATS
  if (lane == 0u) {
    S[2u * row] = mu;
    S[2u * row + 1u] = r;
  }
//#endif
}
//#endif

//#if GX
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read> W: array<${TW}>;
@group(0) @binding(3) var<storage, read> G: array<${TG}>;
@group(0) @binding(4) var<storage, read> S: array<f32>;
@group(0) @binding(5) var<storage, read_write> DX: array<${TO}>;

@compute @workgroup_size(64)
fn grad_x(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let tpr = P.tpr;
  let row = (wg.x + wg.y * nwg.x) * (WG / tpr) + li / tpr;
  let lane = li % tpr;
  let live = row < P.rows;
  var len = 0u;
  var mu = 0.0;
  var r = 0.0;
  if (live) {
    len = P.n;
    mu = S[2u * row];
    r = S[2u * row + 1u];
  }
  let bx = P.offX + row * P.n;
  let bg = P.offG + row * P.n;
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = lane; j < len; j += tpr) {
    let gw = f32(G[bg + j]) * f32(W[P.offW + j]);
    sg += gw;
    sgx += gw * (f32(X[bx + j]) - mu) * r;
  }
  sa[li] = sg;
  sb[li] = sgx;
  workgroupBarrier();
  for (var st = tpr / 2u; st > 0u; st = st / 2u) {
    if (lane < st) {
      sa[li] = sa[li] + sa[li + st];
      sb[li] = sb[li] + sb[li + st];
    }
    workgroupBarrier();
  }
  sg = sa[li - lane];
  sgx = sb[li - lane];
  if (!live) { return; }
  let inv = 1.0 / f32(P.n);
//#if RMS
  let mg = 0.0;
//#else
  let mg = sg * inv;
//#endif
  let mgx = sgx * inv;
  let o = row * P.n;
  for (var j = lane; j < P.n; j += tpr) {
    let gw = f32(G[bg + j]) * f32(W[P.offW + j]);
    let xh = (f32(X[bx + j]) - mu) * r;
    DX[o + j] = ${TO}(r * (gw - mg - xh * mgx));
  }
}
//#endif

//#if GW
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read> G: array<${TG}>;
@group(0) @binding(3) var<storage, read> S: array<f32>;
@group(0) @binding(4) var<storage, read_write> DW: array<f32>;
//#if BIAS
@group(0) @binding(5) var<storage, read_write> DB: array<f32>;
//#endif

@compute @workgroup_size(64)
fn grad_w(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let c = wg.x * 64u + li;
  if (c >= P.n) { return; }
  let r0 = wg.y * P.chunkRows;
  let r1 = min(P.rows, r0 + P.chunkRows);
  var sw = 0.0;
  var sbias = 0.0;
  for (var row = r0; row < r1; row++) {
    let g = f32(G[P.offG + row * P.n + c]);
    let xh = (f32(X[P.offX + row * P.n + c]) - S[2u * row]) * S[2u * row + 1u];
    sw += g * xh;
    sbias += g;
  }
  DW[wg.y * P.n + c] = sw;
//#if BIAS
  DB[wg.y * P.n + c] = sbias;
//#endif
}
//#endif
