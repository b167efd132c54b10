// Reductions along axes: sum, mean, max, min (values), argmax, argmin (i32 indices).
import { grid, Params } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { Tensor, empty, shapeStr } from '../tensor.js';
import { contiguous, expand, reshape } from './layout.js';
import { map } from './elementwise.js';

type ReduceOp = 'sum' | 'max' | 'min' | 'argmax' | 'argmin';

function normAxis(x: Tensor, axis: number): number {
  const a = axis < 0 ? axis + x.rank : axis;
  if (a < 0 || a >= x.rank) throw new ArdError(`axis ${axis} out of range for ${shapeStr(x.shape)}`);
  return a;
}

/** One reduction along one axis, keepdim semantics (the axis becomes 1). No autograd. */
function reduceAxisRaw(x: Tensor, axis: number, op: ReduceOp, scale = 1): Tensor {
  const engine = x.engine;
  const dense = x.isContiguousIgnoringOffset() ? x : contiguous(x);
  const outer = x.shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const L = x.shape[axis]!;
  const inner = x.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outShape = x.shape.map((d, i) => (i === axis ? 1 : d));
  const isArg = op === 'argmax' || op === 'argmin';
  const out = empty(engine, outShape, isArg ? 'i32' : x.dtype);
  const nOut = outer * inner;
  if (L === 0) throw new ArdError(`${op} over an empty axis of ${shapeStr(x.shape)}`);
  if (nOut > 0) {
    const maxLike = op === 'max' || op === 'argmax';
    // many outputs side by side (column sums): a thread per output; else a workgroup per output
    const cols = inner >= 16 && nOut >= 128;
    engine.dispatch({
      kernel: {
        family: 'reduce',
        entry: cols ? 'cols' : 'main',
        defines: { TX: x.dtype, TO: out.dtype, SUM: op === 'sum', MAXLIKE: maxLike, MAXLIKE_BOOL: maxLike, ARG: isArg, COLS: cols },
      },
      params: new Params().u32(outer, L, inner, dense.offset, nOut).f32(scale).u32(0, 0).done(),
      buffers: [dense.buffer, out.buffer],
      workgroups: grid(cols ? Math.ceil(nOut / 64) : nOut),
    });
  }
  if (dense !== x) dense.dispose();
  return out;
}

function axesOf(x: Tensor, axis?: number | number[]): number[] {
  if (axis === undefined) return x.shape.map((_, i) => i);
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => normAxis(x, a));
  return [...new Set(list)].sort((a, b) => a - b);
}

function dropAxes(shape: readonly number[], axes: number[]): number[] {
  return shape.filter((_, i) => !axes.includes(i));
}

/** Sum over the given axes (all by default). */
export function sum(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  return sumScaled(x, axis, keepdim, 1, 'sum');
}

export function mean(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const axes = axesOf(x, axis);
  const count = axes.reduce((a, i) => a * x.shape[i]!, 1);
  return sumScaled(x, axis, keepdim, 1 / count, 'mean');
}

function sumScaled(x: Tensor, axis: number | number[] | undefined, keepdim: boolean, scale: number, name: string): Tensor {
  const axes = axesOf(x, axis);
  let y = x;
  if (axes.length === x.rank && x.rank > 1) {
    // reduce everything in one pass over the flat data
    const flat = reshape(x.isContiguousIgnoringOffset() ? x : contiguous(x), [x.size]);
    y = reduceAxisRaw(flat, 0, 'sum', scale);
    if (flat !== x) flat.dispose();
  } else {
    let s = scale;
    for (const a of axes) {
      const next = reduceAxisRaw(y, a, 'sum', s);
      s = 1;
      if (y !== x) y.dispose();
      y = next;
    }
  }
  const keptShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const outShape = keepdim ? keptShape : dropAxes(x.shape, axes);
  const out = reshape(y, outShape);
  if (out !== y) y.dispose();
  if (axes.length === 0) return out;
  return record(out, name, [x], (g) => {
    const gk = reshape(g, keptShape);
    const ge = contiguous(expand(gk, x.shape), scale === 1 ? undefined : scale);
    return [ge];
  });
}

function extremum(op: 'max' | 'min') {
  return (x: Tensor, axis: number, keepdim = false): Tensor => {
    const a = normAxis(x, axis);
    const y = reduceAxisRaw(x, a, op);
    const out = keepdim ? y : reshape(y, dropAxes(x.shape, [a]));
    if (out !== y) y.dispose();
    return record(out, op, [x], (g) => {
      // gradient goes to every position equal to the extremum
      const yk = reshape(out, y.shape);
      const gk = reshape(g, y.shape);
      return [map([x, yk, gk], 'select(0.0, c, a == b)', { name: `${op}_grad`, out: g.dtype })];
    });
  };
}
export const max = extremum('max');
export const min = extremum('min');

export function argmax(x: Tensor, axis = -1, keepdim = false): Tensor {
  const a = normAxis(x, axis);
  const y = reduceAxisRaw(x, a, 'argmax');
  return keepdim ? y : reshapeOwned(y, dropAxes(x.shape, [a]));
}
export function argmin(x: Tensor, axis = -1, keepdim = false): Tensor {
  const a = normAxis(x, axis);
  const y = reduceAxisRaw(x, a, 'argmin');
  return keepdim ? y : reshapeOwned(y, dropAxes(x.shape, [a]));
}
function reshapeOwned(y: Tensor, shape: number[]): Tensor {
  const r = reshape(y, shape);
  if (r !== y) y.dispose();
  return r;
}

/** Sum a broadcast gradient back to `shape` (used by the backward of broadcasting ops). */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
  }
  return g.engine.noGradScope(() => {
    const s = sum(g, axes, true);
    const r = reshape(s, shape);
    if (r !== s) s.dispose();
    return r;
  });
}

