// Training the AudioLLM with ardgpu's autograd, on a tiny corpus and a tiny model: the instruction
// data, the training forward against the inference path, a directional gradient check, loss going
// down, exact resume, export/load, and flat memory across steps.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav } from '../src/audio/wav.js';
import { makeCorpus } from '../src/corpus/make-corpus.js';
import { CONCEPT_LABELS, readManifest, type ManifestEntry } from '../src/corpus/manifest.js';
import type { Engine } from '../src/gpu/engine.js';
import { backward, param, zeroGrad } from '../src/tensor/autograd.js';
import { add, mul } from '../src/tensor/ops/elementwise.js';
import { sum } from '../src/tensor/ops/reduce.js';
import { AdamW } from '../src/tensor/optim.js';
import { tidy } from '../src/tensor/scope.js';
import { tensor, type Tensor } from '../src/tensor/tensor.js';
import { buildChatPrompt } from '../src/model/chat.js';
import { loadAudioLLM } from '../src/model/load.js';
import { Tokenizer } from '../src/model/tokenizer.js';
import {
  IGNORE, type LabelOrder, PROMPTS, batchClips, clipQAs, epochPool, labelsAnswer, encodeConversation, parseGender, parseLabels, parseYesNo, checkQuestionWeights, pickQuestions, questionOrder, templateIds, trainTokenizer,
} from '../src/train/data.js';
import { DEFAULT_DIMS, type ModelDims, frontendFor, initWeights, makeConfig, trainableWeights } from '../src/train/dims.js';
import { lossSvg, stageCommands, writeModelDir } from '../src/train/export.js';
import {
  AUX_BIAS, AUX_WEIGHT, type AuxPool, auxLogits, auxLoss, encodeTrainBatch, initAux, packBatch, packShared, trainLogits, trainLoss,
} from '../src/train/forward.js';
import { cachedMels, lrAt, trainAudioLLM } from '../src/train/run.js';
import { planMix } from '../src/train/mix.js';
import { gradCheck } from './gradcheck.js';
import { expectClose, getEngine, randn } from './helpers.js';

const TINY: Partial<ModelDims> = { encDim: 32, encLayers: 1, encHeads: 2, encFfn: 64, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64 };

let engine: Engine;
let tmp: string;
let corpus: string;
let entries: ManifestEntry[];
let tok: Tokenizer;
let tokJson: string;

