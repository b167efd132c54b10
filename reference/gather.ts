// f64 references of the indexing family (kernels/gather.wgsl, ops/index.ts): gather, scatterAdd,
// indexSelect. An index outside [0, axisLen) reads 0 / adds nothing, as the kernels do.
import { prod, ravel, strides, unravel } from './shape.js';

/** torch.gather along `axis`: out[p] = x[p with p[axis] = idx[p]]. */
export function gatherRef(x: ArrayLike<number>, xShape: number[], axis: number, idx: ArrayLike<number>, idxShape: number[]): Float64Array {
  const xs = strides(xShape);
  const out = new Float64Array(prod(idxShape));
  for (let i = 0; i < out.length; i++) {
    const p = unravel(i, idxShape);
    const v = idx[i]!;
    if (v < 0 || v >= xShape[axis]!) continue;
    p[axis] = v;
    out[i] = x[ravel(p, xs)]!;
  }
  return out;
}

/** torch.scatter_add along `axis` into a copy of `base`. */
export function scatterAddRef(base: ArrayLike<number>, shape: number[], axis: number, idx: ArrayLike<number>, idxShape: number[], src: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(base);
  const st = strides(shape);
  for (let i = 0; i < prod(idxShape); i++) {
    const p = unravel(i, idxShape);
    const v = idx[i]!;
    if (v < 0 || v >= shape[axis]!) continue;
    p[axis] = v;
    out[ravel(p, st)] += src[i]!;
  }
  return out;
}

/** torch.index_select along `axis` with a 1-D index list. */
export function indexSelectRef(x: ArrayLike<number>, shape: number[], axis: number, idx: ArrayLike<number>): Float64Array {
  const outShape = shape.map((d, i) => (i === axis ? idx.length : d));
  const xs = strides(shape);
  const out = new Float64Array(prod(outShape));
  for (let i = 0; i < out.length; i++) {
    const p = unravel(i, outShape);
    const v = idx[p[axis]!]!;
    if (v < 0 || v >= shape[axis]!) continue;
    p[axis] = v;
    out[i] = x[ravel(p, xs)]!;
  }
  return out;
}
