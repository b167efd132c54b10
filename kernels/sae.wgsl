// Sparse kernels of the Top-K sparse autoencoder (src/sae/ops.ts). Everything after the encoder's
// dense matmul works on the kTot = k (+ kAux) active latents of each row.
//
// Codes: Z [B, kTot] f32 (post-ReLU values, ≥ 0) and IDX [B, kTot] i32 (latent ids); entry e = b·kTot + s.
// A column range [lo, hi) of the codes selects the main (0..k) or the AuxK (k..kTot) latents.
// The latent → entries map of a column range is a CSR built by the csr_* kernels: RS [m + 1] (bucket starts) and
// LIST [B·kTot] (entries packed as b·1024 + s, so kTot ≤ 1024; ascending inside each bucket: the
// hot loops never divide, which llvmpipe does lane by lane). It is a stable counting sort over row
// chunks, without atomics, so every sum below runs in a fixed order: results are deterministic.
//
// On lavapipe a workgroup is one CPU thread running 8 invocations per SIMD vector, and every loop
// iteration and every load costs a lot per 8-lane batch whether or not its address is uniform
// (measured: ~7 ns per iteration, ~5 ns per scalar load, ~17 ns per lane-consecutive vec4 load,
// ~90 ns per load that misses the cache). The kernels keep the per-entry data
// (latent id, coefficient) uniform and spread a d-long row over the lanes as vec4s.
//
// Entries (one per define, entry point = the define in lower case; 0 is always the uniform block P):
//   DECODE     O[b] = (flag ? BDEC : 0) + Σ_{s∈[lo,hi)} Z[b,s]·W[IDX[b,s]]          1 Z 2 IDX 3 W 4 BDEC 5 O
//   DECODE_DZ  DZ[b,s] = ⟨G[b], W[IDX[b,s]]⟩ for s∈[lo,hi) with Z[b,s] > 0, else 0  1 Z 2 IDX 3 W 4 G 5 DZ
//   ROWS_GRAD  OUT[j] (+)= Σ_{e∈bucket j, rows of the block} c(e)·V[b(e)]   c = Z (DEC) or
//              G·[Z > 0] (ENC: gradient through the ReLU); BIAS: OB[j] (+)= Σ c(e)
//                                                              1 RS 2 LIST 3 CNT 4 Z [5 G if ENC] then V, OUT, OB
//              DZF (decoder, needs subgroups, one subgroup per row): also DZ[e] = ⟨V[b], W[j]⟩ for
//              z > 0 (DZ pre-zeroed)                                           ... V, OUT, W, DZ
//   DZ_CSR     DECODE_DZ by latent over the CSR, one row block per dispatch   1 RS 2 LIST 3 CNT 4 Z 5 W 6 G 7 DZ
//   TRANSPOSE  TO = TIᵀ                                                               1 TI 2 TO
//   MATVEC_NEG O[c] = −Σ_j W[c, j]·v[j] (W [d, m])                                   1 W 2 V 3 O
//   CSR_COUNT, CSR_SCAN_LATENT, CSR_SCAN_TOTAL, CSR_PLACE: see below.
//   PACK       Z[b] = relu(V1[b] ++ V2[b]), IDX[b] = I1[b] ++ DEAD[I2[b]]     1 V1 2 I1 3 V2 4 I2 5 DEAD 6 Z 7 IDX
//   PROJECT    G[j] −= ⟨G[j], W[j]⟩·W[j] (rows of W unit norm)                      1 W 2 G
//   NORMALIZE  W[j] /= ‖W[j]‖                                                       1 W
//   FIRED      LAST[IDX[b,s]] = step where Z[b,s] > 0, s < k                         1 Z 2 IDX 3 LAST
//   WGR        with PROJECT, NORMALIZE, LOSS_ROWS, LOSS_FINAL: the *_wg entries (GPU profile), one
//              workgroup per row and tree reductions in workgroup memory instead of one lane per row
//   LOSS_*     see the end of the file
// The GPU profile replaces the CSR build, ROWS_GRAD, DZ_CSR and MATVEC_NEG with kernels/sae_gpu.wgsl.

