// f64 references of the optimiser family (kernels/optim.wgsl, tensor/optim.ts): one step, in place.

/** torch.optim.AdamW, one step, in f64. */
export function adamwRef(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, t: number, o: { lr: number; b1: number; b2: number; eps: number; wd: number }): void {
  const bc1 = 1 - o.b1 ** t;
  const bc2 = 1 - o.b2 ** t;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - o.lr * o.wd;
    m[i] = o.b1 * m[i]! + (1 - o.b1) * g[i]!;
    v[i] = o.b2 * v[i]! + (1 - o.b2) * g[i]! * g[i]!;
    p[i] -= (o.lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + o.eps));
  }
}

/** torch.optim.SGD, one step, in f64. */
export function sgdRef(p: Float64Array, g: ArrayLike<number>, buf: Float64Array | null, first: boolean, o: { lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number }): void {
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! + o.wd * p[i]!;
    if (buf) {
      buf[i] = first ? d : o.momentum * buf[i]! + (1 - o.dampening) * d;
      d = o.nesterov ? d + o.momentum * buf[i]! : buf[i]!;
    }
    p[i] -= o.lr * d;
  }
}
