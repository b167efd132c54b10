// Steering on the tiny Qwen2-Audio fixture with a small random SAE: 'add 0' is the unsteered run
// bit for bit, large values change the answer, 'set' gives the re-encoded residual z_F = value,
// 'audio' positions touch only the audio rows, and the gender experiment writes steering.json.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeWav } from '../src/audio/wav.js';
import {
  addSteeringHook,
  answerSays,
  chooseGenderFeature,
  featureActivation,
  steerCommand,
  steerGenerate,
  steerSweep,
  steeringExperiment,
  type SteeringCandidate,
} from '../src/ard/steer.js';
import type { FeatureEntry } from '../src/ard/rank.js';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { askDetailed, buildChatPrompt } from '../src/model/chat.js';
import { generate } from '../src/model/generate.js';
import { loadAudioLLM } from '../src/model/load.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { clone } from '../src/tensor/ops/elementwise.js';
import { keep } from '../src/tensor/scope.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { getEngine, randn } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

const D = 64;
const M = 256;
const K = 8;
const F = 17; // the steered feature (its encoder bias is raised so that it fires on every row)
const LAYER = 0;

let engine: Engine;
let model: AudioLLM;
let modelDir: string;
let sae: SparseAutoencoder;
let wdec: Float32Array;
let scale: number;
let tmp: string;
const clip = randn(16000, 5, 0.2);
const Q = 'What is it?';

/** Each (step, rows) residual seen by a hook at LAYER, on the host. */
type Seen = { step: number; start: number; rows: number; x: Float32Array }[];
function recorder(into: Tensor[], meta: { step: number; start: number; rows: number }[]) {
  return (r: Tensor, ctx: { step: number; start: number; rows: number }) => {
    into.push(keep(clone(r)));
    meta.push({ step: ctx.step, start: ctx.start, rows: ctx.rows });
  };
}
async function collect(ts: Tensor[], meta: { step: number; start: number; rows: number }[]): Promise<Seen> {
  const out: Seen = [];
  for (let i = 0; i < ts.length; i++) {
    out.push({ ...meta[i]!, x: (await ts[i]!.read()) as Float32Array });
    ts[i]!.dispose();
  }
  return out;
}

beforeAll(async () => {
  engine = await getEngine();
  modelDir = tinyModelDir();
  model = await loadAudioLLM(engine, modelDir);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-steer-'));
  // input scale as training would choose it: E‖x·s‖² = d on this clip's residuals
  const ts: Tensor[] = [];
  const meta: { step: number; start: number; rows: number }[] = [];
  const h = model.hooks.add({ layer: LAYER, fn: recorder(ts, meta) });
  await askDetailed(model, clip, Q, { maxNewTokens: 1 });
  h.remove();
  const x = (await collect(ts, meta))[0]!.x;
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
});

