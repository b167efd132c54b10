// Machine-peak probes for `ardgpu bench` (see src/tensor/ops/peak.ts).
//
// entry fma:  each invocation runs P.iters loop iterations of 4 steps of 5 independent vec4 FMA
//             chains (x = fma(x, a, b)); a and b come from the uniform block so nothing folds, and
//             the chains are summed into O so nothing is dead. FLOPs = invocations·iters·4·5·4·2.
//             Four steps per iteration: on lavapipe one loop iteration costs about as much as
//             40 vector FMAs, so a one-step loop would measure the loop, not the FMA units.
//             Bindings: 0 uniform P; 1 O (array<vec4<f32>>, one per invocation).
// entry copy: O[i] = I[i] over P.n vec4s (bandwidth: 32 bytes moved per element).
//             Bindings: 0 uniform P; 1 I (array<vec4<f32>>); 2 O (array<vec4<f32>>).
// entry load: each invocation reads P.iters groups of 16 floats at addresses that vary across
//             lanes and iterations, and sums them into O (so nothing is dead): the cost of a
//             storage-buffer load per float. Defines: LOAD; with LOAD_MAT4 each group is one
//             array<mat4x4<f32>> load, with LOAD_F16X2 two array<vec4<u32>> loads of 16 halves packed
//             two per u32 (unpack2x16float), otherwise four array<vec4<f32>> loads. On lavapipe vec4
//             and mat4x4 run at the same rate (loads cost per 32-bit component, not per access); packed
//             halves deliver 1.4–1.5× the values per wall-clock second but only 1.13–1.15× per
//             CPU-second (idle machine; bench/RESULTS.md, 2026-11-22 00:12).
//             Bindings: 0 uniform P (P.n = groups of 16 floats in I); 1 I; 2 O (array<vec4<f32>>).
// Workgroup: 64 invocations; the grid may be 2-D (x ≤ 65535), kernels rebuild the linear id.

struct Params { iters: u32, n: u32, a: f32, b: f32 };
@group(0) @binding(0) var<uniform> P: Params;

//#if FMA
@group(0) @binding(1) var<storage, read_write> O: array<vec4<f32>>;

@compute @workgroup_size(64)
fn fma_peak(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + li;
  let s = f32(i & 255u) * 1e-3;
  let a = vec4<f32>(P.a);
  let b = vec4<f32>(P.b);
  var x0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
  var x1 = x0 + 1.0;
  var x2 = x0 + 2.0;
  var x3 = x0 + 3.0;
  var x4 = x0 + 4.0;
  for (var t = 0u; t < P.iters; t++) {
    x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b); x4 = fma(x4, a, b);
    x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b); x4 = fma(x4, a, b);
    x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b); x4 = fma(x4, a, b);
    x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b); x4 = fma(x4, a, b);
  }
  if (i < P.n) { O[i] = x0 + x1 + x2 + x3 + x4; }
}
//#endif

//#if COPY
@group(0) @binding(1) var<storage, read> I: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> O: array<vec4<f32>>;

@compute @workgroup_size(64)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + li;
  if (i < P.n) { O[i] = I[i]; }
}
//#endif

//#if LOAD
//#if LOAD_MAT4
@group(0) @binding(1) var<storage, read> I: array<mat4x4<f32>>;
//#else
//#if LOAD_F16X2
@group(0) @binding(1) var<storage, read> I: array<vec4<u32>>;
//#else
@group(0) @binding(1) var<storage, read> I: array<vec4<f32>>;
//#endif
//#endif
@group(0) @binding(2) var<storage, read_write> O: array<vec4<f32>>;

@compute @workgroup_size(64)
fn load(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 64u + li;
  var a = vec4<f32>(0.0);
  for (var t = 0u; t < P.iters; t++) {
    let j = (i + t * 1031u) % P.n; // a group of 16 floats
//#if LOAD_MAT4
    let m = I[j];
    a += m[0]; a += m[1]; a += m[2]; a += m[3];
//#else
//#if LOAD_F16X2
    let u = I[2u * j];
    let w = I[2u * j + 1u];
    a += vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)); a += vec4<f32>(unpack2x16float(u.z), unpack2x16float(u.w));
    a += vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); a += vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
//#else
    a += I[4u * j]; a += I[4u * j + 1u]; a += I[4u * j + 2u]; a += I[4u * j + 3u];
//#endif
//#endif
  }
  O[i] = a;
}
//#endif
