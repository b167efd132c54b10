// Neural-network ops for the Whisper-style encoder and Qwen2-style decoder: softmax / logSoftmax
// (scaled, causal), layerNorm, rmsNorm, rotary embeddings, conv1d, and scaled dot-product attention
// composed from matmul + softmax. Each op runs one WGSL kernel forward and dedicated kernels
// backward (kernels/softmax.wgsl, norm.wgsl, rope.wgsl, conv1d.wgsl), computing in f32 whatever
// the storage dtype (f32 or f16). Views whose elements are dense from their offset are read in
// place; other views are copied first. Test-only f64 references: reference/<family>.ts.
import { grid, Params } from '../../gpu/engine.js';
import { flashSplitPlan, flashTile } from '../../gpu/profile.js';
import type { Engine } from '../../gpu/engine.js';
import { ArdError } from '../../util/errors.js';
import { record } from '../autograd.js';
import { keep } from '../scope.js';
import { Tensor, empty, shapeStr, tensor } from '../tensor.js';
import { map } from './elementwise.js';
import { concat, contiguous, reshape, slice } from './layout.js';
import { linear, matmul, type MatmulAct } from './matmul.js';
import { RowBlocks, type Weight } from '../blocked.js';
import { sum } from './reduce.js';

function floatCheck(t: Tensor, what: string): void {
  if (t.dtype !== 'f32' && t.dtype !== 'f16') throw new ArdError(`${what}: expected an f32 or f16 tensor, got ${t.dtype} ${shapeStr(t.shape)}`);
}

/** `t` if its elements are dense from its offset, else a dense copy (no autograd). */
function dense(t: Tensor): Tensor {
  return t.isContiguousIgnoringOffset() ? t : t.engine.noGradScope(() => contiguous(t));
}
function release(copy: Tensor, orig: Tensor): void {
  if (copy !== orig) copy.dispose();
}

/**
 * Threads per row for the row kernels (64-invocation workgroups): lanes double up to the profile's
 * nn.rowLanes (≤ 64) while a lane would hold more than nn.rowElemsPerLane elements.
 */
function threadsPerRow(engine: Engine, n: number): number {
  const { rowLanes, rowElemsPerLane } = engine.profile.nn;
  let t = 1;
  while (t < Math.min(64, rowLanes) && t * rowElemsPerLane < n) t *= 2;
  return t;
}
function rowGrid(rows: number, tpr: number): [number, number] {
  return grid(Math.ceil(rows / (64 / tpr)));
}

// ---- softmax --------------------------------------------------------------------------------

export interface SoftmaxOptions {
  /**
   * Mask for attention scores [..., Tq, Tk]: row r is query q = r mod Tq (Tq = shape[-2], 1 for
   * 1-D input) and sees keys j ≤ q + causalOffset; hidden keys give 0 (softmax) or -inf
   * (logSoftmax). A row that sees no key is all 0 / all -inf.
   */
  causal?: boolean;
  /** Default Tk − Tq: the last query sees every key (what a KV cache needs); 0 when Tq = Tk. */
  causalOffset?: number;
  /** Applied to x before the softmax (e.g. 1/√d for attention). Default 1. */
  scale?: number;
}

/** softmax(scale·x) along the last axis (numerically stable, f32 arithmetic). */
export function softmax(x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  return softmaxImpl(x, opts, false);
}

/** log softmax(scale·x) along the last axis. */
export function logSoftmax(x: Tensor, opts: SoftmaxOptions = {}): Tensor {
  return softmaxImpl(x, opts, true);
}

function softmaxImpl(x: Tensor, opts: SoftmaxOptions, log: boolean): Tensor {
  const name = log ? 'logSoftmax' : 'softmax';
  floatCheck(x, name);
  if (x.rank < 1) throw new ArdError(`${name}: needs a tensor of rank ≥ 1`);
  const n = x.shape[x.rank - 1]!;
  const rows = n === 0 ? 0 : x.size / n;
  const tq = x.rank >= 2 ? x.shape[x.rank - 2]! : 1;
  const causal = Boolean(opts.causal);
  const offset = opts.causalOffset ?? n - tq;
  const scale = opts.scale ?? 1;
  if (!Number.isInteger(offset)) throw new ArdError(`${name}: causalOffset ${offset} is not an integer`);
  if (!Number.isFinite(scale)) throw new ArdError(`${name}: scale ${scale} is not finite`);
  const engine = x.engine;
  const out = empty(engine, x.shape, x.dtype);
  if (out.size === 0) return out;
  const tpr = threadsPerRow(engine, n);
  const params = (offA: number, offB: number) =>
    new Params()
      .u32(rows, n, Math.max(tq, 1))
      .i32(offset)
      .f32(scale)
      .u32(offA, offB)
      .f32(-Infinity)
      .u32(tpr, causal ? 1 : 0, log ? 1 : 0, 0)
      .done();
  const xd = dense(x);
  engine.dispatch({
    kernel: { family: 'softmax', defines: { TX: x.dtype, TY: x.dtype, TG: 'f32', BACKWARD: false } },
    params: params(xd.offset, 0),
    buffers: [xd.buffer, out.buffer],
    workgroups: rowGrid(rows, tpr),
  });
  release(xd, x);
  return record(out, name, [x], (g) => {
    const gd = dense(g);
    const dx = empty(engine, x.shape, x.dtype);
    engine.dispatch({
      kernel: { family: 'softmax', entry: 'backward', defines: { TX: x.dtype, TY: out.dtype, TG: g.dtype, BACKWARD: true } },
      params: params(out.offset, gd.offset),
      buffers: [out.buffer, gd.buffer, dx.buffer],
      workgroups: rowGrid(rows, tpr),
    });
    release(gd, g);
    return [dx];
  });
}