//#if DZF
enable subgroups;
//#endif
struct Params {
  B: u32,      // rows
  d: u32,      // model width
  m: u32,      // latents
  kTot: u32,   // codes per row
  lo: u32,     // column range of the codes used
  hi: u32,
  nC: u32,     // CSR row chunks
  rc: u32,     // rows per chunk
  k1: u32,     // PACK: widths of the two inputs; FIRED: k
  k2: u32,
  step: u32,
  pad0: u32,
  flag: u32,   // DECODE: add BDEC
  c0: u32,     // ROWS_GRAD: the row block = CSR chunks [c0, c1)
  c1: u32,
};
@group(0) @binding(0) var<uniform> P: Params;

//#if WGR
// GPU profile (WGR): one 64-lane workgroup per row (256 lanes for LOSS_FINAL), the row's sums reduced
// as a tree in workgroup memory in a fixed order (deterministic), instead of one lane per row.
var<workgroup> red: array<vec2<f32>, 256>;
// Σ over the first n lanes of v (n a power of two, every lane of the workgroup calls it); all get the sum.
fn wg_sum(li: u32, v: vec2<f32>, n: u32) -> vec2<f32> {
  red[li] = v;
  workgroupBarrier();
  for (var h = n / 2u; h > 0u; h = h / 2u) {
    if (li < h) { red[li] = red[li] + red[li + h]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
//#endif

fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 { return wg.y + wg.z * nwg.y; }

// Column tiling of DECODE and ROWS_GRAD: a lane owns Q vec4 columns c = base + q·WG (q < Q), so
// one pass through an entry's loads and the loop's bookkeeping feeds Q vec4 FMAs; on lavapipe
// every loop iteration and load has a high fixed cost per 8-lane batch.

//#if DECODE
@group(0) @binding(1) var<storage, read> Z: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<i32>;
@group(0) @binding(3) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> BDEC: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> O: array<vec4<f32>>;
// grid: x covers d/4 in tiles of WG·Q, y (+z) the rows: the row's codes are uniform loads.
@compute @workgroup_size(${WG})
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let b = row_of(wg, nwg);
  if (b >= P.B) { return; }
  let d4 = P.d / 4u;
  let base = wg.x * (${WG}u * ${Q}u) + li;
  var col: array<u32, ${Q}>;
  var acc: array<vec4<f32>, ${Q}>;
  for (var q = 0u; q < ${Q}u; q++) {
    col[q] = min(base + q * ${WG}u, d4 - 1u);
    acc[q] = select(vec4<f32>(0.0), BDEC[col[q]], P.flag != 0u);
  }
  let e0 = b * P.kTot;
  for (var s = P.lo; s < P.hi; s++) {
    let v = vec4<f32>(Z[e0 + s]);
    let j = u32(IDX[e0 + s]);
    if (v.x != 0.0 && j < P.m) {
      let wb = j * d4;
      for (var q = 0u; q < ${Q}u; q++) { acc[q] = fma(v, W[wb + col[q]], acc[q]); }
    }
  }
  for (var q = 0u; q < ${Q}u; q++) {
    let c = base + q * ${WG}u;
    if (c < d4) { O[b * d4 + c] = acc[q]; }
  }
}
//#endif

//#if DECODE_DZ
@group(0) @binding(1) var<storage, read> Z: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<i32>;
@group(0) @binding(3) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> DZ: array<f32>;
// grid: x covers kTot in WG lanes, y (+z) the rows: G's row is a uniform load, W rows are per
// lane; 4 independent vec4 chains per iteration (d % 16 == 0 takes the unrolled loop).
@compute @workgroup_size(${WG})
fn decode_dz(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let b = row_of(wg, nwg);
  let s = wg.x * ${WG}u + li;
  if (b >= P.B || s >= P.kTot) { return; }
  let d4 = P.d / 4u;
  let e = b * P.kTot + s;
  let j = u32(IDX[e]);
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  if (s >= P.lo && s < P.hi && Z[e] > 0.0 && j < P.m) {
    let wb = j * d4;
    let gb = b * d4;
    var c = 0u;
    for (; c + 4u <= d4; c += 4u) {
      a0 = fma(G[gb + c], W[wb + c], a0);
      a1 = fma(G[gb + c + 1u], W[wb + c + 1u], a1);
      a2 = fma(G[gb + c + 2u], W[wb + c + 2u], a2);
      a3 = fma(G[gb + c + 3u], W[wb + c + 3u], a3);
    }
    for (; c < d4; c++) { a0 = fma(G[gb + c], W[wb + c], a0); }
  }
  let t = (a0 + a1) + (a2 + a3);
  DZ[e] = (t.x + t.y) + (t.z + t.w);
}
//#endif

//#if ROWS_GRAD
@group(0) @binding(1) var<storage, read> RS: array<u32>;
@group(0) @binding(2) var<storage, read> LIST: array<u32>;
@group(0) @binding(3) var<storage, read> CNT: array<u32>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
//#if ENC
@group(0) @binding(5) var<storage, read> G: array<f32>;
//#endif
// bindings after Z shift down by one without G (the engine binds buffers in order)
@group(0) @binding(${BV}) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(${BV} + 1) var<storage, read_write> OUT: array<vec4<f32>>;
//#if BIAS
@group(0) @binding(${BV} + 2) var<storage, read_write> OB: array<f32>;
//#endif
//#if DZF
// fused decoder backward (WG = one subgroup covering the whole row): also DZ[e] = ⟨V[b], W[j]⟩
@group(0) @binding(${BV} + 2) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(${BV} + 3) var<storage, read_write> DZ: array<f32>;
//#endif
// One dispatch per block of rows (CSR chunks [c0, c1)), so the rows of V it reads stay in cache
// while every latent goes through them; bucket j's entries of the block are a contiguous run
// (CNT[j, c] = end of chunk c inside the bucket, after placement).
// grid: x covers d/4 in tiles of WG·Q, y (+z) the latents: bucket bounds, entries and
// coefficients are uniform loads; each lane reads its Q vec4s of the entry's row of V.
// OUT is [m, d]; ACCUM adds to OUT / OB instead of overwriting them.
@compute @workgroup_size(${WG})
fn rows_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let j = row_of(wg, nwg);
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let base = wg.x * (${WG}u * ${Q}u) + li;
  var col: array<u32, ${Q}>;
  var acc: array<vec4<f32>, ${Q}>;
  for (var q = 0u; q < ${Q}u; q++) {
    col[q] = min(base + q * ${WG}u, d4 - 1u);
    acc[q] = vec4<f32>(0.0);
  }
  var bacc = 0.0;
  let r0 = RS[j];
  var p0 = r0;
  if (P.c0 > 0u) { p0 = r0 + CNT[j * P.nC + P.c0 - 1u]; }
  let p1 = r0 + CNT[j * P.nC + P.c1 - 1u];
//#if ACCUM
  // nothing to add (AuxK entries touch only the dead latents): skip the read-modify-write of OUT
  if (p0 == p1) { return; }
//#endif
//#if DZF
  var wv: array<vec4<f32>, ${Q}>;
  for (var q = 0u; q < ${Q}u; q++) {
    wv[q] = select(vec4<f32>(0.0), W[j * d4 + col[q]], base + q * ${WG}u < d4);
  }
//#endif
  for (var p = p0; p < p1; p++) {
    let bs = LIST[p];
    let b = bs >> 10u;
    let e = b * P.kTot + (bs & 1023u);
//#if ENC
    let c = select(0.0, G[e], Z[e] > 0.0);
//#else
    let c = Z[e];
//#endif
    if (c != 0.0) {
      let vb = b * d4;
      let cv = vec4<f32>(c);
//#if DZF
      var part = vec4<f32>(0.0);
      for (var q = 0u; q < ${Q}u; q++) {
        let v = V[vb + col[q]];
        acc[q] = fma(cv, v, acc[q]);
        part = fma(v, wv[q], part);
      }
      let dot = subgroupAdd((part.x + part.y) + (part.z + part.w));
      if (li == 0u && c > 0.0) { DZ[e] = dot; }
//#else
      for (var q = 0u; q < ${Q}u; q++) { acc[q] = fma(cv, V[vb + col[q]], acc[q]); }
//#endif
      bacc += c;
    }
  }
  for (var q = 0u; q < ${Q}u; q++) {
    let c4 = base + q * ${WG}u;
    if (c4 < d4) {
//#if ACCUM
      OUT[j * d4 + c4] += acc[q];
//#else
      OUT[j * d4 + c4] = acc[q];
//#endif
    }
  }
//#if BIAS
  if (base == 0u) {
//#if ACCUM
    OB[j] += bacc;
//#else
    OB[j] = bacc;
//#endif
  }
//#endif
}
//#endif

//#if DZ_CSR
@group(0) @binding(1) var<storage, read> RS: array<u32>;
@group(0) @binding(2) var<storage, read> LIST: array<u32>;
@group(0) @binding(3) var<storage, read> CNT: array<u32>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
@group(0) @binding(5) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> G: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> DZ: array<f32>;
// DZ[e] = ⟨G[b(e)], W[j]⟩ for the entries e of latent j in the row block (CSR chunks [c0, c1)),
// 0 where Z[e] ≤ 0. Lanes take 8 entries at a time; W[j] is a uniform load, the G rows stay in
// cache within the block (the row-major variant DECODE_DZ gathers W rows from all of W_dec).
// grid: y (+z) the latents. DZ entries outside the range are written by the caller (zeros).
@compute @workgroup_size(8)
fn dz_csr(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let j = row_of(wg, nwg);
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let r0 = RS[j];
  var p0 = r0;
  if (P.c0 > 0u) { p0 = r0 + CNT[j * P.nC + P.c0 - 1u]; }
  let p1 = r0 + CNT[j * P.nC + P.c1 - 1u];
  let wb = j * d4;
  for (var p = p0 + li; p < p1; p += 8u) {
    let bs = LIST[p];
    let b = bs >> 10u;
    let e = b * P.kTot + (bs & 1023u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    if (Z[e] > 0.0) {
      let gb = b * d4;
      var c = 0u;
      for (; c + 4u <= d4; c += 4u) {
        a0 = fma(G[gb + c], W[wb + c], a0);
        a1 = fma(G[gb + c + 1u], W[wb + c + 1u], a1);
        a2 = fma(G[gb + c + 2u], W[wb + c + 2u], a2);
        a3 = fma(G[gb + c + 3u], W[wb + c + 3u], a3);
      }
      for (; c < d4; c++) { a0 = fma(G[gb + c], W[wb + c], a0); }
    }
    let t = (a0 + a1) + (a2 + a3);
    DZ[e] = (t.x + t.y) + (t.z + t.w);
  }
}
//#endif

//#if TRANSPOSE
@group(0) @binding(1) var<storage, read> TI: array<f32>;
@group(0) @binding(2) var<storage, read_write> TO: array<f32>;
// TO [d, m] = TIᵀ (TI [m, d]); 8×8 tiles per workgroup of 64 lanes; grid: x covers m/8, y d/8
@compute @workgroup_size(64)
fn transpose(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let j = wg.x * 8u + li / 8u;
  let c = wg.y * 8u + li % 8u;
  if (j < P.m && c < P.d) { TO[c * P.m + j] = TI[j * P.d + c]; }
}
//#endif

//#if MATVEC_NEG
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
// one lane per output (row of W): W's row is contiguous per lane, V uniform
@compute @workgroup_size(64)
fn matvec_neg(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.d) { return; }
  var acc = 0.0;
  let base = c * P.m;
  for (var j = 0u; j < P.m; j++) { acc = fma(W[base + j], V[j], acc); }
  O[c] = -acc;
}
//#endif

// ---- CSR (latent → entries) -----------------------------------------------------------------
// Rows are cut into nC chunks of rc rows. CNT [m, nC] counts entries per (latent, chunk); after the
// scans it holds each (latent, chunk)'s first position inside the latent's bucket, so placing the
// entries chunk by chunk, in entry order, gives buckets sorted by entry id.

//#if CSR_COUNT
@group(0) @binding(1) var<storage, read> IDX: array<i32>;
@group(0) @binding(2) var<storage, read_write> CNT: array<u32>;
// one lane per chunk
@compute @workgroup_size(8)
fn csr_count(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.nC) { return; }
  for (var j = 0u; j < P.m; j++) { CNT[j * P.nC + c] = 0u; }
  let b1 = min(P.B, (c + 1u) * P.rc);
  for (var b = c * P.rc; b < b1; b++) {
    for (var s = P.lo; s < P.hi; s++) {
      let j = u32(IDX[b * P.kTot + s]);
      if (j < P.m) { CNT[j * P.nC + c] += 1u; }
    }
  }
}
//#endif