beforeAll(async () => {
  engine = await getEngine();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-train-'));
  corpus = path.join(tmp, 'corpus');
  entries = (await makeCorpus({ out: corpus, seed: 5, size: 40 })).entries;
  const train = entries.filter((e) => e.split === 'train');
  tokJson = JSON.stringify(trainTokenizer(train, 1024));
  tok = Tokenizer.fromJSON(JSON.parse(tokJson));
}, 60_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('instruction data', () => {
  it('orders the labels of the sounds answer as given or canonically (speech, then the concept list)', () => {
    const mix = ['rain', 'male speech', 'ticking', 'not a concept', 'alarm'];
    expect(labelsAnswer(mix)).toBe('rain, male speech, ticking, not a concept, alarm');
    // CONCEPT_LABELS: speech first; alarm, rain and ticking in the list's order; unknown labels last
    const i = (l: string) => CONCEPT_LABELS.indexOf(l);
    const known = ['male speech', 'rain', 'ticking', 'alarm'].sort((a, b) => i(a) - i(b));
    expect(labelsAnswer(mix, 'canonical')).toBe([...known, 'not a concept'].join(', '));
    expect(known[0]).toBe('male speech');
    // the answer depends on the set only
    expect(labelsAnswer(['ticking', 'rain'], 'canonical')).toBe(labelsAnswer(['rain', 'ticking'], 'canonical'));
    const e = { ...entries.find((x) => x.speech)!, labels: ['pink noise', 'female speech'] };
    expect(clipQAs(e, 'canonical').find((q) => q.kind === 'sounds')!.answer).toBe('female speech, pink noise');
    expect(clipQAs(e).find((q) => q.kind === 'sounds')!.answer).toBe('pink noise, female speech');
  });

  it('builds conversations in the chat template with loss on answers only', () => {
    const speech = entries.find((e) => e.speech)!;
    const quiet = entries.find((e) => !e.speech)!;
    expect(clipQAs(speech).map((q) => q.kind)).toEqual(['describe', 'gender', 'sounds', 'speaking']);
    expect(clipQAs(quiet).map((q) => q.kind)).toEqual(['describe', 'sounds', 'speaking']);
    expect(clipQAs(quiet).find((q) => q.kind === 'speaking')!.answer).toBe('no');
    // a recording outside the corpus's labels is asked only what is known of it
    const unlabelled = (e: ManifestEntry, gender: 'female' | 'male' | null): ManifestEntry => ({ ...e, labels: [], caption: '', gender, labelled: false });
    expect(clipQAs(unlabelled(quiet, null))).toEqual([{ kind: 'speaking', question: PROMPTS.speaking, answer: 'no' }]);
    expect(clipQAs(unlabelled(speech, null))).toEqual([{ kind: 'speaking', question: PROMPTS.speaking, answer: 'yes' }]);
    expect(clipQAs(unlabelled(speech, 'female')).map((q) => [q.kind, q.answer])).toEqual([['gender', 'female'], ['speaking', 'yes']]);
    const qas = questionOrder(3, 7, 0, clipQAs(speech));
    const c = encodeConversation(tok, 17, qas);
    // the first turn is exactly what inference feeds
    const prompt = buildChatPrompt(tok, [17], qas[0]!.question);
    expect(c.ids.slice(0, prompt.length)).toEqual(prompt);
    expect(c.answerRows[0]).toBe(prompt.length - 1);
    // the supervised tokens are the answers, each closed by <|im_end|>
    const { imEnd } = templateIds(tok);
    const sup = c.targets.filter((t) => t !== IGNORE);
    const pieces: string[] = [];
    let cur: number[] = [];
    for (const t of sup) {
      if (t === imEnd) {
        pieces.push(tok.decode(cur));
        cur = [];
      } else cur.push(t);
    }
    expect(cur).toEqual([]);
    expect(pieces).toEqual(qas.map((q) => q.answer));
    // targets are next tokens
    c.targets.forEach((t, i) => {
      if (t !== IGNORE) expect(t).toBe(c.ids[i + 1]);
    });
    expect(c.ids.filter((id) => id === templateIds(tok).audio).length).toBe(17);
  });

  it('reads answers back into labels, genders and yes/no', () => {
    expect(parseLabels('female speech, white noise', CONCEPT_LABELS)).toEqual(['female speech', 'white noise']);
    expect(parseLabels('male speech and rain', CONCEPT_LABELS)).toEqual(['male speech', 'rain']);
    expect(parseLabels('a low tone', CONCEPT_LABELS)).toEqual(['low tone']);
    expect(parseLabels('nothing I know', CONCEPT_LABELS)).toEqual([]);
    expect(parseGender('female')).toBe('female');
    expect(parseGender('male')).toBe('male');
    expect(parseGender('no idea')).toBe(null);
    expect(parseYesNo('Yes.')).toBe(true);
    expect(parseYesNo('no')).toBe(false);
    expect(parseYesNo('maybe')).toBe(null);
  });

  it('repeats mixtures in the epoch pool and rejects a bad repeat count', () => {
    expect(epochPool([1, 2, 1, 3], 1)).toEqual([0, 1, 2, 3]);
    const pool = epochPool([1, 2, 1, 3], 3);
    expect(pool).toEqual([0, 1, 1, 1, 2, 3, 3, 3]);
    // an epoch over the pool visits each mixture three times, each single once
    const seen = [0, 1, 2, 3].flatMap((s) => batchClips(4, s, 2, pool.length).map((i) => pool[i]!));
    expect([...seen].sort((a, b) => a - b)).toEqual(pool);
    expect(() => epochPool([1, 2], 0)).toThrow(/mixture repeat/);
    expect(() => epochPool([1, 2], 1.5)).toThrow(/mixture repeat/);
  });

  it('visits every clip once per epoch and schedules the learning rate', () => {
    const seen = [0, 1, 2, 3, 4].flatMap((s) => batchClips(9, s, 4, 20));
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(batchClips(9, 5, 4, 20)).not.toEqual(batchClips(9, 0, 4, 20));
    const qas = clipQAs(entries.find((e) => e.speech)!);
    const two = pickQuestions(9, 3, 1, qas, 2);
    expect(new Set(two.map((q) => q.kind)).size).toBe(2);
    expect(pickQuestions(9, 3, 1, qas, 9).map((q) => q.kind).sort()).toEqual(qas.map((q) => q.kind).sort());
    // over many steps every question gets asked
    const kinds = new Set<string>();
    for (let s = 0; s < 20; s++) for (const q of pickQuestions(9, s, 1, qas, 1)) kinds.add(q.kind);
    expect(kinds.size).toBe(4);
    // weighted draws: weight 0 is never asked, a heavy kind comes first most of the time, same draws for same seed
    let genderFirst = 0;
    for (let s = 0; s < 200; s++) {
      const q = pickQuestions(9, s, 1, qas, 2, { gender: 8, describe: 0 });
      expect(q.map((x) => x.kind)).not.toContain('describe');
      expect(q).toHaveLength(2);
      if (q[0]!.kind === 'gender') genderFirst++;
    }
    expect(genderFirst).toBeGreaterThan(140); // 8/(8+1+1) = 80 % expected
    expect(genderFirst).toBeLessThan(190);
    expect(pickQuestions(9, 4, 1, qas, 2, { gender: 3 })).toEqual(pickQuestions(9, 4, 1, qas, 2, { gender: 3 }));
    expect(() => checkQuestionWeights({ describe: 0, sounds: 0, speaking: 0 })).toThrow(/no question left/);
    expect(() => checkQuestionWeights({ colour: 1 } as never)).toThrow(/unknown question kind 'colour'/);
    expect(() => checkQuestionWeights({ gender: -1 })).toThrow(/gender must be a number/);
    expect(lrAt(0, 100, 1, 10, 0.1)).toBeCloseTo(0.1);
    expect(lrAt(9, 100, 1, 10, 0.1)).toBeCloseTo(1);
    expect(lrAt(99, 100, 1, 10, 0.1)).toBeGreaterThan(0.099);
    expect(lrAt(99, 100, 1, 10, 0.1)).toBeLessThan(0.11);
    expect(lrAt(55, 100, 1, 10, 0.1)).toBeCloseTo(0.55, 1);
  });
});

/** The tiny model's dims and config, with fresh weights (seeded) whose trainable ones are parameters. */
async function tinyTrainable(seed: number) {
  const dims = { ...(await import('../src/train/dims.js')).DEFAULT_DIMS, ...TINY };
  const config = makeConfig(dims, tok);
  const w = initWeights(engine, config, seed);
  const params = trainableWeights(w);
  for (const [n, t] of params) param(t, n);
  return { dims, config, w, params };
}

/** Two clips' conversations, packed, with their cached log-mels on the GPU. */
async function sampleBatch(config: ReturnType<typeof makeConfig>, picks: ManifestEntry[]) {
  const fe = frontendFor({ ...(await import('../src/train/dims.js')).DEFAULT_DIMS, ...TINY });
  const clips = await cachedMels(engine, corpus, picks, fe, config.audio_config.max_source_positions, path.join(tmp, `mels-${picks.length}.safetensors`));
  const convs = clips.map((c) => encodeConversation(tok, c.nAudio, clipQAs(c.entry)));
  const t = templateIds(tok);
  return { clips, convs, batch: packBatch(convs, t.endOfText, t.audio) };
}

describe('training forward', () => {
  it('matches the inference path of the loaded model (f32, 1e-4)', async () => {
    const dims = { ...(await import('../src/train/dims.js')).DEFAULT_DIMS, ...TINY };
    const config = makeConfig(dims, tok);
    const w = initWeights(engine, config, 11);
    const dir = path.join(tmp, 'f32-model');
    await writeModelDir(dir, w, config, frontendFor(dims), tokJson, { dtype: 'F32' });
    const model = await loadAudioLLM(engine, dir);
    // a speech clip and a shorter one, so the batch is padded
    const picks = [entries.find((e) => e.speech)!, [...entries].sort((a, b) => a.duration - b.duration)[0]!];
    const { clips, convs, batch } = await sampleBatch(config, picks);
    const mels = clips.map((c) => ({ mel: tensor(engine, c.mel, [dims.nMels, c.frames]), validFrames: c.validFrames }));
    const logits = tidy(() => trainLogits(engine, w, config, mels, batch, null));
    const got = await logits.toFloat32();
    logits.dispose();
    const V = config.text_config.vocab_size;
    let maxErr = 0;
    let maxAbs = 0;
    for (let b = 0; b < picks.length; b++) {
      const samples = readWav(path.join(corpus, picks[b]!.file)).samples;
      expect(model.audioTokens(samples.length)).toBe(clips[b]!.nAudio);
      const feats = model.encodeAudio(samples);
      const ref = model.forward(convs[b]!.ids, feats, { logits: 'all' })!;
      const want = await ref.toFloat32();
      feats.dispose();
      ref.dispose();
      for (let i = 0; i < want.length; i++) {
        maxErr = Math.max(maxErr, Math.abs(want[i]! - got[b * batch.L * V + i]!));
        maxAbs = Math.max(maxAbs, Math.abs(want[i]!));
      }
    }
    expect(maxAbs).toBeGreaterThan(0.05);
    expect(maxErr).toBeLessThan(1e-4);
    for (const m of mels) m.mel.dispose();
    model.dispose();
    for (const t of w.values()) t.dispose();
  }, 60_000);

  it('encodes clips packed as it encodes each alone: same features and gradients', async () => {
    const { dims, config, w, params } = await tinyTrainable(13);
    // three clips of different lengths (odd and even encoder step counts)
    const picks = [...entries].sort((a, b) => a.duration - b.duration);
    const { clips } = await sampleBatch(config, [picks[0]!, picks[Math.floor(picks.length / 2)]!, picks[picks.length - 1]!]);
    expect(new Set(clips.map((c) => c.nAudio)).size).toBe(3);
    const mels = clips.map((c) => ({ mel: tensor(engine, c.mel, [dims.nMels, c.frames]), validFrames: c.validFrames }));
    // L = Σ_c Σ r_c ⊙ features_c with fixed random r_c
    const r = clips.map((c, i) => tensor(engine, randn(c.nAudio * config.text_config.hidden_size, 90 + i), [c.nAudio, config.text_config.hidden_size]));
    const lossOf = (feats: Tensor[]) => feats.map((f, i) => sum(mul(f, r[i]!))).reduce((a, b) => add(a, b));
    const run = async (packed: boolean) => {
      const encode = () => (packed ? encodeTrainBatch(w, config, mels) : mels.map((m) => encodeTrainBatch(w, config, [m])[0]!));
      tidy(() => backward(lossOf(encode())));
      const out = { feats: [] as Float32Array[], grads: new Map<string, Float32Array>() };
      for (const [n, t] of params) if (t.grad) out.grads.set(n, await t.grad.toFloat32());
      zeroGrad([...params.values()]);
      const f = engine.noGradScope(() => tidy(encode));
      for (const t of f) {
        expect(t.shape).toEqual([clips[out.feats.length]!.nAudio, config.text_config.hidden_size]);
        out.feats.push(await t.toFloat32());
      }
      for (const t of f) t.dispose();
      return out;
    };
    const alone = await run(false);
    const packed = await run(true);
    packed.feats.forEach((f, i) => expectClose(f, alone.feats[i]!, 1e-5, 1e-5, `features of clip ${i}`));
    // every audio-side weight has a gradient, equal either way
    const audio = [...alone.grads.keys()].filter((n) => n.startsWith('audio_tower.') || n.startsWith('multi_modal_projector.'));
    expect(audio.length).toBeGreaterThan(10);
    for (const n of audio) expectClose(packed.grads.get(n)!, alone.grads.get(n)!, 1e-4, 1e-5, n);
    for (const t of [...mels.map((m) => m.mel), ...r]) t.dispose();
    for (const t of w.values()) t.dispose();
  }, 60_000);

  it('has gradients that agree with a finite difference of the loss', async () => {
    const { dims, config, w, params } = await tinyTrainable(12);
    const { clips, batch } = await sampleBatch(config, entries.filter((e) => e.split === 'train').slice(0, 2));
    const mels = () => clips.map((c) => ({ mel: tensor(engine, c.mel, [dims.nMels, c.frames]), validFrames: c.validFrames }));
    tidy(() => backward(trainLoss(engine, w, config, mels(), batch)));
    // direction: the gradient itself (normalised), so the directional derivative is |g|
    const host = new Map<string, { w: Float32Array; g: Float32Array }>();
    let sq = 0;
    for (const [n, t] of params) {
      const g = await t.grad!.toFloat32();
      host.set(n, { w: await t.toFloat32(), g });
      for (const x of g) sq += x * x;
    }
    const norm = Math.sqrt(sq);
    expect(norm).toBeGreaterThan(0);
    // every trainable tensor takes part
    for (const [n, h] of host) expect(h.g.some((x) => x !== 0), n).toBe(true);
    const eps = 1e-2;
    const lossAt = async (s: number) => {
      for (const [n, t] of params) {
        const h = host.get(n)!;
        engine.write(t.buffer, 0, h.w.map((x, i) => x + (s * eps * h.g[i]!) / norm));
      }
      const l = engine.noGradScope(() => tidy(() => trainLoss(engine, w, config, mels(), batch)));
      const v = await l.item();
      l.dispose();
      return v;
    };
    const fd = ((await lossAt(1)) - (await lossAt(-1))) / (2 * eps);
    expect(Math.abs(fd - norm) / norm).toBeLessThan(0.03);
    zeroGrad([...params.values()]);
    for (const t of w.values()) t.dispose();
  }, 60_000);
  it('shares each clip\'s prompt prefix: same loss and gradients as one full sequence per question', async () => {
    const { dims, config, w, params } = await tinyTrainable(14);
    // three clips of different lengths (left-padded prefixes), every question of each
    const picks = [...entries.filter((e) => e.split === 'train')].sort((a, b) => a.duration - b.duration);
    const chosen = [picks[0]!, picks[Math.floor(picks.length / 2)]!, picks.at(-1)!];
    const { clips } = await sampleBatch(config, chosen);
    const t = templateIds(tok);
    const convs: ReturnType<typeof encodeConversation>[] = [];
    const clipOf: number[] = [];
    clips.forEach((c, i) => clipQAs(c.entry).forEach((qa) => (convs.push(encodeConversation(tok, c.nAudio, [qa])), clipOf.push(i))));
    const full = packBatch(convs, t.endOfText, t.audio);
    const shared = packShared(convs, clipOf, t.endOfText, t.audio);
    expect(shared.prefix.B).toBe(3);
    expect(shared.S).toBe(convs.length);
    expect(Array.from(shared.targets)).toEqual(Array.from(full.targets));
    expect(shared.prefix.B * shared.prefix.L + shared.S * shared.Ls).toBeLessThan(full.B * full.L);
    const mels = () => clips.map((c) => ({ mel: tensor(engine, c.mel, [dims.nMels, c.frames]), validFrames: c.validFrames }));
    const run = async (batch: Parameters<typeof trainLoss>[4]) => {
      const l = tidy(() => {
        const x = trainLoss(engine, w, config, mels(), batch, clipOf);
        backward(x);
        return x;
      });
      const v = await l.item();
      l.dispose();
      const grads = new Map<string, Float32Array>();
      for (const [n, p] of params) grads.set(n, await p.grad!.toFloat32());
      zeroGrad([...params.values()]);
      return { v, grads };
    };
    const a = await run(full);
    const b = await run(shared);
    expect(Math.abs(a.v - b.v)).toBeLessThan(1e-5 * Math.abs(a.v));
    for (const [n, ga] of a.grads) {
      const gb = b.grads.get(n)!;
      let scale = 0;
      let err = 0;
      for (let i = 0; i < ga.length; i++) {
        scale = Math.max(scale, Math.abs(ga[i]!));
        err = Math.max(err, Math.abs(ga[i]! - gb[i]!));
      }
      expect(scale, n).toBeGreaterThan(0);
      expect(err, n).toBeLessThan(1e-4 * scale + 1e-7);
    }
    // conversations about one clip must agree up to the question
    const other = encodeConversation(tok, clips[1]!.nAudio, [clipQAs(clips[1]!.entry)[0]!]);
    expect(() => packShared([convs[0]!, other], [0, 0], t.endOfText, t.audio)).toThrow(/differ before the question/);
    expect(() => packShared([convs[0]!], [1], t.endOfText, t.audio)).toThrow(/no conversation about clip 0/);
    for (const t of w.values()) t.dispose();
  }, 60_000);
});

describe('auxiliary head', () => {
  // f64 reference of auxLogits: per clip, mean-pooled features through the head, or per-frame
  // logits z[t, c] pooled as Σ_t softmax_t(z[·, c])·z[t, c]
  const refLogits = (fs: Float64Array[], ns: number[], W: Float64Array, b: Float64Array, C: number, D: number, pool: AuxPool) => {
    const out = new Float64Array(ns.length * C);
    ns.forEach((n, i) => {
      const f = fs[i]!;
      for (let c = 0; c < C; c++) {
        const z = Array.from({ length: n }, (_, t) => { let s = b[c]!; for (let k = 0; k < D; k++) s += W[c * D + k]! * f[t * D + k]!; return s; });
        if (pool === 'mean') out[i * C + c] = z.reduce((a, x) => a + x, 0) / n;
        else {
          const mx = Math.max(...z);
          const e = z.map((x) => Math.exp(x - mx));
          const se = e.reduce((a, x) => a + x, 0);
          out[i * C + c] = z.reduce((a, x, t) => a + (e[t]! / se) * x, 0);
        }
      }
    });
    return out;
  };
  for (const pool of ['mean', 'frames'] as AuxPool[]) {
    it(`pools ${pool}: values and gradients against an f64 reference`, async () => {
      const C = 5, D = 6, ns = [7, 3, 1]; // clip lengths, one of a single frame
      const inputs = [
        ...ns.map((n, i) => ({ data: randn(n * D, 10 + i), shape: [n, D] })),
        { data: randn(C * D, 20).map((x) => x * 0.7), shape: [C, D] },
        { data: randn(C, 21).map((x) => x * 0.3), shape: [C] },
      ];
      await gradCheck(
        engine,
        inputs,
        (xs) => auxLogits(new Map([[AUX_WEIGHT, xs[ns.length]!], [AUX_BIAS, xs[ns.length + 1]!]]), xs.slice(0, ns.length), pool),
        (xs) => refLogits(xs.slice(0, ns.length), ns, xs[ns.length]!, xs[ns.length + 1]!, C, D, pool),
      );
    });
  }

  it('masks clips whose labels are unknown out of the loss: values and gradients against an f64 reference', async () => {
    const C = 4, D = 3, ns = [5, 2, 4];
    const targets = Float32Array.from({ length: ns.length * C }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
    const inputs = [
      ...ns.map((n, i) => ({ data: randn(n * D, 30 + i), shape: [n, D] })),
      { data: randn(C * D, 40).map((x) => x * 0.7), shape: [C, D] },
      { data: randn(C, 41).map((x) => x * 0.3), shape: [C] },
    ];
    const heads = (xs: Tensor[]) => new Map([[AUX_WEIGHT, xs[ns.length]!], [AUX_BIAS, xs[ns.length + 1]!]]);
    // mean binary cross-entropy over the kept clips' classes
    const ref = (xs: Float64Array[], mask: number[]) => {
      const z = refLogits(xs.slice(0, ns.length), ns, xs[ns.length]!, xs[ns.length + 1]!, C, D, 'mean');
      let s = 0;
      for (let i = 0; i < ns.length; i++) for (let c = 0; c < C; c++) {
        const v = z[i * C + c]!, y = targets[i * C + c]!;
        s += mask[i]! * (Math.log1p(Math.exp(-Math.abs(v))) + Math.max(v, 0) - y * v);
      }
      const kept = mask.reduce((a, b) => a + b, 0);
      return Float64Array.of(kept ? s / (kept * C) : 0);
    };
    for (const mask of [[1, 0, 1], [0, 1, 0], [1, 1, 1]]) {
      await gradCheck(engine, inputs, (xs) => auxLoss(engine, heads(xs), xs.slice(0, ns.length), targets, 'mean', Float32Array.from(mask)), (xs) => ref(xs, mask));
    }
    // no mask is the plain mean, and an all-zero mask gives 0
    await gradCheck(engine, inputs, (xs) => auxLoss(engine, heads(xs), xs.slice(0, ns.length), targets, 'mean'), (xs) => ref(xs, [1, 1, 1]));
    const ts = inputs.map((x) => tensor(engine, Float32Array.from(x.data), x.shape));
    const zero = auxLoss(engine, heads(ts), ts.slice(0, ns.length), targets, 'mean', new Float32Array(3));
    expect(await zero.item()).toBe(0);
    for (const t of [zero, ...ts]) t.dispose();
  });

  it('lets a short sound in a long clip count under frame pooling, not under the mean', async () => {
    // class 0 fires only in frame 2 of 40: the mean dilutes it, the softmax pool keeps it
    const D = 2, n = 40;
    const f = new Float32Array(n * D);
    f[2 * D] = 6;
    const w = new Map([[AUX_WEIGHT, tensor(engine, Float32Array.of(1, 0, 0, 1), [2, D])], [AUX_BIAS, tensor(engine, Float32Array.of(-2, -2), [2])]]);
    const feats = [tensor(engine, f, [n, D])];
    const read = async (pool: AuxPool) => {
      const z = auxLogits(w, feats, pool);
      const v = await z.toFloat32();
      z.dispose();
      return v;
    };
    const frames = await read('frames');
    const meanL = await read('mean');
    expect(frames[0]).toBeGreaterThan(2); // ≈ 4 − a little: the one frame dominates its softmax
    expect(meanL[0]).toBeCloseTo(-2 + 6 / n, 5);
    expect(frames[1]).toBeCloseTo(-2, 5); // class 1 is absent everywhere
    for (const t of [...w.values(), ...feats]) t.dispose();
  });
});

describe('training runs', () => {
  // mixRate: some slots get fresh mixtures, so resume exactness covers them too
  const base = () => ({ corpus, steps: 30, batch: 3, seed: 3, dims: TINY, engine, valEvery: 10, checkpointEvery: 5, lr: 3e-3, warmup: 3, mixRate: 0.5 });

  it('lowers the loss, resumes exactly, and exports a loadable f16 model', async () => {
    const outA = path.join(tmp, 'run-a');
    const a = await trainAudioLLM({ ...base(), out: outA });
    const losses = a.records.map((r) => r.loss);
    expect(losses).toHaveLength(30);
    const head = losses.slice(0, 5).reduce((s, x) => s + x, 0) / 5;
    const tail = losses.slice(-5).reduce((s, x) => s + x, 0) / 5;
    expect(tail).toBeLessThan(head - 1);
    expect(a.records.filter((r) => r.valLoss !== undefined)).toHaveLength(3);

    // interrupted after step 8 (checkpoints at 5 and at the stop), then resumed
    const outB = path.join(tmp, 'run-b');
    const b1 = await trainAudioLLM({ ...base(), out: outB, stopAfter: 8 });
    expect(b1.exported).toBe(false);
    expect(fs.existsSync(path.join(outB, 'model.safetensors'))).toBe(false);
    const b2 = await trainAudioLLM({ ...base(), out: outB, resume: true });
    expect(b2.records.map((r) => [r.step, r.loss, r.auxLoss, r.gradNorm, r.valLoss])).toEqual(a.records.map((r) => [r.step, r.loss, r.auxLoss, r.gradNorm, r.valLoss]));
    expect(fs.readFileSync(path.join(outB, 'model.safetensors'))).toEqual(fs.readFileSync(path.join(outA, 'model.safetensors')));
    // resuming a run with other settings is refused
    await expect(trainAudioLLM({ ...base(), out: outB, resume: true, lr: 1e-3 })).rejects.toThrow(/other settings/);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-bad'), mixRate: 1.5 })).rejects.toThrow(/--mix-rate must be from 0 to 1 \(got 1\.5\)/);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-bad'), auxPool: 'max' as AuxPool })).rejects.toThrow(/--aux-pool must be mean or frames \(got max\)/);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-bad'), labelOrder: 'loudness' as LabelOrder })).rejects.toThrow(/--label-order must be given or canonical \(got loudness\)/);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-bad'), levelJitter: [6, -24] })).rejects.toThrow(/--level-jitter must be LO,HI dB with -40 ≤ LO ≤ HI ≤ 20 \(got 6,-24\)/);
    // --level-jitter changes what the model hears: the same first batch at other levels gives another loss
    const jit = await trainAudioLLM({ ...base(), out: path.join(tmp, 'run-jitter'), levelJitter: [-24, 6], stopAfter: 1 });
    expect(jit.records).toHaveLength(1);
    expect(jit.records[0]!.loss).not.toBe(a.records[0]!.loss);
    // and those runs did mix: some of the 30 × 3 slots became mixtures
    const trainLabels = readManifest(corpus).filter((e) => e.split === 'train').map((e) => e.labels);
    const pool = epochPool(trainLabels.map((l) => l.length), 1);
    let mixed = 0;
    for (let step = 0; step < 30; step++) {
      batchClips(3, step, 3, pool.length).forEach((i, slot) => {
        if (planMix(3, step, slot, pool[i]!, trainLabels, 0.5)) mixed++;
      });
    }
    expect(mixed).toBeGreaterThan(5);

    // the export: f16 tensors under HF names that the loader accepts, with the tokenizer's vocabulary
    const st = (await import('../src/io/safetensors.js')).openSafetensors(path.join(outA, 'model.safetensors'));
    expect([...st.tensors.values()].every((t) => t.dtype === 'F16')).toBe(true);
    expect(st.tensors.has('language_model.model.layers.1.self_attn.k_proj.bias')).toBe(true);
    expect(st.tensors.has('audio_tower.layers.0.self_attn.k_proj.bias')).toBe(false);
    // the auxiliary label head is trained but never exported; it starts from the labels' prior
    // (a zero bias would start every class at p = 0.5, a loss of ln 2 ≈ 0.69)
    expect([...st.tensors.keys()].some((n) => n.startsWith('aux.'))).toBe(false);
    const aux = a.records.map((r) => r.auxLoss!);
    expect(aux.every((x) => Number.isFinite(x) && x < 0.45)).toBe(true);
    st.close();
    const model = await loadAudioLLM(engine, outA);
    expect(model.config.text_config.vocab_size).toBe(tok.vocabSize);
    expect(model.tokenizer?.vocabSize).toBe(tok.vocabSize);
    expect(model.generation.eosTokenIds).toContain(templateIds(tok).imEnd);
    expect(model.windowSamples).toBe(64000);
    const { ask } = await import('../src/model/chat.js');
    const text = await ask(model, path.join(corpus, entries[0]!.file), PROMPTS.speaking, { maxNewTokens: 4 });
    expect(typeof text).toBe('string');
    model.dispose();
    expect(fs.readFileSync(path.join(outA, 'loss.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<path d="M/);
    expect(fs.readFileSync(path.join(outA, 'train-log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(30);

    // a second stage starts from the exported model: with a negligible learning rate its export is the same model
    const outC = path.join(tmp, 'run-c');
    const c = await trainAudioLLM({ ...base(), out: outC, steps: 2, lr: 1e-12, warmup: 1, initFrom: outA, questionWeights: { gender: 4 } });
    expect(c.exported).toBe(true);
    expect(fs.readFileSync(path.join(outC, 'tokenizer.json'), 'utf8')).toBe(fs.readFileSync(path.join(outA, 'tokenizer.json'), 'utf8'));
    const sa = (await import('../src/io/safetensors.js')).openSafetensors(path.join(outA, 'model.safetensors'));
    const sc = (await import('../src/io/safetensors.js')).openSafetensors(path.join(outC, 'model.safetensors'));
    for (const name of ['language_model.model.embed_tokens.weight', 'audio_tower.conv1.weight', 'multi_modal_projector.linear.weight']) {
      expect(sc.readFloat32(name)).toEqual(sa.readFloat32(name));
    }
    sa.close();
    sc.close();
    // its README lists the earlier stage's command first and says which stage it is
    const { evalModel } = await import('../src/train/eval-model.js');
    const { writeWeightsReadme } = await import('../src/train/export.js');
    const ev = await evalModel({ engine, model: outC, corpus, split: 'test', maxClips: 2, latencyClips: 1 });
    writeWeightsReadme(outC, { command: 'npx tsx tools/train-audiollm.ts --stage-2', previousCommands: ['npx tsx tools/train-audiollm.ts --stage-1'], result: c, eval: ev, adapter: 'test' });
    const readme = fs.readFileSync(path.join(outC, 'README.md'), 'utf8');
    expect(readme).toMatch(/```\nnpx tsx tools\/train-audiollm\.ts --stage-1\nnpx tsx tools\/train-audiollm\.ts --stage-2\n```/);
    expect(readme).toMatch(/Stage 2, the last command: it starts from the stage-1 model \(its README is kept as README\.stage1\.md/);
    expect(readme).toMatch(/weighted gender 4, others 1/);
    // recall split by labels per clip adds up to the total
    const bc = Object.values(ev.labels.byLabelCount);
    expect(bc.reduce((a, c) => a + c.clips, 0)).toBe(2);
    expect(bc.reduce((a, c) => a + c.found, 0)).toBe(ev.labels.truePositives);
    expect(bc.reduce((a, c) => a + c.labels, 0)).toBe(ev.labels.truePositives + ev.labels.falseNegatives);
    expect(readme).toMatch(/label recall on clips with \d label/);
    // its first loss is the trained model's, far below a fresh model's
    expect(c.records[0]!.loss).toBeLessThan(a.records[0]!.loss - 1);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-d'), steps: 2, initFrom: outA, dims: { ...TINY, hidden: TINY.hidden * 2 } })).rejects.toThrow(/model\.safetensors: .* values, the model needs/);
    // a shallower model cannot start from it (its extra layers would be dropped)
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-d'), steps: 2, initFrom: outA, dims: { ...TINY, layers: TINY.layers! - 1 } })).rejects.toThrow(/model\.safetensors: 2 decoder layers, more than the model being trained has \(1\)/);
    // a deeper audio encoder grows from it: the added layer starts as the identity, so the first
    // losses equal stage C's (same data, same function) and its residual outputs export as zeros
    const outG = path.join(tmp, 'run-g');
    const g = await trainAudioLLM({ ...base(), out: outG, steps: 2, lr: 1e-12, warmup: 1, initFrom: outA, questionWeights: { gender: 4 }, dims: { ...TINY, encLayers: TINY.encLayers! + 1 } });
    expect(g.config.audio_config.encoder_layers).toBe(TINY.encLayers! + 1);
    expect(g.records[0]!.loss).toBeCloseTo(c.records[0]!.loss, 4);
    expect(g.records[0]!.auxLoss!).toBeCloseTo(c.records[0]!.auxLoss!, 4);
    const sg = (await import('../src/io/safetensors.js')).openSafetensors(path.join(outG, 'model.safetensors'));
    const L = TINY.encLayers!;
    for (const n of ['self_attn.out_proj.weight', 'self_attn.out_proj.bias', 'fc2.weight', 'fc2.bias']) {
      expect(Math.max(...sg.readFloat32(`audio_tower.layers.${L}.${n}`).map(Math.abs))).toBeLessThan(1e-6);
    }
    expect(Math.max(...sg.readFloat32(`audio_tower.layers.${L}.fc1.weight`).map(Math.abs))).toBeGreaterThan(1e-3);
    sg.close();
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-d'), steps: 2, initFrom: outG })).rejects.toThrow(/model\.safetensors: 2 audio encoder layers, more than the model being trained has \(1\)/);
    writeWeightsReadme(outG, { command: 'npx tsx tools/train-audiollm.ts --grow', result: g, eval: ev, adapter: 'test' });
    expect(fs.readFileSync(path.join(outG, 'README.md'), 'utf8')).toMatch(/The audio encoder has 1 more layer than the model it starts from/);
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'run-d'), steps: 2, initFrom: path.join(tmp, 'nowhere') })).rejects.toThrow(/nowhere\/model\.safetensors: not found/);
  }, 180_000);

  it('keeps --freeze weights exactly as the --init model has them, also across a resume', async () => {
    const { openSafetensors } = await import('../src/io/safetensors.js');
    const init = path.join(tmp, 'freeze-init');
    await trainAudioLLM({ ...base(), out: init, steps: 3 });
    const freeze = ['language_model.model.layers.1.', 'language_model.model.norm.', 'language_model.lm_head.'];
    const o = { ...base(), steps: 6, checkpointEvery: 2, initFrom: init, freeze };
    const oneGo = path.join(tmp, 'freeze-a');
    const r = await trainAudioLLM({ ...o, out: oneGo });
    // interrupted and resumed: the frozen weights come back from --init, the rest from the checkpoint
    const split = path.join(tmp, 'freeze-b');
    await trainAudioLLM({ ...o, out: split, stopAfter: 3 });
    await trainAudioLLM({ ...o, out: split, resume: true });
    expect(fs.readFileSync(path.join(split, 'model.safetensors'))).toEqual(fs.readFileSync(path.join(oneGo, 'model.safetensors')));
    const a = openSafetensors(path.join(init, 'model.safetensors'));
    const b = openSafetensors(path.join(oneGo, 'model.safetensors'));
    const names = [...a.tensors.keys()];
    const frozen = names.filter((n) => freeze.some((p) => n.startsWith(p)));
    expect(frozen.length).toBeGreaterThan(5);
    for (const n of frozen) expect(b.readFloat32(n)).toEqual(a.readFloat32(n));
    // and the others did learn
    for (const n of ['language_model.model.layers.0.mlp.down_proj.weight', 'audio_tower.conv1.weight', 'multi_modal_projector.linear.weight']) {
      expect(b.readFloat32(n)).not.toEqual(a.readFloat32(n));
    }
    a.close();
    b.close();
    expect(JSON.parse(fs.readFileSync(path.join(oneGo, '.ardgpu-cache', 'train', 'run.json'), 'utf8')).freeze).toEqual(freeze);
    // the stage's README says what was kept, among the training settings
    const { evalModel } = await import('../src/train/eval-model.js');
    const { writeWeightsReadme } = await import('../src/train/export.js');
    const ev = await evalModel({ engine, model: oneGo, corpus, split: 'test', maxClips: 1, latencyClips: 1 });
    writeWeightsReadme(oneGo, { command: 'npx tsx tools/train-audiollm.ts --freeze', result: r, eval: ev, adapter: 'test' });
    const training = fs.readFileSync(path.join(oneGo, 'README.md'), 'utf8').split('## Training')[1]!.split('## Held-out')[0]!;
    expect(training).toContain('- Kept as the model it starts from (no gradient, no optimizer): the weights whose names start with `language_model.model.layers.1.`, `language_model.model.norm.`, `language_model.lm_head.`.');
    await expect(trainAudioLLM({ ...base(), out: path.join(tmp, 'freeze-bad'), steps: 2, freeze })).rejects.toThrow(/--freeze needs --init/);
    await expect(trainAudioLLM({ ...o, out: path.join(tmp, 'freeze-bad'), freeze: ['language_model.model.layers.7.'] })).rejects.toThrow(/--freeze 'language_model\.model\.layers\.7\.' matches no trainable weight/);
  }, 120_000);

  it('exports a running average of the weights (--average-from, --average-every, --ema) and resumes it exactly', async () => {
    const { openSafetensors } = await import('../src/io/safetensors.js');
    const o = { ...base(), steps: 6, valEvery: 3, checkpointEvery: 1 };
    const NAMES = ['language_model.model.embed_tokens.weight', 'audio_tower.layers.0.fc1.weight', 'multi_modal_projector.linear.bias'];
    const paramsAt = (work: string) => {
      const st = openSafetensors(path.join(work, 'checkpoint.safetensors'));
      const out = new Map(NAMES.map((n) => [n, st.readFloat32(`param.${n}`)]));
      st.close();
      return out;
    };
    // the weights after steps 2, 4, 5 and 6 of a plain run (its checkpoints); the last time it is
    // resumed from a run.json written before the averaging settings existed (keys missing, another order)
    const plainDir = path.join(tmp, 'avg-plain');
    const plainWork = path.join(plainDir, 'work');
    await trainAudioLLM({ ...o, out: plainDir, work: plainWork, stopAfter: 2 });
    const w2 = paramsAt(plainWork);
    await trainAudioLLM({ ...o, out: plainDir, work: plainWork, stopAfter: 4, resume: true });
    const w4 = paramsAt(plainWork);
    await trainAudioLLM({ ...o, out: plainDir, work: plainWork, stopAfter: 5, resume: true });
    const w5 = paramsAt(plainWork);
    const spec = JSON.parse(fs.readFileSync(path.join(plainWork, 'run.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['ema', 'averageFrom', 'averageEvery']) delete spec[k];
    fs.writeFileSync(path.join(plainWork, 'run.json'), JSON.stringify(Object.fromEntries(Object.entries(spec).reverse())));
    const plain = await trainAudioLLM({ ...o, out: plainDir, work: plainWork, resume: true });
    const w6 = paramsAt(plainWork);
    // the mean from step 5: the same training, an export of (w5 + w6) / 2 (f16), validated as such
    const meanDir = path.join(tmp, 'avg-mean');
    const mean = await trainAudioLLM({ ...o, out: meanDir, averageFrom: 5 });
    expect(mean.records.map((r) => r.loss)).toEqual(plain.records.map((r) => r.loss));
    expect(mean.records[2]!.valLoss).toBe(plain.records[2]!.valLoss); // step 3: before the average starts
    expect(mean.records[5]!.valLoss).not.toBe(plain.records[5]!.valLoss);
    const sm = openSafetensors(path.join(meanDir, 'model.safetensors'));
    const ck = openSafetensors(path.join(meanDir, '.ardgpu-cache', 'train', 'checkpoint.safetensors'));
    expect(ck.metadata.averageUpdates).toBe('1');
    for (const n of NAMES) {
      const want = w5.get(n)!.map((x, i) => (x + w6.get(n)![i]!) / 2);
      const avg = ck.readFloat32(`average.${n}`);
      expectClose(avg, want, 1e-6, 1e-8, n);
      const diff = w6.get(n)!.reduce((m, x, i) => Math.max(m, Math.abs(x - want[i]!)), 0);
      expect(diff).toBeGreaterThan(1e-5); // the average is not just the last weights
      expectClose(sm.readFloat32(n), avg, 1e-3, 1e-7, `${n} (f16)`);
    }
    sm.close();
    ck.close();
    // every other step from step 2: the mean of w2, w4 and w6
    const everyDir = path.join(tmp, 'avg-every');
    await trainAudioLLM({ ...o, out: everyDir, averageFrom: 2, averageEvery: 2 });
    const ce = openSafetensors(path.join(everyDir, '.ardgpu-cache', 'train', 'checkpoint.safetensors'));
    expect(ce.metadata.averageUpdates).toBe('2');
    for (const n of NAMES) expectClose(ce.readFloat32(`average.${n}`), w2.get(n)!.map((x, i) => (x + w4.get(n)![i]! + w6.get(n)![i]!) / 3), 1e-6, 1e-8, `${n} every 2`);
    ce.close();
    // EMA, interrupted before and after a checkpoint, then resumed: the same export as in one go
    const emaA = path.join(tmp, 'avg-ema-a');
    const emaB = path.join(tmp, 'avg-ema-b');
    await trainAudioLLM({ ...o, out: emaA, ema: 0.9 });
    await trainAudioLLM({ ...o, out: emaB, ema: 0.9, stopAfter: 4 });
    await trainAudioLLM({ ...o, out: emaB, ema: 0.9, resume: true });
    expect(fs.readFileSync(path.join(emaB, 'model.safetensors'))).toEqual(fs.readFileSync(path.join(emaA, 'model.safetensors')));
    expect(fs.readFileSync(path.join(emaA, 'model.safetensors'))).not.toEqual(fs.readFileSync(path.join(plainDir, 'model.safetensors')));
    // a mean-from run stopped before its average starts resumes into the same export
    const meanB = path.join(tmp, 'avg-mean-b');
    await trainAudioLLM({ ...o, out: meanB, averageFrom: 5, stopAfter: 3 });
    await trainAudioLLM({ ...o, out: meanB, averageFrom: 5, resume: true });
    expect(fs.readFileSync(path.join(meanB, 'model.safetensors'))).toEqual(fs.readFileSync(path.join(meanDir, 'model.safetensors')));
    await expect(trainAudioLLM({ ...o, out: meanB, averageFrom: 4, resume: true })).rejects.toThrow(/other settings/);
    const bad = path.join(tmp, 'avg-bad');
    await expect(trainAudioLLM({ ...o, out: bad, ema: 1 })).rejects.toThrow(/--ema must be from 0 to below 1 \(got 1\)/);
    await expect(trainAudioLLM({ ...o, out: bad, averageFrom: 7 })).rejects.toThrow(/--average-from must be a step from 1 to --steps 6 \(got 7\)/);
    await expect(trainAudioLLM({ ...o, out: bad, ema: 0.9, averageFrom: 2 })).rejects.toThrow(/exclude each other/);
    await expect(trainAudioLLM({ ...o, out: bad, averageFrom: 2, averageEvery: 0 })).rejects.toThrow(/--average-every must be a positive integer \(got 0\)/);
  }, 180_000);

  it("trains with clips marked 'labelled: false' (asked only whether anyone speaks) and refuses a speaking weight of 0 for them", async () => {
    // the corpus again, its train-split sounds-only clips marked unlabelled (labels and caption gone)
    const dir = path.join(tmp, 'unlabelled-corpus');
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(path.join(dir, 'clips'), { force: true });
    fs.symlinkSync(path.join(corpus, 'clips'), path.join(dir, 'clips'));
    const lines = fs.readFileSync(path.join(corpus, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    let marked = 0;
    const out = lines.map((e) => {
      if (e.split !== 'train' || e.speech || marked === 6) return e;
      marked++;
      return { ...e, labels: [], caption: '', labelled: false };
    });
    fs.writeFileSync(path.join(dir, 'manifest.jsonl'), out.map((e) => JSON.stringify(e)).join('\n') + '\n');
    fs.copyFileSync(path.join(corpus, 'corpus.json'), path.join(dir, 'corpus.json'));
    expect(marked).toBe(6);
    await expect(trainAudioLLM({ ...base(), corpus: dir, out: path.join(tmp, 'run-unlabelled-bad'), questionWeights: { speaking: 0 } })).rejects.toThrow(/labelled: false.*weight must be above 0/);
    const r = await trainAudioLLM({ ...base(), corpus: dir, out: path.join(tmp, 'run-unlabelled'), steps: 4, export: false });
    expect(r.records).toHaveLength(4);
    for (const rec of r.records) expect(Number.isFinite(rec.loss) && Number.isFinite(rec.auxLoss!)).toBe(true);
  });

  it('trains the auxiliary head at its own learning rate', async () => {
    // one step each from the same initialisation and data: Adam's first update is linear in the
    // learning rate, so the head moves exactly auxLrScale times as far; everything else the same
    const run = async (name: string, auxLrScale: number) => {
      const out = path.join(tmp, name);
      await trainAudioLLM({ ...base(), out, steps: 1, export: false, auxLrScale });
      const st = (await import('../src/io/safetensors.js')).openSafetensors(path.join(out, '.ardgpu-cache', 'train', 'checkpoint.safetensors'));
      const r = { head: st.readFloat32('param.aux.weight'), norm: st.readFloat32('param.language_model.model.norm.weight'), conv: st.readFloat32('param.audio_tower.conv1.weight') };
      const spec = JSON.parse(fs.readFileSync(path.join(out, '.ardgpu-cache', 'train', 'run.json'), 'utf8')) as { auxLrScale: number; auxClasses: string[] };
      st.close();
      return { ...r, spec };
    };
    const one = await run('aux-1', 1);
    const ten = await run('aux-10', 10);
    expect(ten.spec.auxLrScale).toBe(10);
    expect(ten.norm).toEqual(one.norm);
    expect(ten.conv).toEqual(one.conv);
    const w = new Map<string, Tensor>();
    const config = makeConfig({ ...DEFAULT_DIMS, ...TINY }, tok);
    initAux(engine, w, config, one.spec.auxClasses.length, base().seed);
    const init = await w.get('aux.weight')!.toFloat32();
    for (const t of w.values()) t.dispose();
    let moved = 0;
    init.forEach((x, i) => {
      const d1 = one.head[i]! - x;
      const d10 = ten.head[i]! - x;
      if (Math.abs(d1) > 1e-5) {
        moved++;
        expect(d10 / d1).toBeCloseTo(10, 2);
      }
    });
    expect(moved).toBeGreaterThan(init.length / 2);
    // the bias starts at each class's log-odds among training clips (one step of lr 3e-3 moves it little)
    const bias = (await import('../src/io/safetensors.js')).openSafetensors(path.join(tmp, 'aux-1', '.ardgpu-cache', 'train', 'checkpoint.safetensors'));
    const b1 = bias.readFloat32('param.aux.bias');
    bias.close();
    const train = entries.filter((e) => e.split === 'train');
    one.spec.auxClasses.forEach((l, i) => {
      const p = Math.min(1 - 0.5 / train.length, Math.max(0.5 / train.length, train.filter((e) => e.labels.includes(l)).length / train.length));
      expect(Math.abs(b1[i]! - Math.log(p / (1 - p))), l).toBeLessThan(0.01);
    });
    const wp = new Map<string, Tensor>();
    initAux(engine, wp, config, 2, 0, Float32Array.from([0.5, 0.1]));
    const bp = await wp.get('aux.bias')!.toFloat32();
    expect(bp[0]).toBeCloseTo(0, 6);
    expect(bp[1]).toBeCloseTo(Math.log(0.1 / 0.9), 5);
    for (const t of wp.values()) t.dispose();
    expect(() => initAux(engine, new Map(), config, 3, 0, Float32Array.from([0.5]))).toThrow(/1 priors for 3 classes/);
    // --aux-pool frames reaches the run: recorded in run.json, the same step gives another aux loss
    const out = path.join(tmp, 'aux-frames');
    const fr = await trainAudioLLM({ ...base(), out, steps: 1, export: false, auxPool: 'frames' });
    const mean = await trainAudioLLM({ ...base(), out: path.join(tmp, 'aux-mean'), steps: 1, export: false });
    expect(JSON.parse(fs.readFileSync(path.join(out, '.ardgpu-cache', 'train', 'run.json'), 'utf8')).auxPool).toBe('frames');
    expect(Number.isFinite(fr.records[0]!.auxLoss)).toBe(true);
    expect(fr.records[0]!.auxLoss).not.toBe(mean.records[0]!.auxLoss);
  }, 90_000);

  it('keeps GPU memory flat across steps', async () => {
    const { dims, config, w, params } = await tinyTrainable(13);
    const opt = new AdamW({ params: [...params.values()], lr: 1e-3 });
    const picks = entries.filter((e) => e.split === 'train').slice(0, 2);
    const { clips } = await sampleBatch(config, picks);
    // two single-turn questions per clip, sharing the clip's encoder pass
    const t = templateIds(tok);
    const convs = clips.flatMap((c) => pickQuestions(1, 0, 0, clipQAs(c.entry), 2).map((qa) => encodeConversation(tok, c.nAudio, [qa])));
    const batch = packBatch(convs, t.endOfText, t.audio);
    const clipOf = [0, 0, 1, 1];
    const live: number[] = [];
    for (let s = 0; s < 6; s++) {
      const loss: Tensor = tidy(() => {
        const l = trainLoss(engine, w, config, clips.map((c) => ({ mel: tensor(engine, c.mel, [dims.nMels, c.frames]), validFrames: c.validFrames })), batch, clipOf);
        backward(l);
        opt.step();
        return l;
      });
      opt.zeroGrad();
      expect(Number.isFinite(await loss.item())).toBe(true);
      loss.dispose();
      await engine.sync();
      live.push(engine.memory().liveBytes);
    }
    expect(new Set(live.slice(1)).size).toBe(1);
    opt.dispose();
    for (const t of w.values()) t.dispose();
  }, 60_000);

  it("reads the earlier stages' commands from the first code block that lists any", () => {
    const readme = [
      '# model', '', '```', 'bash tools/train-embedded.sh --out weights-retrained', '```', '', 'The stages:', '',
      '```', 'npx tsx tools/train-audiollm.ts --corpus a --steps 2', 'npx tsx tools/train-audiollm.ts --corpus b --init x', '```', '',
      '```', 'npx tsx tools/train-audiollm.ts --corpus later-block', '```',
    ].join('\n');
    expect(stageCommands(readme)).toEqual(['npx tsx tools/train-audiollm.ts --corpus a --steps 2', 'npx tsx tools/train-audiollm.ts --corpus b --init x']);
    expect(stageCommands('# no blocks')).toEqual([]);
    // the shipped README: as many stages as train-embedded.sh runs
    const shipped = stageCommands(fs.readFileSync(path.join(import.meta.dirname, '..', 'weights', 'README.md'), 'utf8'));
    expect(shipped.length).toBeGreaterThanOrEqual(8);
  });

  it('draws the loss curve', () => {
    const svg = lossSvg([0, 1, 2, 3].map((i) => ({ step: i, loss: 5 - i, lr: 1, gradNorm: 1, tokens: 1, positions: 1, ms: 1, ...(i === 3 ? { valLoss: 2.5 } : {}) })));
    expect(svg).toContain('<circle');
    expect(svg.match(/<path /g)).toHaveLength(2);
  });
});
