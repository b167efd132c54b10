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
// The angle is rounded to f32 once (pos·F[k], as HF computes it), then reduced mod 2π in
// Cody-Waite steps so that sin/cos stay accurate for long contexts on any GPU.
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

// 2π = C1 + C2 + C3 with C1 = 201/32 (8 significant bits: k·C1 is exact for |k| < 2^16).
const C1 = 6.28125;
const C2 = 0.0019353071693331003; // exactly an f32
const C3 = 1.0253131677018246e-11; // 2π − C1 − C2
const INV_2PI = 0.15915494309189535;

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
  let a = pos * F[k];
  let q = round(a * INV_2PI);
  let red = ((a - q * C1) - q * C2) - q * C3;
  let c = cos(red);
  let s = sin(red) * P.sign;
  let i1 = hr * 2u * P.half + k;
  let i2 = i1 + P.half;
  let x1 = f32(X[P.offX + i1]);
  let x2 = f32(X[P.offX + i2]);
  O[i1] = ${TX}(x1 * c - x2 * s);
  O[i2] = ${TX}(x2 * c + x1 * s);
}
