// Top-K SAE training-step throughput (tokens/s): the same step trainSae runs (sparse decoder and
// gradients, AuxK on a fixed share of dead latents, gradient projection, Adam, renormalisation),
// timed with the wall clock around engine.sync() after warm-up steps. Compare with
// bench/sae-pytorch.py run right after, on the same machine (it is shared: numbers are noisy).
//   npx tsx bench/sae.ts [--d 256 --m 4096 --k 32 --batch 4096 --steps 5 --warmup 2 --profile]
import { pathToFileURL } from 'node:url';
import { Engine } from '../src/gpu/engine.js';
import { backward, zeroGrad } from '../src/tensor/autograd.js';
import { keep, tidy } from '../src/tensor/scope.js';
import { tensor } from '../src/tensor/tensor.js';
import { AdamW } from '../src/tensor/optim.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { markFired, projectParallel } from '../src/sae/ops.js';

export interface SaeBenchOptions {
  d?: number;
  m?: number;
  k?: number;
  /** AuxK latents (0: off); a quarter of the latents count as dead, as in the PyTorch baseline */
  kAux?: number;
  batch?: number;
  steps?: number;
  warmup?: number;
}

export interface SaeBenchResult {
  impl: string;
  d: number;
  m: number;
  k: number;
  kAux: number;
  batch: number;
  steps: number;
  msPerStep: number;
  tokensPerS: number;
  /** process CPU time per step (all threads, lavapipe's included): less sensitive to a busy machine */
  cpuMsPerStep: number;
}

export async function benchSaeTrain(engine: Engine, o: SaeBenchOptions = {}): Promise<SaeBenchResult> {
  const d = o.d ?? 256, m = o.m ?? 4096, k = o.k ?? 32, B = o.batch ?? 4096;
  const kAux = o.kAux ?? 128;
  const steps = o.steps ?? 5, warmup = o.warmup ?? 2;
  const sae = SparseAutoencoder.init(engine, { d, m, k, seed: 0 });
  const opt = new AdamW({ params: sae.parameters, lr: 2e-4, eps: 6.25e-10, weightDecay: 0 });
  // the same fixed batch every step (data loading is not what is measured)
  const xh = new Float32Array(B * d);
  let s = 1;
  for (let i = 0; i < xh.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    xh[i] = s / 2 ** 31 - 1;
  }
  const x = keep(tensor(engine, xh, [B, d]));
  const dead = keep(tensor(engine, Int32Array.from({ length: m / 4 }, (_, j) => j), [m / 4], 'i32'));
  const last = keep(tensor(engine, new Uint32Array(m), [m], 'u32'));
  const step = (t: number) =>
    tidy(() => {
      const L = sae.loss(x, { kAux, dead: kAux ? dead : null });
      backward(L.loss);
      projectParallel(sae.W_dec, sae.W_dec.grad!);
      opt.step();
      zeroGrad(sae.parameters);
      sae.normalizeDecoder();
      markFired(L.codes, last, t + 1);
    });
  for (let t = 0; t < warmup; t++) step(t);
  await engine.sync();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let t = 0; t < steps; t++) step(warmup + t);
  await engine.sync();
  const sec = (performance.now() - t0) / 1e3 / steps;
  const cu = process.cpuUsage(c0);
  const cpuMs = (cu.user + cu.system) / 1e3 / steps;
  opt.dispose();
  sae.dispose();
  for (const t of [x, dead, last]) t.dispose();
  return { impl: 'ardgpu', d, m, k, kAux, batch: B, steps, msPerStep: Math.round(sec * 1e4) / 10, tokensPerS: Math.round((B / sec) * 10) / 10, cpuMsPerStep: Math.round(cpuMs * 10) / 10 };
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const profile = process.argv.includes('--profile');
  const engine = await Engine.create({ timing: profile });
  const r = await benchSaeTrain(engine, {
    d: arg('d', 256),
    m: arg('m', 4096),
    k: arg('k', 32),
    kAux: arg('k-aux', 128),
    batch: arg('batch', 4096),
    steps: arg('steps', 5),
    warmup: arg('warmup', 2),
  });
  console.log(JSON.stringify({ ...r, adapter: engine.adapter?.name }));
  if (profile) {
    const rows = await engine.takeTimings();
    const total = rows.reduce((a, t) => a + t.totalMs, 0);
    for (const t of rows.slice(0, 20)) console.log(`${t.kernel.padEnd(28)} ${String(t.calls).padStart(5)} ${t.totalMs.toFixed(1).padStart(9)} ms ${((100 * t.totalMs) / total).toFixed(1).padStart(5)}%`);
  }
  engine.destroy();
}
