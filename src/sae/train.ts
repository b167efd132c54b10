// Top-K SAE training loop: shuffled streaming batches, Adam with warm-up then linear decay,
// decoder rows kept at unit norm (gradient component along each row projected out before the step,
// rows renormalised after it), AuxK on dead latents, checkpoints (safetensors: parameters, Adam
// moments, per-latent last-fired step, step counter; written atomically) and exact resume.
import * as fs from 'node:fs';
import type { Engine } from '../gpu/engine.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import { ArdError } from '../util/errors.js';
import { backward, zeroGrad } from '../tensor/autograd.js';
import { keep, tidy } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { add, zeros } from '../tensor/ops/elementwise.js';
import { AdamW, OptimizerState } from '../tensor/optim.js';
import type { RowSource } from '../io/shards.js';
import { BatchStream, MemorySource, dataStats, totalRows } from './data.js';
import { SAE_ARCHS, SaeArch, SparseAutoencoder } from './model.js';
import { encodeTopK, markFired, projectParallel } from './ops.js';

export interface TrainLog {
  step: number;
  lr: number;
  mse: number;
  /** fraction of variance unexplained on the logged batch */
  fvu: number;
  /** AuxK loss on the logged batch (null when AuxK was off for it) */
  aux: number | null;
  deadShare: number;
  tokensPerS: number;
  final?: boolean;
}

export interface TrainMetrics {
  steps: number;
  tokens: number;
  mse: number;
  fvu: number;
  l0: number;
  deadShare: number;
  deadLatents: number;
  auxLoss: number | null;
  inputScale: number;
  lr: number;
  deadTokens: number;
  msPerStep: number;
  tokensPerS: number;
  resumedFrom: number | null;
}

export interface TrainSaeOptions {
  engine: Engine;
  /** Row shards (ShardReader, MemorySource) or a Float32Array of rows [n, d]. */
  source: RowSource | Float32Array;
  d: number;
  m: number;
  k: number;
  /** AuxK latents per row (0: off). Default min(256, d/2, m). */
  kAux?: number;
  /** AuxK weight α (default 1/32). */
  auxCoef?: number;
  /** Default 2e-4 / sqrt(m / 16384), the paper's scaling. */
  lr?: number;
  /** Warm-up steps (linear from 0), default min(1000, steps / 20). */
  warmup?: number;
  /** Final steps over which the LR decays linearly to 0, default steps / 5. */
  decay?: number;
  batchSize?: number;
  steps: number;
  seed?: number;
  /** A latent is dead when it has not fired for this many tokens. Default: see defaultDeadTokens. */
  deadTokens?: number;
  /** Scale inputs so that E‖x‖² = d (default true). */
  normalize?: boolean;
  /** b_dec initialisation: data mean (default), geometric median, or zero. */
  bDecInit?: 'mean' | 'median' | 'zero';
  beta1?: number;
  beta2?: number;
  eps?: number;
  checkpointPath?: string;
  checkpointEvery?: number;
  /** Extra metadata for checkpoints (values JSON-encoded, like SparseAutoencoder.save's). */
  checkpointMetadata?: Record<string, unknown>;
  /** Continue from checkpointPath when it exists (default true). */
  resume?: boolean;
  logEvery?: number;
  onLog?: (log: TrainLog) => void;
  /** Batches of the final evaluation (default 4). */
  evalBatches?: number;
  /** Steps between refreshes of the dead-latent list AuxK draws from (default 25). */
  deadCheckEvery?: number;
  layer?: number | string | null;
  provenance?: Record<string, unknown>;
  /** Stop after this step (exclusive) as if interrupted; the schedule still uses `steps`. For tests. */
  stopAt?: number;
  /** topk (default) or batchtopk (model.ts SaeArch). */
  arch?: SaeArch;
}

export interface TrainResult {
  sae: SparseAutoencoder;
  metrics: TrainMetrics;
}

export function defaultLr(m: number): number {
  return 2e-4 / Math.sqrt(m / 16384);
}

/** 10M tokens (the paper), reduced for small runs: a quarter of the tokens seen or of the data. */
export function defaultDeadTokens(rows: number, steps: number, batchSize: number): number {
  return Math.min(10_000_000, Math.max(4 * batchSize, Math.floor(Math.min(rows, steps * batchSize) / 4)));
}

