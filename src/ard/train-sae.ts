// The train-sae stage: a Top-K SAE on one captured layer, streamed from the capture shards.
// Writes RUN/sae-L.safetensors (skipped when its inputs are unchanged, see run.ts) and
// RUN/sae-L.train.json (the log the report plots); checkpoints go to
// RUN/sae-L.ckpt.safetensors every few hundred steps, so an interrupted run resumes.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../gpu/engine.js';
import { openSafetensors } from '../io/safetensors.js';
import { trainSae, TrainLog, TrainMetrics } from '../sae/train.js';
import { ArdError } from '../util/errors.js';
import { readJson, writeJsonAtomic } from '../util/fs.js';
import { SparseAutoencoder } from '../sae/model.js';
import type { SaeArch } from '../sae/model.js';
import { saeQuality, SaeQuality } from './quality.js';
import { captureShardReader, clearFresh, fileDigest, isFresh, markFresh, readCaptureManifest, runPaths, stageInputsKey } from './run.js';

export interface TrainSaeStageOptions {
  engine: Engine;
  run: string;
  layer: number;
  /** Latents (default 8·d). */
  m?: number;
  k?: number;
  steps?: number;
  batchSize?: number;
  lr?: number;
  seed?: number;
  force?: boolean;
  /** Steps between checkpoints (default 250). */
  checkpointEvery?: number;
  /** topk (default) or batchtopk. */
  arch?: SaeArch;
  onLog?: (log: TrainLog, steps: number) => void;
}

export interface TrainSaeStageResult {
  file: string;
  skipped: boolean;
  metrics: TrainMetrics | null;
  /** Measured after training, or added to an older train.json; null when the stage skipped with both present. */
  quality: SaeQuality | null;
}

function readMeta(file: string): Record<string, string> {
  const f = openSafetensors(file);
  try {
    return { ...f.metadata };
  } finally {
    f.close();
  }
}

export async function trainSaeStage(o: TrainSaeStageOptions): Promise<TrainSaeStageResult> {
  const paths = runPaths(o.run, o.layer);
  const manifest = readCaptureManifest(o.run);
  const shards = manifest.shards[String(o.layer)];
  if (!shards?.length) throw new ArdError(`${paths.manifest}: layer ${o.layer} was not captured (layers: ${manifest.layers.join(', ')})`);
  const d = manifest.d;
  const rows = manifest.clips.reduce((a, c) => a + c.rowCount, 0);
  const m = o.m ?? 8 * d;
  const k = o.k ?? Math.min(32, Math.max(1, Math.floor(m / 16)));
  const batchSize = Math.min(o.batchSize ?? 4096, Math.max(64, rows));
  const steps = o.steps ?? Math.max(200, Math.min(4000, Math.ceil((20 * rows) / batchSize)));
  const seed = o.seed ?? 0;
  const arch = o.arch ?? 'topk';
  // arch in the key only when not the default: Top-K runs keep their cached SAEs
  const hash = stageInputsKey('train-sae', { capture: fileDigest(paths.manifest), layer: o.layer, m, k, steps, batchSize, lr: o.lr ?? null, seed, ...(arch === 'topk' ? {} : { arch }) });
  if (!o.force && isFresh(paths.sae, hash)) return { file: paths.sae, skipped: true, metrics: null, quality: await addQuality(o, manifest) };
  clearFresh(paths.sae);
  const ckpt = paths.saeCheckpoint;
  if (o.force) fs.rmSync(ckpt, { force: true });
  // a checkpoint from different inputs must not be resumed (it carries the key of its inputs)
  if (fs.existsSync(ckpt)) {
    let same = false;
    try {
      same = JSON.parse(readMeta(ckpt).inputs_hash ?? '""') === hash;
    } catch {
      same = false;
    }
    if (!same) fs.rmSync(ckpt, { force: true });
  }
  const source = captureShardReader(o.run, manifest, o.layer);
  const log: TrainLog[] = [];
  const { sae, metrics } = await trainSae({
    engine: o.engine,
    source,
    d,
    m,
    k,
    steps,
    batchSize,
    lr: o.lr,
    seed,
    arch,
    layer: o.layer,
    checkpointPath: ckpt,
    checkpointEvery: o.checkpointEvery ?? 250,
    checkpointMetadata: { inputs_hash: hash },
    logEvery: Math.max(1, Math.floor(steps / 100)),
    provenance: { run: path.resolve(o.run), capture: manifest.inputsHash, model: manifest.model, prompt: manifest.prompt, inputs_hash: hash },
    onLog: (l) => {
      log.push(l);
      o.onLog?.(l, steps);
    },
  });
  try {
    const quality = await saeQuality(o.engine, sae, source);
    await sae.save(paths.sae, { inputs_hash: hash, layer: o.layer, rows, capture: manifest.inputsHash ?? null }); // JSON has no undefined: a manifest without inputsHash still saves
    writeJsonAtomic(paths.saeTrain, { layer: o.layer, architecture: arch, ...(arch === 'batchtopk' ? { threshold: sae.threshold, kMax: sae.kMax } : {}), d, m, k, steps, batchSize, rows, metrics, quality, log });
    markFresh(paths.sae, hash);
    fs.rmSync(ckpt, { force: true });
    return { file: paths.sae, skipped: false, metrics, quality };
  } finally {
    sae.dispose();
  }
}

/** A fresh SAE whose train.json has no quality section: measure it and add it. */
async function addQuality(o: TrainSaeStageOptions, manifest: ReturnType<typeof readCaptureManifest>): Promise<SaeQuality | null> {
  const paths = runPaths(o.run, o.layer);
  if (!fs.existsSync(paths.saeTrain)) return null;
  const doc = readJson<Record<string, unknown>>(paths.saeTrain);
  if (!doc || typeof doc !== 'object' || doc.quality) return null;
  const sae = SparseAutoencoder.load(o.engine, paths.sae);
  try {
    const quality = await saeQuality(o.engine, sae, captureShardReader(o.run, manifest, o.layer));
    writeJsonAtomic(paths.saeTrain, { ...doc, quality });
    return quality;
  } finally {
    sae.dispose();
  }
}
