// Optimisers (AdamW, SGD) and global-norm gradient clipping. Each step runs one fused kernel per
// parameter (kernels/optim.wgsl) that updates the parameter's own buffer and its state in place;
// nothing is read back to the host. Hyperparameters are plain fields: `opt.lr = x` between steps
// takes effect at the next step. Optimiser state lives outside every tidy() scope until dispose().
import { grid, Params } from '../gpu/engine.js';
import type { Engine } from '../gpu/engine.js';
import { ArdError } from '../util/errors.js';
import { zeroGrad as clearGrads } from './autograd.js';
import { keep } from './scope.js';
import { Tensor, empty, shapeStr, tensor } from './tensor.js';
import { clone, zeros } from './ops/elementwise.js';
import { contiguous } from './ops/layout.js';

/** Host copy of an optimiser's state (for checkpoints). Buffers are per parameter, null until the
 * parameter's first update. */
export interface OptimizerState {
  kind: 'adamw' | 'sgd';
  /** Updates applied to each parameter so far (AdamW's bias correction uses it). */
  steps: number[];
  hyper: Record<string, number | boolean>;
  buffers: Record<string, (Float32Array | null)[]>;
}

interface OptParams {
  n: number;
  offP?: number;
  offG?: number;
  offPart?: number;
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  decay?: number;
  stepSize?: number;
  invSqrtBc2?: number;
  wd?: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  first?: boolean;
  maxNorm?: number;
}

function optParams(o: OptParams): ArrayBuffer {
  return new Params()
    .u32(o.n, o.offP ?? 0, o.offG ?? 0, o.offPart ?? 0)
    .f32(o.lr ?? 0, o.beta1 ?? 0, o.beta2 ?? 0, o.eps ?? 0, o.decay ?? 1, o.stepSize ?? 0, o.invSqrtBc2 ?? 1, o.wd ?? 0, o.momentum ?? 0, o.dampening ?? 0)
    .u32(o.nesterov ? 1 : 0, o.first ? 1 : 0)
    .f32(o.maxNorm ?? 0)
    .u32(0, 0, 0)
    .done();
}

function checkParams(params: readonly Tensor[], what: string): Engine {
  if (!params.length) throw new ArdError(`${what}: no parameters given`);
  const engine = params[0]!.engine;
  params.forEach((p, i) => {
    p.assertAlive();
    if (p.engine !== engine) throw new ArdError(`${what}: parameter ${i} belongs to another engine`);
    if (p.dtype !== 'f32') throw new ArdError(`${what}: parameter ${i}${p.name ? ` (${p.name})` : ''} is ${p.dtype}; optimisers update f32 master weights`);
    if (!p.isContiguousIgnoringOffset()) throw new ArdError(`${what}: parameter ${i}${p.name ? ` (${p.name})` : ''} ${shapeStr(p.shape)} is a strided view; pass dense tensors`);
  });
  if (new Set(params.map((p) => p.id)).size !== params.length) throw new ArdError(`${what}: a parameter appears twice`);
  return engine;
}

/** The gradient as a dense f32 tensor (the grad itself when it already is one). */
function denseGrad(p: Tensor, what: string): Tensor | null {
  const g = p.grad;
  if (!g) return null;
  g.assertAlive();
  if (g.dtype !== 'f32' || g.size !== p.size) throw new ArdError(`${what}: gradient ${g.dtype}${shapeStr(g.shape)} does not match parameter ${shapeStr(p.shape)}`);
  return g.isContiguousIgnoringOffset() ? g : p.engine.noGradScope(() => contiguous(g));
}

function stateTensor(engine: Engine, n: number): Tensor {
  return keep(zeros(engine, [n]));
}

async function readAll(ts: (Tensor | null)[]): Promise<(Float32Array | null)[]> {
  const out: (Float32Array | null)[] = [];
  for (const t of ts) out.push(t ? ((await t.read()) as Float32Array) : null);
  return out;
}

function loadBuffers(engine: Engine, params: readonly Tensor[], arrays: readonly (Float32Array | null)[] | undefined, name: string, what: string): (Tensor | null)[] {
  if (!arrays || arrays.length !== params.length) throw new ArdError(`${what}: state buffer '${name}' has ${arrays?.length ?? 0} entries for ${params.length} parameters`);
  return arrays.map((a, i) => {
    if (!a) return null;
    if (a.length !== params[i]!.size) throw new ArdError(`${what}: state '${name}' of parameter ${i} has ${a.length} values, parameter has ${params[i]!.size}`);
    return keep(tensor(engine, a, [a.length]));
  });
}

