// Top-k along rows with one workgroup of 256 invocations per row: the GPU profile's top-k
// (src/tensor/ops/index.ts picks it for rows up to 65,536 wide; kernels/topk.wgsl stays the CPU
// profile's, whose one-lane-per-row scans suit lavapipe).
//
// Same order as kernels/topk.wgsl: key = order-preserving u32 image of the value (-0 → +0, NaN
// above +inf), larger key first, ties by lower index. Each element's composite key (key, 0xffff −
// index) is unique (index < 65,536), so "the k largest" is exactly the elements whose composite is
// at least the k-th largest composite T.
//   1. Radix select of T, most significant byte first, 6 passes (4 bytes of key, 2 of inverted
//      index): the workgroup builds a 256-bin histogram (workgroup atomics) of the current byte of
//      the elements that match T's bytes found so far, a parallel scan (Hillis–Steele over the 256
//      bins, best digit first) finds the bin holding the k-th, and the search goes on inside it. When
//      that bin holds exactly as many elements as are still wanted, all of them qualify and the
//      search stops early (the lower bytes of T stay 0): continuous data ends after the key bytes.
//   2. Every invocation appends its qualifying elements to k slots (atomic counter).
//   3. SORTED: a bitonic sort of the P2 = pow2(k) slots (sentinels past k), best first.
// No single-lane stage: every step is spread over the 256 invocations.
// Defines: TX value type; P2 (power of two ≥ k, ≤ 256); SORTED; COLS (element j of a row is
//   X[row start + COLS[j]], i32 [n], clamped to the row).
// Bindings: 0 P; 1 X (array<TX>); 2 V [rows, k] (TX); 3 I [rows, k] (i32); 4 COLS (COLS).
// Workgroup: 256. Grid: row x + y·P.gridX (x ≤ 65535).

struct Params { rows: u32, n: u32, k: u32, gridX: u32, offX: u32, strideX: u32, pad0: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read_write> V: array<${TX}>;
@group(0) @binding(3) var<storage, read_write> I: array<i32>;
//#if COLS
@group(0) @binding(4) var<storage, read> COLS: array<i32>;
//#endif

const P2 = ${P2}u;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<u32, 256>;
var<workgroup> wSel: vec3<u32>; // digit, elements in better bins, elements in its bin
var<workgroup> count: atomic<u32>;
var<workgroup> sk: array<u32, P2>;
var<workgroup> si: array<u32, P2>;

fn to_key(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if (b == 0x80000000u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

var<private> base: u32;

fn key_of(j: u32) -> u32 {
//#if COLS
  return to_key(f32(X[base + min(u32(COLS[j]), P.strideX - 1u)]));
//#else
  return to_key(f32(X[base + j]));
//#endif
}

// composite byte p (0 = most significant) of (key, 0xffff − j)
fn digit(p: u32, key: u32, inv: u32) -> u32 {
  if (p < 4u) { return (key >> (24u - 8u * p)) & 255u; }
  return (inv >> (8u - 8u * (p - 4u))) & 255u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * P.gridX;
  let live = row < P.rows; // uniform across the workgroup
  let r = min(row, P.rows - 1u);
  base = P.offX + r * P.strideX;
  let n = P.n;

  // T so far: key bits under keyMask, inverted-index bits under invMask
  var tKey = 0u;
  var tInv = 0u;
  var keyMask = 0u;
  var invMask = 0u;
  var kRem = P.k;
  for (var p = 0u; p < 6u; p++) {
    atomicStore(&hist[li], 0u);
    workgroupBarrier();
    for (var j = li; j < n; j += 256u) {
      let key = key_of(j);
      let inv = 0xffffu - j;
      if ((key & keyMask) == tKey && (inv & invMask) == tInv) { atomicAdd(&hist[digit(p, key, inv)], 1u); }
    }
    workgroupBarrier();
    // inclusive scan over the bins, best (largest) digit first
    let h = atomicLoad(&hist[255u - li]);
    scan[li] = h;
    workgroupBarrier();
    for (var off = 1u; off < 256u; off *= 2u) {
      var v = scan[li];
      if (li >= off) { v += scan[li - off]; }
      workgroupBarrier();
      scan[li] = v;
      workgroupBarrier();
    }
    let incl = scan[li];
    if (incl - h < kRem && kRem <= incl) { wSel = vec3<u32>(255u - li, incl - h, h); }
    let sel = workgroupUniformLoad(&wSel);
    kRem -= sel.y;
    if (p < 4u) {
      let sh = 24u - 8u * p;
      tKey |= sel.x << sh;
      keyMask |= 255u << sh;
    } else {
      let sh = 8u - 8u * (p - 4u);
      tInv |= sel.x << sh;
      invMask |= 255u << sh;
    }
    // the bin holds exactly the elements still wanted: all of them qualify
    if (sel.z == kRem) { break; }
  }

  // elements whose composite is ≥ T: better on the decided bytes, or equal on them
  for (var j = li; j < n; j += 256u) {
    let key = key_of(j);
    let inv = 0xffffu - j;
    let kk = key & keyMask;
    let ii = inv & invMask;
    if (kk > tKey || (kk == tKey && ii >= tInv)) {
      let s = atomicAdd(&count, 1u);
      if (s < P2) {
        sk[s] = key;
        si[s] = j;
      }
    }
  }
  for (var s = P.k + li; s < P2; s += 256u) {
    sk[s] = 0u;
    si[s] = 0xffffffffu;
  }
  workgroupBarrier();

//#if SORTED
  // bitonic sort, best first: (key desc, index asc)
  for (var size = 2u; size <= P2; size *= 2u) {
    for (var stride = size / 2u; stride > 0u; stride /= 2u) {
      for (var t = li; t < P2 / 2u; t += 256u) {
        let i = 2u * stride * (t / stride) + t % stride;
        let j = i + stride;
        let ki = sk[i];
        let kj = sk[j];
        let ii = si[i];
        let ij = si[j];
        let jBetter = kj > ki || (kj == ki && ij < ii);
        // blocks alternate direction; the last merge (size = P2) is all best-first
        let bestFirst = (i & size) == 0u;
        if (jBetter == bestFirst) {
          sk[i] = kj;
          sk[j] = ki;
          si[i] = ij;
          si[j] = ii;
        }
      }
      workgroupBarrier();
    }
  }
//#endif

  if (live) {
    for (var s = li; s < P.k; s += 256u) {
      V[r * P.k + s] = ${TX}(from_key(sk[s]));
      I[r * P.k + s] = i32(si[s]);
    }
  }
}
