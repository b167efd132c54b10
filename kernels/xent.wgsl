// Fused softmax cross-entropy over logits X [N, V] (dense rows from offX) and i32 targets T [N].
//
// Entry `forward` — one 64-thread workgroup per row: each thread keeps an online (max, Σexp)
// over its strided columns, then a shared-memory tree merges them. Writes
//   LOSS[r] = lse − x[t] (0 when t = ignore; NaN when t ∉ [0, V)), LSE[r] = log Σ exp(x).
// Bindings: 0 P; 1 X (array<${TX}>); 2 T; 3 LOSS (f32); 4 LSE (f32).
//
// Entry `finish` — one 256-thread workgroup: OUT[0] = Σ LOSS (÷ count when P.mean), and
// STATS[0] = the per-row gradient scale (1/count for mean, 1 for sum); count = #targets ≠ ignore.
// Bindings: 0 P; 1 T; 2 LOSS; 3 OUT (f32); 4 STATS (f32).
//
// Entry `backward` — thread per logit: DX = s · (exp(x − lse) − [col = t]), 0 on ignored rows,
// where s = G[r] (PER_ROW, reduction 'none') or G[0]·STATS[0].
// Bindings: 0 P; 1 X; 2 T; 3 LSE; 4 G (array<${TG}>); 5 STATS (unless PER_ROW); ${OUT_BINDING} DX.
// Accumulation is f32 whatever TX is.

struct Params { N: u32, V: u32, offX: u32, offT: u32, ignore: i32, mean: u32, pad0: u32, pad1: u32 };
@group(0) @binding(0) var<uniform> P: Params;

// ---- forward -------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> FX: array<${TX}>;
@group(0) @binding(2) var<storage, read> FT: array<i32>;
@group(0) @binding(3) var<storage, read_write> FLOSS: array<f32>;
@group(0) @binding(4) var<storage, read_write> FLSE: array<f32>;

const FWG = 64u;
var<workgroup> sm: array<f32, FWG>;
var<workgroup> ss: array<f32, FWG>;

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
  let r = wg.x + wg.y * nwg.x;
  if (r >= P.N) { return; } // uniform per workgroup
  let base = P.offX + r * P.V;
  var m = -3.4e38;
  var s = 0.0;
  for (var j = li; j < P.V; j += FWG) {
    let v = f32(FX[base + j]);
    if (v > m) {
      s = s * exp(m - v) + 1.0;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  sm[li] = m;
  ss[li] = s;
  workgroupBarrier();
  for (var h = FWG / 2u; h > 0u; h = h / 2u) {
    if (li < h) {
      let m1 = sm[li];
      let m2 = sm[li + h];
      let mm = max(m1, m2);
      // empty partials have s = 0, so their exp factor never matters
      ss[li] = ss[li] * exp(m1 - mm) + ss[li + h] * exp(m2 - mm);
      sm[li] = mm;
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let lse = sm[0] + log(ss[0]);
    FLSE[r] = lse;
    let t = FT[P.offT + r];
    if (t == P.ignore) {
      FLOSS[r] = 0.0;
    } else if (t < 0 || u32(t) >= P.V) {
      var nanBits = 0x7fc00000u; // a runtime value: constant NaN is a WGSL error
      FLOSS[r] = bitcast<f32>(nanBits); // a bad target must not pass silently
    } else {
      FLOSS[r] = lse - f32(FX[base + u32(t)]);
    }
  }
}

// ---- finish --------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> NT: array<i32>;
@group(0) @binding(2) var<storage, read> NLOSS: array<f32>;
@group(0) @binding(3) var<storage, read_write> NOUT: array<f32>;
@group(0) @binding(4) var<storage, read_write> NSTATS: array<f32>;

var<workgroup> sl: array<f32, 256>;
var<workgroup> sc: array<f32, 256>;

@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) li: u32) {
  var acc = 0.0;
  var cnt = 0.0;
  for (var r = li; r < P.N; r += 256u) {
    acc += NLOSS[r];
    cnt += select(1.0, 0.0, NT[P.offT + r] == P.ignore);
  }
  sl[li] = acc;
  sc[li] = cnt;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h = h / 2u) {
    if (li < h) {
      sl[li] += sl[li + h];
      sc[li] += sc[li + h];
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    if (P.mean != 0u) {
      NOUT[0] = sl[0] / sc[0];
      NSTATS[0] = 1.0 / sc[0];
    } else {
      NOUT[0] = sl[0];
      NSTATS[0] = 1.0;
    }
  }
}

// ---- backward ------------------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> BX: array<${TX}>;
@group(0) @binding(2) var<storage, read> BT: array<i32>;
@group(0) @binding(3) var<storage, read> BLSE: array<f32>;
@group(0) @binding(4) var<storage, read> BG: array<${TG}>;
//#if !PER_ROW
@group(0) @binding(5) var<storage, read> BSTATS: array<f32>;
//#endif
@group(0) @binding(${OUT_BINDING}) var<storage, read_write> BDX: array<${TX}>;

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.N * P.V) { return; }
  let r = i / P.V;
  let col = i % P.V;
  let t = BT[P.offT + r];
  if (t == P.ignore) {
    BDX[i] = ${TX}(0.0);
    return;
  }
//#if PER_ROW
  let s = f32(BG[r]);
//#else
  let s = f32(BG[0]) * BSTATS[0];
//#endif
  let p = exp(f32(BX[P.offX + i]) - BLSE[r]);
  let d = p - select(0.0, 1.0, i32(col) == t);
  BDX[i] = ${TX}(s * d);
}
