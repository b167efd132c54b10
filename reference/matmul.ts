// f64 reference of the matmul family (kernels/matmul.wgsl, ops/matmul.ts): batched products with
// broadcast batch dimensions, an optional bias and a fused activation.
import type { MatmulAct } from '../src/tensor/ops/matmul.js';
import { geluRef, siluRef } from './elementwise.js';

const ACT_REF: Record<MatmulAct, (x: number) => number> = {
  none: (x) => x,
  relu: (x) => Math.max(x, 0),
  gelu: geluRef,
  silu: siluRef,
};

/** A logical matrix stack: op(X) as [batch..., R, C], row-major. */
export interface Logical {
  data: ArrayLike<number>;
  batch: number[];
  R: number;
  C: number;
}

function bcastIndex(outIdx: number[], shape: number[]): number {
  // flat index into `shape` (right-aligned, size-1 dims broadcast) for a multi-index of the output batch
  let flat = 0;
  const lead = outIdx.length - shape.length;
  for (let i = 0; i < shape.length; i++) flat = flat * shape[i]! + (shape[i] === 1 ? 0 : outIdx[lead + i]!);
  return flat;
}

/** The broadcast of two batch shapes (right-aligned, size-1 dims stretch). */
export function broadcastBatch(a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, i) => {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    return x === 1 ? y : x;
  });
}

/** act(op(A)·op(B) + bias) in f64, broadcasting batch dims. */
export function matmulRef(A: Logical, B: Logical, bias?: ArrayLike<number>, act: MatmulAct = 'none'): Float64Array {
  const M = A.R;
  const K = A.C;
  const N = B.C;
  const batch = broadcastBatch(A.batch, B.batch);
  const nb = batch.reduce((x, d) => x * d, 1);
  const out = new Float64Array(nb * M * N);
  const idx = new Array<number>(batch.length).fill(0);
  for (let z = 0; z < nb; z++) {
    let rem = z;
    for (let d = batch.length - 1; d >= 0; d--) {
      idx[d] = rem % batch[d]!;
      rem = Math.floor(rem / batch[d]!);
    }
    const ao = bcastIndex(idx, A.batch) * M * K;
    const bo = bcastIndex(idx, B.batch) * K * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += A.data[ao + m * K + k]! * B.data[bo + k * N + n]!;
        if (bias) s += bias[n]!;
        out[(z * M + m) * N + n] = ACT_REF[act](s);
      }
    }
  }
  return out;
}

/** Each matrix of the stack transposed: [batch..., C, R], in f64. */
export function transposeRef(L: Logical): Logical {
  const { R, C } = L;
  const out = new Float64Array(L.data.length);
  for (let z = 0; z < L.data.length / (R * C); z++) {
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[z * R * C + c * R + r] = L.data[z * R * C + r * C + c]!;
  }
  return { data: out, batch: L.batch, R: C, C: R };
}