//#if CSR_SCAN_LATENT
@group(0) @binding(1) var<storage, read_write> CNT: array<u32>;
@group(0) @binding(2) var<storage, read_write> RS: array<u32>;
// one lane per latent: exclusive scan over its chunks; the bucket size goes to RS[j]
@compute @workgroup_size(64)
fn csr_scan_latent(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= P.m) { return; }
  var run = 0u;
  let base = j * P.nC;
  for (var c = 0u; c < P.nC; c++) {
    let t = CNT[base + c];
    CNT[base + c] = run;
    run += t;
  }
  RS[j] = run;
}
//#endif

//#if CSR_SCAN_TOTAL
@group(0) @binding(1) var<storage, read_write> RS: array<u32>;
var<workgroup> part: array<u32, 256>;
// one workgroup: RS[0..m) sizes → exclusive starts, RS[m] = total
@compute @workgroup_size(256)
fn csr_scan_total(@builtin(local_invocation_index) li: u32) {
  let seg = (P.m + 255u) / 256u;
  let j0 = min(P.m, li * seg);
  let j1 = min(P.m, j0 + seg);
  var sum = 0u;
  for (var j = j0; j < j1; j++) { sum += RS[j]; }
  part[li] = sum;
  workgroupBarrier();
  if (li == 0u) {
    var run = 0u;
    for (var t = 0u; t < 256u; t++) {
      let v = part[t];
      part[t] = run;
      run += v;
    }
    RS[P.m] = run;
  }
  workgroupBarrier();
  var run = part[li];
  for (var j = j0; j < j1; j++) {
    let v = RS[j];
    RS[j] = run;
    run += v;
  }
}
//#endif

