// Top-k along rows, and its backward scatter.
//
// Entry `topk_select` — one invocation per (row, chunk), no barriers (on lavapipe a workgroup is
// one CPU thread running 8 invocations per SIMD vector; barriers are what cost there). Each
// invocation owns SLOTS (key, index) slots in workgroup memory, laid out slot-major.
//   key: order-preserving u32 image of the f32 value (-0 mapped to +0; NaN above +inf);
//   order: larger key first, then lower index (ties keep the lower index).
//   Sentinels (key 0, index 0xffffffff) lose to every real element.
// Two algorithms (HEAP define):
//   filter (FIRST passes, k ≤ 128, long chunks; SLOTS = 4·pow2(k)): pass 1 reduces runs of 8
//     elements in registers and spreads the run maxima round-robin over G = 2k groups; the k-th
//     largest group maximum, tau, has ≥ k elements at or above it. Pass 2 appends the elements
//     that beat (tau, ∞) to the slot list (≈ 1.35k of them on random data); a full list is cut to
//     its top k by partial selection and its k-th pair becomes the new bar. A final partial
//     selection sort leaves the best k in slots 0..k-1, best first.
//   heap (otherwise; SLOTS = pow2(k)): a streaming min-heap of k pairs whose root is the worst
//     kept pair; one compare per element, log k work when an element beats the root.
// Defines: TX value type; SLOTS; WG workgroup size; HEAP; POP (HEAP and FINAL: pop the heap so the
//   output is sorted; without it a heap's k results are written in heap order);
//   FIRST  input is X (values, row `row` starting at offX + row·strideX, n long); VEC4: read as
//          16-byte quads (n = strideX, offX and chunk starts multiples of 4); COLS: element j of a
//          row is X[row start + COLS[j]] (a column subset, i32 [n], binding BCOLS; clamped to the row);
//          else CIN: (key, index) pairs as u32 [rows, n, 2] from a previous pass.
//   FINAL  write values V [rows, k] (TX) and indices I [rows, k] (i32), sorted best first (the
//          filter variant always, the heap with POP);
//          else COUT: k unsorted (key, index) pairs per (row, chunk) → [rows, chunks·k, 2].
// Bindings: topk_select 0 P; 1 X (or X4) or CIN; FINAL: 2 V, 3 I; else 2 COUT; then COLS.
//
// Entry `topk_radix` (RADIX, with FIRST and FINAL): radix select for unsorted results; see there.
//
// Entry `scatter` (backward of the values): thread per (row, j < k):
//   DX[row·n + I[row·k + j]] = G[row·k + j] (indices unique within a row; DX pre-zeroed).
// Bindings: scatter 0 P; 1 G (array<${TX}>); 2 I (array<i32>); 3 DX (array<${TX}>).

