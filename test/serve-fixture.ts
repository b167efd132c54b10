// A small run folder for the explorer tests, over the tiny Qwen2-Audio fixture (d = 64, layer 0):
// 12 clips of seeded noise and tones, a random Top-K SAE whose features 10–13 are biased to fire
// on every row (so explain finds them), features-0.json with four named and two unnamed features,
// timelines, retrieve statistics, SAE quality, eval.json and steering.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeWav } from '../src/audio/wav.js';
import type { FeaturesFile } from '../src/ard/rank.js';
import { writeRetrieve } from '../src/ard/retrieve.js';
import { qualityFromCounts } from '../src/ard/quality.js';
import type { CaptureManifest } from '../src/ard/run.js';
import type { Engine } from '../src/gpu/engine.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { randn, rng } from './helpers.js';

export const LAYER = 0;
export const D = 64;
export const M = 256;
export const NAMED = [10, 11, 12, 13];
export const NAMES = ['female speech', 'male speech', 'alarm bell', 'ticking clock'];
const LABELS = ['female speech', 'male speech', 'alarm', 'ticking'];

/** A clip of `seconds` of a tone plus seeded noise, 16 kHz. */
export function fixtureClip(i: number, seconds = 1): Float32Array {
  const n = Math.round(seconds * 16000);
  const noise = randn(n, 100 + i, 0.05);
  const f0 = 200 + 90 * (i % 4);
  return noise.map((v, t) => v + 0.3 * Math.sin((2 * Math.PI * f0 * t) / 16000));
}

export async function makeServeRun(engine: Engine): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-serve-run-'));
  fs.mkdirSync(path.join(dir, 'clips'));
  fs.mkdirSync(path.join(dir, 'capture'));
  const nClips = 12;
  const clips: CaptureManifest['clips'] = [];
  let row = 0;
  for (let i = 0; i < nClips; i++) {
    const seconds = 1 + (i % 3) * 0.5;
    const file = `clips/clip-${i}.wav`;
    fs.writeFileSync(path.join(dir, file), encodeWav(fixtureClip(i, seconds), 16000));
    const T = Math.round(seconds / 0.04);
    clips.push({ id: `clip-${i}`, file, labels: [LABELS[i % 4]!], split: ['train', 'val', 'test'][i % 3]!, caption: `a ${LABELS[i % 4]}`, duration: seconds, rowStart: row, rowCount: T, frameSeconds: 0.04 });
    row += T;
  }
  const manifest: CaptureManifest = { model: 'tiny-audiollm', layers: [LAYER], d: D, dtype: 'f32', positions: 'audio', clips, shards: {} };
  fs.writeFileSync(path.join(dir, 'capture', 'manifest.json'), JSON.stringify(manifest));

  const base = SparseAutoencoder.init(engine, { d: D, m: M, k: 8, seed: 3 });
  const we = (await base.W_enc.read()) as Float32Array;
  const wd = (await base.W_dec.read()) as Float32Array;
  base.dispose();
  const be = new Float32Array(M);
  NAMED.forEach((f, j) => (be[f] = 4 + j));
  const sae = SparseAutoencoder.fromArrays(engine, { d: D, m: M, k: 8 }, { W_enc: we, b_enc: be, W_dec: wd, b_dec: new Float32Array(D) }, { inputScale: 1, layer: LAYER });
  await sae.save(path.join(dir, `sae-${LAYER}.safetensors`));
  sae.dispose();

  const r = rng(7);
  const ids = [...NAMED, 20, 21];
  const mean = new Float32Array(nClips * M);
  for (let c = 0; c < nClips; c++) for (const [j, f] of ids.entries()) mean[c * M + f] = (c % 4 === j % 4 ? 2 : 0.2) + 0.1 * r();
  const feats: FeaturesFile = {
    layer: LAYER, p: 3, C: 4, method: 'fixture', nClips, m: M, excluded: {},
    features: ids.map((id, j) => {
      const own = clips.map((_, i) => i).filter((i) => i % 4 === j % 4);
      const other = clips.map((_, i) => i).filter((i) => i % 4 !== j % 4).slice(0, 3);
      const ref = (c: number) => ({ clip: c, id: clips[c]!.id, score: mean[c * M + id]! / 2.1, mean: mean[c * M + id]!, coverage: 0.8 });
      return {
        id,
        ...(j < NAMED.length ? { name: NAMES[j]!, support: 0.75, captions: [`a ${LABELS[j]}`] } : {}),
        scores: { mono: 0.9 - j * 0.1, coherence: 0.5 + j * 0.05, separation: 0.3, within: 0.6, cross: 0.2, hMean: 2, lMean: 0.2, firingClips: nClips, firingShare: 1 - j * 0.1, maxMean: 2.1 },
        H: own.map(ref),
        L: other.map(ref),
        group: j === 5 ? 20 : id,
        ...(j === 4 ? { members: [20, 21] } : {}),
      };
    }),
  };
  fs.writeFileSync(path.join(dir, `features-${LAYER}.json`), JSON.stringify(feats));
  const timelines = { layer: LAYER, features: {} as Record<string, Record<string, number[]>>, frameSeconds: {} as Record<string, number> };
  for (const f of feats.features) {
    timelines.features[String(f.id)] = Object.fromEntries([...f.H, ...f.L].map((h) => [String(h.clip), Array.from({ length: clips[h.clip]!.rowCount }, (_, t) => Math.max(0, Math.sin(t / 3 + h.clip) * h.mean))]));
  }
  clips.forEach((c, i) => (timelines.frameSeconds[String(i)] = c.frameSeconds));
  fs.writeFileSync(path.join(dir, `timelines-${LAYER}.json`), JSON.stringify(timelines));
  writeRetrieve(path.join(dir, `retrieve-${LAYER}.safetensors`), {
    nClips, m: M, d: D, p: 3, mean, coverage: mean.map((v) => (v > 0 ? 0.8 : 0)), score: mean.map((v) => v / 2.1),
    maxMean: new Float32Array(M).fill(2.1), residMean: null, rows: Float32Array.from(clips, (c) => c.rowCount),
    H: new Int32Array(M * 3).fill(-1), L: new Int32Array(M * 3).fill(-1), firing: new Int32Array(M),
  });
  const counts = Array.from({ length: M }, (_, j) => (j % 7 === 0 ? 0 : Math.floor(r() * row)));
  const quality = qualityFromCounts(counts, row, 10, 40, { d: D, k: 8 });
  fs.writeFileSync(path.join(dir, `sae-${LAYER}.train.json`), JSON.stringify({ d: D, m: M, k: 8, layer: LAYER, steps: [], quality }));
  fs.writeFileSync(path.join(dir, 'steering.json'), JSON.stringify({
    feature: 10, name: 'female speech', layer: LAYER, mode: 'add', positions: 'all', values: [0, 4], question: 'Who speaks?', target: 'female', flip_rate: 0.5, unchanged_rate: 1,
    sweeps: [{ feature: 10, name: 'female speech', layer: LAYER, question: 'Who speaks?', target: 'female', mode: 'add', values: [{ value: 0, flipRate: 0, answers: ['a man'] }, { value: 4, flipRate: 0.5, answers: ['a woman'] }] }],
  }));
  fs.writeFileSync(path.join(dir, '.hidden'), 'secret');
  return dir;
}
