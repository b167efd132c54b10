// Softmax / log-softmax along the last axis of a dense [rows, n] view, with optional scale and
// causal mask (attention scores [..., Tq, Tk]: row r is query q = r % Tq, which sees keys
// j ≤ q + offset; hidden keys give 0, or -inf for log-softmax).
//
// Entries: main      Y = softmax(scale·X)             (one online max/sum pass, one write pass)
//          backward  DX = scale·Y·(G − Σ G·Y)          (softmax)
//                    DX = scale·(G − exp(Y)·Σ G)       (LOG: log-softmax; sums over visible keys)
// Bindings: main      0 uniform P; 1 X (array<${TX}>); 2 Y (array<${TY}>, dense)
//           backward  0 uniform P; 1 Y (array<${TY}>); 2 G (array<${TG}>); 3 DX (array<${TX}>, dense)
//           (X/Y/G start at P.offA/P.offB; outputs are dense from 0.)
// Defines: TX TY TG storage types; BACKWARD selects the entry (their bindings differ).
// Run-time flags (uniform, so one compiled pipeline serves every width): P.tpr threads per row (a
// power of two ≤ 64), P.causal, P.log.
// Workgroup: 64 threads = 64/tpr rows; lanes of a row stride over it, then a shared-memory tree.
// Everything is computed in f32 whatever the storage type.
struct Params {
  rows: u32,
  n: u32,
  tq: u32,
  offset: i32,
  scale: f32,
  offA: u32,
  offB: u32,
  negInf: f32, // -inf, passed at run time (a constant -inf is a WGSL compile error)
  tpr: u32,
  causal: u32,
  log: u32,
  pad: u32,
};

const WG = 64u;

@group(0) @binding(0) var<uniform> P: Params;

var<workgroup> sa: array<f32, WG>;
var<workgroup> sb: array<f32, WG>;

// Keys visible to this row.
fn visible(row: u32) -> u32 {
  if (P.causal == 0u) { return P.n; }
  let q = i32(row % P.tq);
  return u32(clamp(q + P.offset + 1, 0, i32(P.n)));
}

//#if !BACKWARD
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read_write> Y: array<${TY}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let tpr = P.tpr;
  let row = (wg.x + wg.y * nwg.x) * (WG / tpr) + li / tpr;
  let lane = li % tpr;
  let live = row < P.rows;
  var len = 0u;
  if (live) { len = visible(row); }
  let base = P.offA + row * P.n;
  // online max and Σexp: m starts at the lowest finite value so exp(m − v) never sees inf − inf
  var m = -3.4e38;
  var s = 0.0;
  for (var j = lane; j < len; j += tpr) {
    let v = f32(X[base + j]) * P.scale;
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  sa[li] = m;
  sb[li] = s;
  workgroupBarrier();
  for (var st = tpr / 2u; st > 0u; st = st / 2u) {
    if (lane < st) {
      let m1 = sa[li];
      let m2 = sa[li + st];
      let mm = max(m1, m2);
      sb[li] = sb[li] * exp(m1 - mm) + sb[li + st] * exp(m2 - mm);
      sa[li] = mm;
    }
    workgroupBarrier();
  }
  m = sa[li - lane];
  s = sb[li - lane];
  if (!live) { return; }
  let o = row * P.n;
  if (P.log != 0u) {
    let lse = m + log(s);
    for (var j = lane; j < P.n; j += tpr) {
      var y = P.negInf;
      if (j < len) { y = f32(X[base + j]) * P.scale - lse; }
      Y[o + j] = ${TY}(y);
    }
  } else {
    let inv = 1.0 / s;
    for (var j = lane; j < P.n; j += tpr) {
      var y = 0.0;
      if (j < len) { y = exp(f32(X[base + j]) * P.scale - m) * inv; }
      Y[o + j] = ${TY}(y);
    }
  }
}
//#else
@group(0) @binding(1) var<storage, read> Y: array<${TY}>;
@group(0) @binding(2) var<storage, read> G: array<${TG}>;
@group(0) @binding(3) var<storage, read_write> DX: array<${TX}>;

@compute @workgroup_size(64)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let tpr = P.tpr;
  let row = (wg.x + wg.y * nwg.x) * (WG / tpr) + li / tpr;
  let lane = li % tpr;
  let live = row < P.rows;
  var len = 0u;
  if (live) { len = visible(row); }
  let by = P.offA + row * P.n;
  let bg = P.offB + row * P.n;
  let isLog = P.log != 0u;
  var s = 0.0;
  for (var j = lane; j < len; j += tpr) {
    let gj = f32(G[bg + j]);
    s += select(gj * f32(Y[by + j]), gj, isLog);
  }
  sa[li] = s;
  workgroupBarrier();
  for (var st = tpr / 2u; st > 0u; st = st / 2u) {
    if (lane < st) { sa[li] = sa[li] + sa[li + st]; }
    workgroupBarrier();
  }
  s = sa[li - lane];
  if (!live) { return; }
  let o = row * P.n;
  for (var j = lane; j < P.n; j += tpr) {
    var d = 0.0;
    if (j < len) {
      let y = f32(Y[by + j]);
      let gj = f32(G[bg + j]);
      d = P.scale * select(y * (gj - s), gj - exp(y) * s, isLog);
    }
    DX[o + j] = ${TX}(d);
  }
}
//#endif