// ---- layer norm / RMS norm ------------------------------------------------------------------

/** Row chunks of the weight-gradient kernel (64 columns per workgroup): enough to occupy the device. */
function weightGradChunks(engine: Engine, rows: number, n: number): number {
  const { normGradWorkgroups, normGradMinRows } = engine.profile.nn;
  const colGroups = Math.ceil(n / 64);
  const want = Math.max(1, Math.ceil(normGradWorkgroups / colGroups));
  return Math.max(1, Math.min(want, Math.ceil(rows / normGradMinRows)));
}

function normImpl(name: string, x: Tensor, weight: Tensor, bias: Tensor | null, eps: number, rms: boolean): Tensor {
  floatCheck(x, name);
  floatCheck(weight, `${name} weight`);
  if (bias) floatCheck(bias, `${name} bias`);
  if (x.rank < 1) throw new ArdError(`${name}: needs a tensor of rank ≥ 1`);
  const n = x.shape[x.rank - 1]!;
  if (weight.size !== n || weight.shape[weight.rank - 1] !== n) {
    throw new ArdError(`${name}: weight ${shapeStr(weight.shape)} does not match the last axis of ${shapeStr(x.shape)}`);
  }
  if (bias && (bias.size !== n || bias.shape[bias.rank - 1] !== n)) {
    throw new ArdError(`${name}: bias ${shapeStr(bias.shape)} does not match the last axis of ${shapeStr(x.shape)}`);
  }
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new ArdError(`${name}: eps ${eps} must be a finite number ≥ 0`);
  const engine = x.engine;
  const out = empty(engine, x.shape, x.dtype);
  if (out.size === 0) return out;
  const rows = x.size / n;
  const tpr = threadsPerRow(engine, n);
  const wantsGrad = engine.gradEnabled && (x.requiresGrad || weight.requiresGrad || Boolean(bias?.requiresGrad));
  const xd = dense(x);
  const wd = dense(weight);
  const bd = bias ? dense(bias) : null;
  const stats = wantsGrad ? empty(engine, [rows, 2], 'f32') : null;
  const params = (offG: number, chunkRows: number) =>
    new Params().u32(rows, n).f32(eps).u32(xd.offset, wd.offset, bd?.offset ?? 0, offG, chunkRows, tpr, 0, 0, 0).done();
  const types = { TX: x.dtype, TW: weight.dtype, TB: bias?.dtype ?? 'f32', RMS: rms, BIAS: Boolean(bias) };
  const oBinding = bias ? 4 : 3;
  engine.dispatch({
    kernel: {
      family: 'norm',
      defines: { ...types, TG: 'f32', TO: x.dtype, STATS: Boolean(stats), FWD: true, GX: false, GW: false, O_BINDING: oBinding, S_BINDING: oBinding + 1 },
    },
    params: params(0, 0),
    buffers: [xd.buffer, wd.buffer, ...(bd ? [bd.buffer] : []), out.buffer, ...(stats ? [stats.buffer] : [])],
    workgroups: rowGrid(rows, tpr),
  });
  if (!stats) {
    release(xd, x);
    release(wd, weight);
    if (bd && bias) release(bd, bias);
    return out;
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  const res = record(out, name, inputs, (g) => {
    const gd = dense(g);
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) {
      dx = empty(engine, x.shape, x.dtype);
      engine.dispatch({
        kernel: {
          family: 'norm',
          entry: 'grad_x',
          defines: { ...types, TG: g.dtype, TO: x.dtype, STATS: false, FWD: false, GX: true, GW: false, O_BINDING: 0, S_BINDING: 0 },
        },
        params: params(gd.offset, 0),
        buffers: [xd.buffer, wd.buffer, gd.buffer, stats.buffer, dx.buffer],
        workgroups: rowGrid(rows, tpr),
      });
    }
    if (weight.requiresGrad || bias?.requiresGrad) {
      const chunks = weightGradChunks(engine, rows, n);
      const chunkRows = Math.ceil(rows / chunks);
      const nChunks = Math.ceil(rows / chunkRows);
      const pw = empty(engine, [nChunks, n], 'f32');
      const pb = bias ? empty(engine, [nChunks, n], 'f32') : null;
      engine.dispatch({
        kernel: {
          family: 'norm',
          entry: 'grad_w',
          defines: { ...types, TG: g.dtype, TO: 'f32', STATS: false, FWD: false, GX: false, GW: true, O_BINDING: 0, S_BINDING: 0 },
        },
        params: params(gd.offset, chunkRows),
        buffers: [xd.buffer, gd.buffer, stats.buffer, pw.buffer, ...(pb ? [pb.buffer] : [])],
        workgroups: [Math.ceil(n / 64), nChunks],
      });
      dw = weight.requiresGrad ? finishParamGrad(pw, weight) : null;
      db = bias?.requiresGrad && pb ? finishParamGrad(pb, bias) : null;
      pw.dispose();
      pb?.dispose();
    }
    release(gd, g);
    return [dx, dw, db];
  });
  // the backward keeps what it reads alive as long as the graph holds the closure
  if (!res.node) {
    stats.dispose();
    release(xd, x);
    release(wd, weight);
    if (bd && bias) release(bd, bias);
  }
  return res;
}