//#if CSR_PLACE
@group(0) @binding(1) var<storage, read> IDX: array<i32>;
@group(0) @binding(2) var<storage, read_write> CNT: array<u32>;
@group(0) @binding(3) var<storage, read> RS: array<u32>;
@group(0) @binding(4) var<storage, read_write> LIST: array<u32>;
// one lane per chunk, entries in order
@compute @workgroup_size(8)
fn csr_place(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.nC) { return; }
  let b1 = min(P.B, (c + 1u) * P.rc);
  for (var b = c * P.rc; b < b1; b++) {
    for (var s = P.lo; s < P.hi; s++) {
      let j = u32(IDX[b * P.kTot + s]);
      if (j < P.m) {
        let q = j * P.nC + c;
        let pos = CNT[q];
        CNT[q] = pos + 1u;
        LIST[RS[j] + pos] = (b << 10u) | s;
      }
    }
  }
}
//#endif

//#if PACK
@group(0) @binding(1) var<storage, read> V1: array<f32>;
@group(0) @binding(2) var<storage, read> I1: array<i32>;
@group(0) @binding(3) var<storage, read> V2: array<f32>;
@group(0) @binding(4) var<storage, read> I2: array<i32>;
@group(0) @binding(5) var<storage, read> DEAD: array<i32>;
@group(0) @binding(6) var<storage, read_write> Z: array<f32>;
@group(0) @binding(7) var<storage, read_write> IDX: array<i32>;
@compute @workgroup_size(64)
// grid: x covers kTot, y (+z) the rows
fn pack(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let b = row_of(wg, nwg);
  let s = wg.x * 64u + li;
  if (b >= P.B || s >= P.kTot) { return; }
  let i = b * P.kTot + s;
  var v: f32;
  var j: i32;
  if (s < P.k1) {
    v = V1[b * P.k1 + s];
    j = I1[b * P.k1 + s];
  } else {
    // AuxK codes index the list of dead latents
    v = V2[b * P.k2 + s - P.k1];
    j = DEAD[I2[b * P.k2 + s - P.k1]];
  }
  Z[i] = max(v, 0.0);
  IDX[i] = j;
}
//#endif

