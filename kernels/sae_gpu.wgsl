// The GPU profile's SAE kernels (src/sae/ops.ts picks them when profile.sae says so): the same results
// as the serial or low-parallel stages of kernels/sae.wgsl, with the work spread over whole workgroups.
// Deterministic: no float atomics; every sum runs in an order fixed by the data and the hardware.
//
// Entries (one per define, entry point = the define in lower case; 0 is always the uniform block P):
//   MATVEC_NEG   O[c] = −Σ_j W[c, j]·V[j] (W [d, m]): one workgroup per output, lanes stride along
//                the row (coalesced), a workgroup reduction                           1 W 2 V 3 O
//   DZ_CSR       DZ[e] = ⟨G[b(e)], W[j]⟩ for the entries e of latent j with Z[e] > 0 (DZ pre-zeroed):
//                one workgroup per latent; the latent's entries are staged WG at a time in workgroup
//                memory (one load chain per lane, not one per entry per lane), then 4 entries at a
//                time: lanes split the d columns, a workgroup reduction per 4 dot products
//                                                              1 RS 2 LIST 3 CNT 4 Z 5 W 6 G 7 DZ
//   ROWS_GRAD    OUT[j] (+)= Σ_{e ∈ bucket j} c(e)·V[b(e)] as in kernels/sae.wgsl (same order of
//                the sums: the entries' order), with the entries staged as in DZ_CSR; a lane owns one
//                vec4 column (grid x covers d/4 in tiles of WG)
//                                          1 RS 2 LIST 3 CNT 4 Z [5 G if ENC] then V, OUT, [OB if BIAS]
//   The CSR (latent → entries, the same RS and LIST as the counting sort of kernels/sae.wgsl) by a
//   stable LSD radix sort of the entries' latent ids, 8 bits per pass, tiles of 256 entries:
//   RADIX_HIST   per tile, a histogram of the pass's digit (workgroup atomics: exact counts), stored
//                digit-major: HIST[digit·nT + tile]              FIRST: 1 IDX 2 HIST; else 1 KIN 2 HIST
//   SCAN_BLOCK   exclusive scan in place of A[0, n) in blocks of 1024; SUMS[block] = block total
//   SCAN_ADD     A[i] += SUMS[block of i] (the scanned block totals)                  1 A 2 SUMS
//   RADIX_SCATTER  entry t of tile → position HIST[digit·nT + tile] + (entries of the tile before t
//                with the same digit): stable, so the final order is by latent, then entry id
//                                     FIRST: 1 IDX 2 HIST 3 KOUT 4 VOUT; else 1 KIN 2 VIN 3 HIST 4 KOUT 5 VOUT
//   CSR_BOUNDS   RS[j] = first position of a key ≥ j in the sorted keys (binary search), j ≤ m;
//                CNT[j] = bucket size (the CSR's chunkEnd with one chunk)           1 KEYS 2 RS 3 CNT
// Keys are min(u32(id), m): ids outside [0, m) sort last and are left out of every bucket.
// Values are entries packed as b·1024 + s (s the code column), as in kernels/sae.wgsl.
// SG: the workgroup reductions start with subgroupAdd (else a tree in workgroup memory). WGR: the
// reduction helper (MATVEC_NEG, DZ_CSR). BUCKET: the bucket-bounds helper (DZ_CSR, ROWS_GRAD).
// Workgroups: WG lanes (a power of two ≤ 256) for MATVEC_NEG, DZ_CSR, ROWS_GRAD; 256 for the rest.

//#if SG
enable subgroups;
//#endif
struct Params {
  B: u32,      // rows
  d: u32,      // model width
  m: u32,      // latents
  kTot: u32,   // codes per row
  lo: u32,     // column range of the codes
  hi: u32,
  nC: u32,     // CSR chunks (CNT's second dimension)
  c0: u32,     // ROWS_GRAD, DZ_CSR: the row block = CSR chunks [c0, c1)
  c1: u32,
  n: u32,      // radix, scan: entries / elements
  nT: u32,     // radix: tiles of 256 entries; scan: blocks of 1024
  shift: u32,  // radix: the pass's digit = (key >> shift) & 255
};
@group(0) @binding(0) var<uniform> P: Params;

fn row_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 { return wg.y + wg.z * nwg.y; }
fn flat(wg: vec3<u32>, nwg: vec3<u32>) -> u32 { return wg.x + wg.y * nwg.x; }

