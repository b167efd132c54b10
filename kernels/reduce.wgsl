// Reduction along one axis of a dense tensor viewed as [outer, L, inner] → [outer, inner].
// Bindings: 0 uniform P; 1 X (array<${TX}>); 2 O (array<${TO}>).
// Defines: OP sum|max|min|argmax|argmin (argmax/argmin write i32, first index on ties).
// Entry `main`: 64 threads per output element; each strides over L, then a shared-memory tree
// (for short rows of many elements: inner = 1 or few outputs).
// Entry `cols` (COLS): one thread per output element walking L in order; neighbouring threads read
// neighbouring elements (inner ≥ 16), no barriers — column sums such as bias gradients, which the
// tree path ran at ~0.6 GB/s on llvmpipe. Workgroup 64, grid ⌈nOut/64⌉ (2-D when large).
// Accumulates in f32 whatever the storage type.
struct Params { outer: u32, L: u32, inner: u32, offX: u32, nOut: u32, scale: f32, pad0: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read_write> O: array<${TO}>;

const WG = 64u;
var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;

fn better(a: f32, ia: u32, b: f32, ib: u32) -> bool {
//#if MAXLIKE
  return a > b || (a == b && ia < ib);
//#else
  return a < b || (a == b && ia < ib);
//#endif
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let o = wg.x + wg.y * nwg.x;
  if (o >= P.nOut) { return; } // uniform per workgroup: safe before barriers
  let outerI = o / P.inner;
  let innerI = o % P.inner;
  let base = P.offX + outerI * P.L * P.inner + innerI;
//#if SUM
  var acc = 0.0;
  for (var j = li; j < P.L; j += WG) { acc += f32(X[base + j * P.inner]); }
  sv[li] = acc;
//#else
  var best = select(3.4e38, -3.4e38, ${MAXLIKE_BOOL});
  var bi = 0xffffffffu;
  for (var j = li; j < P.L; j += WG) {
    let v = f32(X[base + j * P.inner]);
    if (bi == 0xffffffffu || better(v, j, best, bi)) { best = v; bi = j; }
  }
  sv[li] = best;
  si[li] = bi;
//#endif
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (li < s) {
//#if SUM
      sv[li] = sv[li] + sv[li + s];
//#else
      let j = si[li + s];
      if (j != 0xffffffffu && (si[li] == 0xffffffffu || better(sv[li + s], j, sv[li], si[li]))) {
        sv[li] = sv[li + s];
        si[li] = j;
      }
//#endif
    }
    workgroupBarrier();
  }
  if (li == 0u) {
//#if ARG
    O[o] = ${TO}(si[0]);
//#else
//#if SUM
    O[o] = ${TO}(sv[0] * P.scale);
//#else
    O[o] = ${TO}(sv[0]);
//#endif
//#endif
  }
}

//#if COLS
@compute @workgroup_size(64)
fn cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let o = (wg.x + wg.y * nwg.x) * WG + li;
  if (o >= P.nOut) { return; }
  let outerI = o / P.inner;
  let innerI = o % P.inner;
  let base = P.offX + outerI * P.L * P.inner + innerI;
//#if SUM
  var acc = 0.0;
  for (var j = 0u; j < P.L; j++) { acc += f32(X[base + j * P.inner]); }
  O[o] = ${TO}(acc * P.scale);
//#else
  var best = f32(X[base]);
  var bi = 0u;
  for (var j = 1u; j < P.L; j++) {
    let v = f32(X[base + j * P.inner]);
    if (better(v, j, best, bi)) { best = v; bi = j; }
  }
//#if ARG
  O[o] = ${TO}(bi);
//#else
  O[o] = ${TO}(best);
//#endif
//#endif
}
//#endif
