// `ardgpu demo`: the whole AR&D loop on the embedded default model —
// make-corpus → capture → train-sae → retrieve + rank → describe → steer → evaluate → report.
// Every stage writes under one folder and skips itself when its inputs are unchanged, so an
// interrupted demo resumes where it stopped.
import * as path from 'node:path';
import type { Engine } from '../gpu/engine.js';
import { makeCorpus } from '../corpus/index.js';
import type { AudioLLM } from '../model/audiollm.js';
import { ArdError } from '../util/errors.js';
import { capture } from './capture.js';
import { describeFeatures } from './describe.js';
import { evaluate } from './evaluate.js';
import { rank } from './rank.js';
import { writeReport } from './report.js';
import { computeTimelines, retrieve } from './retrieve.js';
import { fileDigest, readCaptureManifest } from './run.js';
import { modelDescriber } from './stages.js';
import { steerExperiment } from './steer.js';
import { loadSae } from '../sae/load.js';
import { trainSaeStage } from './train-sae.js';
import type { Reconstructor } from './splice.js';
import { spliceStage } from './splice.js';

export interface DemoOptions {
  engine: Engine;
  model: AudioLLM;
  out: string;
  /** Decoder layer to study (default: the middle one, layer 2 of the embedded model's 4). */
  layer?: number;
  seed?: number;
  /** Corpus clips (default 1200). */
  size?: number;
  /** Latents and k of the SAE (defaults: 8·d and 16). */
  m?: number;
  k?: number;
  steps?: number;
  force?: boolean;
  /** Called when a stage starts ('corpus', 'capture', ...), with its number and the total. */
  onStage?: (name: string, index: number, total: number) => void;
  /** Per-stage progress. */
  onProgress?: (stage: string, done: number, total: number) => void;
  log?: (line: string) => void;
}

export interface DemoResult {
  run: string;
  layer: number;
  report: string;
  seconds: number;
  stages: Record<string, { seconds: number; skipped?: boolean }>;
}

/** The demo's steering sweep, in units of the feature's largest clip-mean activation. */
export const DEMO_STEER_VALUES = [0, 1, 2, 3, 4, 6, 8, 10, 12, 16];
/**
 * Features the demo keeps (rank's C) and names. More than rank's default 50: speech features score
 * lower on separation (speech pauses lower their coverage): on an earlier embedded model the 'male
 * speech' feature that steers ranked 129th at layer 1.
 */