/** Partial sums [chunks, n] (f32) → gradient shaped and typed like `p` (the caller disposes `partial`). */
function finishParamGrad(partial: Tensor, p: Tensor): Tensor {
  let s = partial.shape[0] === 1 ? partial : sum(partial, 0);
  if (p.dtype !== 'f32') {
    const c = map([s], 'a', { name: 'cast', out: p.dtype });
    if (s !== partial) s.dispose();
    s = c;
  }
  const r = reshape(s, p.shape); // a view when the shapes differ: it keeps the storage alive
  if (r !== s && s !== partial) s.dispose();
  return r;
}

/**
 * LayerNorm over the last axis (biased variance, like torch.nn.LayerNorm): (x − μ)/√(σ² + eps)·w + b.
 * weight/bias have n = x.shape[-1] elements; bias may be null. Gradients for x, weight and bias.
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor | null, eps = 1e-5): Tensor {
  return normImpl('layerNorm', x, weight, bias, eps, false);
}

/**
 * RMSNorm over the last axis as in Qwen2: x·rsqrt(mean(x²) + eps)·w, computed in f32 (for f16 x the
 * normalised value is rounded to f16 before the weight, as HF does). Gradients for x and weight.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  return normImpl('rmsNorm', x, weight, null, eps, true);
}

// ---- rotary embeddings ----------------------------------------------------------------------

export interface RopeOptions {
  /** Base of the frequencies (Qwen2: rope_theta, 10000 by default). */
  theta?: number;
  /**
   * Head width D. Default: the last axis. When smaller than the last axis (layout 'thd' only) the
   * last axis is read as H packed heads of D values: x [..., T, H·D].
   */
  headDim?: number;
  /**
   * 'thd' (default): x [..., T, H, D] — a projection output reshaped, no transpose needed.
   * 'htd': x [..., H, T, D] — the layout of HF after transpose(1, 2).
   */
  layout?: 'thd' | 'htd';
}

const invFreqCache = new WeakMap<Engine, Map<string, Tensor>>();

/**
 * Inverse frequencies F[k] = 1/θ^(2k/D), k < D/2, rounded as HF computes them in f32:
 * fround(1 / fround(θ^fround(2k/D))). Exported for the reference.
 */
export function ropeInvFreq(theta: number, headDim: number): Float32Array {
  const half = headDim / 2;
  const f = new Float32Array(half);
  for (let k = 0; k < half; k++) f[k] = 1 / Math.fround(Math.pow(Math.fround(theta), Math.fround((2 * k) / headDim)));
  return f;
}

/** One f32 tensor of inverse frequencies per (engine, θ, D), uploaded once and kept. */
function invFreqTensor(engine: Engine, theta: number, headDim: number): Tensor {
  let m = invFreqCache.get(engine);
  if (!m) invFreqCache.set(engine, (m = new Map()));
  const key = `${theta}|${headDim}`;
  let t = m.get(key);
  if (!t || t.isDisposed) {
    t = keep(tensor(engine, ropeInvFreq(theta, headDim), [headDim / 2]));
    m.set(key, t);
  }
  return t;
}

/**
 * Rotary position embedding, HF rotate_half convention (pairs (k, k + D/2), not interleaved):
 * y[k] = x[k]·cos(pos·F[k]) − x[k+D/2]·sin(pos·F[k]), y[k+D/2] = x[k+D/2]·cos + x[k]·sin.
 * `positions`: an i32/u32 tensor of T (or batch·T) positions, or a start position p0 so that step t
 * is at p0 + t (a KV cache's length). batch = the product of the axes before T (layout 'thd') or
 * before H ('htd'). Backward: rotation by −angle. The positions tensor must live until backward.
 * The angle is pos·F[k] rounded to f32 as in HF; its sine and cosine are right to about 1 ULP on
 * any conforming adapter (kernels/rope.wgsl reduces it exactly instead of trusting WGSL's sin/cos).
 */
