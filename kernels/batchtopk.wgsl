// BatchTopK SAE codes (src/sae/ops.ts batchThreshold / thresholdCodes): the batch keeps its t = k·B
// largest activations in total rather than k per row. The candidates are the first kc columns of
// the per-row Top-kc codes Z [B, kTot] (post-ReLU, ≥ 0; columns kc.. are AuxK codes, left alone).
//
// Entries (define → entry point; binding 0 is the uniform block P):
//   SELECT  THETA[0] = the t-th largest candidate (1 ≤ t ≤ B·kc)                1 Z 2 THETA
//           One workgroup of 256: a radix select over the candidates' f32 bit patterns (non-negative
//           floats order like their u32 bits), 8 bits per pass from the top, 4 passes; a 256-bin
//           histogram in workgroup memory (atomics: the counts, not their order, matter, so the
//           result is deterministic).
//   MASK    Z[b, s] = 0 where s < kc and Z[b, s] < THETA[0], in place           1 THETA 2 Z
//           Workgroup 256, one invocation per code, grid x (+ y) over B·kTot.
// Ties at THETA are all kept (the batch may keep slightly more than t codes).
struct Params {
  B: u32,     // rows
  kTot: u32,  // codes per row
  kc: u32,    // candidate columns [0, kc)
  t: u32,     // SELECT: rank of the threshold (1 = the largest)
};
@group(0) @binding(0) var<uniform> P: Params;

//#if SELECT
@group(0) @binding(1) var<storage, read> Z: array<f32>;
@group(0) @binding(2) var<storage, read_write> THETA: array<f32>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> prefix: u32;
var<workgroup> mask: u32;
var<workgroup> rem: u32;

@compute @workgroup_size(256)
fn select_(@builtin(local_invocation_index) li: u32) {
  let n = P.B * P.kc;
  if (li == 0u) {
    prefix = 0u;
    mask = 0u;
    rem = P.t;
  }
  workgroupBarrier();
  for (var round = 0u; round < 4u; round++) {
    let shift = 24u - 8u * round;
    atomicStore(&hist[li], 0u);
    workgroupBarrier();
    let pf = prefix;
    let mk = mask;
    for (var b = 0u; b < P.B; b++) {
      for (var s = li; s < P.kc; s += 256u) {
        let u = bitcast<u32>(max(Z[b * P.kTot + s], 0.0));
        if ((u & mk) == pf) { atomicAdd(&hist[(u >> shift) & 255u], 1u); }
      }
    }
    workgroupBarrier();
    if (li == 0u) {
      // the bin holding the rem-th largest among the candidates that match the prefix so far
      var acc = 0u;
      var bin = 255i;
      loop {
        let h = atomicLoad(&hist[u32(bin)]);
        if (acc + h >= rem || bin == 0i) { break; }
        acc += h;
        bin -= 1i;
      }
      rem -= acc;
      prefix = prefix | (u32(bin) << shift);
      mask = mask | (255u << shift);
    }
    workgroupBarrier();
  }
  if (li == 0u) { THETA[0] = select(0.0, bitcast<f32>(prefix), n > 0u); }
}
//#endif

//#if MASK
@group(0) @binding(1) var<storage, read> THETA: array<f32>;
@group(0) @binding(2) var<storage, read_write> Z: array<f32>;

@compute @workgroup_size(256)
fn mask(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let e = (wg.x + wg.y * nwg.x) * 256u + li;
  if (e >= P.B * P.kTot) { return; }
  if (e % P.kTot < P.kc && Z[e] < THETA[0]) { Z[e] = 0.0; }
}
//#endif