export function lrAt(step: number, o: { lr: number; warmup: number; decay: number; steps: number }): number {
  const w = o.warmup > 0 ? Math.min(1, (step + 1) / o.warmup) : 1;
  const decayStart = o.steps - o.decay;
  const dcy = o.decay > 0 && step >= decayStart ? Math.max(0, (o.steps - step) / o.decay) : 1;
  return o.lr * w * dcy;
}

/** Geometric median (Weiszfeld) of rows [n, d], started at the mean. */
function geometricMedian(rows: Float32Array, d: number, start: Float64Array, iters = 30): Float64Array {
  const n = rows.length / d;
  let y = Float64Array.from(start);
  for (let it = 0; it < iters; it++) {
    const num = new Float64Array(d);
    let den = 0;
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) {
        const t = rows[r * d + c]! - y[c]!;
        s += t * t;
      }
      const w = 1 / Math.max(Math.sqrt(s), 1e-12);
      for (let c = 0; c < d; c++) num[c]! += w * rows[r * d + c]!;
      den += w;
    }
    const next = num.map((v) => v / den);
    let moved = 0;
    for (let c = 0; c < d; c++) moved = Math.max(moved, Math.abs(next[c]! - y[c]!));
    y = next;
    if (moved < 1e-7) break;
  }
  return y;
}

function numOpt(v: number | undefined, def: number, what: string, int = false, min = 0): number {
  const x = v ?? def;
  if (!Number.isFinite(x) || x < min || (int && !Number.isInteger(x))) throw new ArdError(`trainSae: ${what} = ${v} is invalid`);
  return x;
}