export function rope(x: Tensor, positions: Tensor | number, opts: RopeOptions = {}): Tensor {
  floatCheck(x, 'rope');
  const layout = opts.layout ?? 'thd';
  if (layout !== 'thd' && layout !== 'htd') throw new ArdError(`rope: unknown layout '${String(layout)}' (use 'thd' or 'htd')`);
  const theta = opts.theta ?? 10000;
  if (!(theta > 0) || !Number.isFinite(theta)) throw new ArdError(`rope: theta ${theta} must be a positive number`);
  const last = x.shape[x.rank - 1] ?? 0;
  const D = opts.headDim ?? last;
  if (!Number.isInteger(D) || D < 2 || D % 2) throw new ArdError(`rope: head dim ${D} must be an even integer ≥ 2`);
  let shape4: readonly number[];
  if (D !== last) {
    if (layout !== 'thd' || last % D || x.rank < 2) throw new ArdError(`rope: last axis ${last} of ${shapeStr(x.shape)} is not H·${D} in layout 'thd'`);
    shape4 = [...x.shape.slice(0, -1), last / D, D];
  } else {
    shape4 = x.shape;
  }
  if (shape4.length < 3) throw new ArdError(`rope: x ${shapeStr(x.shape)} must be [..., T, H, D] ('thd') or [..., H, T, D] ('htd')`);
  const r = shape4.length;
  const T = layout === 'thd' ? shape4[r - 3]! : shape4[r - 2]!;
  const H = layout === 'thd' ? shape4[r - 2]! : shape4[r - 3]!;
  const batch = shape4.slice(0, r - 3).reduce((a, b) => a * b, 1);
  let posBatch = 0;
  let startPos = 0;
  if (positions instanceof Tensor) {
    if (positions.dtype !== 'i32' && positions.dtype !== 'u32') throw new ArdError(`rope: positions must be i32 or u32, got ${positions.dtype}`);
    if (positions.size === batch * T && batch > 1) posBatch = T;
    else if (positions.size !== T) throw new ArdError(`rope: ${positions.size} positions for T = ${T}${batch > 1 ? ` (or batch·T = ${batch * T})` : ''} in ${shapeStr(x.shape)}`);
  } else {
    if (!Number.isInteger(positions) || Math.abs(positions) > 2 ** 24) throw new ArdError(`rope: start position ${positions} is not an integer in ±2^24`);
    startPos = positions;
  }
  const engine = x.engine;
  const freqs = invFreqTensor(engine, theta, D);
  const nPairs = x.size / 2;
  const run = (src: Tensor, sign: number): Tensor => {
    const out = empty(engine, x.shape, src.dtype);
    if (nPairs === 0) return out;
    const sd = dense(src);
    const pd = positions instanceof Tensor ? dense(positions) : null;
    engine.dispatch({
      kernel: { family: 'rope', defines: { TX: src.dtype, POS: Boolean(pd), TP: pd?.dtype ?? 'i32', O_BINDING: pd ? 4 : 3 } },
      params: new Params()
        .u32(nPairs, D / 2, T, layout === 'thd' ? H : 1, H * T, posBatch)
        .i32(startPos)
        .f32(sign)
        .u32(sd.offset, pd?.offset ?? 0)
        .done(),
      buffers: [sd.buffer, freqs.buffer, ...(pd ? [pd.buffer] : []), out.buffer],
      workgroups: grid(Math.ceil(nPairs / 256)),
    });
    release(sd, src);
    if (pd && positions instanceof Tensor) release(pd, positions);
    return out;
  };
  const y = run(x, 1);
  return record(y, 'rope', [x], (g) => [run(g, -1)]);
}

// ---- unfold1d (im2col) -----------------------------------------------------------------------

/**
 * The windows of a 1-D convolution as rows: x [Cin, T] (any strides, f32) → cols [Tout, Cin·K],
 * cols[t, c·K + k] = x[c, t·s + k − p] (zero outside). A convolution is then one matmul:
 * conv1d(x, w, b) = transpose(linear(unfold1d(x, K, opts), reshape(w, [Cout, Cin·K]), b)), and a
 * time-major result is what the audio encoder wants anyway. Faster than the direct conv1d kernel
 * on llvmpipe (the matmul kernel is the tuned one); gradient for x (its adjoint, a gather).
 */
export function unfold1d(x: Tensor, K: number, opts: Conv1dOptions = {}): Tensor {
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  if (x.dtype !== 'f32') throw new ArdError(`unfold1d: x must be f32, got ${x.dtype} ${shapeStr(x.shape)}`);
  if (x.rank !== 2) throw new ArdError(`unfold1d: x must be [Cin, T], got ${shapeStr(x.shape)}`);
  if (!Number.isInteger(K) || K < 1) throw new ArdError(`unfold1d: kernel size ${K} must be an integer ≥ 1`);
  if (!Number.isInteger(stride) || stride < 1) throw new ArdError(`unfold1d: stride ${stride} must be an integer ≥ 1`);
  if (!Number.isInteger(pad) || pad < 0) throw new ArdError(`unfold1d: padding ${pad} must be an integer ≥ 0`);
  const [Cin, T] = x.shape as [number, number];
  const span = T + 2 * pad - K;
  if (span < 0) throw new ArdError(`unfold1d: input length ${T} with padding ${pad} is shorter than the kernel (${K})`);
  const Tout = Math.floor(span / stride) + 1;
  const engine = x.engine;
  const out = empty(engine, [Tout, Cin * K], 'f32');
  if (out.size === 0) return out;
  const params = (offX: number, sc: number, st: number, offG: number) => new Params().u32(Cin, T, K, stride, pad, Tout, offX, sc, st, offG).done();
  engine.dispatch({
    kernel: { family: 'unfold', defines: { UNFOLD: true, FOLD: false } },
    params: params(x.offset, x.strides[0]!, x.strides[1]!, 0),
    buffers: [x.buffer, out.buffer],
    workgroups: [Math.ceil((Cin * K) / 64), Tout],
  });
  return record(out, 'unfold1d', [x], (g) => {
    const gd = dense(g);
    const dx = empty(engine, [Cin, T], 'f32');
    engine.dispatch({
      kernel: { family: 'unfold', entry: 'fold', defines: { UNFOLD: false, FOLD: true } },
      params: params(0, 0, 0, gd.offset),
      buffers: [gd.buffer, dx.buffer],
      workgroups: [Math.ceil(T / 64), Cin],
    });
    release(gd, g);
    return [dx];
  });
}

