// f64 reference of the rotary-embedding family (kernels/rope.wgsl, ops/nn.ts rope).

export interface RopeRefOptions {
  theta?: number;
  /** Default: the last axis; smaller means the last axis packs H heads ('thd'). */
  headDim?: number;
  layout?: 'thd' | 'htd';
}

/**
 * Rotary embedding, HF rotate_half convention. The angle is pos·F[k] rounded to f32 with
 * F[k] = f32(1 / f32(θ^f32(2k/D))), as HF's Qwen2RotaryEmbedding computes it in f32; sin and cos
 * are then exact (f64). `positions`: T or batch·T values, or a start position.
 */
export function ropeRef(x: ArrayLike<number>, shape: readonly number[], positions: ArrayLike<number> | number, opts: RopeRefOptions = {}): Float64Array {
  const f32 = Math.fround;
  const theta = opts.theta ?? 10000;
  const last = shape[shape.length - 1]!;
  const D = opts.headDim ?? last;
  const layout = opts.layout ?? 'thd';
  const s4 = D === last ? [...shape] : [...shape.slice(0, -1), last / D, D];
  const r = s4.length;
  const T = layout === 'thd' ? s4[r - 3]! : s4[r - 2]!;
  const H = layout === 'thd' ? s4[r - 2]! : s4[r - 3]!;
  const total = shape.reduce((a, b) => a * b, 1);
  const half = D / 2;
  const inv: number[] = [];
  for (let k = 0; k < half; k++) inv.push(f32(1 / f32(f32(theta) ** f32((2 * k) / D))));
  const out = new Float64Array(total);
  const headRows = total / D;
  for (let hr = 0; hr < headRows; hr++) {
    const t = layout === 'thd' ? Math.floor(hr / H) % T : hr % T;
    const b = Math.floor(hr / (H * T));
    let pos: number;
    if (typeof positions === 'number') pos = positions + t;
    else pos = positions.length === T ? positions[t]! : positions[b * T + t]!;
    for (let k = 0; k < half; k++) {
      const a = f32(pos * inv[k]!);
      const c = Math.cos(a);
      const s = Math.sin(a);
      const i1 = hr * D + k;
      const i2 = i1 + half;
      out[i1] = x[i1]! * c - x[i2]! * s;
      out[i2] = x[i2]! * c + x[i1]! * s;
    }
  }
  return out;
}
