// f64 references of the softmax family (kernels/softmax.wgsl, ops/nn.ts softmax, logSoftmax) and of
// the attention built on it (ops/nn.ts scaledDotProductAttention). Nothing here touches the GPU.
import { matmulRef, transposeRef } from './matmul.js';
import { lastAxis } from './shape.js';

export interface SoftmaxRefOptions {
  causal?: boolean;
  /** Default Tk − Tq (see ops/nn.ts). */
  causalOffset?: number;
  scale?: number;
}

/** softmax(scale·x) along the last axis; causal rows see keys j ≤ (r mod Tq) + offset, others 0. */
export function softmaxRef(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions = {}): Float64Array {
  return softmaxCore(x, shape, opts, false);
}

/** log softmax(scale·x) along the last axis; hidden causal keys give -inf. */
export function logSoftmaxRef(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions = {}): Float64Array {
  return softmaxCore(x, shape, opts, true);
}

function softmaxCore(x: ArrayLike<number>, shape: readonly number[], opts: SoftmaxRefOptions, log: boolean): Float64Array {
  const { rows, n } = lastAxis(shape);
  const tq = shape.length >= 2 ? shape[shape.length - 2]! : 1;
  const offset = opts.causalOffset ?? n - tq;
  const scale = opts.scale ?? 1;
  const out = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const len = opts.causal ? Math.max(0, Math.min(n, (r % tq) + offset + 1)) : n;
    let m = -Infinity;
    for (let j = 0; j < len; j++) m = Math.max(m, scale * x[r * n + j]!);
    let s = 0;
    for (let j = 0; j < len; j++) s += Math.exp(scale * x[r * n + j]! - m);
    for (let j = 0; j < n; j++) {
      const v = scale * x[r * n + j]!;
      if (log) out[r * n + j] = j < len ? v - m - Math.log(s) : -Infinity;
      else out[r * n + j] = j < len ? Math.exp(v - m) / s : 0;
    }
  }
  return out;
}

/**
 * Attention softmax(scale·q·kᵀ)·v for q [batch, Tq, D], k [batch, Tk, D], v [batch, Tk, Dv]
 * (causal as in softmaxRef; scale defaults to 1/√D).
 */
export function attentionRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  batch: number,
  Tq: number,
  Tk: number,
  D: number,
  Dv: number,
  opts: SoftmaxRefOptions = {},
): Float64Array {
  const kT = transposeRef({ data: k, batch: [batch], R: Tk, C: D });
  const scores = matmulRef({ data: q, batch: [batch], R: Tq, C: D }, kT);
  const p = softmaxRef(scores, [batch, Tq, Tk], { ...opts, scale: opts.scale ?? 1 / Math.sqrt(D) });
  return matmulRef({ data: p, batch: [batch], R: Tq, C: Tk }, { data: v, batch: [batch], R: Tk, C: Dv });
}