function checkSteps(steps: unknown, n: number, what: string): number[] {
  if (!Array.isArray(steps) || steps.length !== n || steps.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new ArdError(`${what}: state has no valid step count per parameter`);
  }
  return [...steps];
}

export interface AdamWOptions {
  params: readonly Tensor[];
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** AdamW as torch.optim.AdamW (decoupled weight decay, bias correction). Defaults match PyTorch. */
export class AdamW {
  readonly params: readonly Tensor[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  private readonly engine: Engine;
  private m: (Tensor | null)[];
  private v: (Tensor | null)[];
  private steps: number[];

  constructor(opts: AdamWOptions) {
    this.params = [...opts.params];
    this.engine = checkParams(this.params, 'AdamW');
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.m = this.params.map(() => null);
    this.v = this.params.map(() => null);
    this.steps = this.params.map(() => 0);
  }

  /** Update every parameter that has a gradient (one kernel each). */
  step(): void {
    const [b1, b2] = this.betas;
    if (!(this.lr >= 0) || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) || !(this.eps >= 0) || !(this.weightDecay >= 0)) {
      throw new ArdError(`AdamW: invalid hyperparameters lr=${this.lr} betas=[${b1}, ${b2}] eps=${this.eps} weightDecay=${this.weightDecay}`);
    }
    this.params.forEach((p, i) => {
      p.assertAlive();
      const g = denseGrad(p, 'AdamW');
      if (!g) return;
      const t = ++this.steps[i]!;
      const m = (this.m[i] ??= stateTensor(this.engine, p.size));
      const v = (this.v[i] ??= stateTensor(this.engine, p.size));
      this.engine.dispatch({
        kernel: { family: 'optim', entry: 'adamw' },
        params: optParams({
          n: p.size,
          offP: p.offset,
          offG: g.offset,
          beta1: b1,
          beta2: b2,
          eps: this.eps,
          decay: 1 - this.lr * this.weightDecay,
          stepSize: this.lr / (1 - b1 ** t),
          invSqrtBc2: 1 / Math.sqrt(1 - b2 ** t),
        }),
        buffers: [p.buffer, g.buffer, m.buffer, v.buffer],
        workgroups: grid(Math.ceil(p.size / 256)),
      });
      if (g !== p.grad) g.dispose();
    });
  }

  zeroGrad(): void {
    clearGrads(this.params);
  }

  async state(): Promise<OptimizerState> {
    return {
      kind: 'adamw',
      steps: [...this.steps],
      hyper: { lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay },
      buffers: { m: await readAll(this.m), v: await readAll(this.v) },
    };
  }

  /** Restore buffers, step counts and hyperparameters saved by state(). */
  loadState(s: OptimizerState): void {
    if (s.kind !== 'adamw') throw new ArdError(`AdamW.loadState: state is for '${s.kind}'`);
    const steps = checkSteps(s.steps, this.params.length, 'AdamW.loadState');
    const m = loadBuffers(this.engine, this.params, s.buffers.m, 'm', 'AdamW.loadState');
    const v = loadBuffers(this.engine, this.params, s.buffers.v, 'v', 'AdamW.loadState');
    this.disposeState();
    this.m = m;
    this.v = v;
    this.steps = steps;
    const h = s.hyper;
    if (typeof h.lr === 'number') this.lr = h.lr;
    if (typeof h.beta1 === 'number' && typeof h.beta2 === 'number') this.betas = [h.beta1, h.beta2];
    if (typeof h.eps === 'number') this.eps = h.eps;
    if (typeof h.weightDecay === 'number') this.weightDecay = h.weightDecay;
  }

  private disposeState(): void {
    for (const t of [...this.m, ...this.v]) t?.dispose();
  }

  /** Free the optimiser state (the parameters are the caller's). */
  dispose(): void {
    this.disposeState();
    this.m = this.params.map(() => null);
    this.v = this.params.map(() => null);
  }
}

export interface SGDOptions {
  params: readonly Tensor[];
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

/** SGD with optional momentum / Nesterov / weight decay, as torch.optim.SGD. */
export class SGD {
  readonly params: readonly Tensor[];
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;
  private readonly engine: Engine;
  private buf: (Tensor | null)[];
  private steps: number[];

