// Fill a dense tensor with an arithmetic sequence: O[i] = alpha + beta * i (beta = 0: constant).
// Bindings: 0 uniform P; 1 O (array<${TO}>). Workgroup 256, 1-D or 2-D grid.
// Defines: TO output type; INT for i32/u32 outputs (integer arithmetic).
struct Params { n: u32, alpha: f32, beta: f32, pad: u32 };
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> O: array<${TO}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let i = (wg.x + wg.y * nwg.x) * 256u + li;
  if (i >= P.n) { return; }
//#if INT
  // exact beyond 2^24 (f32 arithmetic would round the index)
  O[i] = ${TO}(i32(P.alpha) + i32(P.beta) * i32(i));
//#else
  O[i] = ${TO}(P.alpha + P.beta * f32(i));
//#endif
}
