// Optimiser updates (in place, one thread per element) and the global gradient norm for clipping.
//
// Entry `adamw` — decoupled weight decay, bias-corrected (as torch.optim.AdamW):
//   p ← p·decay;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − stepSize · m / (√v · invSqrtBc2 + eps)   with decay = 1 − lr·wd, stepSize = lr/(1−β1^t),
//   invSqrtBc2 = 1/√(1−β2^t) computed on the host in f64 (lr may change every step).
// Bindings: 0 P; 1 PARAM (rw); 2 G; 3 M (rw); 4 V (rw). All f32.
//
// Entry `sgd` — as torch.optim.SGD: d = g + wd·p; with MOMENTUM: buf ← d on the first step, else
//   buf ← μ·buf + (1−dampening)·d; d ← nesterov ? d + μ·buf : buf. Then p ← p − lr·d.
// Bindings: 0 P; 1 PARAM (rw); 2 G; 3 BUF (rw, only with MOMENTUM).
//
// Entry `average` — a running average of a parameter (EMA, or a uniform mean with d = n/(n+1)):
//   AVG ← d·AVG + (1−d)·p   with d = P.decay (f32).  Bindings: 0 P; 1 AVG (rw, dense); 2 AP (p, at offP).
//
// Entries for clipGradNorm (no host round trip):
//   `sumsq`  one workgroup per CHUNK elements of one gradient: PART[offPart + wg] = Σ g²
//            Bindings: 0 P; 1 G; 2 PART (rw).
//   `norm`   one workgroup: NORM[0] = √Σ PART, SCALE[0] = min(1, maxNorm / (norm + 1e-6))
//            Bindings: 0 P; 1 PART; 2 NORM (rw); 3 SCALE (rw).
//   `scale`  G[i] ← G[i]·SCALE[0].  Bindings: 0 P; 1 G (rw); 2 SCALE.
// Sums are f32 in a fixed order: the norm is the same bits run to run.

struct Params {
  n: u32,
  offP: u32,
  offG: u32,
  offPart: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  decay: f32,
  stepSize: f32,
  invSqrtBc2: f32,
  wd: f32,
  momentum: f32,
  dampening: f32,
  nesterov: u32,
  first: u32,
  maxNorm: f32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
};
@group(0) @binding(0) var<uniform> P: Params;

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * 256u + li;
}

// ---- AdamW ---------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> AP: array<f32>;
@group(0) @binding(2) var<storage, read> AG: array<f32>;
@group(0) @binding(3) var<storage, read_write> AM: array<f32>;
@group(0) @binding(4) var<storage, read_write> AV: array<f32>;

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  let g = AG[P.offG + i];
  let m = P.beta1 * AM[i] + (1.0 - P.beta1) * g;
  let v = P.beta2 * AV[i] + (1.0 - P.beta2) * g * g;
  AM[i] = m;
  AV[i] = v;
  let p = AP[P.offP + i] * P.decay;
  AP[P.offP + i] = p - P.stepSize * m / (sqrt(v) * P.invSqrtBc2 + P.eps);
}

// ---- SGD -----------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> SP: array<f32>;
@group(0) @binding(2) var<storage, read> SG: array<f32>;
//#if MOMENTUM
@group(0) @binding(3) var<storage, read_write> SBUF: array<f32>;
//#endif

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  let p = SP[P.offP + i];
  var d = SG[P.offG + i] + P.wd * p;
//#if MOMENTUM
  var b = d;
  if (P.first == 0u) { b = P.momentum * SBUF[i] + (1.0 - P.dampening) * d; }
  SBUF[i] = b;
  d = select(b, d + P.momentum * b, P.nesterov != 0u);
//#endif
  SP[P.offP + i] = p - P.lr * d;
}

// ---- weight average ------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read_write> WAVG: array<f32>;
@group(0) @binding(2) var<storage, read> WP: array<f32>;

@compute @workgroup_size(256)
fn average(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  WAVG[i] = P.decay * WAVG[i] + (1.0 - P.decay) * WP[P.offP + i];
}

// ---- gradient norm -------------------------------------------------------------------------

const CHUNK = 4096u;
var<workgroup> red: array<f32, 256>;

@group(0) @binding(1) var<storage, read> QG: array<f32>;
@group(0) @binding(2) var<storage, read_write> QPART: array<f32>;

@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
  let w = wg.x + wg.y * nwg.x;
  let start = w * CHUNK;
  if (start >= P.n) { return; } // uniform per workgroup
  let end = min(P.n, start + CHUNK);
  var acc = 0.0;
  for (var i = start + li; i < end; i += 256u) {
    let g = QG[P.offG + i];
    acc += g * g;
  }
  red[li] = acc;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h = h / 2u) {
    if (li < h) { red[li] += red[li + h]; }
    workgroupBarrier();
  }
  if (li == 0u) { QPART[P.offPart + w] = red[0]; }
}

@group(0) @binding(1) var<storage, read> NPART: array<f32>;
@group(0) @binding(2) var<storage, read_write> NNORM: array<f32>;
@group(0) @binding(3) var<storage, read_write> NSCALE: array<f32>;

@compute @workgroup_size(256)
fn norm(@builtin(local_invocation_index) li: u32) {
  var acc = 0.0;
  for (var i = li; i < P.n; i += 256u) { acc += NPART[i]; }
  red[li] = acc;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h = h / 2u) {
    if (li < h) { red[li] += red[li + h]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let nrm = sqrt(red[0]);
    NNORM[0] = nrm;
    NSCALE[0] = min(1.0, P.maxNorm / (nrm + 1e-6));
  }
}

@group(0) @binding(1) var<storage, read_write> CG: array<f32>;
@group(0) @binding(2) var<storage, read> CSCALE: array<f32>;

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  CG[P.offG + i] = CG[P.offG + i] * CSCALE[0];
}