  constructor(opts: SGDOptions) {
    this.params = [...opts.params];
    this.engine = checkParams(this.params, 'SGD');
    if (typeof opts.lr !== 'number') throw new ArdError('SGD: lr is required');
    this.lr = opts.lr;
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = opts.weightDecay ?? 0;
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) throw new ArdError('SGD: nesterov needs momentum > 0 and dampening = 0');
    this.buf = this.params.map(() => null);
    this.steps = this.params.map(() => 0);
  }

  step(): void {
    if (!(this.lr >= 0) || !(this.momentum >= 0) || !(this.weightDecay >= 0)) {
      throw new ArdError(`SGD: invalid hyperparameters lr=${this.lr} momentum=${this.momentum} weightDecay=${this.weightDecay}`);
    }
    const useMomentum = this.momentum !== 0;
    this.params.forEach((p, i) => {
      p.assertAlive();
      const g = denseGrad(p, 'SGD');
      if (!g) return;
      this.steps[i]!++;
      let first = false;
      if (useMomentum && !this.buf[i]) {
        this.buf[i] = keep(empty(this.engine, [p.size]));
        first = true;
      }
      this.engine.dispatch({
        kernel: { family: 'optim', entry: 'sgd', defines: { MOMENTUM: useMomentum } },
        params: optParams({
          n: p.size,
          offP: p.offset,
          offG: g.offset,
          lr: this.lr,
          wd: this.weightDecay,
          momentum: this.momentum,
          dampening: this.dampening,
          nesterov: this.nesterov,
          first,
        }),
        buffers: [p.buffer, g.buffer, ...(useMomentum ? [this.buf[i]!.buffer] : [])],
        workgroups: grid(Math.ceil(p.size / 256)),
      });
      if (g !== p.grad) g.dispose();
    });
  }

  zeroGrad(): void {
    clearGrads(this.params);
  }

  async state(): Promise<OptimizerState> {
    return {
      kind: 'sgd',
      steps: [...this.steps],
      hyper: { lr: this.lr, momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov, weightDecay: this.weightDecay },
      buffers: { momentum: await readAll(this.buf) },
    };
  }

  loadState(s: OptimizerState): void {
    if (s.kind !== 'sgd') throw new ArdError(`SGD.loadState: state is for '${s.kind}'`);
    const steps = checkSteps(s.steps, this.params.length, 'SGD.loadState');
    const buf = loadBuffers(this.engine, this.params, s.buffers.momentum, 'momentum', 'SGD.loadState');
    for (const t of this.buf) t?.dispose();
    this.buf = buf;
    this.steps = steps;
    const h = s.hyper;
    if (typeof h.lr === 'number') this.lr = h.lr;
    if (typeof h.momentum === 'number') this.momentum = h.momentum;
    if (typeof h.dampening === 'number') this.dampening = h.dampening;
    if (typeof h.nesterov === 'boolean') this.nesterov = h.nesterov;
    if (typeof h.weightDecay === 'number') this.weightDecay = h.weightDecay;
  }

  dispose(): void {
    for (const t of this.buf) t?.dispose();
    this.buf = this.params.map(() => null);
  }
}

/**
 * A running average of parameters, kept beside them (Polyak averaging): after each update,
 * avg ← d·avg + (1−d)·p. `ema(decay)` is an exponential moving average whose decay ramps up as
 * min(decay, (1+t)/(10+t)) at the t-th update, so the first updates are not drowned by the start;
 * `mean()` is the plain mean of every update so far (d = n/(n+1)). Starts as a copy of the
 * parameters. The averages live outside every tidy() scope until dispose().
 */
export class WeightAverage {
  readonly params: readonly Tensor[];
  /** Updates folded in so far. */
  updates = 0;
  private readonly engine: Engine;
  private avg: Tensor[];

  constructor(params: readonly Tensor[]) {
    this.params = [...params];
    this.engine = checkParams(this.params, 'WeightAverage');
    this.avg = this.params.map((p) => keep(this.engine.noGradScope(() => clone(p))));
  }

  /** Fold the parameters in with weight 1−d. */
  update(d: number): void {
    if (!(d >= 0 && d <= 1)) throw new ArdError(`WeightAverage: decay must be from 0 to 1 (got ${d})`);
    this.params.forEach((p, i) => {
      p.assertAlive();
      this.engine.dispatch({
        kernel: { family: 'optim', entry: 'average' },
        params: optParams({ n: p.size, offP: p.offset, decay: d }),
        buffers: [this.avg[i]!.buffer, p.buffer],
        workgroups: grid(Math.ceil(p.size / 256)),
      });
    });
    this.updates++;
  }

