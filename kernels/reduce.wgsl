// Reduction along one axis of a dense tensor viewed as [outer, L, inner] → [outer, inner].
// Bindings: 0 uniform P; 1 X (array<${TX}>); 2 O (array<${TO}>).
// Defines: OP sum|max|min|argmax|argmin (argmax/argmin write i32, first index on ties).
// Workgroup: 64 threads per output element; each strides over L, then a shared-memory tree.
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
