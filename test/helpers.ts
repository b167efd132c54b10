// Shared test helpers: one engine per test file (a real adapter or the test fails), seeded
// random data, and closeness checks that report the worst element.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { tidy } from '../src/tensor/scope.js';
import { mulberry32 } from '../src/util/random.js';

let enginePromise: Promise<Engine> | null = null;

/** The adapter a test run asks for (ARDGPU_TEST_ADAPTER, see vitest.config.ts), '' for any. */
export function wantedAdapter(): string {
  return process.env.ARDGPU_TEST_ADAPTER?.trim() ?? '';
}

/**
 * The engine for GPU tests. No adapter is a failure, never a skip; so is an adapter other than the
 * one ARDGPU_TEST_ADAPTER asks for (matched case-insensitively in the adapter's description).
 */
export function getEngine(): Promise<Engine> {
  enginePromise ??= Engine.create().then((e) => {
    if (!e.adapter || /null/i.test(e.adapter.backend)) throw new Error(`no real WebGPU adapter (got ${e.adapter?.name})`);
    const want = wantedAdapter();
    if (want && !e.adapter.name.toLowerCase().includes(want.toLowerCase())) {
      throw new Error(`ARDGPU_TEST_ADAPTER=${want} but the adapter in use is "${e.adapter.name}"`);
    }
    return e;
  });
  return enginePromise;
}

/**
 * A test of an f16 path: it runs wherever the adapter has shader-f16 and is reported as skipped
 * elsewhere, its name ending in "(needs shader-f16)" — never silently passed. An adapter that offers
 * shader-f16 always runs it: engine.test.ts checks that the engine enables the feature whenever the
 * adapter offers it, and that lavapipe offers it.
 */
export function itF16(name: string, fn: (e: Engine) => Promise<void>, timeout?: number): void {
  it(`${name} (needs shader-f16)`, async (ctx) => {
    const e = await getEngine();
    if (!e.f16) ctx.skip(`${e.adapter?.name} has no shader-f16`);
    await fn(e);
  }, timeout);
}

/**
 * A test's own timeout, stretched on a run whose configured timeout is longer (a slower adapter
 * than lavapipe, see vitest.config.ts).
 */
export function ownTimeout(ms: number): number {
  return Math.max(ms, Number(process.env.ARDGPU_TEST_TIMEOUT_MS ?? 0));
}

/** Seeded uniform [0, 1) generator (the project's one PRNG). */
export const rng = mulberry32;

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * scale;
  }
  return out;
}

export function randu(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/**
 * Elementwise |a − e| ≤ atol + rtol·|e|. Throws with the worst offender; returns the max
 * relative error seen (for reporting).
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol = rtol * 1e-2, what = 'values'): number {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length} vs expected ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  let maxRel = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = Number(actual[i]);
    const e = Number(expected[i]);
    if (Number.isNaN(a) !== Number.isNaN(e)) {
      throw new Error(`${what}[${i}]: got ${a}, expected ${e}`);
    }
    if (Number.isNaN(e)) continue;
    const err = Math.abs(a - e);
    const tol = atol + rtol * Math.abs(e);
    if (err > tol && err - tol > worstExcess) {
      worst = i;
      worstExcess = err - tol;
    }
    if (Math.abs(e) > atol) maxRel = Math.max(maxRel, err / Math.abs(e));
  }
  if (worst >= 0) {
    throw new Error(`${what}[${worst}]: got ${actual[worst]}, expected ${expected[worst]} (rtol ${rtol}, atol ${atol})`);
  }
  return maxRel;
}

/** Every output within its own bound (reports the worst element relative to its bound). */
export function expectWithinBound(got: ArrayLike<number>, want: Float64Array, bound: Float64Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const g = Number(got[i]);
    expect(Number.isFinite(g), `${what}[${i}] = ${g}`).toBe(true);
    const r = Math.abs(g - want[i]!) / bound[i]!;
    if (!(r <= 1) && Math.abs(g - want[i]!) > 0 && (at < 0 || r > worst)) [worst, at] = [r, i];
  }
  if (at >= 0) throw new Error(`${what}[${at}]: got ${got[at]}, want ${want[at]} ± ${bound[at]} (${worst.toFixed(2)}× the bound)`);
}

/** Sizes that are not multiples of any tile. */
export const AWKWARD = [1, 7, 129, 1000];

/** max |a − b| / max |b| (relative to the reference's magnitude) and max |a − b|; every value of `a` must be finite. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): { rel: number; abs: number } {
  expect(a.length).toBe(b.length);
  let abs = 0;
  let mag = 0;
  for (let i = 0; i < b.length; i++) {
    expect(Number.isFinite(a[i]!)).toBe(true);
    abs = Math.max(abs, Math.abs(a[i]! - b[i]!));
    mag = Math.max(mag, Math.abs(b[i]!));
  }
  return { rel: abs / mag, abs };
}

/** bin/ardgpu.mjs of this checkout. */
export const CLI_BIN = path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs');

/**
 * Runs the CLI as a user does, from the sources: its exit code, stdout, and stderr as lines (Dawn's
 * start-up notices left out in case a run shows them, e.g. with --debug).
 */
export function runCli(args: string[], opts: { input?: string } = {}): { code: number | null; stdout: string; stderr: string[] } {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
    timeout: 120_000,
    input: opts.input,
  });
  const stderr = r.stderr.split('\n').filter((l) => l && !/^Warning: max\w+ artificially reduced/.test(l));
  return { code: r.status, stdout: r.stdout, stderr };
}

/**
 * A model's logits for a prompt with audio features, two ways: at `positions` of one forward pass over the
 * whole prompt, and of a prefill of all but the last 3 positions followed by 3 single-position decode steps
 * with the KV cache (last position each). For comparing attention variants on the tiny fixture model.
 */
export async function promptAndCacheLogits(model: AudioLLM, ids: number[], positions: number[], feats: Tensor): Promise<{ forward: Float32Array; steps: Float32Array[] }> {
  const f = model.forward(ids, feats, { logits: positions })!;
  const forward = await f.toFloat32();
  f.dispose();
  const n = ids.length;
  const cache = model.newCache(n);
  const x = model.embed(ids, feats);
  const d = x.shape[1]!;
  const steps: Float32Array[] = [];
  let at = 0;
  try {
    for (const len of [n - 3, 1, 1, 1]) {
      const l = tidy(() => model.step(x.view([len, d], [d, 1], x.offset + at * d), cache, { logits: 'last' }))!;
      steps.push(await l.toFloat32());
      l.dispose();
      at += len;
    }
  } finally {
    x.dispose();
    cache.dispose();
  }
  return { forward, steps };
}

/** Strongest spectral peak (Hz) of x[from, from + len) at 16 kHz, by a direct DFT at each frequency of `grid`. */
export function strongestHz(x: Float32Array, from: number, len: number, grid: Iterable<number>): number {
  let best = 0, bestF = 0;
  for (const f of grid) {
    let c = 0, s = 0;
    for (let i = from; i < from + len; i++) {
      c += x[i]! * Math.cos((2 * Math.PI * f * i) / 16000);
      s += x[i]! * Math.sin((2 * Math.PI * f * i) / 16000);
    }
    if (Math.hypot(c, s) > best) [best, bestF] = [Math.hypot(c, s), f];
  }
  return bestF;
}