struct Params { rows: u32, n: u32, k: u32, chunks: u32, chunkLen: u32, offX: u32, strideX: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> P: Params;

const SLOTS = ${SLOTS}u;
const SENTINEL_I = 0xffffffffu;

// per-lane arrays in workgroup memory, slot-major: the 8 lanes of a SIMD vector that touch the same
// slot touch neighbouring words (uniform slot → one vector load, no gather)
var<workgroup> hk: array<u32, ${SLOTS} * ${WG}>;
var<workgroup> hi: array<u32, ${SLOTS} * ${WG}>;
var<private> lid: u32;
fn slot(s: u32) -> u32 { return s * ${WG}u + lid; }

//#if FIRST
//#if VEC4
@group(0) @binding(1) var<storage, read> X4: array<vec4<${TX}>>;
//#else
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
//#endif
//#else
@group(0) @binding(1) var<storage, read> CIN: array<u32>;
//#endif
//#if FINAL
@group(0) @binding(2) var<storage, read_write> V: array<${TX}>;
@group(0) @binding(3) var<storage, read_write> I: array<i32>;
//#else
@group(0) @binding(2) var<storage, read_write> COUT: array<u32>;
//#endif
//#if COLS
@group(0) @binding(${BCOLS}) var<storage, read> COLS: array<i32>;
//#endif

fn to_key(v: f32) -> u32 {
  var b = bitcast<u32>(v);
  if (b == 0x80000000u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// a worse than b: smaller key, or equal key and larger index
fn worse(ak: u32, ai: u32, bk: u32, bi: u32) -> bool {
  return ak < bk || (ak == bk && ai > bi);
}

var<private> base: u32;

// keys of elements j .. j+3 (VEC4: base and j are multiples of 4, one 16-byte load)
fn load_keys4(j: u32) -> vec4<u32> {
//#if VEC4
  let q = X4[(base + j) / 4u];
  return vec4<u32>(to_key(f32(q.x)), to_key(f32(q.y)), to_key(f32(q.z)), to_key(f32(q.w)));
//#else
  return vec4<u32>(load_pair(j).x, load_pair(j + 1u).x, load_pair(j + 2u).x, load_pair(j + 3u).x);
//#endif
}

// (key, index) of element j of this lane's input row
fn load_pair(j: u32) -> vec2<u32> {
//#if FIRST
//#if VEC4
  let q = X4[(base + j) / 4u];
  return vec2<u32>(to_key(f32(q[(base + j) % 4u])), j);
//#else
//#if COLS
  return vec2<u32>(to_key(f32(X[base + min(u32(COLS[j]), P.strideX - 1u)])), j);
//#else
  return vec2<u32>(to_key(f32(X[base + j])), j);
//#endif
//#endif
//#else
  return vec2<u32>(CIN[2u * (base + j)], CIN[2u * (base + j) + 1u]);
//#endif
}

//#if HEAP
// Put (key, idx) at slot `start` and sift it down the min-heap (root = worst) over the first `size` slots.
fn sift_down(start: u32, key: u32, idx: u32, size: u32) {
  var pos = start;
  loop {
    let l = 2u * pos + 1u;
    if (l >= size) { break; }
    var c = l;
    let r = l + 1u;
    if (r < size && worse(hk[slot(r)], hi[slot(r)], hk[slot(l)], hi[slot(l)])) { c = r; }
    if (!worse(hk[slot(c)], hi[slot(c)], key, idx)) { break; }
    hk[slot(pos)] = hk[slot(c)];
    hi[slot(pos)] = hi[slot(c)];
    pos = c;
  }
  hk[slot(pos)] = key;
  hi[slot(pos)] = idx;
}
//#else
// Partial selection sort: slots [0, min(k, cnt)) get the best pairs of [0, cnt), best first.
fn select_top(cnt: u32, k: u32) {
  for (var r = 0u; r < min(k, cnt); r++) {
    var bk = hk[slot(r)];
    var bi = hi[slot(r)];
    var bs = r;
    for (var t = r + 1u; t < cnt; t++) {
      let ck = hk[slot(t)];
      let ci = hi[slot(t)];
      if (worse(bk, bi, ck, ci)) {
        bk = ck;
        bi = ci;
        bs = t;
      }
    }
    hk[slot(bs)] = hk[slot(r)];
    hi[slot(bs)] = hi[slot(r)];
    hk[slot(r)] = bk;
    hi[slot(r)] = bi;
  }
}
//#endif

//#if !HEAP
var<private> thrK: u32;
var<private> thrI: u32;
var<private> cnt: u32;

// append (key, idx) if it beats the bar (thrK, thrI); cut a full list to its top k
fn offer(key: u32, idx: u32, k: u32) {
  if (worse(thrK, thrI, key, idx)) {
    hk[slot(cnt)] = key;
    hi[slot(cnt)] = idx;
    cnt += 1u;
    if (cnt == SLOTS) {
      select_top(cnt, k);
      cnt = k;
      thrK = hk[slot(k - 1u)];
      thrI = hi[slot(k - 1u)];
    }
  }
}
//#endif

@compute @workgroup_size(${WG})
fn topk_select(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
  let lane = (wg.x + wg.y * nwg.x) * ${WG}u + li;
  lid = li;
  if (lane >= P.rows * P.chunks) { return; }
  let row = lane / P.chunks;
  let chunk = lane % P.chunks;
  let k = P.k;
//#if FIRST
  base = P.offX + row * P.strideX;
//#else
  base = row * P.n;
//#endif
  let j0 = chunk * P.chunkLen;
  let j1 = min(P.n, j0 + P.chunkLen);
//#if HEAP
  // Streaming k-slot min-heap: one compare against the root per element, log k work per insert.
  // The first k elements (sentinels past a short chunk's end) become a heap by Floyd's bottom-up
  // construction, O(k), instead of k root insertions, O(k log k).
  let seeded = min(k, j1 - j0);
  for (var s = 0u; s < k; s++) {
    var e = vec2<u32>(0u, SENTINEL_I);
    if (s < seeded) { e = load_pair(j0 + s); }
    hk[slot(s)] = e.x;
    hi[slot(s)] = e.y;
  }
  for (var p = k / 2u; p > 0u; p--) { sift_down(p - 1u, hk[slot(p - 1u)], hi[slot(p - 1u)], k); }
  var rootK = hk[slot(0u)];
  var rootI = hi[slot(0u)];
  for (var j = j0 + seeded; j < j1; j++) {
    let e = load_pair(j);
    if (worse(rootK, rootI, e.x, e.y)) {
      sift_down(0u, e.x, e.y, k);
      rootK = hk[slot(0u)];
      rootI = hi[slot(0u)];
    }
  }
//#else
  // Threshold then filter. Pass 1: maxima of G = 2k interleaved groups (uniform slot index); the
  // k-th largest of them, tau, has at least k elements ≥ it, so the top k all pass `key ≥ tau`
  // (about 1.35k elements per row on random data).
  let G = 2u * k;
  for (var s = 0u; s < G; s++) { hk[slot(s)] = 0u; }
  // runs of 8 consecutive elements reduce in registers; runs go round-robin to the G groups
  // (interleaving keeps tau tight even on sorted rows)
  var g = 0u;
  var j = j0;
  for (; j + 8u <= j1; j += 8u) {
    let m4 = max(load_keys4(j), load_keys4(j + 4u));
    let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
    let s = slot(g);
    hk[s] = max(hk[s], m);
    g += 1u;
    if (g == G) { g = 0u; }
  }
  for (; j < j1; j++) {
    let s = slot(g);
    hk[s] = max(hk[s], load_pair(j).x);
  }
  for (var r = 0u; r < k; r++) {
    var bk = hk[slot(r)];
    var bs = r;
    for (var t = r + 1u; t < G; t++) {
      let v = hk[slot(t)];
      if (v > bk) {
        bk = v;
        bs = t;
      }
    }
    hk[slot(bs)] = hk[slot(r)];
    hk[slot(r)] = bk;
  }
  // Pass 2: append pairs that beat (tau, ∞) to the slot list; a full list is cut to its top k,
  // whose worst pair becomes the new bar (equal keys then need a lower index).
  thrK = hk[slot(k - 1u)];
  thrI = SENTINEL_I;
  cnt = 0u;
  j = j0;
//#if FIRST
  for (; j + 4u <= j1; j += 4u) {
    let q = load_keys4(j);
    // cheap vector test first: most quads hold no candidate
    if (any(q >= vec4<u32>(thrK))) {
      offer(q.x, j, k);
      offer(q.y, j + 1u, k);
      offer(q.z, j + 2u, k);
      offer(q.w, j + 3u, k);
    }
  }
//#endif
  for (; j < j1; j++) {
    let e = load_pair(j);
    offer(e.x, e.y, k);
  }
  select_top(cnt, k);
  // a chunk shorter than k leaves sentinel slots
  for (var s = cnt; s < k; s++) {
    hk[slot(s)] = 0u;
    hi[slot(s)] = SENTINEL_I;
  }
//#endif
//#if FINAL
  let ob = row * k;
//#if POP
  // pop the worst into the last output slot first: output is best first
  for (var t = k; t > 0u; t--) {
    V[ob + t - 1u] = ${TX}(from_key(hk[slot(0u)]));
    I[ob + t - 1u] = i32(hi[slot(0u)]);
    let last = t - 1u;
    if (last > 0u) { sift_down(0u, hk[slot(last)], hi[slot(last)], last); }
  }
//#else
  for (var s = 0u; s < k; s++) {
    V[ob + s] = ${TX}(from_key(hk[slot(s)]));
    I[ob + s] = i32(hi[slot(s)]);
  }
//#endif
//#else
  let ob = (row * P.chunks + chunk) * k;
  for (var s = 0u; s < k; s++) {
    COUT[2u * (ob + s)] = hk[slot(s)];
    COUT[2u * (ob + s) + 1u] = hi[slot(s)];
  }
//#endif
}

//#if RADIX
// Entry `topk_radix` (FIRST and FINAL, unsorted output): radix select, one invocation per row.
// The streaming heap diverges on lavapipe when k is a large share of the row: with 8 rows per SIMD
// vector nearly every element makes some lane sift (AuxK: k = 128 of ~1024 dead latents). Here
// every element costs a load and a histogram increment, the same for all lanes:
//   level L = 0..3 looks at key bits [24 − 8L, 32 − 8L) of the elements whose higher bits equal
//   the prefix chosen so far: a 256-bin histogram gives the bin holding the need-th largest; the
//   elements of higher bins are output; the bin's elements go on to the next level. Once a bin
//   holds ≤ SLOTS elements they are collected into the slot list (in index order) and later levels
//   scan only that list. At the last level (or when the whole bin is needed) the bin's first
//   `need` elements in index order are output: equal keys keep the lower index, as in topk_select.
// Workgroup memory per lane: the SLOTS-long slot list and 256 histogram bins.
var<workgroup> rh: array<u32, 256 * ${WG}>;
fn hslot(b: u32) -> u32 { return b * ${WG}u + lid; }

fn put(ob: u32, s: u32, key: u32, idx: u32) {
  V[ob + s] = ${TX}(from_key(key));
  I[ob + s] = i32(idx);
}

// One element whose key digit at this level is d: output it if its bin is above bsel, or if it is
// in bsel on the last level and fewer than `need` of bsel's were taken; true: it goes on to the
// next level (bin bsel, not the last level).
fn choose(ob: u32, key: u32, idx: u32, d: u32, bsel: u32, last: bool, need: u32,
          out: ptr<function, u32>, taken: ptr<function, u32>) -> bool {
  if (d > bsel || (d == bsel && last && *taken < need)) {
    put(ob, *out, key, idx);
    *out += 1u;
    if (d == bsel) { *taken += 1u; }
    return false;
  }
  return d == bsel && !last;
}

@compute @workgroup_size(${WG})
fn topk_radix(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let row = (wg.x + wg.y * nwg.x) * ${WG}u + li;
  lid = li;
  if (row >= P.rows) { return; }
  base = P.offX + row * P.strideX;
  let n = P.n;
  let ob = row * P.k;
  var out = 0u;        // outputs written
  var need = P.k;      // still to choose
  var pmask = 0u;      // key bits fixed so far ...
  var prefix = 0u;     // ... and their values
  var ncand = 0u;      // slot-list length, once collected
  var collected = false;
  for (var level = 0u; level < 4u; level++) {
    let shift = 24u - 8u * level;
    for (var b = 0u; b < 256u; b++) { rh[hslot(b)] = 0u; }
    if (collected) {
      for (var t = 0u; t < ncand; t++) {
        let d = (hk[slot(t)] >> shift) & 255u;
        rh[hslot(d)] += 1u;
      }
    } else {
      for (var j = 0u; j < n; j++) {
        let key = load_pair(j).x;
        if ((key & pmask) == prefix) {
          let d = (key >> shift) & 255u;
          rh[hslot(d)] += 1u;
        }
      }
    }
    // the bin holding the need-th largest; the bins above it are all chosen
    var above = 0u;
    var bsel = 255u;
    loop {
      let h = rh[hslot(bsel)];
      if (above + h >= need || bsel == 0u) { break; }
      above += h;
      bsel -= 1u;
    }
    let h = rh[hslot(bsel)];
    need -= above;
    // last: the bin's first `need` elements (index order) finish the selection
    let last = level == 3u || h == need;
    var taken = 0u;
    if (collected) {
      var w = 0u;
      for (var t = 0u; t < ncand; t++) {
        let key = hk[slot(t)];
        let idx = hi[slot(t)];
        if (choose(ob, key, idx, (key >> shift) & 255u, bsel, last, need, &out, &taken)) {
          hk[slot(w)] = key;
          hi[slot(w)] = idx;
          w += 1u;
        }
      }
      ncand = w;
    } else {
      let fits = h <= SLOTS;
      for (var j = 0u; j < n; j++) {
        let key = load_pair(j).x;
        if ((key & pmask) == prefix && choose(ob, key, j, (key >> shift) & 255u, bsel, last, need, &out, &taken) && fits) {
          hk[slot(ncand)] = key;
          hi[slot(ncand)] = j;
          ncand += 1u;
        }
      }
      collected = fits;
    }
    if (last) { break; }
    pmask |= 255u << shift;
    prefix |= bsel << shift;
  }
}
//#endif

@group(0) @binding(1) var<storage, read> G: array<${TX}>;
@group(0) @binding(2) var<storage, read> GI: array<i32>;
@group(0) @binding(3) var<storage, read_write> DX: array<${TX}>;

@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
  let t = (wg.x + wg.y * nwg.x) * 256u + li;
  if (t >= P.rows * P.k) { return; }
  let row = t / P.k;
  let idx = GI[t];
  if (idx < 0 || u32(idx) >= P.n) { return; }
  DX[row * P.n + u32(idx)] = G[t];
}