  /** An exponential moving average step (decay ramped up over the first updates, see above). */
  ema(decay: number): void {
    const t = this.updates + 1;
    this.update(Math.min(decay, (1 + t) / (10 + t)));
  }

  /** A uniform-mean step: afterwards the average is the mean of the start and every update's parameters. */
  mean(): void {
    const n = this.updates + 1;
    this.update(n / (n + 1));
  }

  /** The average of parameter i, shaped as the parameter (owned by this object: do not dispose it). */
  average(i: number): Tensor {
    return this.avg[i]!;
  }

  async state(): Promise<{ updates: number; buffers: Float32Array[] }> {
    const buffers: Float32Array[] = [];
    for (const a of this.avg) buffers.push((await a.read()) as Float32Array);
    return { updates: this.updates, buffers };
  }

  loadState(s: { updates: number; buffers: readonly Float32Array[] }): void {
    if (!Number.isInteger(s.updates) || s.updates < 0) throw new ArdError('WeightAverage.loadState: no valid update count');
    if (s.buffers.length !== this.params.length) throw new ArdError(`WeightAverage.loadState: ${s.buffers.length} averages for ${this.params.length} parameters`);
    s.buffers.forEach((a, i) => {
      if (a.length !== this.params[i]!.size) throw new ArdError(`WeightAverage.loadState: the average of parameter ${i} has ${a.length} values, the parameter has ${this.params[i]!.size}`);
    });
    this.dispose();
    this.avg = s.buffers.map((a, i) => keep(tensor(this.engine, a, this.params[i]!.shape)));
    this.updates = s.updates;
  }

  dispose(): void {
    for (const a of this.avg) a.dispose();
    this.avg = [];
  }
}

const NORM_CHUNK = 4096; // elements per workgroup of `sumsq` (matches CHUNK in optim.wgsl)

/**
 * Clip gradients to a global L2 norm ≤ maxNorm, as torch.nn.utils.clip_grad_norm_ (scale =
 * min(1, maxNorm / (norm + 1e-6))), entirely on the GPU. Returns the norm before clipping as a
 * 1-element tensor, created in the current scope; read it whenever convenient (or never).
 * Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  const engine = checkParams(params, 'clipGradNorm');
  if (!(maxNorm > 0)) throw new ArdError(`clipGradNorm: maxNorm must be > 0, got ${maxNorm}`);
  const grads = params.map((p) => {
    const g = p.grad;
    if (!g) return null;
    g.assertAlive();
    if (g.dtype !== 'f32') throw new ArdError(`clipGradNorm: gradient of ${shapeStr(p.shape)} is ${g.dtype}, expected f32`);
    // scaled in place below, so it must be the gradient's own dense buffer
    if (!g.isContiguousIgnoringOffset()) p.grad = keep(engine.noGradScope(() => contiguous(g)));
    if (p.grad !== g) g.dispose();
    return p.grad!;
  });
  const chunks = grads.map((g) => (g ? Math.ceil(g.size / NORM_CHUNK) : 0));
  const total = chunks.reduce((a, b) => a + b, 0);
  if (total === 0) return zeros(engine, [1]);
  const norm = empty(engine, [1]);
  const part = empty(engine, [total]);
  const scale = empty(engine, [1]);
  let at = 0;
  grads.forEach((g, i) => {
    if (!g || !chunks[i]) return;
    engine.dispatch({
      kernel: { family: 'optim', entry: 'sumsq' },
      params: optParams({ n: g.size, offG: g.offset, offPart: at }),
      buffers: [g.buffer, part.buffer],
      workgroups: grid(chunks[i]!),
    });
    at += chunks[i]!;
  });
  engine.dispatch({
    kernel: { family: 'optim', entry: 'norm' },
    params: optParams({ n: total, maxNorm }),
    buffers: [part.buffer, norm.buffer, scale.buffer],
    workgroups: [1],
  });
  for (const g of grads) {
    if (!g || g.size === 0) continue;
    engine.dispatch({
      kernel: { family: 'optim', entry: 'scale' },
      params: optParams({ n: g.size, offG: g.offset }),
      buffers: [g.buffer, scale.buffer],
      workgroups: grid(Math.ceil(g.size / 256)),
    });
  }
  part.dispose();
  scale.dispose();
  return norm;
}