export const DEMO_KEEP = 150;
export const DEMO_STAGES = ['corpus', 'capture', 'train-sae', 'splice', 'retrieve', 'describe', 'steer', 'evaluate', 'report'] as const;

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const t0 = Date.now();
  const { engine, model } = o;
  const run = o.out;
  const corpus = path.join(run, 'corpus');
  const nLayers = model.config.text_config.num_hidden_layers;
  // the middle layer (as for a 32-layer model's 16). The later layers read the audio rows from
  // here, so a feature steered here reaches the answer. With the embedded model (weights/) the
  // demo's steering flips 27 of 27 female test clips at layer 2 with "Is anyone speaking?" unchanged
  // on 27 (mAP SAE 0.78 vs neurons 0.62, random 0.66), and at layer 3 (at 12–16× the feature's
  // largest clip-mean activation); at layer 1 (a quarter up, where an earlier model steered) its SAE
  // names only 2 features "male speech" and neither flips any (weights/README.md, History).
  const layer = o.layer ?? Math.floor(nLayers / 2);
  if (layer < 0 || layer >= nLayers) throw new ArdError(`demo: layer ${layer} out of range (0–${nLayers - 1})`);
  const log = o.log ?? (() => {});
  const stages: DemoResult['stages'] = {};
  let i = 0;
  const stage = async <T>(name: (typeof DEMO_STAGES)[number], fn: () => Promise<T>): Promise<T> => {
    o.onStage?.(name, ++i, DEMO_STAGES.length);
    const s = Date.now();
    const r = await fn();
    stages[name] = { seconds: (Date.now() - s) / 1000, ...(r && typeof r === 'object' && 'skipped' in r ? { skipped: Boolean((r as any).skipped) } : {}) };
    return r;
  };
  const progress = (name: string) => (done: number, total: number) => o.onProgress?.(name, done, total);

  await stage('corpus', async () => {
    const r = await makeCorpus({ out: corpus, seed: o.seed ?? 0, size: o.size, onProgress: (p) => o.onProgress?.('corpus', p.done, p.total) });
    log(`corpus: ${r.entries.length} clips (${r.rendered} rendered) in ${corpus}`);
    return { skipped: r.rendered === 0 };
  });
  await stage('capture', async () => {
    const r = await capture({ model, corpus, run, layers: [layer], force: o.force, onProgress: progress('capture') });
    log(`capture: ${r.clips} clips, ${r.rows} rows${r.skipped ? ' (unchanged)' : ''}${r.bad.length ? `, ${r.bad.length} bad clips skipped` : ''}`);
    return r;
  });
  const sae = await stage('train-sae', async () => {
    const r = await trainSaeStage({ engine, run, layer, m: o.m, k: o.k ?? 16, steps: o.steps, seed: o.seed ?? 0, force: o.force, onLog: (l, steps) => o.onProgress?.('train-sae', Math.min(l.step + 1, steps), steps) });
    log(`train-sae: ${r.skipped ? 'unchanged' : `FVU ${r.metrics!.fvu.toFixed(3)}, dead ${(r.metrics!.deadShare * 100).toFixed(1)}%, ${r.metrics!.tokensPerS.toFixed(0)} tokens/s`} → ${r.file}`);
    return r;
  });
  const saeModel = loadSae(engine, sae.file);
  try {
    await stage('splice', async () => {
      const r = await spliceStage({ model, sae: saeModel as unknown as Reconstructor, run, layer, saeId: { digest: fileDigest(sae.file), name: sae.file }, force: o.force, onProgress: progress('splice') });
      log(`splice: ${r.skipped ? 'unchanged; ' : ''}loss recovered ${r.recovered === null ? 'n/a' : r.recovered.toFixed(3)}, KL ${r.klSae.toExponential(2)} over ${r.tokens} answer tokens`);
      return r;
    });
    await stage('retrieve', async () => {
      const r = await retrieve({ engine, run, layer, sae: saeModel, force: o.force, onProgress: progress('retrieve') });
      const f = rank({ run, layer, C: DEMO_KEEP });
      await computeTimelines({ engine, run, layer, sae: saeModel });
      log(`retrieve: ${r.nClips} clips × ${r.m} features; kept ${f.features.length} features`);
      return r;
    });
    await stage('describe', async () => {
      const doc = await describeFeatures({ run, layer, describer: modelDescriber(model), clipsPerFeature: 5, force: o.force, onProgress: progress('describe') });
      const names = doc.features.filter((f) => f.name).slice(0, 8).map((f) => `#${f.id} ${f.name}`);
      log(`describe: ${doc.features.length} features named${doc.skipped ? ' (unchanged)' : ''} (${names.join(', ')}${doc.features.length > 8 ? ', …' : ''})`);
      return { skipped: Boolean(doc.skipped) };
    });
    await stage('steer', async () => {
      // the demo's selection clips as before: the first 16 speech clips of the validation split,
      // those labelled 'female speech' (the experiment's own default takes the first 16 of those)
      const isSpeech = (c: { labels: string[] }) => c.labels.some((l) => l === 'female speech' || l === 'male speech');
      const selectionClips = readCaptureManifest(run).clips
        .filter((c) => c.split === 'val' && isSpeech(c))
        .slice(0, 16)
        .filter((c) => c.labels.includes('female speech'))
        .map((c) => ({ file: c.file }));
      try {
        // named candidates are compared on the validation clips; the flip rate is measured on test clips
        const r = await steerExperiment({
          model, sae: saeModel, run, layer, from: 'female speech', prompt: 'What is the gender of the speaker?', expect: 'male',
          controlPrompt: 'Is anyone speaking?', split: 'test', selectionClips, values: DEMO_STEER_VALUES, valuesInFeatureUnits: true,
          force: o.force, onProgress: progress('steer'),
        });
        const rates = (r.baselines ?? []).map((b) => `${b.kind} ${(b.flip_rate * 100).toFixed(0)}%`).join(', ');
        log(`steer: ${r.skipped ? 'unchanged — ' : ''}feature #${r.feature} (${r.name}) — flip rate ${(r.flip_rate * 100).toFixed(0)}%, control unchanged ${(r.unchanged_rate * 100).toFixed(0)}%${rates ? `; same norm of change: ${rates}` : ''}`);
        return { skipped: Boolean(r.skipped) };
      } catch (e) {
        // no gender-named feature: the report says so; the rest of the demo still runs
        log(`steer: skipped — ${(e as Error).message}`);
        return {};
      }
    });
    await stage('evaluate', async () => {
      const r = evaluate({ run, layer, seed: o.seed ?? 0 });
      log(`evaluate: mAP sae ${r.sae.map.toFixed(3)}, neurons ${r.neurons.map.toFixed(3)}, random ${r.random.map.toFixed(3)}; name accuracy ${r.name_accuracy ?? 'n/a'}`);
      return {};
    });
  } finally {
    saeModel.dispose();
  }
  const report = await stage('report', async () => writeReport(run, { corpusDir: corpus }).file);
  return { run, layer, report, seconds: (Date.now() - t0) / 1000, stages };
}
