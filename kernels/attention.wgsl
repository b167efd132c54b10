// Fused attention for inference (forward only): O = softmax(scale·Q·Kᵀ [+ causal mask])·V with the
// scores kept in workgroup memory and registers, never in global memory (flash-style: online softmax
// with a running max and sum per query row). The GPU profile's attention; src/tensor/ops/nn.ts
// (scaledDotProductAttention) picks it, autograd keeps the composed matmul + softmax ops.
// SPLIT (split-K, flash-decoding: pass 1 of 2): the keys [0, kEnd) are cut into P.splits chunks of
// P.chunk keys and each workgroup runs one (query tile, chunk); instead of O it writes, per query row
// and chunk, the unnormalised accumulator, the running max and the sum of exponentials to Part
// (a chunk the row sees no key of: 0s, max LOW, sum 0); kernels/attention_combine.wgsl merges them.
// It lets a decode step (one query row per head: one workgroup per kv head) fill a GPU.
//
// Layout: Q [B, H, Tq, D], K [B, Hkv, Tk, D], V [B, Hkv, Tk, DV], any strides except a unit stride
// along D / DV (offsets and strides in elements); O dense [B, H, Tq, DV]. Grouped-query attention:
// query head h reads kv head h / rep (rep = H / Hkv). The rows of one workgroup are rows ρ of the
// [rep·Tq] queries of one kv head (ρ → head kvh·rep + ρ / Tq, query ρ mod Tq), so the rep heads that
// share a kv head share its K/V tiles (a decode step's rep heads fill one workgroup).
// Causal: query t sees keys j ≤ t + P.offset (a KV cache of Tk − Tq earlier steps: offset Tk − Tq);
// a row that sees no key is 0, as the composed op gives.
//
// Design: a workgroup of WG = L·BQ invocations owns BQ query rows, L lanes per row (L = 8 in the
// one-pass kernel; the split pass may take 16 or 32: fewer rows, more lanes each). Q (scaled) sits
// in workgroup memory for the whole pass; keys advance in tiles of BK: the K tile is loaded into
// workgroup memory (consecutive invocations read consecutive elements of a key row), lane c of row
// r computes the scores of keys c, c + L, … (BK / L of them, in registers), the row's L lanes agree on
// the new running max through workgroup memory, the V tile replaces the K tile, each lane writes
// its exp(score − max) into the row's BK-wide probability strip, and lane c accumulates output
// columns c, c + L, … (⌈DV / L⌉ of them, in registers, rescaled by exp(old max − new max)).
// Rows of KV are padded to KP = max(D, DV) + 1 floats so the L lanes of a row read L banks.
// Everything is computed in f32: Q, K, V are converted on load, O on store; the half-precision
// variant is the one whose storage types name the 16-bit type (the registry enables it only then).
//
// Bindings: 0 uniform P; 1 Q (array<TQ>); 2 K (array<TK>); 3 V (array<TV>); 4 O (array<TO>), or
//           with SPLIT 4 Part (array<f32>): dense [B, H, Tq, P.splits, DV + 2], per (row, chunk) the
//           DV accumulator columns, then the running max, then the sum of exponentials.
// Defines: TQ TK TV TO storage types; D, DV head dims; BQ query rows per workgroup; BK keys per
//          tile (a multiple of L); KP = max(D, DV) + 1; L lanes per row (8, 16 or 32); SPLIT.
// Workgroup memory: 4·(BQ·D + BK·KP + BQ·BK + 2·L·BQ) bytes (the op picks BQ, BK to fit the limit).
// Workgroup: L·BQ invocations. Grid: linear workgroup index x + y·nwg.x over P.groups =
//            B·Hkv·P.tiles (query tile fastest), with SPLIT B·Hkv·P.tiles·P.splits (chunk fastest).
struct Params {
  Tq: u32, Tk: u32, rep: u32, rows: u32,
  Hkv: u32, tiles: u32, groups: u32, causal: u32,
  offset: i32, scale: f32, splits: u32, chunk: u32, // splits, chunk: SPLIT only
  offQ: u32, sQb: u32, sQh: u32, sQt: u32,
  offK: u32, sKb: u32, sKh: u32, sKt: u32,
  offV: u32, sVb: u32, sVh: u32, sVt: u32,
  dRun: u32, pad0: u32, pad1: u32, pad2: u32, // dRun = D (the score loop's bound)
};

const D = ${D}u;
const DV = ${DV}u;
const BQ = ${BQ}u;
const BK = ${BK}u;
const KP = ${KP}u;
const L = ${L}u;             // lanes per query row
const WG = L * BQ;
const SK = BK / L;           // scores per lane and tile
const OV = (DV + L - 1u) / L; // output columns per lane
const LOW = -3.4e38;         // running-max start: exp(LOW − m) is 0, never inf − inf

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<${TQ}>;
@group(0) @binding(2) var<storage, read> K: array<${TK}>;
@group(0) @binding(3) var<storage, read> V: array<${TV}>;
//#if SPLIT
@group(0) @binding(4) var<storage, read_write> Part: array<f32>;
//#else
@group(0) @binding(4) var<storage, read_write> O: array<${TO}>;
//#endif

var<workgroup> Qs: array<f32, BQ * D>;
var<workgroup> KVs: array<f32, BK * KP>;
var<workgroup> Ps: array<f32, BQ * BK>;
var<workgroup> redMax: array<f32, WG>;
var<workgroup> redSum: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let lin = wg.x + wg.y * nwg.x;
  if (lin >= P.groups) { return; } // the whole workgroup: uniform
//#if SPLIT
  let ck = lin % P.splits; // the chunk
  let tile = (lin / P.splits) % P.tiles;
  let bh = lin / P.splits / P.tiles;