//#if WGR
// Σ of v over the workgroup's WG lanes, every lane gets it (every lane must call it, in uniform
// control flow). SG: subgroupAdd, then one slot per subgroup (taken with an atomic: no assumption
// about how lanes map to subgroups); the slots are added in the order of their subgroup's first lane,
// so the result does not depend on which subgroup came first. Else a tree in workgroup memory.
var<workgroup> red: array<vec4<f32>, ${WG}>;
//#if SG
var<workgroup> slotLane: array<u32, ${WG}>;
var<workgroup> nSlots: atomic<u32>;
fn wg_sum4(li: u32, sgLane: u32, v: vec4<f32>) -> vec4<f32> {
  let s = subgroupAdd(v);
  let first = subgroupMin(li);
  if (sgLane == 0u) {
    let k = atomicAdd(&nSlots, 1u);
    red[k] = s;
    slotLane[k] = first;
  }
  workgroupBarrier();
  let n = atomicLoad(&nSlots);
  // slot li moves to its rank among the slots by first lane
  var mine = vec4<f32>(0.0);
  var rank = 0u;
  if (li < n) {
    let f = slotLane[li];
    for (var k = 0u; k < n; k++) { rank += select(0u, 1u, slotLane[k] < f); }
    mine = red[li];
  }
  workgroupBarrier();
  if (li < n) { red[rank] = mine; }
  if (li == 0u) { atomicStore(&nSlots, 0u); } // every lane has read it (barrier above)
  workgroupBarrier();
  var t = vec4<f32>(0.0);
  for (var i = 0u; i < n; i++) { t += red[i]; }
  workgroupBarrier();
  return t;
}
//#else
fn wg_sum4(li: u32, sgLane: u32, v: vec4<f32>) -> vec4<f32> {
  red[li] = v;
  workgroupBarrier();
  for (var h = ${WG}u / 2u; h > 0u; h = h / 2u) {
    if (li < h) { red[li] = red[li] + red[li + h]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
//#endif
//#endif

//#if MATVEC_NEG
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
// grid: one workgroup per output c (x + y·nwg.x)
@compute @workgroup_size(${WG})
fn matvec_neg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32
//#if SG
  , @builtin(subgroup_invocation_id) sgLane: u32
//#endif
) {
//#if !SG
  let sgLane = 0u;
//#endif
  let c = flat(wg, nwg);
  if (c >= P.d) { return; }
  let base = c * P.m;
  var a0 = 0.0;
  var a1 = 0.0;
  var j = li;
  for (; j + ${WG}u < P.m; j += 2u * ${WG}u) {
    a0 = fma(W[base + j], V[j], a0);
    a1 = fma(W[base + j + ${WG}u], V[j + ${WG}u], a1);
  }
  if (j < P.m) { a0 = fma(W[base + j], V[j], a0); }
  let t = wg_sum4(li, sgLane, vec4<f32>(a0 + a1, 0.0, 0.0, 0.0));
  if (li == 0u) { O[c] = -t.x; }
}
//#endif

//#if BUCKET
// The entries of latent j in CSR chunks [c0, c1): positions [p0, p1) of LIST (DZ_CSR, ROWS_GRAD).
fn bucket(j: u32) -> vec2<u32> {
  let r0 = RS[j];
  var p0 = r0;
  if (P.c0 > 0u) { p0 = r0 + CNT[j * P.nC + P.c0 - 1u]; }
  return vec2<u32>(p0, r0 + CNT[j * P.nC + P.c1 - 1u]);
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
const NONE = 0xffffffffu;
var<workgroup> eRow: array<u32, ${WG}>; // first vec4 of the entry's row of G, NONE where Z ≤ 0
var<workgroup> eIdx: array<u32, ${WG}>; // the entry (index into Z, DZ)
// grid: y (+z) the latents
@compute @workgroup_size(${WG})
fn dz_csr(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32
//#if SG
  , @builtin(subgroup_invocation_id) sgLane: u32
//#endif
) {
//#if !SG
  let sgLane = 0u;
//#endif
  let j = row_of(wg, nwg);
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let pr = bucket(j);
  let wb = j * d4;
  for (var base = pr.x; base < pr.y; base += ${WG}u) {
    let p = base + li;
    var rb = NONE;
    var ee = 0u;
    if (p < pr.y) {
      let bs = LIST[p];
      let b = bs >> 10u;
      ee = b * P.kTot + (bs & 1023u);
      if (Z[ee] > 0.0) { rb = b * d4; }
    }
    eRow[li] = rb;
    eIdx[li] = ee;
    workgroupBarrier();
    let n = min(${WG}u, pr.y - base);
    for (var i = 0u; i < n; i += 4u) {
      var r: array<u32, 4>;
      for (var t = 0u; t < 4u; t++) { r[t] = select(NONE, eRow[min(i + t, ${WG}u - 1u)], i + t < n); }
      var acc = vec4<f32>(0.0);
      for (var c = li; c < d4; c += ${WG}u) {
        let w = W[wb + c];
        if (r[0] != NONE) { acc.x += dot(G[r[0] + c], w); }
        if (r[1] != NONE) { acc.y += dot(G[r[1] + c], w); }
        if (r[2] != NONE) { acc.z += dot(G[r[2] + c], w); }
        if (r[3] != NONE) { acc.w += dot(G[r[3] + c], w); }
      }
      let s = wg_sum4(li, sgLane, acc);
      if (li < 4u && li < n - i && r[li] != NONE) { DZ[eIdx[i + li]] = s[li]; }
    }
    workgroupBarrier();
  }
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
@group(0) @binding(${BV}) var<storage, read> V: array<vec4<f32>>;
@group(0) @binding(${BV} + 1) var<storage, read_write> OUT: array<vec4<f32>>;
//#if BIAS
@group(0) @binding(${BV} + 2) var<storage, read_write> OB: array<f32>;
//#endif
var<workgroup> eRow: array<u32, ${WG}>; // first vec4 of the entry's row of V
var<workgroup> eCoef: array<f32, ${WG}>; // its coefficient (0: nothing to add)
// grid: x covers d/4 in tiles of WG, y (+z) the latents
@compute @workgroup_size(${WG})
fn rows_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let j = row_of(wg, nwg);
  if (j >= P.m) { return; }
  let d4 = P.d / 4u;
  let col = wg.x * ${WG}u + li;
  let cc = min(col, d4 - 1u);
  let pr = bucket(j);
//#if ACCUM
  if (pr.x == pr.y) { return; } // nothing to add: skip the read-modify-write of OUT
//#endif
  var acc = vec4<f32>(0.0);
  var bacc = 0.0;
  for (var base = pr.x; base < pr.y; base += ${WG}u) {
    let p = base + li;
    var rb = 0u;
    var cf = 0.0;
    if (p < pr.y) {
      let bs = LIST[p];
      let b = bs >> 10u;
      let e = b * P.kTot + (bs & 1023u);
//#if ENC
      cf = select(0.0, G[e], Z[e] > 0.0);
//#else
      cf = Z[e];
//#endif
      rb = b * d4;
    }
    eRow[li] = rb;
    eCoef[li] = cf;
    workgroupBarrier();
    let n = min(${WG}u, pr.y - base);
    for (var i = 0u; i < n; i++) {
      let c = eCoef[i];
      if (c != 0.0) {
        acc = fma(vec4<f32>(c), V[eRow[i] + cc], acc);
        bacc += c;
      }
    }
    workgroupBarrier();
  }
  if (col < d4) {
//#if ACCUM
    OUT[j * d4 + col] += acc;
//#else
    OUT[j * d4 + col] = acc;
//#endif
  }
//#if BIAS
  if (col == 0u) {
//#if ACCUM
    OB[j] += bacc;
//#else
    OB[j] = bacc;
//#endif
  }
//#endif
}
//#endif

// ---- CSR by radix sort ------------------------------------------------------------------------

//#if RADIX_HIST
//#if FIRST
@group(0) @binding(1) var<storage, read> IDX: array<u32>;
//#else
@group(0) @binding(1) var<storage, read> KIN: array<u32>;
//#endif
@group(0) @binding(2) var<storage, read_write> HIST: array<u32>;
var<workgroup> h: array<atomic<u32>, 256>;
// grid: one workgroup per tile (x + y·nwg.x)
@compute @workgroup_size(256)
fn radix_hist(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let tile = flat(wg, nwg);
  if (tile >= P.nT) { return; }
  atomicStore(&h[li], 0u);
  workgroupBarrier();
  let t = tile * 256u + li;
  if (t < P.n) {
//#if FIRST
    let w = P.hi - P.lo;
    let key = min(IDX[(t / w) * P.kTot + P.lo + t % w], P.m);
//#else
    let key = KIN[t];
//#endif
    atomicAdd(&h[(key >> P.shift) & 255u], 1u);
  }
  workgroupBarrier();
  HIST[li * P.nT + tile] = atomicLoad(&h[li]);
}
//#endif

//#if RADIX_SCATTER
//#if FIRST
@group(0) @binding(1) var<storage, read> IDX: array<u32>;
@group(0) @binding(2) var<storage, read> HIST: array<u32>;
@group(0) @binding(3) var<storage, read_write> KOUT: array<u32>;
@group(0) @binding(4) var<storage, read_write> VOUT: array<u32>;
//#else
@group(0) @binding(1) var<storage, read> KIN: array<u32>;
@group(0) @binding(2) var<storage, read> VIN: array<u32>;
@group(0) @binding(3) var<storage, read> HIST: array<u32>;
@group(0) @binding(4) var<storage, read_write> KOUT: array<u32>;
@group(0) @binding(5) var<storage, read_write> VOUT: array<u32>;
//#endif
var<workgroup> dg: array<u32, 256>;
@compute @workgroup_size(256)
fn radix_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
  let tile = flat(wg, nwg);
  if (tile >= P.nT) { return; }
  let t = tile * 256u + li;
  var key = 0u;
  var val = 0u;
  var dgt = 0xffffffffu;
  if (t < P.n) {
//#if FIRST
    let w = P.hi - P.lo;
    let b = t / w;
    let s = P.lo + t % w;
    key = min(IDX[b * P.kTot + s], P.m);
    val = (b << 10u) | s;
//#else
    key = KIN[t];
    val = VIN[t];
//#endif
    dgt = (key >> P.shift) & 255u;
  }
  dg[li] = dgt;
  workgroupBarrier();
  if (t < P.n) {
    // rank among the tile's entries with this digit (stable: earlier entries first)
    var r = 0u;
    for (var l = 0u; l < li; l++) { r += select(0u, 1u, dg[l] == dgt); }
    let pos = HIST[dgt * P.nT + tile] + r;
    KOUT[pos] = key;
    VOUT[pos] = val;
  }
}
//#endif

//#if SCAN_BLOCK
@group(0) @binding(1) var<storage, read_write> A: array<u32>;
@group(0) @binding(2) var<storage, read_write> SUMS: array<u32>;
var<workgroup> ws: array<u32, 256>;
// grid: one workgroup per block of 1024 elements; lane li owns 4 consecutive ones
@compute @workgroup_size(256)
fn scan_block(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let blk = flat(wg, nwg);
  if (blk >= P.nT) { return; }
  let i0 = blk * 1024u + li * 4u;
  var ex: array<u32, 4>;
  var tot = 0u;
  for (var q = 0u; q < 4u; q++) {
    ex[q] = tot;
    if (i0 + q < P.n) { tot += A[i0 + q]; }
  }
  ws[li] = tot;
  workgroupBarrier();
  // inclusive scan of the lane totals (Hillis–Steele)
  for (var off = 1u; off < 256u; off *= 2u) {
    var add = 0u;
    if (li >= off) { add = ws[li - off]; }
    workgroupBarrier();
    ws[li] += add;
    workgroupBarrier();
  }
  let before = ws[li] - tot;
  for (var q = 0u; q < 4u; q++) {
    if (i0 + q < P.n) { A[i0 + q] = before + ex[q]; }
  }
  if (li == 255u) { SUMS[blk] = ws[255]; }
}
//#endif

//#if SCAN_ADD
@group(0) @binding(1) var<storage, read_write> A: array<u32>;
@group(0) @binding(2) var<storage, read> SUMS: array<u32>;
@compute @workgroup_size(256)
fn scan_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let blk = flat(wg, nwg);
  if (blk >= P.nT) { return; }
  let add = SUMS[blk];
  for (var q = 0u; q < 4u; q++) {
    let i = blk * 1024u + li * 4u + q;
    if (i < P.n) { A[i] += add; }
  }
}
//#endif

//#if CSR_BOUNDS
@group(0) @binding(1) var<storage, read> KEYS: array<u32>;
@group(0) @binding(2) var<storage, read_write> RS: array<u32>;
@group(0) @binding(3) var<storage, read_write> CNT: array<u32>;
fn lower_bound(v: u32) -> u32 {
  var a = 0u;
  var b = P.n;
  while (a < b) {
    let mid = (a + b) / 2u;
    if (KEYS[mid] < v) { a = mid + 1u; } else { b = mid; }
  }
  return a;
}
// grid: one lane per latent j ≤ m (x + y·nwg.x workgroups of 256)
@compute @workgroup_size(256)
fn csr_bounds(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let j = flat(wg, nwg) * 256u + li;
  if (j > P.m) { return; }
  let a = lower_bound(j);
  RS[j] = a;
  if (j < P.m) { CNT[j] = lower_bound(j + 1u) - a; }
}
//#endif