export async function trainSae(o: TrainSaeOptions): Promise<TrainResult> {
  const { engine, d, m, k } = o;
  const source: RowSource = o.source instanceof Float32Array ? new MemorySource(o.source, d) : o.source;
  if (source.d !== d) throw new ArdError(`trainSae: source rows have width ${source.d}, options say d = ${d}`);
  const steps = numOpt(o.steps, 0, 'steps', true, 1);
  const B = numOpt(o.batchSize, 4096, 'batchSize', true, 1);
  const kAux = numOpt(o.kAux, Math.min(256, Math.floor(d / 2), m), 'kAux', true, 0);
  if (kAux > m) throw new ArdError(`trainSae: kAux = ${kAux} exceeds m = ${m}`);
  // the shared top-k op selects at most 256 per row
  if (k > 256 || kAux > 256) throw new ArdError(`trainSae: k = ${k} and kAux = ${kAux} must be ≤ 256`);
  const auxCoef = numOpt(o.auxCoef, 1 / 32, 'auxCoef');
  const lr = numOpt(o.lr, defaultLr(m), 'lr');
  const warmup = numOpt(o.warmup, Math.min(1000, Math.floor(steps / 20)), 'warmup', true);
  const decay = numOpt(o.decay, Math.floor(steps / 5), 'decay', true);
  const seed = numOpt(o.seed, 0, 'seed', true);
  const rows = totalRows(source);
  const deadTokens = numOpt(o.deadTokens, defaultDeadTokens(rows, steps, B), 'deadTokens', true, 1);
  const deadSteps = Math.ceil(deadTokens / B);
  const logEvery = numOpt(o.logEvery, 100, 'logEvery', true, 1);
  const ckptEvery = numOpt(o.checkpointEvery, 0, 'checkpointEvery', true);
  const deadCheckEvery = numOpt(o.deadCheckEvery, 25, 'deadCheckEvery', true, 1);
  const sched = { lr, warmup, decay, steps };
  const stopAt = Math.min(steps, o.stopAt ?? steps);

  // data statistics: input scale and the b_dec start
  const stats = await dataStats(source, Math.min(65536, Math.max(1, Math.floor((16 << 20) / d))));
  const inputScale = o.normalize === false ? 1 : Math.sqrt(d / Math.max(stats.meanSq, 1e-30));
  const meanScaled = stats.mean.map((v) => v * inputScale);
  const arch = o.arch ?? 'topk';
  if (!SAE_ARCHS.includes(arch)) throw new ArdError(`trainSae: unknown architecture '${arch}' (known: ${SAE_ARCHS.join(', ')})`);
  // arch only when not the default, so Top-K checkpoints and cache keys stay as they were
  const config = { d, m, k, kAux, auxCoef, lr, warmup, decay, steps, batchSize: B, seed, deadTokens, inputScale, ...(arch === 'topk' ? {} : { arch }) };

  let sae: SparseAutoencoder;
  let startStep = 0;
  let deadList: Int32Array = new Int32Array(0);
  let resumedFrom: number | null = null;
  const ckpt = o.checkpointPath && o.resume !== false && fs.existsSync(o.checkpointPath) ? readCheckpoint(engine, o.checkpointPath, config) : null;
  const last = keep(ckpt ? tensor(engine, ckpt.last, [m], 'u32') : zeros(engine, [m], 'u32'));
  if (ckpt) {
    sae = ckpt.sae;
    startStep = ckpt.step;
    deadList = ckpt.dead;
    resumedFrom = ckpt.step;
  } else {
    let bDec = new Float32Array(d);
    if (o.bDecInit === 'median') {
      const sample = Float32Array.from(stats.sample, (v) => v * inputScale);
      bDec = Float32Array.from(geometricMedian(sample, d, meanScaled));
    } else if (o.bDecInit !== 'zero') bDec = Float32Array.from(meanScaled);
    sae = SparseAutoencoder.init(engine, {
      d,
      m,
      k,
      seed,
      bDec,
      inputScale,
      layer: o.layer ?? null,
      provenance: { ...o.provenance, trainer: 'ardgpu trainSae', config },
      arch,
    });
  }
  if (sae.arch !== arch) throw new ArdError(`${o.checkpointPath}: checkpoint is a ${sae.arch} SAE, this run trains ${arch} (delete it or match the options)`);
  // batchtopk: the inference threshold is the mean batch threshold over the second half of the steps
  const thetaFrom = Math.floor(steps / 2);
  let thetaSum: Tensor | null = null;
  let thetaCount = 0;
  const opt = new AdamW({ params: sae.parameters, lr, betas: [o.beta1 ?? 0.9, o.beta2 ?? 0.999], eps: o.eps ?? 6.25e-10, weightDecay: 0 });
  if (ckpt) opt.loadState(ckpt.adam);

  // a resumed run keeps the scale it started with
  const stream = new BatchStream(source, { batchSize: B, seed, scale: sae.inputScale });
  const meanHost = Float32Array.from(stats.mean, (v) => v * sae.inputScale);

  // latents silent for deadSteps steps or more, after `step` steps (last[j] = step that fired it)
  const findDead = async (step: number): Promise<Int32Array> => {
    const l = (await last.read()) as Uint32Array;
    const out: number[] = [];
    for (let j = 0; j < m; j++) if (step - l[j]! >= deadSteps) out.push(j);
    return Int32Array.from(out);
  };
  // AuxK draws from the dead list of the latest check (refreshed every deadCheckEvery steps)
  let deadT: Tensor | null = null;
  const setDead = (list: Int32Array) => {
    deadList = list;
    deadT?.dispose();
    deadT = kAux > 0 && list.length ? keep(tensor(engine, list, [list.length], 'i32')) : null;
  };
  setDead(deadList);

  const t0 = performance.now();
  let next = startStep < stopAt ? stream.batch(startStep) : null;
  for (let step = startStep; step < stopAt; step++) {
    const xb = await next!;
    const logNow = (step + 1) % logEvery === 0 || step + 1 === stopAt;
    const curLr = lrAt(step, sched);
    const useAux = deadT !== null;
    const out = tidy(() => {
      const x = tensor(engine, xb, [B, d]);
      const L = sae.loss(x, { kAux, dead: deadT, auxCoef });
      backward(L.loss);
      projectParallel(sae.W_dec, sae.W_dec.grad!);
      opt.lr = curLr;
      opt.step();
      zeroGrad(sae.parameters);
      sae.normalizeDecoder();
      markFired(L.codes, last, step + 1);
      if (L.threshold && step >= thetaFrom) {
        const s: Tensor = thetaSum ? add(thetaSum, L.threshold) : L.threshold;
        thetaSum?.dispose();
        thetaSum = keep(s);
        thetaCount++;
      }
      return logNow ? { mse: L.mse, sse: L.sse, aux: L.aux } : null;
    });
    // read the next batch on the host while the GPU works
    next = step + 1 < stopAt ? stream.batch(step + 1) : null;
    const done = step + 1;
    if (out) {
      const [mse, sse, aux] = await Promise.all([out.mse.item(), out.sse.item(), out.aux ? out.aux.item() : Promise.resolve(null)]);
      out.mse.dispose();
      out.sse.dispose();
      out.aux?.dispose();
      const dead = (await findDead(done)).length;
      const now = performance.now();
      o.onLog?.({
        step: done,
        lr: curLr,
        mse,
        fvu: sse / centredSq(xb, meanHost, d),
        aux: useAux ? aux : null,
        deadShare: dead / m,
        tokensPerS: ((done - startStep) * B) / ((now - t0) / 1e3),
      });
    } else if (step % 2 === 1) {
      await engine.sync(); // keep the queue short
    }
    if (done % deadCheckEvery === 0 && kAux > 0) setDead(await findDead(done));
    if (o.checkpointPath && ckptEvery > 0 && (done % ckptEvery === 0 || done === steps)) {
      await writeCheckpoint(o.checkpointPath, sae, opt, last, done, deadList, config, o.checkpointMetadata);
    }
  }
  if (thetaSum) {
    sae.threshold = (await (thetaSum as Tensor).item()) / thetaCount;
    (thetaSum as Tensor).dispose();
  }
  if (sae.arch === 'batchtopk' && stopAt === steps && steps > 0) {
    // The mean batch threshold gives an inference L0 off k (rows differ from batch to batch); the
    // threshold is calibrated instead on the last training batches, so codes z ≥ θ average k per row.
    sae.threshold = await calibrateThreshold(sae, stream, Math.max(0, stopAt - CALIBRATION_BATCHES), stopAt, B);
  }
  await engine.sync();
  const trainMs = performance.now() - t0;
  const ranSteps = stopAt - startStep;

  // final evaluation on the next batches of the stream
  const evalBatches = numOpt(o.evalBatches, 4, 'evalBatches', true, 1);
  let sse = 0;
  let tot = 0;
  let l0 = 0;
  let auxSum = 0;
  const deadNowList = await findDead(stopAt);
  const deadNow = deadNowList.length;
  setDead(deadNowList);
  const useAux = deadT !== null;
  for (let i = 0; i < evalBatches; i++) {
    const xb = await stream.batch(stopAt + i);
    const r = tidy(() => {
      const x = tensor(engine, xb, [B, d]);
      return engine.noGradScope(() => {
        const L = sae.loss(x, { kAux, dead: deadT, auxCoef });
        return { sse: L.sse, aux: L.aux, z: L.codes.z, kTot: L.codes.k + L.codes.kAux };
      });
    });
    const zh = (await r.z.read()) as Float32Array;
    for (let b = 0; b < B; b++) for (let s = 0; s < sae.kMax; s++) if (zh[b * r.kTot + s]! > 0) l0++;
    sse += await r.sse.item();
    if (r.aux) auxSum += await r.aux.item();
    tot += centredSq(xb, meanHost, d);
    r.sse.dispose();
    r.aux?.dispose();
    r.z.dispose();
  }
  const metrics: TrainMetrics = {
    steps: stopAt,
    tokens: stopAt * B,
    mse: sse / (evalBatches * B * d),
    fvu: sse / tot,
    l0: l0 / (evalBatches * B),
    deadShare: deadNow / m,
    deadLatents: deadNow,
    auxLoss: useAux ? auxSum / evalBatches : null,
    inputScale: sae.inputScale,
    lr,
    deadTokens,
    msPerStep: ranSteps ? trainMs / ranSteps : 0,
    tokensPerS: ranSteps ? (ranSteps * B) / (trainMs / 1e3) : 0,
    resumedFrom,
  };
  o.onLog?.({ step: stopAt, lr: lrAt(stopAt - 1, sched), mse: metrics.mse, fvu: metrics.fvu, aux: metrics.auxLoss, deadShare: metrics.deadShare, tokensPerS: metrics.tokensPerS, final: true });
  opt.dispose();
  last.dispose();
  setDead(new Int32Array(0));
  return { sae, metrics };
}

