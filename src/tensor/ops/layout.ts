// Layout ops. reshape/transpose/permute/slice/expand/squeeze are views when strides allow;
// `contiguous` materialises a view densely; concat writes each input into a slice of its output.
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { Tensor, contiguousStrides, empty, numel, shapeStr } from '../tensor.js';
import { map, zeros } from './elementwise.js';
import { sumToShape } from './reduce.js'; // (import cycle: used only at call time)

function ctOf(t: Tensor): 'f32' | 'i32' | 'u32' {
  return t.dtype === 'i32' ? 'i32' : t.dtype === 'u32' ? 'u32' : 'f32';
}

/** A dense copy (optionally scaled, for float tensors). Returns a new tensor even if x is dense. */
export function contiguous(x: Tensor, scale?: number): Tensor {
  const y = scale === undefined ? map([x], 'a', { name: 'contiguous', ct: ctOf(x) }) : map([x], 'P.alpha * a', { name: 'contiguous', alpha: scale });
  return record(y, 'contiguous', [x], (g) => [scale === undefined ? g : map([g], 'P.alpha * a', { name: 'scale', alpha: scale })]);
}

function resolveShape(shape: readonly number[], size: number, what: string): number[] {
  const s = [...shape];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = s.reduce((a, d, i) => (i === neg ? a : a * d), 1);
    if (rest === 0 || size % rest) throw new ArdError(`${what}: cannot infer -1 in ${shapeStr(shape)} for ${size} elements`);
    s[neg] = size / rest;
  }
  if (numel(s) !== size) throw new ArdError(`${what}: ${shapeStr(shape)} does not hold ${size} elements`);
  return s;
}

/** Reshape (a view for dense tensors, a copy otherwise). -1 infers one dimension. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = resolveShape(shape, x.size, `reshape ${shapeStr(x.shape)}`);
  if (s.length === x.rank && s.every((d, i) => d === x.shape[i])) return x;
  let y: Tensor;
  if (x.isContiguousIgnoringOffset()) y = x.view(s, contiguousStrides(s));
  else {
    const c = x.engine.noGradScope(() => contiguous(x));
    y = c.view(s, contiguousStrides(s));
    c.dispose();
  }
  return record(y, 'reshape', [x], (g) => [reshape(g, x.shape)]);
}

export const flatten = (x: Tensor) => reshape(x, [x.size]);

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const d = dims.map((k) => (k < 0 ? k + x.rank : k));
  if (d.length !== x.rank || new Set(d).size !== x.rank || d.some((k) => k < 0 || k >= x.rank)) {
    throw new ArdError(`permute: ${shapeStr(dims)} is not a permutation of ${x.rank} axes`);
  }
  const y = x.view(
    d.map((k) => x.shape[k]!),
    d.map((k) => x.strides[k]!),
  );
  const inv = new Array<number>(d.length);
  d.forEach((k, i) => (inv[k] = i));
  return record(y, 'permute', [x], (g) => [permute(g, inv)]);
}

export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const dims = x.shape.map((_, i) => i);
  const ia = a < 0 ? a + x.rank : a;
  const ib = b < 0 ? b + x.rank : b;
  [dims[ia], dims[ib]] = [dims[ib]!, dims[ia]!];
  return permute(x, dims);
}

/** Elements start, start+step, … < end along `dim` (a view). */
export function slice(x: Tensor, dim: number, start: number, end?: number, step = 1): Tensor {
  const d = dim < 0 ? dim + x.rank : dim;
  const n = x.shape[d];
  if (n === undefined) throw new ArdError(`slice: dim ${dim} out of range for ${shapeStr(x.shape)}`);
  const s = start < 0 ? start + n : start;
  const e = end === undefined ? n : end < 0 ? end + n : Math.min(end, n);
  if (s < 0 || s > n || e < s || step < 1) throw new ArdError(`slice: [${start}:${end}:${step}] out of range for dim ${d} of ${shapeStr(x.shape)}`);
  const len = Math.ceil((e - s) / step);
  const shape = x.shape.map((k, i) => (i === d ? len : k));
  const strides = x.strides.map((k, i) => (i === d ? k * step : k));
  const y = x.view(shape, strides, x.offset + s * x.strides[d]!);
  // the gradient: g added into this slice's region of x's gradient (in place, see GradNode.addInto)
  const addInto = (acc: Tensor, g: Tensor) => {
    const region = slice(acc, d, s, e, step);
    map([g], 'o + a', { name: 'slice_grad', into: region, readOut: true });
    region.dispose();
  };
  return record(y, 'slice', [x], (g) => {
    const gx = zeros(x.engine, x.shape, g.dtype);
    addInto(gx, g);
    return [gx];
  }, addInto);
}

/** Broadcast to `shape` without copying (stride 0 on expanded dims). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.rank;
  if (lead < 0) throw new ArdError(`expand: ${shapeStr(x.shape)} has more dims than ${shapeStr(shape)}`);
  const strides = shape.map((d, i) => {
    if (i < lead) return 0;
    const k = x.shape[i - lead]!;
    if (k === d) return x.strides[i - lead]!;
    if (k === 1) return 0;
    throw new ArdError(`expand: cannot expand ${shapeStr(x.shape)} to ${shapeStr(shape)}`);
  });
  const y = x.view(shape, strides);
  return record(y, 'expand', [x], (g) => [sumToShape(g, x.shape)]);
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = dim < 0 ? dim + x.rank + 1 : dim;
  const shape = [...x.shape];
  shape.splice(d, 0, 1);
  return reshape(x, shape);
}

export function squeeze(x: Tensor, dim?: number): Tensor {
  const shape = dim === undefined ? x.shape.filter((k) => k !== 1) : x.shape.filter((k, i) => i !== (dim < 0 ? dim + x.rank : dim) || k !== 1);
  return reshape(x, shape);
}

/** Concatenate along `dim` (a new dense tensor). */
export function concat(xs: readonly Tensor[], dim = 0): Tensor {
  if (!xs.length) throw new ArdError('concat: no tensors');
  const first = xs[0]!;
  const d = dim < 0 ? dim + first.rank : dim;
  for (const x of xs) {
    if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((k, i) => i !== d && k !== first.shape[i])) {
      throw new ArdError(`concat: ${shapeStr(x.shape)} ${x.dtype} does not match ${shapeStr(first.shape)} ${first.dtype} along dim ${d}`);
    }
  }
  const total = xs.reduce((a, x) => a + x.shape[d]!, 0);
  const out = empty(first.engine, first.shape.map((k, i) => (i === d ? total : k)), first.dtype);
  let at = 0;
  const bounds: [number, number][] = [];
  for (const x of xs) {
    const n = x.shape[d]!;
    if (n) {
      const region = out.engine.noGradScope(() => slice(out, d, at, at + n));
      map([x], 'a', { name: 'concat', into: region, ct: ctOf(x) });
      region.dispose();
    }
    bounds.push([at, at + n]);
    at += n;
  }
  return record(out, 'concat', xs, (g) => bounds.map(([s, e]) => contiguous(slice(g, d, s, e))));
}

/** Copy `src` (broadcast) into the view `dst` in place. No autograd. */
export function copyInto(dst: Tensor, src: Tensor): void {
  map([src], 'a', { name: 'copy_into', into: dst, ct: ctOf(dst) });
}