//#if PROJECT
@group(0) @binding(1) var<storage, read> W: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> G: array<vec4<f32>>;
// one lane per row
@compute @workgroup_size(64)
fn project(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let base = j * d4;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < d4; c++) { acc = fma(G[base + c], W[base + c], acc); }
  let dot4 = vec4<f32>((acc.x + acc.y) + (acc.z + acc.w));
  for (var c = 0u; c < d4; c++) { G[base + c] = G[base + c] - dot4 * W[base + c]; }
}
//#if WGR
@compute @workgroup_size(64)
fn project_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let j = min(wg.x + wg.y * nwg.x, P.m - 1u); // surplus workgroups redo the last row: same values
  let d4 = P.d / 4u;
  let base = j * d4;
  var acc = vec4<f32>(0.0);
  for (var c = li; c < d4; c += 64u) { acc = fma(G[base + c], W[base + c], acc); }
  let dot4 = vec4<f32>(wg_sum(li, vec2<f32>((acc.x + acc.y) + (acc.z + acc.w), 0.0), 64u).x);
  if (wg.x + wg.y * nwg.x >= P.m) { return; }
  for (var c = li; c < d4; c += 64u) { G[base + c] = G[base + c] - dot4 * W[base + c]; }
}
//#endif
//#endif

//#if NORMALIZE
@group(0) @binding(1) var<storage, read_write> W: array<vec4<f32>>;
@compute @workgroup_size(64)
fn normalize_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let base = j * d4;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < d4; c++) { let w = W[base + c]; acc = fma(w, w, acc); }
  let n2 = (acc.x + acc.y) + (acc.z + acc.w);
  // a zero row stays zero instead of turning into NaN
  let inv = vec4<f32>(select(0.0, inverseSqrt(n2), n2 > 0.0));
  for (var c = 0u; c < d4; c++) { W[base + c] = W[base + c] * inv; }
}
//#if WGR
@compute @workgroup_size(64)
fn normalize_rows_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * nwg.x;
  let j = min(row, P.m - 1u);
  let d4 = P.d / 4u;
  let base = j * d4;
  var acc = vec4<f32>(0.0);
  for (var c = li; c < d4; c += 64u) { let w = W[base + c]; acc = fma(w, w, acc); }
  let n2 = wg_sum(li, vec2<f32>((acc.x + acc.y) + (acc.z + acc.w), 0.0), 64u).x;
  if (row >= P.m) { return; } // (a surplus workgroup must not scale its row twice)
  let inv = vec4<f32>(select(0.0, inverseSqrt(n2), n2 > 0.0));
  for (var c = li; c < d4; c += 64u) { W[base + c] = W[base + c] * inv; }
}
//#endif
//#endif