/** Σ‖x − μ‖² over a host batch. */
function centredSq(x: Float32Array, mu: Float32Array, d: number): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    const t = x[i]! - mu[i % d]!;
    s += t * t;
  }
  return s;
}

// ---- checkpoints ------------------------------------------------------------------------------

const PNAMES = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;

/** Training batches a BatchTopK threshold is calibrated on (the last ones of the run). */
export const CALIBRATION_BATCHES = 8;

/**
 * BatchTopK's inference threshold: over the stream's batches [from, to) (normalised units, as trained),
 * the (k·rows)-th largest of all rows' top-kMax candidates, so that keeping z ≥ θ gives k codes per row
 * on average there (ties aside).
 */
export async function calibrateThreshold(sae: SparseAutoencoder, stream: BatchStream, from: number, to: number, B: number): Promise<number> {
  const engine = sae.W_enc.engine;
  const parts: Float32Array[] = [];
  let rows = 0;
  for (let s = from; s < to; s++) {
    const xb = await stream.batch(s);
    const z = tidy(() => engine.noGradScope(() => {
      const codes = encodeTopK(tensor(engine, xb, [B, sae.d]), sae.W_enc, sae.b_enc, sae.b_dec, sae.kMax, {}, { csr: false });
      codes.idx.dispose();
      return codes.z;
    }));
    const zh = (await z.read()) as Float32Array;
    z.dispose();
    const kTot = zh.length / B;
    const pos: number[] = [];
    for (let b = 0; b < B; b++) for (let j = 0; j < sae.kMax; j++) if (zh[b * kTot + j]! > 0) pos.push(zh[b * kTot + j]!);
    parts.push(Float32Array.from(pos));
    rows += B;
  }
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (all.set(p, at), (at += p.length));
  all.sort();
  const want = sae.k * rows;
  // fewer positive candidates than k per row: keep every positive one
  return want >= all.length ? (all.length ? all[0]! : 0) : all[all.length - want]!;
}

