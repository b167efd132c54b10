// Whisper log-mel, the two stages around the DFT matmul (src/audio/logmel.ts):
//   frames   F[t, j] = x[reflect(hop·t − nfft/2 + j)] · hann[j]       (one thread per element)
//   (matmul) S = F · W, W[j, k] = cos(2π·jk/nfft), W[j, PB + k] = sin(2π·jk/nfft)
//   mel      O[m, t] = log10(max(Σ_k FB[m, k]·(S[t, k]² + S[t, PB + k]²), 1e-10))
//            (one thread per output; k runs over the filter's nonzero bins only)
//   (reduce) M = max over all of O
//   floor    Y[i] = (max(O[i], M − 8) + 4) / 4
// Bindings, entry frames: 0 P; 1 X (array<f32>, samples); 2 HANN (array<f32>); 3 F (array<f32>).
//           entry mel:    0 P; 1 S (array<f32>, [frames, 2·PB]); 2 FB (array<f32>, [nMels, nBins]);
//                         3 RNG (array<u32>, [nMels, 2] first / last+1 nonzero bin); 4 O (array<f32>).
//           entry apply_floor: 0 P; 1 L (array<f32>, log10 mel); 2 M (array<f32>, the max); 3 Y (array<f32>).
// Defines: exactly one of FRAMES, MEL, FLOOR (the entries' bindings differ).
// Workgroup: 256 threads; the grid may be 2-D (x ≤ 65535).
struct Params {
  n: u32,       // samples
  frames: u32,
  hop: u32,
  nfft: u32,
  nMels: u32,
  nBins: u32,
  pb: u32,      // bins padded (S row = 2·pb values)
  offX: u32,
};

@group(0) @binding(0) var<uniform> P: Params;

// Reflect without repeating the edge sample (numpy 'reflect'), folding as often as needed.
fn reflect(i: i32, n: i32) -> u32 {
  if (n == 1) { return 0u; }
  let period = 2 * (n - 1);
  var j = i % period;
  if (j < 0) { j += period; }
  if (j >= n) { j = period - j; }
  return u32(j);
}

//#if FRAMES
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> HANN: array<f32>;
@group(0) @binding(3) var<storage, read_write> F: array<f32>;

@compute @workgroup_size(256)
fn frames(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.frames * P.nfft) { return; }
  let t = i / P.nfft;
  let j = i % P.nfft;
  let s = i32(t * P.hop) - i32(P.nfft / 2u) + i32(j);
  F[i] = X[P.offX + reflect(s, i32(P.n))] * HANN[j];
}
//#endif
//#if MEL
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<storage, read> FB: array<f32>;
@group(0) @binding(3) var<storage, read> RNG: array<u32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(256)
fn mel(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.nMels * P.frames) { return; }
  let m = i / P.frames;
  let t = i % P.frames;
  let row = t * 2u * P.pb;
  var acc = 0.0;
  for (var k = RNG[2u * m]; k < RNG[2u * m + 1u]; k++) {
    let re = S[row + k];
    let im = S[row + P.pb + k];
    acc += FB[m * P.nBins + k] * (re * re + im * im);
  }
  // log10 = log2 · log10(2)
  O[i] = log2(max(acc, 1e-10)) * 0.30102999566398120;
}
//#endif
//#if FLOOR
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> M: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

@compute @workgroup_size(256)
fn apply_floor(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.nMels * P.frames) { return; }
  Y[i] = (max(L[i], M[0] - 8.0) + 4.0) * 0.25;
}
//#endif