//#if FIRED
@group(0) @binding(1) var<storage, read> Z: array<f32>;
@group(0) @binding(2) var<storage, read> IDX: array<i32>;
@group(0) @binding(3) var<storage, read_write> LAST: array<u32>;
// every writer of a latent writes the same value: no race in the result
@compute @workgroup_size(64)
// grid: x covers k, y (+z) the rows
fn fired(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let b = row_of(wg, nwg);
  let s = wg.x * 64u + li;
  if (b >= P.B || s >= P.k1) { return; }
  let e = b * P.kTot + s;
  let j = u32(IDX[e]);
  if (Z[e] > 0.0 && j < P.m) { LAST[j] = P.step; }
}
//#endif



// ---- the loss: mse + α·‖e − ê‖²/‖e‖², e = x − x̂ (held constant), fused --------------------
// LOSS_ROWS  per row: R[b] = (Σ (x − x̂)², Σ (x − x̂ − ê)²); one lane per row     1 X 2 XH 3 EH 4 R
// LOSS_FINAL one lane: sums R in row order; LOSS = sse/(B·d) + α·auxSum/sse;
//            ST = (mse, aux ratio, sse, 0)                                        1 R 2 LOSS 3 ST
// LOSS_BWD   DXH = −2g·(x − x̂)/(B·d), DEH = −2gα·(x − x̂ − ê)/sse; g = G[0]     1 X 2 XH 3 EH 4 G 5 ST 6 DXH 7 DEH
// flag = 1 when there is an AuxK term (EH is bound to XH otherwise); alpha in k1 as f32 bits.