afterAll(() => {
  sae?.dispose();
  model?.dispose();
  for (const d of [tmp, modelDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

describe('steering hooks', () => {
  it("'add' with value 0 is bit-identical to no steering; a large value changes the answer; nothing leaks", async () => {
    const before = engine.memory().liveBytes;
    const plain = await askDetailed(model, clip, Q, { maxNewTokens: 8 });
    const zero = await steerGenerate({ model, sae, layer: LAYER, feature: F, value: 0, mode: 'add', audio: clip, question: Q, maxNewTokens: 8, seed: 0 });
    expect(zero.promptIds).toEqual(plain.promptIds);
    expect(zero.tokens).toEqual(plain.tokens);
    expect(zero.answer).toBe(plain.text);
    const big = await steerGenerate({ model, sae, layer: LAYER, feature: F, value: 60, mode: 'add', audio: clip, question: Q, maxNewTokens: 8 });
    expect(big.tokens).not.toEqual(plain.tokens);
    const set = await steerGenerate({ model, sae, layer: 0, feature: F, value: 60, mode: 'set', positions: 'audio', audio: clip, question: Q, maxNewTokens: 8 });
    expect(set.tokens).not.toEqual(plain.tokens);
    expect(model.hooks.size).toBe(0);
    expect(engine.memory().liveBytes).toBe(before);
  });

  it("'set' moves each row by (value − z_F)·W_dec[F]/s and the re-encoded residual has z_F = value", async () => {
    const value = 8;
    const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(clip.length)], Q, { audioTokenIndex: model.audioTokenIndex });
    const feats = model.encodeAudio(clip);
    const preT: Tensor[] = [];
    const postT: Tensor[] = [];
    const zPreT: Tensor[] = [];
    const zPostT: Tensor[] = [];
    const meta: { step: number; start: number; rows: number }[] = [];
    const meta2: typeof meta = [];
    const hooks = [
      model.hooks.add({ layer: LAYER, fn: (r, ctx) => void (recorder(preT, meta)(r, ctx), zPreT.push(keep(featureActivation(sae, r, F)))) }),
      addSteeringHook(model, { sae, layer: LAYER, feature: F, value, mode: 'set', positions: 'all', promptIds: ids }),
      model.hooks.add({ layer: LAYER, fn: (r, ctx) => void (recorder(postT, meta2)(r, ctx), zPostT.push(keep(featureActivation(sae, r, F)))) }),
    ];
    try {
      await generate(model, { ids, audio: feats }, { maxNewTokens: 4 });
    } finally {
      hooks.forEach((h) => h.remove());
      feats.dispose();
    }
    const pre = await collect(preT, meta);
    const post = await collect(postT, meta2);
    const zPre = await collect(zPreT, meta);
    const zPost = await collect(zPostT, meta2);
    expect(pre.map((p) => p.step)).toEqual([0, 1, 2, 3]); // prefill + each fed-back token
    let moved = 0;
    let worstZ = 0;
    let worstX = 0;
    for (let s = 0; s < pre.length; s++) {
      const rows = pre[s]!.rows;
      for (let r = 0; r < rows; r++) {
        const z0 = zPre[s]!.x[r]!;
        expect(z0).toBeGreaterThan(0); // F fires everywhere (raised bias): the exact case
        if (Math.abs(z0 - value) > 0.1) moved++;
        worstZ = Math.max(worstZ, Math.abs(zPost[s]!.x[r]! - value));
        for (let c = 0; c < D; c++) {
          const want = pre[s]!.x[r * D + c]! + ((value - z0) * wdec[F * D + c]!) / scale;
          worstX = Math.max(worstX, Math.abs(post[s]!.x[r * D + c]! - want) / (1 + Math.abs(want)));
        }
      }
    }
    const total = pre.reduce((a, p) => a + p.rows, 0);
    console.log(`set: ${total} rows, ${moved} moved by > 0.1, max |z_F' − value| = ${worstZ.toExponential(2)}, max residual error ${worstX.toExponential(2)}`);
    expect(moved).toBeGreaterThan(total * 0.9);
    expect(worstZ).toBeLessThan(1e-3);
    expect(worstX).toBeLessThan(1e-5);
  });

  it("positions 'audio' edits only the audio rows of the prompt pass", async () => {
    const value = 5;
    const ids = buildChatPrompt(model.tokenizer!, [model.audioTokens(clip.length)], Q, { audioTokenIndex: model.audioTokenIndex });
    const feats = model.encodeAudio(clip);
    const preT: Tensor[] = [];
    const postT: Tensor[] = [];
    const meta: { step: number; start: number; rows: number }[] = [];
    const meta2: typeof meta = [];
    const hooks = [
      model.hooks.add({ layer: 1, fn: recorder(preT, meta) }),
      addSteeringHook(model, { sae, layer: 1, feature: F, value, mode: 'add', positions: 'audio', promptIds: ids }),
      model.hooks.add({ layer: 1, fn: recorder(postT, meta2) }),
    ];
    try {
      await generate(model, { ids, audio: feats }, { maxNewTokens: 3 });
    } finally {
      hooks.forEach((h) => h.remove());
      feats.dispose();
    }
    const pre = await collect(preT, meta);
    const post = await collect(postT, meta2);
    expect(pre[0]!.rows).toBe(ids.length);
    let audioRows = 0;
    for (let r = 0; r < ids.length; r++) {
      const a = pre[0]!.x.subarray(r * D, (r + 1) * D);
      const b = post[0]!.x.subarray(r * D, (r + 1) * D);
      if (ids[r] === model.audioTokenIndex) {
        audioRows++;
        for (let c = 0; c < D; c++) expect(b[c]! - a[c]!).toBeCloseTo((value * wdec[F * D + c]!) / scale, 4);
      } else expect(Array.from(b)).toEqual(Array.from(a)); // bit for bit
    }
    expect(audioRows).toBe(25);
    expect(post.length).toBeGreaterThan(1);
    for (let s = 1; s < post.length; s++) expect(Array.from(post[s]!.x)).toEqual(Array.from(pre[s]!.x));
  });

  it('rejects bad specs with one-line errors', () => {
    const base = { sae, layer: 0, feature: F, value: 1 };
    expect(() => addSteeringHook(model, { ...base, feature: M })).toThrow(/feature 256 is outside the SAE's 0–255/);
    expect(() => addSteeringHook(model, { ...base, layer: 2 })).toThrow(/layer 2 out of range/);
    expect(() => addSteeringHook(model, { ...base, mode: 'mul' as any })).toThrow(/mode 'mul'/);
    expect(() => addSteeringHook(model, { ...base, positions: 'audio' })).toThrow(/needs the prompt's token ids/);
    expect(() => addSteeringHook(model, { ...base, value: NaN })).toThrow(/not a finite number/);
    expect(model.hooks.size).toBe(0);
  });
});

describe('answers and feature choice', () => {
  it('answerSays parses the target word carefully', () => {
    expect(answerSays('Male.', 'male')).toBe(true);
    expect(answerSays('The speaker is a man.', 'male')).toBe(true);
    expect(answerSays('Two men are talking', 'male')).toBe(true);
    expect(answerSays('The speaker is female.', 'male')).toBe(false);
    expect(answerSays('a woman', 'male')).toBe(false);
    expect(answerSays('It is not a male voice', 'male')).toBe(false);
    expect(answerSays("isn't male", 'male')).toBe(false);
    expect(answerSays('male or female, hard to say', 'male')).toBe(false);
    expect(answerSays('The speaker is female', 'female')).toBe(true);
    expect(answerSays('malevolent', 'male')).toBe(false);
  });

  const feat = (id: number, name?: string): FeatureEntry => ({ id, ...(name ? { name } : {}), scores: {} as any, H: [], L: [] });
  it('prefers raising a male-named feature, else suppresses the female one', () => {
    const both = chooseGenderFeature([feat(1, 'dog barking'), feat(7, 'female speech'), feat(9, 'a man talking'), feat(11, 'male speech')], 'male', [0, 5, 10]);
    expect(both).toMatchObject({ feature: 9, mode: 'add', values: [0, 5, 10] });
    const fem = chooseGenderFeature([feat(1, 'dog barking'), feat(2, 'male and female voices'), feat(7, 'a woman speaking')], 'male', [0, 5, 10]);
    expect(fem).toMatchObject({ feature: 7, mode: 'set', values: [0, -5, -10] });
    expect(Object.is(fem!.values[0], -0)).toBe(false);
    expect(fem!.strategy).toMatch(/suppress/);
    expect(chooseGenderFeature([feat(1, 'dog barking'), feat(2)], 'male', [1])).toBeNull();
  });
});

describe('sweeps, the CLI entry and the experiment', () => {
  it('steerSweep and steerCommand: one answer per value, value 0 = the baseline', async () => {
    const wav = path.join(tmp, 'one.wav');
    writeWav(wav, clip);
    const run = path.join(tmp, 'run-cmd');
    fs.mkdirSync(run, { recursive: true });
    await sae.save(path.join(run, `sae-${LAYER}.safetensors`));
    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify({ layer: LAYER, features: [{ id: F, name: 'test tone', scores: {}, H: [], L: [] }] }));
    const s = await steerCommand({ engine, modelDir, run, layer: LAYER, feature: F, values: [0, 60], prompt: Q, wav, maxNewTokens: 6 });
    expect(s.name).toBe('test tone');
    expect(s.values.map((v) => v.value)).toEqual([0, 60]);
    expect(s.values[0]!.answer).toBe(s.baseline);
    const direct = await steerSweep({ model, sae, layer: LAYER, feature: F, values: [0, 60], audio: wav, question: Q, maxNewTokens: 6 });
    expect(direct.values.map((v) => v.answer)).toEqual(s.values.map((v) => v.answer)); // the saved SAE steers the same
    expect(s.values[1]!.answer).not.toBe(s.baseline);
  });

  it('a sweep decodes its values together, each answer as steering that value alone', async () => {
    for (const [mode, positions, values] of [['add', 'all', [0, 20, 60, -40]], ['set', 'audio', [0, 5, 30]]] as const) {
      const sweep = await steerSweep({ model, sae, layer: LAYER, feature: F, values, mode, positions, audio: clip, question: Q, maxNewTokens: 6 });
      for (const v of sweep.values) {
        const one = await steerGenerate({ model, sae, layer: LAYER, feature: F, value: v.value, mode, positions, audio: clip, question: Q, maxNewTokens: 6 });
        expect(v.answer, `${mode} ${positions} ${v.value}`).toBe(one.answer);
      }
      if (mode === 'add') expect(new Set(sweep.values.map((v) => v.answer)).size).toBeGreaterThan(1);
    }
  });

  it('the gender experiment writes steering.json (male-named feature, then the female fallback)', async () => {
    const run = path.join(tmp, 'run-exp');
    const corpus = path.join(tmp, 'corpus');
    fs.mkdirSync(path.join(corpus, 'clips'), { recursive: true });
    const clips = [0, 1, 2].map((i) => {
      const file = `clips/s${i}.wav`;
      writeWav(path.join(corpus, file), randn(12000 + 2000 * i, 40 + i, 0.2));
      return { file, gender: i === 1 ? 'male' : 'female' };
    });
    const names = (male: boolean) => ({
      layer: LAYER,
      features: [
        { id: 3, name: 'dog barking', scores: {}, H: [], L: [] },
        { id: F, name: 'female speech', scores: {}, H: [], L: [] },
        ...(male ? [{ id: 40, name: 'a man talking', scores: {}, H: [], L: [] }] : []),
      ],
    });
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify(names(true)));
    const r = await steeringExperiment({ model, sae, run, layer: LAYER, corpusClips: clips, corpus, values: [0, 60], maxNewTokens: 6 });
    const doc = JSON.parse(fs.readFileSync(path.join(run, 'steering.json'), 'utf8'));
    for (const key of ['feature', 'name', 'layer', 'mode', 'values', 'question', 'target', 'flip_rate', 'unchanged_rate', 'clips', 'per_clip', 'sweeps', 'strategy']) expect(doc).toHaveProperty(key);
    expect(doc).toMatchObject({ feature: 40, name: 'a man talking', mode: 'add', values: [0, 60], question: 'What is the gender of the speaker?', target: 'male', clips: 2 });
    expect(doc.per_clip.map((c: any) => c.file)).toEqual(['clips/s0.wav', 'clips/s2.wav']); // female clips only
    for (const c of doc.per_clip) {
      expect(c.answers.map((a: any) => a.value)).toEqual([0, 60]);
      expect(c.answers[0].answer).toBe(c.baseline); // add 0 = unsteered
      const flips = !answerSays(c.baseline, 'male') && c.answers.some((a: any) => answerSays(a.answer, 'male'));
      expect(c.flipped).toBe(flips);
      expect(c.control.value).toBe(c.flip_value ?? 60);
    }
    expect(doc.flip_rate).toBe(doc.per_clip.filter((c: any) => c.flipped).length / 2);
    expect(doc.unchanged_rate).toBe(doc.per_clip.filter((c: any) => c.control.unchanged).length / 2);
    const sw = doc.sweeps[0];
    expect(sw).toMatchObject({ feature: 40, name: 'a man talking', layer: LAYER, target: 'male' });
    expect(sw.values).toHaveLength(2);
    expect(sw.values[1].answers).toEqual(doc.per_clip.map((c: any) => c.answers[1].answer));
    expect(r.flip_rate).toBe(doc.flip_rate);
    // the steered feature really acts: the answers at 60 are not the baseline ones
    expect(doc.per_clip.some((c: any) => c.answers[1].answer !== c.baseline)).toBe(true);

    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify(names(false)));
    const r2 = await steeringExperiment({ model, sae, run, layer: LAYER, corpusClips: clips, corpus, values: [0, 60], maxNewTokens: 4 });
    expect(r2).toMatchObject({ feature: F, name: 'female speech', mode: 'set', values: [0, -60] });
    expect(r2.strategy).toMatch(/suppress/);
    const doc2 = JSON.parse(fs.readFileSync(path.join(run, 'steering.json'), 'utf8'));
    expect(doc2.feature).toBe(F);
    // set to 0 on a feature that fires everywhere moves the residual: some answer changes
    expect(doc2.per_clip.some((c: any) => c.answers.some((a: any) => a.answer !== c.baseline))).toBe(true);

    // values in the feature's own units: scaled by its largest clip-mean activation
    const scaled = names(true);
    (scaled.features[2]!.scores as Record<string, number>) = { maxMean: 7.5 };
    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify(scaled));
    const r3 = await steeringExperiment({ model, sae, run, layer: LAYER, corpusClips: clips, corpus, values: [0, 8], valuesInFeatureUnits: true, maxNewTokens: 6 });
    expect(r3).toMatchObject({ feature: 40, values: [0, 60], value_unit: 7.5 });
    expect(r3.strategy).toMatch(/units of the feature's largest clip-mean activation, 7\.5/);
    // the same sweep as values [0, 60] given directly (the first experiment above)
    expect(r3.per_clip.map((c) => c.answers.map((a) => a.answer))).toEqual(r.per_clip.map((c) => c.answers.map((a) => a.answer)));
    await expect(steeringExperiment({ model, sae, run, layer: LAYER, corpusClips: clips, corpus, feature: 3, values: [1], valuesInFeatureUnits: true })).rejects.toThrow(/no activation scale for feature 3/);

    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify({ layer: LAYER, features: [{ id: 3, name: 'dog barking', scores: {}, H: [], L: [] }] }));
    await expect(steeringExperiment({ model, sae, run, layer: LAYER, corpusClips: clips, corpus, values: [1] })).rejects.toThrow(/no feature is named 'male'/);
  });

  it('compares several named candidates on selection clips and steers the best on the scored clips', async () => {
    const run = path.join(tmp, 'run-sel');
    const corpus = path.join(tmp, 'corpus-sel');
    fs.mkdirSync(path.join(corpus, 'clips'), { recursive: true });
    const clip = (i: number, gender: string) => {
      const file = `clips/c${i}.wav`;
      writeWav(path.join(corpus, file), randn(10000 + 1500 * i, 70 + i, 0.2));
      return { file, gender };
    };
    const scored = [clip(0, 'female'), clip(1, 'female')];
    const selection = [clip(2, 'female'), clip(3, 'male'), clip(4, 'female')];
    const cands = [{ id: 40, name: 'male speech' }, { id: F, name: 'a man talking' }, { id: 9, name: 'male voice' }];
    fs.mkdirSync(run, { recursive: true });
    fs.writeFileSync(path.join(run, `features-${LAYER}.json`), JSON.stringify({ layer: LAYER, features: [{ id: 3, name: 'female speech', scores: {}, H: [], L: [] }, ...cands.map((c) => ({ ...c, scores: {}, H: [], L: [] }))] }));
    const base = { model, sae, run, layer: LAYER, corpus, values: [0, 60], maxNewTokens: 6 };
    const seen: [number, number][] = [];
    const r = await steeringExperiment({ ...base, corpusClips: scored, selectionClips: selection, maxCandidates: 2, onProgress: (d, t) => seen.push([d, t]) });
    // progress counts the 2 candidates × 2 selection clips, then the 2 scored clips, in one total
    expect(seen.every(([, t]) => t === 6)).toBe(true);
    expect(seen.map(([d]) => d)).toEqual([0, 1, 2, 2, 3, 4, 4, 5, 6]);
    expect(JSON.parse(fs.readFileSync(path.join(run, 'steering.json'), 'utf8')).selection.candidates).toHaveLength(2);
    // the first two male-named features, each swept over the selection's female clips
    expect(r.selection!.clips).toBe(2);
    expect(r.selection!.candidates.map((c) => c.feature)).toEqual([40, F]);
    for (const c of r.selection!.candidates) {
      const alone = await steeringExperiment({ ...base, corpusClips: selection, feature: c.feature });
      expect([c.flip_rate, c.unchanged_rate, c.clips]).toEqual([alone.flip_rate, alone.unchanged_rate, 2]);
    }
    const [a, b] = r.selection!.candidates as [SteeringCandidate, SteeringCandidate];
    const better = b.flip_rate > a.flip_rate || (b.flip_rate === a.flip_rate && b.unchanged_rate > a.unchanged_rate) ? b : a;
    expect(r.feature).toBe(better.feature);
    expect(r.clips).toBe(2);
    expect(r.per_clip.map((c) => c.file)).toEqual(scored.map((c) => c.file));
    // one candidate, or no selection clips: no comparison
    expect((await steeringExperiment({ ...base, corpusClips: scored })).selection).toBeUndefined();
    expect((await steeringExperiment({ ...base, corpusClips: scored, selectionClips: selection, maxCandidates: 1 })).selection!.candidates).toHaveLength(1);
  });
});
