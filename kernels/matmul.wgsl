// C[b] = act(A[b] · B[b] + bias), exploration version.
struct Params {
  M: u32, N: u32, K: u32, pad0: u32,
  offA: u32, sAm: u32, sAk: u32, pad1: u32,
  offB: u32, sBk: u32, sBn: u32, pad2: u32,
};
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> A: array<${TA}>;
@group(0) @binding(2) var<storage, read> B: array<${TB}>;
@group(0) @binding(3) var<storage, read_write> C: array<${TC}>;

const TM = ${TM}u;
const TN = ${TN}u;
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m0 = wg.y * TM;
  let n0 = wg.x * (WG * TN) + li;
  var aRow: array<u32, TM>;
  for (var i = 0u; i < TM; i++) { aRow[i] = P.offA + min(m0 + i, P.M - 1u) * P.sAm; }
  var bCol: array<u32, TN>;
  for (var j = 0u; j < TN; j++) { bCol[j] = P.offB + min(n0 + j * WG, P.N - 1u) * P.sBn; }
  var acc: array<f32, TM * TN>;
  for (var k = 0u; k < P.K; k++) {
    var b: array<f32, TN>;
    for (var j = 0u; j < TN; j++) { b[j] = f32(B[bCol[j] + k * P.sBk]); }
    for (var i = 0u; i < TM; i++) {
      let a = f32(A[aRow[i] + k * P.sAk]);
      for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(a, b[j], acc[i * TN + j]); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    for (var j = 0u; j < TN; j++) {
      let n = n0 + j * WG;
      if (m < P.M && n < P.N) { C[m * P.N + n] = ${TC}(acc[i * TN + j]); }
    }
  }
}