//#else
  let tile = lin % P.tiles;
  let bh = lin / P.tiles;
//#endif
  let b = bh / P.Hkv;
  let kvh = bh % P.Hkv;
  let r = li / L;
  let c = li % L;
  let rho0 = tile * BQ;
  let rhoLast = min(rho0 + BQ, P.rows) - 1u;
  let rho = rho0 + r;
  let live = rho < P.rows;
  let rr = min(rho, P.rows - 1u);
  let h = kvh * P.rep + rr / P.Tq;
  let t = rr % P.Tq;

  // Q tile, scaled (rows past the end repeat the last row: loaded, never stored)
  let qb = P.offQ + b * P.sQb;
  for (var i = li; i < BQ * D; i += WG) {
    let ri = min(rho0 + i / D, P.rows - 1u);
    let hi = kvh * P.rep + ri / P.Tq;
    Qs[i] = f32(Q[qb + hi * P.sQh + (ri % P.Tq) * P.sQt + i % D]) * P.scale;
  }
  // keys this row sees, and (uniform) the keys any row of the tile sees
  var vis = P.Tk;
  var kEnd = P.Tk;
  if (P.causal != 0u) {
    vis = u32(clamp(i32(t) + P.offset + 1, 0, i32(P.Tk)));
    var tMax = P.Tq - 1u;
    if (rho0 / P.Tq == rhoLast / P.Tq) { tMax = rhoLast % P.Tq; }
    kEnd = u32(clamp(i32(tMax) + P.offset + 1, 0, i32(P.Tk)));
  }

  // keys [kBeg, kEnd) in this workgroup: all of them, or its chunk's (empty past the tile's last key)
  var kBeg = 0u;
//#if SPLIT
  kBeg = min(ck * P.chunk, kEnd);
  kEnd = min(kBeg + P.chunk, kEnd);
  vis = min(vis, kEnd); // a tile's keys past the chunk's end are the next chunk's
//#endif
  let kb = P.offK + b * P.sKb + kvh * P.sKh;
  let vb = P.offV + b * P.sVb + kvh * P.sVh;
  // a run-time bound (= D): lavapipe's LLVM unrolls a constant one fully where D·SK ≤ 128 and then
  // takes ~20 s of CPU to compile the kernel (2.5 s otherwise); a GPU's compiler still unrolls it in part
  let dN = P.dRun;
  var m = LOW;
  var l = 0.0;
  var o: array<f32, OV>;
  var s: array<f32, SK>;
  for (var k0 = kBeg; k0 < kEnd; k0 += BK) {
    let nk = min(BK, kEnd - k0);
    workgroupBarrier(); // the previous tile's probabilities and V are read (and Q is in place)
    for (var i = li; i < BK * D; i += WG) {
      let j = i / D;
      var x = 0.0;
      if (j < nk) { x = f32(K[kb + (k0 + j) * P.sKt + i % D]); }
      KVs[j * KP + i % D] = x;
    }
    workgroupBarrier();
    var mt = m;
    for (var jj = 0u; jj < SK; jj++) {
      let j = c + jj * L;
      var acc = 0.0;
      for (var d = 0u; d < dN; d++) { acc = fma(Qs[r * D + d], KVs[j * KP + d], acc); }
      s[jj] = acc;
      if (k0 + j < vis) { mt = max(mt, acc); }
    }
    redMax[li] = mt;
    workgroupBarrier(); // every lane is done with K, and the row maxima are posted
    var mNew = redMax[r * L];
    for (var i = 1u; i < L; i++) { mNew = max(mNew, redMax[r * L + i]); }
    for (var i = li; i < BK * DV; i += WG) {
      let j = i / DV;
      var x = 0.0;
      if (j < nk) { x = f32(V[vb + (k0 + j) * P.sVt + i % DV]); }
      KVs[j * KP + i % DV] = x;
    }
    var ps = 0.0;
    for (var jj = 0u; jj < SK; jj++) {
      let j = c + jj * L;
      var p = 0.0;
      if (k0 + j < vis) { p = exp(s[jj] - mNew); }
      Ps[r * BK + j] = p;
      ps += p;
    }
    redSum[li] = ps;
    let alpha = exp(m - mNew);
    m = mNew;
    workgroupBarrier(); // V and the probabilities are in place
    var tsum = 0.0;
    for (var i = 0u; i < L; i++) { tsum += redSum[r * L + i]; }
    l = l * alpha + tsum;
    for (var jj = 0u; jj < OV; jj++) {
      let col = c + jj * L;
      if (col < DV) {
        var acc = o[jj] * alpha;
        for (var j = 0u; j < nk; j++) { acc = fma(Ps[r * BK + j], KVs[j * KP + col], acc); }
        o[jj] = acc;
      }
    }
  }
  if (!live) { return; }
//#if SPLIT
  // the row's partial for this chunk (every lane of the row holds the same m and l)
  let pb = (((b * P.Hkv * P.rep + h) * P.Tq + t) * P.splits + ck) * (DV + 2u);
  for (var jj = 0u; jj < OV; jj++) {
    let col = c + jj * L;
    if (col < DV) { Part[pb + col] = o[jj]; }
  }
  if (c == 0u) {
    Part[pb + DV] = m;
    Part[pb + DV + 1u] = l;
  }
//#else
  var inv = 0.0;
  if (l > 0.0) { inv = 1.0 / l; }
  let ob = ((b * P.Hkv * P.rep + h) * P.Tq + t) * DV;
  for (var jj = 0u; jj < OV; jj++) {
    let col = c + jj * L;
    if (col < DV) { O[ob + col] = ${TO}(o[jj] * inv); }
  }
//#endif
}