async function writeCheckpoint(
  file: string,
  sae: SparseAutoencoder,
  opt: AdamW,
  last: Tensor,
  step: number,
  dead: Int32Array,
  config: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const tensors: Record<string, { dtype: 'F32' | 'U32' | 'I32'; shape: number[]; data: ArrayBufferView }> = {};
  const ps = sae.parameters;
  const st = await opt.state();
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i]!;
    const name = PNAMES[i]!;
    tensors[name] = { dtype: 'F32', shape: [...p.shape], data: (await p.read()) as Float32Array };
    for (const b of ['m', 'v']) {
      const a = st.buffers[b]![i];
      if (a) tensors[`adam.${b}.${name}`] = { dtype: 'F32', shape: [...p.shape], data: a };
    }
  }
  tensors.last_fired = { dtype: 'U32', shape: [sae.m], data: (await last.read()) as Uint32Array };
  if (dead.length) tensors.dead_latents = { dtype: 'I32', shape: [dead.length], data: dead };
  const meta = sae.metadata({
    ...extra,
    checkpoint: { step, dead_latents: dead.length, adam: { kind: st.kind, steps: st.steps, hyper: st.hyper }, config },
  });
  writeSafetensors(file, tensors, meta);
}

interface LoadedCheckpoint {
  sae: SparseAutoencoder;
  step: number;
  dead: Int32Array;
  adam: OptimizerState;
  last: Uint32Array;
}

function readCheckpoint(engine: Engine, file: string, config: Record<string, unknown>): LoadedCheckpoint {
  const f = openSafetensors(file);
  let sae: SparseAutoencoder | null = null;
  try {
    let info: any;
    try {
      info = JSON.parse(f.metadata.checkpoint ?? 'null');
    } catch {
      info = null;
    }
    if (!info || !Number.isInteger(info.step) || !info.adam) throw new ArdError(`${file}: not a training checkpoint (no checkpoint metadata)`);
    for (const key of ['d', 'm', 'k', 'kAux', 'batchSize', 'seed', 'steps', 'deadTokens', 'arch']) {
      if (info.config?.[key] !== config[key]) {
        throw new ArdError(`${file}: checkpoint was made with ${key} = ${info.config?.[key]}, this run has ${config[key]} (delete it or match the options)`);
      }
    }
    const buffers: Record<string, (Float32Array | null)[]> = { m: [], v: [] };
    for (const n of PNAMES) {
      for (const b of ['m', 'v']) buffers[b]!.push(f.tensors.has(`adam.${b}.${n}`) ? f.readFloat32(`adam.${b}.${n}`).slice() : null);
    }
    const lastBytes = f.read('last_fired');
    const last = new Uint32Array(lastBytes.buffer, lastBytes.byteOffset, lastBytes.byteLength / 4).slice();
    if (last.length !== config.m) throw new ArdError(`${file}: last_fired has ${last.length} entries, expected m = ${config.m}`);
    let dead = new Int32Array(0);
    if (f.tensors.has('dead_latents')) {
      const b = f.read('dead_latents');
      dead = new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice();
    }
    if (dead.length !== (info.dead_latents ?? 0) || dead.some((j) => j < 0 || j >= Number(config.m))) throw new ArdError(`${file}: dead_latents does not match the checkpoint metadata`);
    sae = SparseAutoencoder.load(engine, file);
    return { sae, step: info.step, dead, adam: { kind: 'adamw', steps: info.adam.steps, hyper: info.adam.hyper, buffers }, last };
  } finally {
    f.close();
  }
}
