// Elementwise ops: one WGSL family (kernels/elementwise.wgsl) specialised by an expression.
// Inputs broadcast NumPy-style; views are read through their strides (no copies).
import { grid, Params } from '../../gpu/engine.js';
import type { Engine } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { DType, Tensor, checkDtypeSupported, empty, shapeStr } from '../tensor.js';
import { sumToShape } from './reduce.js';

const MAX_RANK = 8;

export function broadcastShapes(...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const k = s[s.length - rank + i] ?? 1;
      if (k === 1) continue;
      if (d !== 1 && d !== k) throw new ArdError(`shapes ${shapes.map(shapeStr).join(' and ')} do not broadcast`);
      d = k;
    }
    out.push(d);
  }
  return out;
}

/** Strides that read `t` as if it had `shape` (0 on broadcast dimensions). */
export function broadcastStrides(t: Tensor, shape: readonly number[]): number[] {
  const r = shape.length;
  const out = new Array<number>(r).fill(0);
  for (let i = 0; i < t.rank; i++) {
    const j = r - t.rank + i;
    out[j] = t.shape[i] === 1 && shape[j] !== 1 ? 0 : t.strides[i]!;
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export interface MapOptions {
  out?: DType;
  /** Compute type (default f32; i32/u32 for integer ops). */
  ct?: 'f32' | 'i32' | 'u32';
  alpha?: number;
  beta?: number;
  name: string;
  /** Write into this (possibly strided) view instead of a new dense tensor; returns it. */
  into?: Tensor;
  /** EXPR may read the output's current value as `o` (with `into`: accumulate in place, o + a). */
  readOut?: boolean;
}

/**
 * The same index space with fewer dims: dims of size 1 go, and dim i merges into dim i + 1 where
 * every operand steps over it as over dim i + 1 scaled (strides[i] = strides[i+1]·shape[i+1];
 * broadcast dims have stride 0 in both). A bias added to every row of [B, L, D] keeps 2 dims;
 * a slice of columns keeps 2; an index loop in the kernel costs two divisions per dim.
 */
export function collapseDims(shape: readonly number[], strideSets: readonly (readonly number[])[]): { shape: number[]; strides: number[][] } {
  const keep = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (const i of keep) {
    const last = outShape.length - 1;
    if (last >= 0 && strideSets.every((s, k) => outStrides[k]![last] === s[i]! * shape[i]!)) {
      outShape[last] *= shape[i]!;
      strideSets.forEach((s, k) => (outStrides[k]![last] = s[i]!));
    } else {
      outShape.push(shape[i]!);
      strideSets.forEach((s, k) => outStrides[k]!.push(s[i]!));
    }
  }
  return { shape: outShape, strides: outStrides };
}

/** Run one elementwise expression over 1–3 inputs (no autograd). */
export function map(inputs: readonly Tensor[], expr: string, opts: MapOptions): Tensor {
  const engine = inputs[0]!.engine;
  for (const t of inputs) t.assertAlive();
  const shape = opts.into ? [...opts.into.shape] : broadcastShapes(...inputs.map((t) => t.shape));
  if (opts.into) broadcastShapes(shape, ...inputs.map((t) => t.shape)); // validates
  if (shape.length > MAX_RANK) throw new ArdError(`${opts.name}: rank ${shape.length} > ${MAX_RANK}`);
  if (opts.readOut && !opts.into) throw new ArdError(`${opts.name}: readOut needs an 'into' tensor`);
  const outDtype = opts.into?.dtype ?? opts.out ?? inputs[0]!.dtype;
  const out = opts.into ?? empty(engine, shape, outDtype);
  if (out.size === 0) return out;
  const outStrided = !out.isContiguousIgnoringOffset();
  const contig = !outStrided && inputs.every((t) => sameShape(t.shape, shape) && t.isContiguousIgnoringOffset());
  const dims = collapseDims(shape, [...inputs.map((t) => broadcastStrides(t, shape)), [...out.strides]]);
  const strides = dims.strides.slice(0, inputs.length);
  const inv = dims.shape.map((d) => 1 / d);
  const p = new Params()
    .u32(out.size, 0, inputs[0]!.offset, inputs[1]?.offset ?? 0, inputs[2]?.offset ?? 0)
    .f32(opts.alpha ?? 0, opts.beta ?? 0)
    .u32(out.offset)
    .u32Array(dims.shape, MAX_RANK, 1)
    .u32Array(strides[0]!, MAX_RANK)
    .u32Array(strides[1] ?? [], MAX_RANK)
    .u32Array(strides[2] ?? [], MAX_RANK)
    .u32Array(dims.strides[inputs.length]!, MAX_RANK)
    .f32(...inv, ...new Array(MAX_RANK - inv.length).fill(1));
  const n = inputs.length;
  engine.dispatch({
    kernel: {
      family: 'elementwise',
      defines: {
        IN2: n >= 2,
        IN3: n >= 3,
        TA: inputs[0]!.dtype,
        TB: inputs[1]?.dtype ?? 'f32',
        TC: inputs[2]?.dtype ?? 'f32',
        TO: outDtype,
        CT: opts.ct ?? 'f32',
        EXPR: expr,
        CONTIG: contig,
        OUT_STRIDED: outStrided,
        READ_OUT: Boolean(opts.readOut),
        RANK: contig ? 0 : dims.shape.length,
        FASTDIV: !contig && out.size < 2 ** 24,
        OUT_BINDING: n + 1,
      },
    },
    params: p.done(),
    buffers: [...inputs.map((t) => t.buffer), out.buffer],
    workgroups: grid(Math.ceil(out.size / 256)),
  });
  return out;
}

// ---- creation -------------------------------------------------------------------------------

export function full(engine: Engine, shape: readonly number[], value: number, dtype: DType = 'f32'): Tensor {
  return fillSeq(engine, shape, value, 0, dtype);
}
export function zeros(engine: Engine, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return full(engine, shape, 0, dtype);
}
export function ones(engine: Engine, shape: readonly number[], dtype: DType = 'f32'): Tensor {
  return full(engine, shape, 1, dtype);
}
/** start, start+step, … (n values). */
export function arange(engine: Engine, n: number, start = 0, step = 1, dtype: DType = 'f32'): Tensor {
  return fillSeq(engine, [n], start, step, dtype);
}
function fillSeq(engine: Engine, shape: readonly number[], alpha: number, beta: number, dtype: DType): Tensor {
  checkDtypeSupported(engine, dtype);
  const out = empty(engine, shape, dtype);
  if (out.size === 0) return out;
  engine.dispatch({
    kernel: { family: 'fill', defines: { TO: dtype, INT: dtype === 'i32' || dtype === 'u32' } },
    params: new Params().u32(out.size).f32(alpha, beta).u32(0).done(),
    buffers: [out.buffer],
    workgroups: grid(Math.ceil(out.size / 256)),
  });
  return out;
}

// ---- unary ----------------------------------------------------------------------------------

type UnaryGrad = (x: Tensor, y: Tensor, g: Tensor) => Tensor;
function unary(name: string, expr: string, grad: UnaryGrad | null, alpha = 0, beta = 0) {
  return (x: Tensor): Tensor => {
    const y = map([x], expr, { name, alpha, beta, out: floatOut(x) });
    if (!grad) return y;
    return record(y, name, [x], (g) => [grad(x, y, g)]);
  };
}
function floatOut(x: Tensor): DType {
  return x.dtype === 'f16' ? 'f16' : 'f32';
}
const gmap = (name: string, expr: string, ...ts: Tensor[]) => map(ts, expr, { name, out: ts[ts.length - 1]!.dtype });

export const neg = unary('neg', '-a', (_x, _y, g) => gmap('neg_grad', '-a', g));
export const abs = unary('abs', 'abs(a)', (x, _y, g) => gmap('abs_grad', 'sign(a) * b', x, g));
export const exp = unary('exp', 'exp(a)', (_x, y, g) => gmap('exp_grad', 'a * b', y, g));
export const log = unary('log', 'log(a)', (x, _y, g) => gmap('log_grad', 'b / a', x, g));
export const sqrt = unary('sqrt', 'sqrt(a)', (_x, y, g) => gmap('sqrt_grad', '0.5 * b / a', y, g));
export const rsqrt = unary('rsqrt', 'inverseSqrt(a)', (_x, y, g) => gmap('rsqrt_grad', '-0.5 * a * a * a * b', y, g));
export const sin = unary('sin', 'sin(a)', (x, _y, g) => gmap('sin_grad', 'cos(a) * b', x, g));
export const cos = unary('cos', 'cos(a)', (x, _y, g) => gmap('cos_grad', '-sin(a) * b', x, g));
export const tanh = unary('tanh', 'tanh(a)', (_x, y, g) => gmap('tanh_grad', '(1.0 - a * a) * b', y, g));
export const sigmoid = unary('sigmoid', 'sigmoid_(a)', (_x, y, g) => gmap('sigmoid_grad', 'a * (1.0 - a) * b', y, g));
export const relu = unary('relu', 'max(a, 0.0)', (x, _y, g) => gmap('relu_grad', 'select(0.0, b, a > 0.0)', x, g));
/** GELU, exact (erf) form as in Whisper. */
export const gelu = unary('gelu', 'gelu_(a)', (x, _y, g) => gmap('gelu_grad', 'gelu_grad_(a) * b', x, g));
export const silu = unary('silu', 'silu_(a)', (x, _y, g) => gmap('silu_grad', 'silu_grad_(a) * b', x, g));
export const square = unary('square', 'a * a', (x, _y, g) => gmap('square_grad', '2.0 * a * b', x, g));
export const reciprocal = unary('reciprocal', '1.0 / a', (_x, y, g) => gmap('reciprocal_grad', '-a * a * b', y, g));

/** alpha·x + beta. */
export function affine(x: Tensor, alpha: number, beta = 0): Tensor {
  const y = map([x], 'P.alpha * a + P.beta', { name: 'affine', alpha, beta, out: floatOut(x) });
  return record(y, 'affine', [x], (g) => [map([g], 'P.alpha * a', { name: 'scale', alpha })]);
}
export const scale = (x: Tensor, s: number) => affine(x, s, 0);
export const addScalar = (x: Tensor, s: number) => affine(x, 1, s);

/** x^p for a constant p (x > 0 unless p is an integer). */
export function powScalar(x: Tensor, p: number): Tensor {
  const expr = Number.isInteger(p) ? 'select(1.0, sign(a), abs(P.alpha % 2.0) == 1.0) * pow(abs(a), P.alpha)' : 'pow(a, P.alpha)';
  const y = map([x], expr, { name: 'pow', alpha: p, out: floatOut(x) });
  return record(y, 'pow', [x], (g) => [
    map([x, g], Number.isInteger(p - 1) ? 'P.alpha * select(1.0, sign(a), abs((P.alpha - 1.0) % 2.0) == 1.0) * pow(abs(a), P.alpha - 1.0) * b' : 'P.alpha * pow(a, P.alpha - 1.0) * b', {
      name: 'pow_grad',
      alpha: p,
      out: g.dtype,
    }),
  ]);
}

export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const y = map([x], 'clamp(a, P.alpha, P.beta)', { name: 'clamp', alpha: lo, beta: hi, out: floatOut(x) });
  return record(y, 'clamp', [x], (g) => [map([x, g], 'select(0.0, b, a >= P.alpha && a <= P.beta)', { name: 'clamp_grad', alpha: lo, beta: hi, out: g.dtype })]);
}

/** Convert dtype (float→int truncates toward zero). Gradient flows between float dtypes. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return map([x], 'a', { name: 'copy', ct: ctOf(dtype) });
  const y = map([x], 'a', { name: 'cast', out: dtype, ct: ctOf(x.dtype === 'f16' || dtype === 'f16' ? 'f32' : pickCt(x.dtype, dtype)) });
  const isFloat = (d: DType) => d === 'f32' || d === 'f16';
  if (!isFloat(x.dtype) || !isFloat(dtype)) return y;
  return record(y, 'cast', [x], (g) => [map([g], 'a', { name: 'cast', out: x.dtype })]);
}
function ctOf(d: DType): 'f32' | 'i32' | 'u32' {
  return d === 'i32' ? 'i32' : d === 'u32' ? 'u32' : 'f32';
}
function pickCt(from: DType, to: DType): 'f32' | 'i32' | 'u32' {
  if (from === 'f32' || to === 'f32') return 'f32';
  return ctOf(to);
}

export function clone(x: Tensor): Tensor {
  const y = map([x], 'a', { name: 'copy', ct: ctOf(x.dtype) });
  return record(y, 'clone', [x], (g) => [g]);
}

// ---- binary ---------------------------------------------------------------------------------

function checkFloatPair(name: string, a: Tensor, b: Tensor): DType {
  if (a.engine !== b.engine) throw new ArdError(`${name}: tensors belong to different engines`);
  if (a.dtype !== b.dtype) throw new ArdError(`${name}: dtype mismatch ${a.dtype} vs ${b.dtype} (cast first)`);
  return a.dtype;
}

function binary(name: string, expr: string, grads: ((a: Tensor, b: Tensor, y: Tensor, g: Tensor) => [Tensor | null, Tensor | null]) | null) {
  return (a: Tensor, b: Tensor): Tensor => {
    const dt = checkFloatPair(name, a, b);
    const y = map([a, b], expr, { name, out: dt, ct: ctOf(dt) });
    if (!grads) return y;
    return record(y, name, [a, b], (g) => {
      const [ga, gb] = grads(a, b, y, g);
      return [ga && a.requiresGrad ? sumToShape(ga, a.shape) : null, gb && b.requiresGrad ? sumToShape(gb, b.shape) : null];
    });
  };
}

export const add = binary('add', 'a + b', (_a, _b, _y, g) => [g, g]);
export const sub = binary('sub', 'a - b', (_a, _b, _y, g) => [g, gmap('neg', '-a', g)]);
export const mul = binary('mul', 'a * b', (a, b, _y, g) => [
  a.requiresGrad ? map([g, b], 'a * b', { name: 'mul', out: g.dtype }) : null,
  b.requiresGrad ? map([g, a], 'a * b', { name: 'mul', out: g.dtype }) : null,
]);
export const div = binary('div', 'a / b', (a, b, _y, g) => [
  a.requiresGrad ? map([g, b], 'a / b', { name: 'div', out: g.dtype }) : null,
  b.requiresGrad ? map([g, a, b], '-a * b / (c * c)', { name: 'div_grad', out: g.dtype }) : null,
]);
export const maximum = binary('maximum', 'max(a, b)', (a, b, _y, g) => [
  map([a, b, g], 'select(0.0, c, a >= b)', { name: 'max_grad', out: g.dtype }),
  map([a, b, g], 'select(0.0, c, a < b)', { name: 'max_grad', out: g.dtype }),
]);
export const minimum = binary('minimum', 'min(a, b)', (a, b, _y, g) => [
  map([a, b, g], 'select(0.0, c, a <= b)', { name: 'min_grad', out: g.dtype }),
  map([a, b, g], 'select(0.0, c, a > b)', { name: 'min_grad', out: g.dtype }),
]);

/** Comparisons give 1/0 in the inputs' float dtype (u32 for integer inputs). No gradient. */
function compare(name: string, op: string) {
  return (a: Tensor, b: Tensor): Tensor => {
    const dt = checkFloatPair(name, a, b);
    const isInt = dt === 'i32' || dt === 'u32';
    return map([a, b], `select(0, 1, a ${op} b)`, { name, out: isInt ? 'u32' : dt, ct: ctOf(dt) });
  };
}
export const gt = compare('gt', '>');
export const ge = compare('ge', '>=');
export const lt = compare('lt', '<');
export const le = compare('le', '<=');
export const eq = compare('eq', '==');
export const ne = compare('ne', '!=');

/** cond ? a : b, elementwise with broadcasting (cond: any dtype, nonzero = true). */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const dt = checkFloatPair('where', a, b);
  // every input is loaded as the compute type, the condition included
  const ct = ctOf(dt);
  const condF = ct === 'f32' ? 'a != 0.0' : ct === 'i32' ? 'a != 0i' : 'a != 0u';
  const y = map([cond, a, b], `select(c, b, ${condF})`, { name: 'where', out: dt, ct });
  return record(y, 'where', [a, b], (g) => [
    a.requiresGrad ? sumToShape(map([cond, g], 'select(0.0, b, a != 0.0)', { name: 'where_grad', out: g.dtype }), a.shape) : null,
    b.requiresGrad ? sumToShape(map([cond, g], 'select(b, 0.0, a != 0.0)', { name: 'where_grad', out: g.dtype }), b.shape) : null,
  ]);
}
