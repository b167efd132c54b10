// Gradient check: GPU autograd against central finite differences of the op's plain TypeScript
// reference evaluated in f64 on the CPU. The scalar checked is L = Σ w ⊙ f(x) with fixed random
// weights w, so every output element contributes with a different weight.
import { expect } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { backward, param } from '../src/tensor/autograd.js';
import { mul, sum, tensor, tidy, Tensor } from '../src/tensor/index.js';
import { expectClose, randn } from './helpers.js';

export interface GradInput {
  data: Float32Array;
  shape: number[];
  /** Not differentiated (e.g. integer indices); passed to both sides as-is. */
  constant?: boolean;
  dtype?: 'f32' | 'i32';
}

export interface GradCheckOptions {
  /** Finite-difference step (f64). */
  eps?: number;
  rtol?: number;
  atol?: number;
  seed?: number;
  /** Check at most this many coordinates per input (spread evenly), to bound CPU time. */
  maxCoords?: number;
}

/**
 * @param gpu builds the output from GPU tensors (with autograd)
 * @param ref the same function on f64 host arrays: returns the flat output
 */
export async function gradCheck(
  engine: Engine,
  inputs: GradInput[],
  gpu: (xs: Tensor[]) => Tensor,
  ref: (xs: Float64Array[]) => Float64Array,
  opts: GradCheckOptions = {},
): Promise<void> {
  const eps = opts.eps ?? 1e-3;
  const rtol = opts.rtol ?? 1e-2;
  const atol = opts.atol ?? 1e-3;
  const host = inputs.map((i) => Float64Array.from(i.data));
  const out0 = ref(host);
  const w = Float64Array.from(randn(out0.length, opts.seed ?? 99));
  const L = (xs: Float64Array[]) => {
    const y = ref(xs);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i]! * w[i]!;
    return s;
  };

  const grads = await (async () => {
    const ts = inputs.map((i) => {
      const t = tensor(engine, i.dtype === 'i32' ? Int32Array.from(i.data) : i.data, i.shape, i.dtype ?? 'f32');
      return i.constant ? t : param(t);
    });
    const yOut = tidy(() => {
      const y = gpu(ts);
      expect(y.size).toBe(out0.length);
      const wt = tensor(engine, Float32Array.from(w), y.shape);
      const loss = sum(mul(y, wt));
      backward(loss);
      return y; // returned tensors survive the scope
    });
    // forward agrees with the reference too
    expectClose(await yOut.read(), out0, Math.max(rtol / 10, 1e-4), atol / 10, 'forward');
    yOut.dispose();
    const gs: (Float32Array | null)[] = [];
    for (const t of ts) {
      gs.push(t.grad ? ((await t.grad.read()) as Float32Array) : null);
      t.grad?.dispose();
      t.dispose();
    }
    return gs;
  })();

  inputs.forEach((inp, k) => {
    if (inp.constant) return;
    const g = grads[k];
    if (!g) throw new Error(`input ${k}: no gradient reached it`);
    const n = inp.data.length;
    const step = Math.max(1, Math.floor(n / (opts.maxCoords ?? 64)));
    const num: number[] = [];
    const ana: number[] = [];
    for (let i = 0; i < n; i += step) {
      const x = host[k]!;
      const orig = x[i]!;
      x[i] = orig + eps;
      const lp = L(host);
      x[i] = orig - eps;
      const lm = L(host);
      x[i] = orig;
      num.push((lp - lm) / (2 * eps));
      ana.push(g[i]!);
    }
    expectClose(ana, num, rtol, atol, `grad of input ${k}`);
  });
}
