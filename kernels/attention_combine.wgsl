// Split-K attention, pass 2 of 2: merges the per-chunk partials that kernels/attention.wgsl (SPLIT)
// wrote into the output, with log-sum-exp rescaling. For an output row with partials (a_s, m_s, l_s),
// s < P.splits (a_s the unnormalised accumulator, m_s the chunk's running max, l_s its sum of
// exponentials): M = max m_s, f_s = exp(m_s − M), O = (Σ f_s·a_s) / (Σ f_s·l_s). A chunk the row saw
// no key of has l_s = 0 and m_s = LOW: it is skipped (no exp of LOW − M, so no overflow); a row with
// no visible key at all is 0, as the one-pass kernel gives.
//
// Layout: Part dense [rows, P.splits, DV + 2] f32 (per chunk: DV accumulator columns, m, l); O dense
//         [rows, DV] (rows = B·H·Tq, the attention output's rows).
// Bindings: 0 uniform P; 1 Part (array<f32>); 2 O (array<TO>).
// Defines: TO output storage type; DV value head dim.
// Workgroup: 64 invocations, one output row; lane i computes columns i, i + 64, … (⌈DV / 64⌉ of
//            them, in registers). Every lane reads the row's P.splits maxima and sums itself (no
//            barrier). Grid: linear workgroup index x + y·nwg.x over P.rows.
struct Params {
  rows: u32, splits: u32, pad0: u32, pad1: u32,
};

const DV = ${DV}u;
const OC = (DV + 63u) / 64u; // columns per lane
const LOW = -3.4e38;

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Part: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<${TO}>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= P.rows) { return; }
  let base = row * P.splits * (DV + 2u);
  var mx = LOW;
  for (var s = 0u; s < P.splits; s++) {
    let pb = base + s * (DV + 2u);
    if (Part[pb + DV + 1u] > 0.0) { mx = max(mx, Part[pb + DV]); }
  }
  var l = 0.0;
  var acc: array<f32, OC>;
  for (var s = 0u; s < P.splits; s++) {
    let pb = base + s * (DV + 2u);
    let ls = Part[pb + DV + 1u];
    if (ls > 0.0) {
      let f = exp(Part[pb + DV] - mx);
      l = fma(f, ls, l);
      for (var jj = 0u; jj < OC; jj++) {
        let col = li + jj * 64u;
        if (col < DV) { acc[jj] = fma(f, Part[pb + col], acc[jj]); }
      }
    }
  }
  var inv = 0.0;
  if (l > 0.0) { inv = 1.0 / l; }
  for (var jj = 0u; jj < OC; jj++) {
    let col = li + jj * 64u;
    if (col < DV) { O[row * DV + col] = ${TO}(acc[jj] * inv); }
  }
}
