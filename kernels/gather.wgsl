// Indexing: gather along one axis (also index_select / embedding forward) and a deterministic
// segmented scatter-add (backward of gather, index_select and embedding; scatterAdd itself).
//
// One Params block for every entry (fields unused by an entry are 0). Rank ≤ 8; shapes and
// strides packed as in elementwise.wgsl. Indices are i32; an index outside [0, axisLen) reads 0
// (gather) or is dropped (scatter) — nothing traps on the GPU.
//
// Entry `gather` — bindings: 0 P; 1 X (array<${TX}>); 2 I (array<i32>); 3 O (array<${TX}>, dense).
//   One thread per output element p (shape = P.shape): O[p] = X[p with p[axis] := I[p·sb] − idxBase],
//   (idxBase and keepOob let the row blocks of a split embedding table each fill their own tokens' rows),
//   X read through its strides P.sa, I through P.sb (stride 0 = broadcast: index_select).
//
// Scatter-add without float atomics, in five passes over "items" (index elements, or whole rows
// of W contiguous columns) that each add into one output row `key`:
//   seg_keys   thread per item: key and source offset; CNT[key]++ (u32 atomics)
//   seg_alloc  thread per key: START[key] = atomicAdd(TOTAL, CNT[key]) (bucket placement order is
//              arbitrary, but only the bucket's contents matter)
//   seg_place  thread per item: LIST[START[key] + FILL[key]++] = item
//   seg_sort   thread per key: shell-sort its bucket by item id, so that
//   seg_accum  thread per (key, column) sums its items in ascending item order: deterministic,
//              the same bits run to run. O[offO + key·W + col] += Σ S[soff(item) + col·colStride].
// META is one zeroed u32 buffer: CNT [nKeys] | FILL [nKeys] | TOTAL [1].
// Bindings: seg_keys 0 P, 1 I, 2 KEYS (u32), 3 SOFF (u32), 4 META (atomic);
//           seg_alloc 0 P, 1 META (atomic), 2 START; seg_place 0 P, 1 KEYS, 2 START, 3 META (atomic),
//           4 LIST; seg_sort 0 P, 1 META, 2 START, 3 LIST;
//           seg_accum 0 P, 1 S (array<${TX}>), 2 SOFF, 3 META, 4 START, 5 LIST, 6 O (array<${TX}>).
// Workgroup: 256 threads, 2-D grid (x ≤ 65535) rebuilt into a linear id.

struct Params {
  n: u32,
  rank: u32,
  axis: u32,
  offX: u32,
  offI: u32,
  axisLen: u32,
  nKeys: u32,
  W: u32,
  colStride: u32,
  offO: u32,
  idxBase: u32, // gather: subtracted from every index (i32 bits): rows [idxBase, idxBase + axisLen) of a larger table
  keepOob: u32, // gather: 1 = an index outside [0, axisLen) leaves its output untouched instead of writing 0
  shape: array<vec4<u32>, 2>,
  sa: array<vec4<u32>, 2>,
  sb: array<vec4<u32>, 2>,
  sc: array<vec4<u32>, 2>,
};

@group(0) @binding(0) var<uniform> P: Params;

fn dim(arr: array<vec4<u32>, 2>, i: u32) -> u32 {
  return arr[i / 4u][i % 4u];
}

fn linear_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wg.x + wg.y * nwg.x) * 256u + li;
}

// ---- gather --------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> GX: array<${TX}>;
@group(0) @binding(2) var<storage, read> GI: array<i32>;
@group(0) @binding(3) var<storage, read_write> GO: array<${TX}>;

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  var rem = i;
  var ix = P.offX;
  var ii = P.offI;
  var axisCoord = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let du = u32(d);
    let size = dim(P.shape, du);
    let k = rem % size;
    rem = rem / size;
    ii += k * dim(P.sb, du);
    if (du != P.axis) { ix += k * dim(P.sa, du); }
  }
  let v = GI[ii] - bitcast<i32>(P.idxBase);
  if (v < 0 || u32(v) >= P.axisLen) {
    if (P.keepOob == 0u) { GO[i] = ${TX}(0.0); }
    return;
  }
  GO[i] = GX[ix + u32(v) * dim(P.sa, P.axis)];
}

// ---- segmented scatter-add -----------------------------------------------------------------

const NONE = 0xffffffffu;

