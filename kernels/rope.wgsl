// Rotary position embedding, Hugging Face rotate_half convention: in each head of width D the pairs
// are (k, k + D/2), k < D/2, rotated by angle pos·F[k]:
//   y[k] = x[k]·cos − x[k+D/2]·sin,   y[k+D/2] = x[k+D/2]·cos + x[k]·sin
// P.sign = −1 rotates by −angle (the backward). x is dense; its head rows (groups of D values) are
// numbered hr; the head row's time step is t = (hr / P.tDiv) % P.T and its batch b = hr / P.bDiv
// (layout [.., T, H, D]: tDiv = H; layout [.., H, T, D]: tDiv = 1; bDiv = H·T either way).
// pos = POS[P.offPos + b·P.posBatch + t] with POS, else P.startPos + t.
// Bindings: 0 uniform P; 1 X (array<${TX}>); 2 F (array<f32>, D/2 inverse frequencies);
//           3 POS (array<${TP}>, only with POS); ${O_BINDING} O (array<${TX}>, dense).
// Defines: TX storage type; POS; TP (i32|u32); O_BINDING.
// Workgroup: 256 threads, one pair each; grid may be 2-D.
// The angle is rounded to f32 once (pos·F[k], as HF computes it); its sine and cosine are then
// computed here to about 1 ULP instead of by WGSL's sin/cos, which promise only 2^-11 absolute
// error and only on [-π, π] (SwiftShader gives 5e-4 errors at long-context angles that lavapipe
// computes to 1e-7). The reduction by π/2 is exact: integer arithmetic on the f32's mantissa and
// 96 bits of 2/π (Payne-Hanek), then polynomials on [-π/4, π/4]. Only correctly rounded f32
// operations and wrapping u32 arithmetic are used, so every conforming adapter gives the same
// answer to within an ULP. Angles of 2^32 rad and more (positions beyond what f32 holds exactly)
// are outside its range.
struct Params {
  nPairs: u32,
  half: u32,
  T: u32,
  tDiv: u32,
  bDiv: u32,
  posBatch: u32,
  startPos: i32,
  sign: f32,
  offX: u32,
  offPos: u32,
};

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> X: array<${TX}>;
@group(0) @binding(2) var<storage, read> F: array<f32>;
//#if POS
@group(0) @binding(3) var<storage, read> POS: array<${TP}>;
//#endif
@group(0) @binding(${O_BINDING}) var<storage, read_write> O: array<${TX}>;

// 2/π in binary, bits 2^-1 … 2^-96
const TWO_OVER_PI_2 = 0xa2f9836eu;
const TWO_OVER_PI_1 = 0x4e441529u;
const TWO_OVER_PI_0 = 0xfc2757d1u;
const QUARTER_PI = 0.78539816339744831;
const HALF_PI_2M30 = 1.4629180792671596e-9; // (π/2)·2^-30: one unit of a 30-bit fraction of a quadrant

// a·b as a 64-bit product (hi, lo) from 16-bit halves (each partial product fits in 32 bits)
fn mul64(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return vec2<u32>(ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), (ll & 0xffffu) | (mid << 16u));
}

// (sin a, cos a) for an f32 a with |a| < 2^32, to about 1 ULP.
fn sin_cos(a: f32) -> vec2<f32> {
  let ax = abs(a);
  var r = ax;
  var quadrant = 0u;
  if (ax > QUARTER_PI) {
    // ax = m·2^s with a 24-bit integer m; ax·2/π = m·W·2^(s−96), W = 2/π·2^96 (three words)
    let bits = bitcast<u32>(ax);
    let s = min(i32(bits >> 23u) - 150, 8);
    let m = (bits & 0x7fffffu) | 0x800000u;
    let w0 = mul64(m, TWO_OVER_PI_0);
    let w1 = mul64(m, TWO_OVER_PI_1);
    let w2 = mul64(m, TWO_OVER_PI_2);
    // the product's 32-bit limbs p1 … p3 (p0 = w0.y lies below every bit used)
    let p1 = w0.x + w1.y;
    let c1 = select(0u, 1u, p1 < w0.x);
    let p2a = w1.x + w2.y;
    let p2 = p2a + c1;
    let c2 = select(0u, 1u, p2a < w1.x) + select(0u, 1u, p2 < p2a);
    let p3 = w2.x + c2;
    // bits [66 − s, 98 − s) of the product: 2 bits of quadrant (mod 4), then 30 bits of fraction
    let lsb = u32(66 - s);
    let hiLimb = lsb >= 64u;
    let lo = select(p1, p2, hiLimb);
    let hi = select(p2, p3, hiLimb);
    let sh = lsb & 31u;
    let x = select((lo >> sh) | (hi << (32u - sh)), lo, sh == 0u);
    // round to the nearest quadrant: the remainder lies in [-1/2, 1/2) of a quadrant
    let frac = x & 0x3fffffffu;
    let up = frac >= 0x20000000u;
    quadrant = ((x >> 30u) + select(0u, 1u, up)) & 3u;
    r = f32(i32(frac) - select(0, 0x40000000, up)) * HALF_PI_2M30;
  }
  // Cephes sinf/cosf polynomials on [-π/4, π/4]
  let z = r * r;
  let sr = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let cr = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  var sc = vec2<f32>(sr, cr);
  if (quadrant == 1u) { sc = vec2<f32>(cr, -sr); }
  if (quadrant == 2u) { sc = vec2<f32>(-sr, -cr); }
  if (quadrant == 3u) { sc = vec2<f32>(-cr, sr); }
  return vec2<f32>(select(sc.x, -sc.x, a < 0.0), sc.y);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let p = (wg.x + wg.y * nwg.x) * 256u + li;
  if (p >= P.nPairs) { return; }
  let k = p % P.half;
  let hr = p / P.half;
  let t = (hr / P.tDiv) % P.T;
  let b = hr / P.bDiv;
//#if POS
  let pos = f32(POS[P.offPos + b * P.posBatch + t]);
//#else
  let pos = f32(P.startPos + i32(t));
//#endif
  let sc = sin_cos(pos * F[k]);
  let c = sc.y;
  let s = sc.x * P.sign;
  let i1 = hr * 2u * P.half + k;
  let i2 = i1 + P.half;
  let x1 = f32(X[P.offX + i1]);
  let x2 = f32(X[P.offX + i2]);
  O[i1] = ${TX}(x1 * c - x2 * s);
  O[i2] = ${TX}(x2 * c + x1 * s);
}
