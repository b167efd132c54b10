// AR&D per-clip segment reductions (src/ard/retrieve.ts).
// A batch of rows is cut into segments: (clip, first row in the batch, row count), one per clip
// that the batch touches, given in S as 3 u32 each. One workgroup per segment walks its rows in
// order, so every accumulator receives its additions in row order: results are bit-reproducible.
// Accumulators persist across batches (a clip may span several), hence `+=`.
//
// KIND codes (SAE top-k codes → per-clip activation sums and firing counts):
//   bindings: 0 uniform P; 1 S (u32); 2 V values [B, k] (${TV}); 3 I indices [B, k] (i32);
//             4 SUM [nClips, m] (f32); 5 CNT [nClips, m] (f32)
//   Within a row, the k indices are distinct (top-k), so the row's k codes are scattered in
//   parallel; a storage barrier between rows orders writes to the same accumulator.
//   Only z > 0 counts (a top-k code of 0 or below is not a firing).
// KIND rows (dense residual rows → per-clip column sums):
//   bindings: 0 uniform P; 1 S (u32); 2 X [B, d] (${TV}); 3 RSUM [nClips, d] (f32)
//   Each invocation owns columns and loops over the segment's rows: no barrier needed.
struct Params { nSeg: u32, k: u32, m: u32, offV: u32, offI: u32, pad0: u32, pad1: u32, pad2: u32 };
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> S: array<u32>;

const WG = 64u;

//#if CODES
@group(0) @binding(2) var<storage, read> V: array<${TV}>;
@group(0) @binding(3) var<storage, read> I: array<i32>;
@group(0) @binding(4) var<storage, read_write> SUM: array<f32>;
@group(0) @binding(5) var<storage, read_write> CNT: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let s = wg.x + wg.y * nwg.x;
  if (s >= P.nSeg) { return; } // uniform per workgroup: safe before barriers
  let clip = S[3u * s];
  let r0 = S[3u * s + 1u];
  let nr = S[3u * s + 2u];
  let base = clip * P.m;
  for (var r = 0u; r < nr; r++) {
    let row = (r0 + r) * P.k;
    for (var j = li; j < P.k; j += WG) {
      let v = f32(V[P.offV + row + j]);
      let f = I[P.offI + row + j];
      if (v > 0.0 && f >= 0 && u32(f) < P.m) {
        let a = base + u32(f);
        SUM[a] = SUM[a] + v;
        CNT[a] = CNT[a] + 1.0;
      }
    }
    storageBarrier();
  }
}
//#else
@group(0) @binding(2) var<storage, read> X: array<${TV}>;
@group(0) @binding(3) var<storage, read_write> RSUM: array<f32>;

// For this kind: P.k is the row width d, P.m unused.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let s = wg.x + wg.y * nwg.x;
  if (s >= P.nSeg) { return; }
  let clip = S[3u * s];
  let r0 = S[3u * s + 1u];
  let nr = S[3u * s + 2u];
  let d = P.k;
  for (var c = li; c < d; c += WG) {
    var acc = 0.0;
    for (var r = 0u; r < nr; r++) { acc += f32(X[P.offV + (r0 + r) * d + c]); }
    let a = clip * d + c;
    RSUM[a] = RSUM[a] + acc;
  }
}
//#endif