@group(0) @binding(1) var<storage, read> KI: array<i32>;
@group(0) @binding(2) var<storage, read_write> KKEYS: array<u32>;
@group(0) @binding(3) var<storage, read_write> KSOFF: array<u32>;
@group(0) @binding(4) var<storage, read_write> KMETA: array<atomic<u32>>;

@compute @workgroup_size(256)
fn seg_keys(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  var rem = i;
  var ii = P.offI;
  var soff = P.offX;
  var key = 0u;
  for (var d = i32(P.rank) - 1; d >= 0; d--) {
    let du = u32(d);
    let size = dim(P.shape, du);
    let k = rem % size;
    rem = rem / size;
    ii += k * dim(P.sb, du);
    soff += k * dim(P.sa, du);
    if (du != P.axis) { key += k * dim(P.sc, du); }
  }
  let v = KI[ii];
  KSOFF[i] = soff;
  if (v < 0 || u32(v) >= P.axisLen) {
    KKEYS[i] = NONE;
    return;
  }
  key += u32(v) * dim(P.sc, P.axis);
  KKEYS[i] = key;
  atomicAdd(&KMETA[key], 1u);
}

@group(0) @binding(1) var<storage, read_write> AMETA: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> ASTART: array<u32>;

@compute @workgroup_size(256)
fn seg_alloc(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let s = linear_id(wg, nwg, li);
  if (s >= P.nKeys) { return; }
  let c = atomicLoad(&AMETA[s]);
  if (c == 0u) { return; }
  ASTART[s] = atomicAdd(&AMETA[2u * P.nKeys], c);
}

@group(0) @binding(1) var<storage, read> PKEYS: array<u32>;
@group(0) @binding(2) var<storage, read> PSTART: array<u32>;
@group(0) @binding(3) var<storage, read_write> PMETA: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> PLIST: array<u32>;

@compute @workgroup_size(256)
fn seg_place(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let i = linear_id(wg, nwg, li);
  if (i >= P.n) { return; }
  let key = PKEYS[i];
  if (key == NONE) { return; }
  let slot = atomicAdd(&PMETA[P.nKeys + key], 1u);
  PLIST[PSTART[key] + slot] = i;
}

@group(0) @binding(1) var<storage, read> SMETA: array<u32>;
@group(0) @binding(2) var<storage, read> SSTART: array<u32>;
@group(0) @binding(3) var<storage, read_write> SLIST: array<u32>;

@compute @workgroup_size(256)
fn seg_sort(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let s = linear_id(wg, nwg, li);
  if (s >= P.nKeys) { return; }
  let c = SMETA[s];
  if (c < 2u) { return; }
  let b = SSTART[s];
  // shell sort (gaps ≈ ×2.25): a bucket can be large (a padding token repeated thousands of times)
  var gap = 1u;
  while (gap * 9u / 4u + 1u < c) { gap = gap * 9u / 4u + 1u; }
  loop {
    for (var i = gap; i < c; i++) {
      let v = SLIST[b + i];
      var j = i;
      while (j >= gap && SLIST[b + j - gap] > v) {
        SLIST[b + j] = SLIST[b + j - gap];
        j -= gap;
      }
      SLIST[b + j] = v;
    }
    if (gap == 1u) { break; }
    gap = max(1u, (gap * 4u) / 9u);
  }
}

@group(0) @binding(1) var<storage, read> CS: array<${TX}>;
@group(0) @binding(2) var<storage, read> CSOFF: array<u32>;
@group(0) @binding(3) var<storage, read> CMETA: array<u32>;
@group(0) @binding(4) var<storage, read> CSTART: array<u32>;
@group(0) @binding(5) var<storage, read> CLIST: array<u32>;
@group(0) @binding(6) var<storage, read_write> CO: array<${TX}>;

@compute @workgroup_size(256)
fn seg_accum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
  let t = linear_id(wg, nwg, li);
  if (t >= P.n) { return; }
  let s = t / P.W;
  let col = t % P.W;
  let c = CMETA[s];
  if (c == 0u) { return; }
  let b = CSTART[s];
  var acc = 0.0;
  for (var e = 0u; e < c; e++) {
    acc += f32(CS[CSOFF[CLIST[b + e]] + col * P.colStride]);
  }
  let o = P.offO + t;
  CO[o] = ${TX}(f32(CO[o]) + acc);
}