/**
 * conv1d as unfold1d + one matmul, time-major: x [Cin, T] (any strides, f32), w [Cout, Cin, K],
 * bias [Cout] → [Tout, Cout] (conv1d's output transposed), with a fused activation and, given
 * `rows`, only the first `rows` time steps computed. What the audio encoder runs, in training and
 * inference: about twice the direct kernel's speed on llvmpipe, and its gradients are matmuls.
 */
export function conv1dTimeMajor(x: Tensor, w: Weight, bias: Tensor | null, opts: Conv1dOptions & { act?: MatmulAct; rows?: number } = {}): Tensor {
  if (w.shape.length !== 3) throw new ArdError(`conv1dTimeMajor: weight must be [Cout, Cin, K], got ${shapeStr(w.shape)}`);
  const [cout, cin, k] = w.shape as [number, number, number];
  if (x.rank !== 2 || x.shape[0] !== cin) throw new ArdError(`conv1dTimeMajor: x ${shapeStr(x.shape)} must be [${cin}, T] for weight ${shapeStr(w.shape)}`);
  const cols = unfold1d(x, k, opts);
  const picked = opts.rows === undefined || opts.rows === cols.shape[0] ? cols : slice(cols, 0, 0, opts.rows);
  // a kernel split into row blocks (over Cout) stays split: each block flattened to [rows, Cin·K]
  const w2 = w instanceof RowBlocks ? new RowBlocks(w.blocks.map((b) => reshape(b, [b.shape[0]!, cin * k]))) : reshape(w, [cout, cin * k]);
  return linear(picked, w2, bias ?? undefined, opts.act);
}

// ---- conv1d ---------------------------------------------------------------------------------

export interface Conv1dOptions {
  stride?: number;
  padding?: number;
}

/**
 * 1-D convolution like torch.nn.functional.conv1d: x [Cin, T] or [B, Cin, T], w [Cout, Cin, K],
 * bias [Cout] or null → [Cout, Tout] / [B, Cout, Tout], Tout = ⌊(T + 2p − K)/s⌋ + 1 (zero padding).
 * Direct kernel (Whisper's K = 3); gradients for x, w and bias.
 */
