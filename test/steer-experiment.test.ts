// The steering experiment by label (`ardgpu steer-experiment`) and its baselines, on the tiny
// Qwen2-Audio fixture with a small random SAE: a baseline direction moves each residual row by the
// feature's own norm of change; the best raw neuron is the one whose clip mean ranks the source
// label's clips best; clips come from the capture's labels; steering.json gets the three sweeps;
// bad input gives one-line errors.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import { capture } from '../src/ard/capture.js';
import { readCaptureManifest } from '../src/ard/run.js';
import { addSteeringHook, answerSays, baselineDirections, clipsLabelled, featureActivation, genderCandidates, sourceWords, steerExperiment, steeringExperiment } from '../src/ard/steer.js';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { buildChatPrompt } from '../src/model/chat.js';
import { generate } from '../src/model/generate.js';
import { loadAudioLLM } from '../src/model/load.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { clone } from '../src/tensor/ops/elementwise.js';
import { keep } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { getEngine, randn, runCli } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

const D = 64;
const M = 256;
const K = 8;
const F = 17; // fires on every row (raised encoder bias), so 'set' moves every row by a different amount
const LAYER = 0;
const Q = 'What is it?';

let engine: Engine;
let model: AudioLLM;
let modelDir: string;
let sae: SparseAutoencoder;
let wdec: Float32Array;
let scale: number;
let tmp: string;
let run: string;
const clip = randn(16000, 5, 0.2);

type Meta = { step: number; start: number; rows: number };
const recorder = (into: Tensor[], meta: Meta[]) => (r: Tensor, ctx: Meta) => {
  into.push(keep(clone(r)));
  meta.push({ step: ctx.step, start: ctx.start, rows: ctx.rows });
};
async function collect(ts: Tensor[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const t of ts) {
    out.push((await t.read()) as Float32Array);
    t.dispose();
  }
  return out;
}

// the labelled corpus: 'female speech' in val and test, 'male speech', 'dog'
const CLIPS: [string, string, string][] = [
  ['f0.wav', 'female speech', 'val'], ['f1.wav', 'female speech;speech', 'val'], ['m0.wav', 'male speech', 'val'], ['d0.wav', 'dog', 'val'],
  ['f2.wav', 'female speech', 'test'], ['f3.wav', 'Female Speech', 'test'], ['m1.wav', 'male speech;cough', 'test'], ['d1.wav', 'dog', 'train'],
];

beforeAll(async () => {
  engine = await getEngine();
  modelDir = tinyModelDir();
  model = await loadAudioLLM(engine, modelDir);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-steerx-'));
  // the SAE of steer.test.ts: input scale from this clip's residuals, feature F always on
  const ts: Tensor[] = [];
  const h = model.hooks.add({ layer: LAYER, fn: recorder(ts, []) });
  const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(clip.length)], Q, { audioTokenIndex: model.audioTokenIndex });
  const feats = model.encodeAudio(clip);
  await generate(model, { ids, audio: feats }, { maxNewTokens: 1 });
  feats.dispose();
  h.remove();
  const x = (await collect(ts))[0]!;
  let ss = 0;
  for (const v of x) ss += v * v;
  scale = Math.sqrt(D / (ss / (x.length / D)));
  const base = SparseAutoencoder.init(engine, { d: D, m: M, k: K, seed: 3, inputScale: scale });
  wdec = (await base.W_dec.read()) as Float32Array;
  const we = (await base.W_enc.read()) as Float32Array;
  base.dispose();
  const be = new Float32Array(M);
  be[F] = 6;
  sae = SparseAutoencoder.fromArrays(engine, { d: D, m: M, k: K }, { W_enc: we, b_enc: be, W_dec: wdec, b_dec: new Float32Array(D) }, { inputScale: scale, layer: LAYER });

  // a labels-CSV corpus captured at LAYER, with the SAE and named features in the run
  const corpus = path.join(tmp, 'corpus');
  fs.mkdirSync(corpus, { recursive: true });
  CLIPS.forEach(([f], i) => writeWav(path.join(corpus, f), randn(9000 + 1000 * i, 100 + i, 0.2)));
  const csv = path.join(corpus, 'labels.csv');
  fs.writeFileSync(csv, ['file,labels,split', ...CLIPS.map(([f, l, s]) => `${f},"${l}",${s}`)].join('\n') + '\n');
  run = path.join(tmp, 'run');
  await capture({ model, corpus, corpusOptions: { labels: csv }, run, layers: [LAYER], dtype: 'f32' });
  await sae.save(path.join(run, `sae-${LAYER}.safetensors`));
  const feature = (id: number, name: string) => ({ id, name, scores: { maxMean: 4 }, H: [], L: [] });
  fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify({ layer: LAYER, features: [feature(3, 'dog barking'), feature(F, 'male speech'), feature(40, 'female speech')] }));
}, 120_000);