//#if LOSS_ROWS
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> XH: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> EH: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> R: array<vec2<f32>>;
@compute @workgroup_size(64)
fn loss_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let b = (wg.x + wg.y * nwg.x) * 64u + li;
  if (b >= P.B) { return; }
  let d4 = P.d / 4u;
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  for (var c = b * d4; c < (b + 1u) * d4; c++) {
    let r = X[c] - XH[c];
    s1 = fma(r, r, s1);
    if (P.flag != 0u) {
      let t = r - EH[c];
      s2 = fma(t, t, s2);
    }
  }
  R[b] = vec2<f32>((s1.x + s1.y) + (s1.z + s1.w), (s2.x + s2.y) + (s2.z + s2.w));
}
//#if WGR
@compute @workgroup_size(64)
fn loss_rows_wg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * nwg.x;
  let b = min(row, P.B - 1u);
  let d4 = P.d / 4u;
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  for (var c = b * d4 + li; c < (b + 1u) * d4; c += 64u) {
    let r = X[c] - XH[c];
    s1 = fma(r, r, s1);
    if (P.flag != 0u) {
      let t = r - EH[c];
      s2 = fma(t, t, s2);
    }
  }
  let t = wg_sum(li, vec2<f32>((s1.x + s1.y) + (s1.z + s1.w), (s2.x + s2.y) + (s2.z + s2.w)), 64u);
  if (li == 0u && row < P.B) { R[b] = t; }
}
//#endif
//#endif

//#if LOSS_FINAL
@group(0) @binding(1) var<storage, read> R: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> LOSS: array<f32>;
@group(0) @binding(3) var<storage, read_write> ST: array<vec4<f32>>;
@compute @workgroup_size(1)
fn loss_final() {
  var sse = 0.0;
  var aux = 0.0;
  for (var b = 0u; b < P.B; b++) {
    let r = R[b];
    sse += r.x;
    aux += r.y;
  }
  let mse = sse / f32(P.B * P.d);
  var ratio = 0.0;
  if (P.flag != 0u) { ratio = aux / max(sse, 1e-30); }
  LOSS[0] = mse + bitcast<f32>(P.k1) * ratio;
  ST[0] = vec4<f32>(mse, ratio, sse, 0.0);
}
//#if WGR
@compute @workgroup_size(256)
fn loss_final_wg(@builtin(local_invocation_index) li: u32) {
  var acc = vec2<f32>(0.0);
  for (var b = li; b < P.B; b += 256u) { acc += R[b]; }
  let t = wg_sum(li, acc, 256u);
  if (li != 0u) { return; }
  let mse = t.x / f32(P.B * P.d);
  var ratio = 0.0;
  if (P.flag != 0u) { ratio = t.y / max(t.x, 1e-30); }
  LOSS[0] = mse + bitcast<f32>(P.k1) * ratio;
  ST[0] = vec4<f32>(mse, ratio, t.x, 0.0);
}
//#endif
//#endif

//#if LOSS_BWD
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> XH: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> EH: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> G: array<f32>;
@group(0) @binding(5) var<storage, read> ST: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> DXH: array<vec4<f32>>;
//#if AUX
@group(0) @binding(7) var<storage, read_write> DEH: array<vec4<f32>>;
//#endif
@compute @workgroup_size(64)
fn loss_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + li;
  if (i >= P.B * P.d / 4u) { return; }
  let g = G[0];
  let r = X[i] - XH[i];
  DXH[i] = vec4<f32>(-2.0 * g / f32(P.B * P.d)) * r;
//#if AUX
  let st = ST[0];
  DEH[i] = vec4<f32>(-2.0 * g * bitcast<f32>(P.k1) / max(st.z, 1e-30)) * (r - EH[i]);
//#else
  _ = ST[0];
  _ = EH[0];
//#endif
}
//#endif