export function conv1d(x: Tensor, w: Tensor, bias: Tensor | null = null, opts: Conv1dOptions = {}): Tensor {
  floatCheck(x, 'conv1d');
  floatCheck(w, 'conv1d weight');
  if (bias) floatCheck(bias, 'conv1d bias');
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  if (!Number.isInteger(stride) || stride < 1) throw new ArdError(`conv1d: stride ${stride} must be an integer ≥ 1`);
  if (!Number.isInteger(pad) || pad < 0) throw new ArdError(`conv1d: padding ${pad} must be an integer ≥ 0`);
  if (x.rank !== 2 && x.rank !== 3) throw new ArdError(`conv1d: x must be [Cin, T] or [B, Cin, T], got ${shapeStr(x.shape)}`);
  if (w.rank !== 3) throw new ArdError(`conv1d: weight must be [Cout, Cin, K], got ${shapeStr(w.shape)}`);
  const batched = x.rank === 3;
  const B = batched ? x.shape[0]! : 1;
  const Cin = x.shape[x.rank - 2]!;
  const T = x.shape[x.rank - 1]!;
  const [Cout, wCin, K] = w.shape as [number, number, number];
  if (wCin !== Cin) throw new ArdError(`conv1d: weight ${shapeStr(w.shape)} expects ${wCin} input channels, x ${shapeStr(x.shape)} has ${Cin}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== Cout)) throw new ArdError(`conv1d: bias ${shapeStr(bias.shape)} must be [${Cout}]`);
  if (K < 1) throw new ArdError(`conv1d: kernel size 0 in ${shapeStr(w.shape)}`);
  const span = T + 2 * pad - K;
  if (span < 0) throw new ArdError(`conv1d: input length ${T} with padding ${pad} is shorter than the kernel (${K})`);
  const Tout = Math.floor(span / stride) + 1;
  const engine = x.engine;
  const outShape = batched ? [B, Cout, Tout] : [Cout, Tout];
  if (Cin === 0) throw new ArdError(`conv1d: no input channels in ${shapeStr(x.shape)}`);
  const out = empty(engine, outShape, x.dtype);
  if (out.size === 0) return out;
  const xd = dense(x);
  const wd = dense(w);
  const bd = bias ? dense(bias) : null;
  const params = (offG: number) => new Params().u32(B, Cin, T, Cout, K, Tout, stride, pad, xd.offset, wd.offset, bd?.offset ?? 0, offG).done();
  const types = { TX: x.dtype, TW: w.dtype, TB: bias?.dtype ?? 'f32' };
  engine.dispatch({
    kernel: { family: 'conv1d', defines: { ...types, TG: 'f32', TO: x.dtype, BIAS: Boolean(bd), FWD: true, GX: false, GW: false, O_BINDING: bd ? 4 : 3 } },
    params: params(0),
    buffers: [xd.buffer, wd.buffer, ...(bd ? [bd.buffer] : []), out.buffer],
    workgroups: [Math.ceil(Tout / 64), Math.ceil(Cout / 16), B],
  });
  if (bd && bias) release(bd, bias);
  const inputs = bias ? [x, w, bias] : [x, w];
  const res = record(out, 'conv1d', inputs, (g) => {
    const gd = dense(g);
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    let db: Tensor | null = null;
    if (x.requiresGrad) {
      dx = empty(engine, x.shape, x.dtype);
      engine.dispatch({
        kernel: { family: 'conv1d', entry: 'grad_x', defines: { ...types, TG: g.dtype, TO: x.dtype, BIAS: false, FWD: false, GX: true, GW: false, O_BINDING: 0 } },
        params: params(gd.offset),
        buffers: [gd.buffer, wd.buffer, dx.buffer],
        workgroups: [Math.ceil(T / 64), Math.ceil(Cin / 16), B],
      });
    }
    if (w.requiresGrad) {
      dw = empty(engine, w.shape, w.dtype);
      engine.dispatch({
        kernel: { family: 'conv1d', entry: 'grad_w', defines: { ...types, TG: g.dtype, TO: w.dtype, BIAS: false, FWD: false, GX: false, GW: true, O_BINDING: 0 } },
        params: params(gd.offset),
        buffers: [gd.buffer, xd.buffer, dw.buffer],
        workgroups: [Math.ceil((Cin * K) / 64), Math.ceil(Cout / 4)],
      });
    }
    if (bias?.requiresGrad) {
      const s = sum(gd, batched ? [0, 2] : 1);
      db = s.dtype === bias.dtype ? s : map([s], 'a', { name: 'cast', out: bias.dtype });
      if (db !== s) s.dispose();
    }
    release(gd, g);
    return [dx, dw, db];
  });
  if (!res.node) {
    release(xd, x);
    release(wd, w);
  }
  return res;
}

// ---- attention ------------------------------------------------------------------------------

/**
 * softmax(scale·q·kᵀ [+ causal mask])·v, composed from matmul and softmax (autograd for q, k, v).
 * q [..., H, Tq, D], k [..., Hkv, Tk, D], v [..., Hkv, Tk, Dv] → [..., H, Tq, Dv]; rank 2 means
 * one head. Grouped-query attention when Hkv < H: query head j uses kv head ⌊j / (H/Hkv)⌋ (as
 * HF's repeat_kv), without copying k or v. scale defaults to 1/√D; causal masking as in softmax
 * (default offset Tk − Tq: a KV cache of Tk − Tq earlier steps).
 */
export interface AttentionOptions extends SoftmaxOptions {
  /**
   * Largest f32 score matrix to materialise at once (bytes; default: the device profile's
   * nn.attentionScoreBytes). Without autograd, more queries than fit are processed in chunks of rows.
   * Only for the chunked kernel: the flash kernel materialises no scores.
   */
  maxScoreBytes?: number;
  /**
   * Kernel (default: the profile's nn.attention): 'chunked' (matmul + softmax), 'flash' (one fused
   * pass, kernels/attention.wgsl) or 'split' (split-K: the flash pass over chunks of the keys, then a
   * combine kernel, kernels/attention_combine.wgsl). The profile's 'flash' takes 'split' where
   * flashSplitPlan says (few workgroups: a decode step); 'flash' given here is always one pass. With
   * autograd, and for shapes the flash kernel does not take (head dims too large for workgroup
   * memory), 'chunked'.
   */
  variant?: 'chunked' | 'flash' | 'split';
  /** 'split' only: the number of key chunks (default: the profile's rule; 1 is allowed). */
  splits?: number;
}

/**
 * softmax(q·kᵀ·scale + causal mask)·v. Without autograd and under the flash variant: one fused kernel
 * whose scores live in workgroup memory only. Otherwise composed from matmul and softmax, chunked over
 * queries when the [.., Tq, Tk] scores would exceed maxScoreBytes: each query row's scores, softmax and
 * weighted sum do not depend on other rows, so the chunks compute the same bits as one pass (tested)
 * and the scores never outgrow one binding.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const r = q.rank;
  const Tq = r >= 2 ? q.shape[r - 2]! : 0;
  const Tk = k.rank >= 2 ? k.shape[k.rank - 2]! : 0;
  const engine = q.engine;
  const wantGrad = engine.gradEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad);
  const variant = opts.variant ?? engine.profile.nn.attention;
  if (!wantGrad && (variant === 'flash' || variant === 'split')) {
    const out = flashAttention(q, k, v, opts, opts.variant === 'flash' ? 'one' : variant === 'split' ? 'split' : 'auto');
    if (out) return out;
  }
  const budget = opts.maxScoreBytes ?? engine.profile.nn.attentionScoreBytes;
  // scores of one query row, over every head and batch entry: [..., H, 1, Tk] f32
  const rowBytes = r >= 2 ? (q.shape.slice(0, -2).reduce((a, b) => a * b, 1) || 1) * Tk * 4 : 0;
  if (wantGrad || Tq <= 1 || rowBytes * Tq <= budget) return attentionPass(q, k, v, opts);
  const rows = Math.max(1, Math.floor(budget / rowBytes));
  const base = opts.causalOffset ?? Tk - Tq;
  const parts: Tensor[] = [];
  for (let q0 = 0; q0 < Tq; q0 += rows) {
    const qs = slice(q, r - 2, q0, Math.min(Tq, q0 + rows));
    parts.push(attentionPass(qs, k, v, { ...opts, causalOffset: base + q0 }));
    qs.dispose();
  }
  const out = concat(parts, r - 2);
  for (const p of parts) p.dispose();
  return out;
}

interface AttentionShapes {
  lead: number[];
  H: number;
  Hkv: number;
  rep: number;
  Tq: number;
  Tk: number;
  D: number;
  Dv: number;
}

/** Checks q, k, v (dtypes, ranks, matching dims, kv heads dividing query heads) and names their dims. */
function attentionShapes(q: Tensor, k: Tensor, v: Tensor): AttentionShapes {
  for (const [t, nm] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
    floatCheck(t, `attention ${nm}`);
    if (t.rank < 2) throw new ArdError(`attention: ${nm} ${shapeStr(t.shape)} must be [..., T, D]`);
  }
  if (q.rank !== k.rank || k.rank !== v.rank) throw new ArdError(`attention: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)} differ in rank`);
  const r = q.rank;
  const [Tq, D] = q.shape.slice(-2) as [number, number];
  const [Tk, Dk] = k.shape.slice(-2) as [number, number];
  const Dv = v.shape[r - 1]!;
  if (Dk !== D || v.shape[r - 2] !== Tk) throw new ArdError(`attention: k ${shapeStr(k.shape)} / v ${shapeStr(v.shape)} do not fit q ${shapeStr(q.shape)}`);
  const lead = q.shape.slice(0, Math.max(0, r - 3));
  if (r > 3 && (k.shape.slice(0, r - 3).some((d, i) => d !== lead[i]) || v.shape.slice(0, r - 3).some((d, i) => d !== lead[i]))) {
    throw new ArdError(`attention: batch dims of q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)} differ`);
  }
  const H = r >= 3 ? q.shape[r - 3]! : 1;
  const Hkv = r >= 3 ? k.shape[r - 3]! : 1;
  if (r >= 3 && (v.shape[r - 3] !== Hkv || Hkv === 0 || H % Hkv)) {
    throw new ArdError(`attention: ${H} query heads cannot share ${Hkv} kv heads (k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)})`);
  }
  return { lead, H, Hkv, rep: r >= 3 ? H / Hkv : 1, Tq, Tk, D, Dv };
}

/**
 * Strides (batch, head, time) of t [...lead, heads, T, dim] in elements, the batch dims merged into one,
 * or null when they cannot be merged (t is then copied densely first).
 */
function attentionStrides(t: Tensor): [number, number, number] | null {
  const r = t.rank;
  const st = t.strides;
  const sT = st[r - 2]!;
  const sH = r >= 3 ? st[r - 3]! : 0;
  if (r <= 3) return [0, sH, sT];
  // merged batch index i = Σ i_d·Π_{e>d} n_e must address offset i·sB: strides nest
  for (let d = 0; d < r - 4; d++) if (t.shape[d + 1]! > 1 && st[d] !== st[d + 1]! * t.shape[d + 1]!) return null;
  return [st[r - 4]!, sH, sT];
}

/**
 * The flash kernel (kernels/attention.wgsl): one dispatch, scores never leave the workgroup; or split-K
 * (`mode` 'split', or 'auto' where the profile's flashSplitPlan gives more than one chunk): the same
 * kernel over chunks of the keys writing partials (f32 [B·H·Tq, splits, Dv + 2]), then
 * kernels/attention_combine.wgsl. Returns null where it does not apply (the caller takes the composed
 * path): head dims whose tile does not fit the adapter's workgroup memory.
 */
function flashAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions, mode: 'one' | 'split' | 'auto'): Tensor | null {
  const sh = attentionShapes(q, k, v);
  const { lead, H, Hkv, rep, Tq, Tk, D, Dv } = sh;
  const engine = q.engine;
  const tileSize = flashTile(engine.profile, D, Dv);
  if (!tileSize || D === 0 || Dv === 0) return null;
  const causal = Boolean(opts.causal);
  const offset = opts.causalOffset ?? Tk - Tq;
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isInteger(offset)) throw new ArdError(`attention: causalOffset ${offset} is not an integer`);
  if (!Number.isFinite(scale)) throw new ArdError(`attention: scale ${scale} is not finite`);
  if (opts.splits !== undefined && (!Number.isInteger(opts.splits) || opts.splits < 1)) throw new ArdError(`attention: splits ${opts.splits} must be an integer ≥ 1`);
  const out = empty(engine, [...q.shape.slice(0, -1), Dv], q.dtype);
  if (out.size === 0) return out;
  const B = lead.reduce((a, b) => a * b, 1);
  const rows = rep * Tq;
  let plan = null as ReturnType<typeof flashSplitPlan>;
  if (mode !== 'one') {
    // keys the last query row sees: the chunks cover those (rows before it see a prefix)
    const keys = causal ? Math.max(0, Math.min(Tk, Tq - 1 + offset + 1)) : Tk;
    plan = flashSplitPlan(engine.profile, { batchHeads: B * Hkv, rows, keys, D, Dv, splits: mode === 'split' ? opts.splits : undefined });
    // the partials must fit one binding (forced splits can ask for more): fewer chunks, else one pass
    const perSplit = B * H * Tq * (Dv + 2) * 4;
    const cap = Math.min(engine.profile.limits.maxStorageBufferBindingSize, engine.profile.limits.maxBufferSize);
    if (plan && plan.splits * perSplit > cap) {
      const fit = Math.floor(cap / perSplit);
      plan = fit >= 1 ? flashSplitPlan(engine.profile, { batchHeads: B * Hkv, rows, keys, D, Dv, splits: fit }) : null;
    }
    if (plan && mode === 'auto' && plan.splits < 2) plan = null;
  }
  // unit stride along the head dim and mergeable batch dims, else a dense copy
  const prep = (t: Tensor): [Tensor, [number, number, number]] => {
    const s = t.strides[t.rank - 1] === 1 || t.shape[t.rank - 1] === 1 ? attentionStrides(t) : null;
    if (s) return [t, s];
    const c = engine.noGradScope(() => contiguous(t));
    return [c, attentionStrides(c)!];
  };
  const [qd, sq] = prep(q);
  const [kd, sk] = prep(k);
  const [vd, sv] = prep(v);
  const BQ = plan ? plan.rows : tileSize.rows;
  const tiles = Math.ceil(rows / BQ);
  const groups = B * Hkv * tiles * (plan ? plan.splits : 1);
  const part = plan ? empty(engine, [B * H * Tq, plan.splits, Dv + 2], 'f32') : null;
  engine.dispatch({
    kernel: {
      family: 'attention',
      defines: {
        TQ: q.dtype,
        TK: k.dtype,
        TV: v.dtype,
        TO: q.dtype,
        D,
        DV: Dv,
        BQ,
        BK: plan ? plan.keys : tileSize.keys,
        KP: Math.max(D, Dv) + 1,
        L: plan ? plan.lanes : 8,
        SPLIT: Boolean(plan),
      },
    },
    params: new Params()
      .u32(Tq, Tk, rep, rows, Hkv, tiles, groups, causal ? 1 : 0)
      .i32(offset)
      .f32(scale)
      .u32(plan ? plan.splits : 0, plan ? plan.chunk : 0)
      .u32(qd.offset, ...sq, kd.offset, ...sk, vd.offset, ...sv)
      .u32(D, 0, 0, 0)
      .done(),
    buffers: [qd.buffer, kd.buffer, vd.buffer, (part ?? out).buffer],
    workgroups: grid(groups),
  });
  release(qd, q);
  release(kd, k);
  release(vd, v);
  if (plan && part) {
    engine.dispatch({
      kernel: { family: 'attention_combine', defines: { TO: q.dtype, DV: Dv } },
      params: new Params().u32(B * H * Tq, plan.splits, 0, 0).done(),
      buffers: [part.buffer, out.buffer],
      workgroups: grid(B * H * Tq),
    });
    part.dispose();
  }
  return out;
}

function attentionPass(q: Tensor, k: Tensor, v: Tensor, opts: SoftmaxOptions): Tensor {
  const { lead, Hkv, rep, Tq, Tk, D, Dv } = attentionShapes(q, k, v);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const temps: Tensor[] = [];
  const tmp = (t: Tensor): Tensor => {
    if (t !== q && t !== k && t !== v) temps.push(t);
    return t;
  };
  // GQA: the rep query heads of one kv head become rows of one matrix [.., Hkv, rep·Tq, D]
  const qg = rep > 1 ? tmp(reshape(q, [...lead, Hkv, rep * Tq, D])) : q;
  const scores = tmp(matmul(qg, k, { transB: true }));
  const s4 = rep > 1 ? tmp(reshape(scores, [...lead, Hkv, rep, Tq, Tk])) : scores; // mask needs Tq rows
  const p = tmp(softmax(s4, { causal: opts.causal, causalOffset: opts.causalOffset ?? Tk - Tq, scale }));
  const p3 = rep > 1 ? tmp(reshape(p, [...lead, Hkv, rep * Tq, Tk])) : p;
  const o = tmp(matmul(p3, v));
  const out = rep > 1 ? reshape(o, [...q.shape.slice(0, -1), Dv]) : o;
  // without a graph nothing needs the intermediates (views keep their storage alive)
  if (!out.requiresGrad) for (const t of temps) if (t !== out) t.dispose();
  return out;
}