afterAll(() => {
  sae?.dispose();
  model?.dispose();
  for (const d of [tmp, modelDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe('baseline directions', () => {
  /** ‖post − pre‖ per row of each pass, the pre rows, and z_F of the pre rows, with `spec` steering between them. */
  async function changes(spec: Parameters<typeof addSteeringHook>[1]) {
    const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(clip.length)], Q, { audioTokenIndex: model.audioTokenIndex });
    const feats = model.encodeAudio(clip);
    const pre: Tensor[] = [];
    const post: Tensor[] = [];
    const zs: Tensor[] = [];
    const meta: Meta[] = [];
    const hooks = [
      model.hooks.add({ layer: LAYER, fn: (r, ctx) => void (recorder(pre, meta)(r, ctx), zs.push(keep(featureActivation(sae, r, F)))) }),
      addSteeringHook(model, { ...spec, promptIds: ids }),
      model.hooks.add({ layer: LAYER, fn: recorder(post, []) }),
    ];
    try {
      await generate(model, { ids, audio: feats }, { maxNewTokens: 3 });
    } finally {
      hooks.forEach((h) => h.remove());
      feats.dispose();
    }
    const [a, b, z] = [await collect(pre), await collect(post), await collect(zs)];
    const rows = meta.map((m, s) => ({
      step: m.step,
      x: a[s]!,
      z: z[s]!,
      delta: Array.from({ length: m.rows }, (_, r) => Float64Array.from({ length: D }, (_, c) => b[s]![r * D + c]! - a[s]![r * D + c]!)),
    }));
    return rows;
  }
  const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
  const dirNorm = () => norm(Array.from(wdec.subarray(F * D, (F + 1) * D), (w) => w / scale));

  it("each row moves along u by the feature's own norm of change ('add' and 'set', prompt and generated tokens)", async () => {
    const u = new Float32Array(D);
    const g = randn(D, 9);
    const gn = norm(g);
    g.forEach((v, i) => (u[i] = v / gn));
    const nd = dirNorm();
    let worst = 0;
    let rowsSeen = 0;
    for (const [mode, value] of [['add', 5], ['add', -3], ['set', 8], ['set', 0]] as const) {
      const feat = await changes({ sae, layer: LAYER, feature: F, value, mode });
      const base = await changes({ sae, layer: LAYER, feature: F, value, mode, direction: u });
      expect(base.map((p) => p.step)).toEqual([0, 1, 2]);
      // the prompt pass sees the same residual in both runs: the norms match row by row
      for (let r = 0; r < feat[0]!.delta.length; r++) {
        const nf = norm(feat[0]!.delta[r]!);
        const nb = norm(base[0]!.delta[r]!);
        expect(nf).toBeGreaterThan(0);
        worst = Math.max(worst, Math.abs(nb - nf) / nf);
        rowsSeen++;
      }
      // every pass: ‖Δ‖ = |c|·‖W_dec[F]/s‖ with c from that run's own row, and Δ ∥ u
      for (const p of base) {
        for (let r = 0; r < p.delta.length; r++) {
          const c = mode === 'add' ? value : value - p.z[r]!;
          const want = Math.abs(c) * nd;
          const got = norm(p.delta[r]!);
          worst = Math.max(worst, Math.abs(got - want) / want);
          const cos = p.delta[r]!.reduce((s, x, i) => s + x * u[i]!, 0) / got;
          expect(cos).toBeGreaterThan(1 - 1e-5); // along +u, whatever the sign of c
        }
      }
    }
    console.log(`baseline scaling: ${rowsSeen} prompt rows compared, worst relative norm difference ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(2e-5);
    expect(model.hooks.size).toBe(0);
  });

  it('a neuron direction changes that residual dimension only, bit for bit elsewhere', async () => {
    const u = new Float32Array(D);
    u[11] = -1;
    const p = await changes({ sae, layer: LAYER, feature: F, value: 6, mode: 'add', direction: u });
    const want = 6 * dirNorm();
    for (const s of p)
      for (const d of s.delta) {
        d.forEach((x, c) => (c === 11 ? expect(x).toBeCloseTo(-want, 3) : expect(x).toBe(0)));
      }
    expect(() => addSteeringHook(model, { sae, layer: LAYER, feature: F, value: 1, direction: new Float32Array(D - 1) })).toThrow(/baseline direction must be a Float32Array of the hidden size 64/);
  });

  it('baselineDirections: the neuron whose clip mean ranks the source clips best (on val), steered away; a seeded unit random direction', () => {
    const d = 5;
    const clips = [
      ...[1, 1, 0, 0, 0, 1].map((p) => ({ labels: p ? ['female speech'] : ['male speech'], split: 'val' })),
      ...[1, 0].map((p) => ({ labels: p ? ['Female speech'] : ['dog'], split: 'test' })),
    ];
    const resid = new Float32Array(clips.length * d);
    const noise = randn(resid.length, 4, 0.1);
    clips.forEach((c, i) => {
      for (let j = 0; j < d; j++) resid[i * d + j] = noise[i * d + j]!;
      resid[i * d + 3] += c.labels[0]!.toLowerCase() === 'female speech' ? -2 : 2; // neuron 3 falls on the source
      resid[i * d + 1] += c.labels[0] === 'female speech' ? 0.05 : 0; // weakly rises
    });
    // on test, neuron 0 would separate perfectly: the test split must not be used when val can
    resid[6 * d + 0] = 50;
    const [n, r] = baselineDirections({ clips, residMean: resid, d, from: 'female speech', scoredSplit: 'test', seed: 7 });
    expect(n!.kind).toBe('neuron');
    expect(n!.details).toMatchObject({ neuron: 3, sign: 1, ap: 1, chosen_on: "the 'val' split", clips: 6 });
    expect(Array.from(n!.direction)).toEqual([0, 0, 0, 1, 0]); // its mean falls on the source: steered up
    expect(n!.description).toMatch(/neuron 3: its clip mean falls on 'female speech' clips \(AP 1\.000/);
    expect(r!.kind).toBe('random');
    expect(norm(r!.direction)).toBeCloseTo(1, 6);
    const again = baselineDirections({ clips, residMean: resid, d, from: 'female speech', scoredSplit: 'test', seed: 7 })[1]!;
    expect(Array.from(again.direction)).toEqual(Array.from(r!.direction));
    const other = baselineDirections({ clips, residMean: resid, d, from: 'female speech', scoredSplit: 'test', seed: 8 })[1]!;
    expect(Array.from(other.direction)).not.toEqual(Array.from(r!.direction));
    // no val clips: chosen on the splits outside the scored one (here train)
    const noVal = clips.map((c) => ({ ...c, split: c.split === 'val' ? 'train' : c.split }));
    expect(baselineDirections({ clips: noVal, residMean: resid, d, from: 'female speech', scoredSplit: 'test', seed: 0 })[0]!.details.chosen_on).toBe("every split but 'test'");
    // only source clips anywhere: no neuron can separate, only the random direction is left
    const allSource = clips.map((c) => ({ ...c, labels: ['female speech'] }));
    expect(baselineDirections({ clips: allSource, residMean: resid, d, from: 'female speech', scoredSplit: 'test', seed: 0 }).map((b) => b.kind)).toEqual(['random']);
  });
});

describe('the experiment by label', () => {
  it('candidates for any label set: raise features named for the target, else suppress those named for the source', () => {
    const f = (id: number, name: string) => ({ id, name, scores: {} as any, H: [], L: [] });
    const feats = [f(1, 'dog barking'), f(2, 'a dog and a cat'), f(3, 'cats meowing'), f(4, 'neutral speech'), f(5, 'happy and neutral speech')];
    expect(genderCandidates(feats, 'cat', [0, 2], 'dog').map((c) => [c.feature, c.mode, c.values])).toEqual([[3, 'add', [0, 2]]]);
    const sup = genderCandidates(feats, 'angry', [0, 2], 'neutral speech');
    expect(sup.map((c) => [c.feature, c.mode, c.values])).toEqual([[4, 'set', [0, -2]], [5, 'set', [0, -2]]]);
    expect(sup[0]!.strategy).toMatch(/no feature is named 'angry': suppress the 'neutral speech'-named feature/);
    // 5 says both 'happy' and the source: neither raised nor suppressed
    expect(genderCandidates(feats, 'happy', [1], 'neutral speech').map((c) => [c.feature, c.mode])).toEqual([[4, 'set']]);
    expect(genderCandidates(feats, 'rain', [1], 'thunder')).toEqual([]);
    expect(sourceWords('male', 'female speech')).toEqual(['female']); // the opposite, as the gender experiment always did
    expect(answerSays('A cat is meowing.', 'cat meowing')).toBe(true);
    expect(answerSays('A cat.', 'cat meowing')).toBe(false);
  });

  it("clipsLabelled: the split's clips with the label (case ignored); one-line errors for an unknown label or split", () => {
    const m = readCaptureManifest(run);
    const file = path.join(run, 'capture', 'manifest.json');
    expect(clipsLabelled(m, file, 'female speech', 'test').map((c) => path.basename(c.file))).toEqual(['f2.wav', 'f3.wav']);
    expect(clipsLabelled(m, file, ' FEMALE speech', 'val').map((c) => path.basename(c.file))).toEqual(['f0.wav', 'f1.wav']);
    expect(() => clipsLabelled(m, file, 'cat', 'test')).toThrow(`${file}: no clip is labelled 'cat' (labels: 'cough', 'dog', 'Female Speech', 'female speech', 'male speech', 'speech')`);
    expect(() => clipsLabelled(m, file, 'dog', 'test')).toThrow(`${file}: no clip labelled 'dog' in split 'test' (val: 1, train: 1)`);
  });

  it('steers the named feature, the best neuron and a random direction over the same clips and values; fresh runs are skipped', async () => {
    const o = { model, sae, run, layer: LAYER, from: 'female speech', prompt: Q, expect: 'male', controlPrompt: 'Is it loud?', values: [0, 10], maxNewTokens: 4 };
    const seen: [number, number][] = [];
    const r = await steerExperiment({ ...o, onProgress: (a, b) => seen.push([a, b]) });
    const doc = JSON.parse(fs.readFileSync(path.join(run, 'steering.json'), 'utf8'));
    expect(doc).toMatchObject({ feature: F, name: 'male speech', mode: 'add', from: 'female speech', split: 'test', target: 'male', question: Q, control_question: 'Is it loud?', values: [0, 40], value_unit: 4, clips: 2 });
    expect(doc.per_clip.map((c: any) => path.basename(c.file))).toEqual(['f2.wav', 'f3.wav']);
    expect(doc.baselines.map((b: any) => b.kind)).toEqual(['neuron', 'random']);
    expect(doc.baseline_scaling).toMatch(/‖x' − x‖ matches the feature's/);
    for (const b of doc.baselines) {
      expect(b.values.map((v: any) => v.value)).toEqual([0, 40]);
      expect(b.per_clip.map((c: any) => c.file)).toEqual(doc.per_clip.map((c: any) => c.file));
      expect(b.flip_rate).toBe(b.per_clip.filter((c: any) => c.flipped).length / 2);
      expect(b.unchanged_rate).toBe(b.per_clip.filter((c: any) => c.control.unchanged).length / 2);
      // value 0 in mode add: no change, the unsteered answers
      b.per_clip.forEach((c: any, i: number) => {
        expect(c.baseline).toBe(doc.per_clip[i].baseline);
        expect(c.answers[0].answer).toBe(c.baseline);
      });
      // at 40 the baseline moved the residual as far as the feature did: some answer changes
      expect(b.per_clip.some((c: any) => c.answers[1].answer !== c.baseline)).toBe(true);
    }
    expect(doc.baselines[0].details).toMatchObject({ chosen_on: "the 'val' split", clips: 4 });
    expect(doc.baselines[1].details).toEqual({ seed: 0 });
    // progress: the 2 scored clips, then 2 for each baseline, in one total (one named candidate: no selection)
    expect(seen.every(([, t]) => t === 6)).toBe(true);
    expect(seen.at(-1)).toEqual([6, 6]);
    expect(r.selection).toBeUndefined();

    // interrupted after 3 of 6 clip sweeps: those results are kept and reused by the rerun
    const partialFile = path.join(run, '.steering.partial.json');
    const stop = (a: number) => {
      if (a === 3) throw new Error('interrupted');
    };
    await expect(steerExperiment({ ...o, force: true, onProgress: stop })).rejects.toThrow('interrupted');
    const partial = JSON.parse(fs.readFileSync(partialFile, 'utf8'));
    expect(Object.keys(partial.done)).toHaveLength(3);
    const k0 = Object.keys(partial.done).find((k) => k.includes('f3.wav') && k.startsWith(`[${F},`))!; // the feature's sweep of f3
    partial.done[k0].baseline = 'kept from before';
    fs.writeFileSync(partialFile, JSON.stringify(partial));
    const resumed = await steerExperiment(o);
    expect(resumed.skipped).toBeUndefined();
    expect(resumed.per_clip[1]!.baseline).toBe('kept from before');
    expect(resumed.baselines!.map((b) => b.per_clip.map((c) => c.answers))).toEqual(r.baselines!.map((b) => b.per_clip.map((c) => c.answers)));
    expect(fs.existsSync(partialFile)).toBe(false); // removed once steering.json is written

    const again = await steerExperiment(o);
    expect(again.skipped).toBe(true);
    expect(again.flip_rate).toBe(r.flip_rate);
    const noBase = await steerExperiment({ ...o, baselines: false, values: [0, 10] });
    expect(noBase.skipped).toBeUndefined();
    expect(noBase.baselines).toBeUndefined();
    expect(noBase.per_clip.map((c) => c.answers.map((a) => a.answer))).toEqual(r.per_clip.map((c) => c.answers.map((a) => a.answer)));
  }, 120_000);

  it('progress counts the candidates on the selection clips, the scored clips and each baseline in one total from the start', async () => {
    const run2 = path.join(tmp, 'run-progress');
    fs.mkdirSync(run2, { recursive: true });
    const feature = (id: number, name: string) => ({ id, name, scores: {}, H: [], L: [] });
    fs.writeFileSync(path.join(run2, `features-${LAYER}.json`), JSON.stringify({ layer: LAYER, features: [feature(F, 'male speech'), feature(40, 'a man talking')] }));
    const corpus = path.join(tmp, 'corpus');
    const u = new Float32Array(D);
    u[5] = 1;
    const seen: [number, number][] = [];
    const r = await steeringExperiment({
      model, sae, run: run2, layer: LAYER, corpus, corpusClips: [{ file: 'f2.wav' }], selectionClips: [{ file: 'f0.wav' }], values: [0, 10], maxNewTokens: 2,
      baselines: [{ kind: 'neuron', direction: u, description: 'neuron 5' }], onProgress: (a, b) => seen.push([a, b]),
    });
    expect(r.selection!.candidates).toHaveLength(2);
    expect(r.baselines!.map((b) => [b.kind, b.clips, b.details])).toEqual([['neuron', 1, {}]]);
    // 2 candidates × 1 selection clip, then 1 scored clip, then 1 baseline clip
    expect(seen.every(([, t]) => t === 4)).toBe(true);
    expect(seen.map(([a]) => a)).toEqual([0, 1, 1, 2, 2, 3, 3, 4]);
  }, 60_000);

  it('batched sweeps give every answer that decoding each sequence alone gives (batch 1), at any batch size', async () => {
    const run3 = path.join(tmp, 'run-batch');
    fs.mkdirSync(run3, { recursive: true });
    const corpus = path.join(tmp, 'corpus');
    const corpusClips = CLIPS.slice(0, 6).map(([f]) => ({ file: f })); // 9,000–14,000 samples: prompts of different lengths
    const g = randn(D, 21);
    const gn = Math.sqrt(g.reduce((a, x) => a + x * x, 0));
    const u = Float32Array.from(g, (x) => x / gn);
    // which sequence of a batch each decoder row belongs to (an observer: returns nothing)
    let maxSeq = -1;
    const watch = model.hooks.add({ layer: LAYER, fn: (_r, ctx) => void (maxSeq = Math.max(maxSeq, ctx.sequence ?? 0)) });
    try {
      // 5 sequences per clip's sweep: batches of 7 split clips; the default (32) takes all 30 at once
      const configs = [
        { batch: 7, mode: 'add', positions: 'all', values: [0, 3, 10, 40] },
        { batch: undefined, mode: 'set', positions: 'audio', values: [0, 25, -25] }, // per-sequence masks of the audio rows
      ] as const;
      for (const { batch, ...cfg } of configs) {
        const o = { model, sae, run: run3, layer: LAYER, corpus, corpusClips, feature: F, ...cfg, maxNewTokens: 4, baselines: [{ kind: 'random' as const, direction: u, description: 'random' }] };
        maxSeq = -1;
        const alone = await steeringExperiment({ ...o, batch: 1 });
        expect(maxSeq).toBe(0); // one sequence at a time (generate)
        // the steering does something, differently per clip: the comparison below can fail
        const all = [...alone.per_clip, ...alone.baselines![0]!.per_clip];
        expect(all.some((c) => c.answers.some((a) => a.answer !== c.baseline))).toBe(true);
        expect(new Set(alone.per_clip.map((c) => c.answers.map((a) => a.answer).join('|'))).size).toBeGreaterThan(1);
        maxSeq = -1;
        const seen: number[] = [];
        const r = await steeringExperiment({ ...o, ...(batch ? { batch } : {}), onProgress: (d) => seen.push(d) });
        expect(maxSeq).toBe(batch ? batch - 1 : 29); // sequences decoded together
        expect(r.per_clip.map((c) => c.file)).toEqual(corpusClips.map((c) => c.file));
        // every answer (sweep, flip, control) of the feature and the baseline, and the rates
        expect(r).toEqual(alone);
        // progress still counts clips: 0, then each of 6, for the feature and then the baseline
        expect(seen[0]).toBe(0);
        expect(seen.at(-1)).toBe(12);
        expect(seen.every((d, i) => i === 0 || d >= seen[i - 1]!)).toBe(true);
      }
      await expect(steeringExperiment({ model, sae, run: run3, layer: LAYER, corpus, corpusClips, feature: F, values: [1], batch: 0 })).rejects.toThrow('steering: batch 0 must be a positive integer');
    } finally {
      watch.remove();
    }
    expect(model.hooks.size).toBe(0);
  }, 180_000);

  it('CLI: a summary with the three rates and steering.json; bad input gives one-line errors', () => {
    const base = ['steer-experiment', '--run', run, '--layer', String(LAYER), '--model', modelDir, '--prompt', Q, '--max-tokens', '3'];
    const ok = runCli([...base, '--from', 'female speech', '--expect', 'male', '--values', '0,40', '--units', 'raw', '--force']);
    expect(ok.stderr.filter((l) => /error/.test(l))).toEqual([]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^feature #17 \(male speech\) at layer 0, add: 'female speech' clips of split 'test' → 'male'/);
    expect(ok.stdout).toMatch(/\n  feature +\d+ % +\d+ % +over 2 clips\n/);
    expect(ok.stdout).toMatch(/\n  neuron +\d+ % +\d+ % +neuron \d+: /);
    expect(ok.stdout).toMatch(/\n  random +\d+ % +\d+ % +a random unit direction \(Gaussian, seed 0\)/);
    const doc = JSON.parse(fs.readFileSync(path.join(run, 'steering.json'), 'utf8'));
    expect(doc).toMatchObject({ values: [0, 40], value_unit: 1, clips: 2 });
    expect(doc.baselines).toHaveLength(2);

    const json = runCli([...base, '--from', 'female speech', '--expect', 'male', '--values', '0,40', '--units', 'raw', '--json']);
    expect(json.code).toBe(0);
    const j = JSON.parse(json.stdout);
    expect(j).toMatchObject({ skipped: true, feature: F, flip_rate: doc.flip_rate, file: path.join(run, 'steering.json') });
    expect(j.baselines.map((b: any) => [b.kind, b.flip_rate])).toEqual(doc.baselines.map((b: any) => [b.kind, b.flip_rate]));

    const bad = (args: string[], re: RegExp, code = 1) => {
      const r = runCli([...base, ...args]);
      expect(r.code).toBe(code);
      expect(r.stderr).toHaveLength(1);
      expect(r.stderr[0]).toMatch(re);
    };
    bad(['--from', 'cat', '--expect', 'male'], /^error: .*manifest\.json: no clip is labelled 'cat' \(labels: 'cough', 'dog', /);
    // no feature named for the target, nor for the source concept (else it would be suppressed)
    bad(['--from', 'cough', '--expect', 'banana'], /^error: .*features-0\.json: no feature is named 'banana' or 'cough' \(pass a feature\)$/);
    bad(['--expect', 'male'], /^error: --from <label> is required$/, 2);
    bad(['--from', 'female speech', '--expect', 'male', '--batch', '0'], /^error: --batch: expected an integer ≥ 1, got '0'$/, 2);
  }, 180_000);
});
