// Batched generation (generateBatch, decoderStepBatch, askBatch) against one-at-a-time generation,
// on the tiny Qwen2-Audio fixture: clips and questions of different lengths.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readWav, writeWav } from '../src/audio/wav.js';
import { evalModel } from '../src/train/eval-model.js';
import { PROMPTS, type PromptKind } from '../src/train/data.js';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { askBatch, askDetailed, buildChatPrompt } from '../src/model/chat.js';
import { Prompt, generate, generateBatch } from '../src/model/generate.js';
import { loadAudioLLM } from '../src/model/load.js';
import { tidy } from '../src/tensor/scope.js';
import { tensor } from '../src/tensor/tensor.js';
import { add } from '../src/tensor/ops/elementwise.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { tinyModelDir } from './tiny-model.js';
import { getEngine, randn, relErr, runCli } from './helpers.js';

let engine: Engine;
let model: AudioLLM;
let dir: string;
const feats: Tensor[] = [];
let prompts: Prompt[] = [];
const CLIPS = [randn(32000, 1, 0.3), randn(9000, 2, 0.3), randn(20000, 3, 0.3), randn(4000, 4, 0.3)];
const QUESTIONS = ['Describe the sound.', 'Is anyone speaking?', 'What is the gender of the speaker, and how loud is the recording?', 'Name it.'];

beforeAll(async () => {
  engine = await getEngine();
  dir = tinyModelDir();
  model = await loadAudioLLM(engine, dir);
  prompts = CLIPS.map((c, i) => {
    const f = model.encodeAudio(c);
    feats.push(f);
    return { ids: buildChatPrompt(model.tokenizer!, [model.audioTokens(c.length)], QUESTIONS[i]!, { audioTokenIndex: model.audioTokenIndex }), audio: f };
  });
});

afterAll(() => {
  for (const f of feats) f.dispose();
  model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('batched generation', () => {
  it('prompts of different lengths: the same greedy tokens as one at a time (full length and with stops)', async () => {
    expect(new Set(prompts.map((p) => p.ids.length)).size).toBe(4);
    for (const stopTokens of [[], undefined]) {
      const one = [];
      for (const p of prompts) one.push((await generate(model, p, { maxNewTokens: 10, stopTokens })).tokens);
      const seen: [number, number, number][] = [];
      const batch = await generateBatch(model, prompts, { maxNewTokens: 10, stopTokens, onToken: (s, t, i) => void seen.push([s, t, i]) });
      expect(batch.map((r) => r.tokens)).toEqual(one);
      for (let s = 0; s < 4; s++) expect(seen.filter((x) => x[0] === s).map((x) => x[1])).toEqual(one[s]);
      if (stopTokens) expect(batch.every((r) => r.stopReason === 'length' && r.tokens.length === 10)).toBe(true);
      batch.forEach((r, i) => expect(r.promptLength).toBe(prompts[i]!.ids.length));
    }
    // one prompt: generate()'s own loop, the same tokens and callbacks
    const solo: number[] = [];
    const r1 = await generateBatch(model, [prompts[2]!], { maxNewTokens: 6, stopTokens: [], onToken: (s, t) => void solo.push(s, t) });
    const g1 = (await generate(model, prompts[2]!, { maxNewTokens: 6, stopTokens: [] })).tokens;
    expect(r1[0]!.tokens).toEqual(g1);
    expect(solo).toEqual(g1.flatMap((t) => [0, t]));
    // groups smaller than the batch give the same
    const grouped = await generateBatch(model, prompts, { maxNewTokens: 6, stopTokens: [], maxBatch: 3 });
    const whole = await generateBatch(model, prompts, { maxNewTokens: 6, stopTokens: [] });
    expect(grouped.map((r) => r.tokens)).toEqual(whole.map((r) => r.tokens));
  }, 60_000);

  it('decoderStepBatch: each row the logits of its sequence stepped alone, within f32 rounding', async () => {
    const single = prompts.map((p) => {
      const c = model.newCache(p.ids.length + 1);
      const e = model.embed(p.ids, p.audio);
      model.step(e, c, { logits: 'none' });
      e.dispose();
      return c;
    });
    const batched = prompts.map((p) => {
      const c = model.newCache(p.ids.length + 1);
      const e = model.embed(p.ids, p.audio);
      model.step(e, c, { logits: 'none' });
      e.dispose();
      return c;
    });
    const next = [5, 17, 200, 42];
    const want: Float32Array[] = [];
    for (let b = 0; b < 4; b++) {
      const x = model.embed([next[b]!], null, { splice: false });
      const l = model.step(x, single[b]!)!;
      want.push(await l.toFloat32());
      l.dispose();
      x.dispose();
    }
    const x = model.embed(next, null, { splice: false });
    const l = model.stepBatch(x, batched);
    expect(l.shape).toEqual([4, model.config.text_config.vocab_size]);
    const got = await l.toFloat32();
    const V = model.config.text_config.vocab_size;
    for (let b = 0; b < 4; b++) {
      const e = relErr(got.subarray(b * V, (b + 1) * V), want[b]!);
      expect(e.rel, `row ${b}`).toBeLessThan(1e-5);
      expect(batched[b]!.length).toBe(prompts[b]!.ids.length + 1);
    }
    x.dispose();
    l.dispose();
    for (const c of [...single, ...batched]) c.dispose();
    expect(() => tidy(() => model.stepBatch(model.embed([1, 2], null, { splice: false }), [batched[0]!]))).toThrow(/2 rows but 1 KV caches/);
  });

  it('sampling with a seed: each sequence draws what generate draws alone', async () => {
    const o = { maxNewTokens: 8, stopTokens: [], temperature: 1.5, topP: 0.95, seed: 7 };
    const one = [];
    for (const p of prompts.slice(0, 3)) one.push((await generate(model, p, o)).tokens);
    expect((await generateBatch(model, prompts.slice(0, 3), o)).map((r) => r.tokens)).toEqual(one);
  }, 30_000);

  it('hooks see each row with its sequence, position and step; a per-sequence hook acts as it does alone', async () => {
    const ctxs: string[] = [];
    // sequence 1 steered (a constant added to its residual), the others untouched
    const h = model.hooks.add({
      layer: 1,
      fn: (x, ctx) => {
        if (ctx.step > 0) ctxs.push(`${ctx.sequence}:${ctx.start}:${ctx.step}:${ctx.rows}`);
        if (ctx.sequence === 1) return add(x, tensor(engine, new Float32Array(x.shape[1]!).fill(0.5), [x.shape[1]!]));
      },
    });
    let batch;
    try {
      batch = await generateBatch(model, prompts.slice(0, 2), { maxNewTokens: 3, stopTokens: [] });
    } finally {
      h.remove();
    }
    expect(ctxs.sort()).toEqual(
      [0, 1].flatMap((s) => [1, 2].map((k) => `${s}:${prompts[s]!.ids.length + k - 1}:${k}:1`)).sort(),
    );
    const plain = await generate(model, prompts[0]!, { maxNewTokens: 3, stopTokens: [] });
    const h2 = model.hooks.add({ layer: 1, fn: (x) => add(x, tensor(engine, new Float32Array(x.shape[1]!).fill(0.5), [x.shape[1]!])) });
    let steered;
    try {
      steered = await generate(model, prompts[1]!, { maxNewTokens: 3, stopTokens: [] });
    } finally {
      h2.remove();
    }
    expect(batch[0]!.tokens).toEqual(plain.tokens);
    expect(batch[1]!.tokens).toEqual(steered.tokens);
  }, 30_000);

  it('askBatch: the answers of askDetailed one clip and question at a time', async () => {
    const items = CLIPS.slice(0, 3).map((c, i) => ({ audio: c, question: QUESTIONS[i]! }));
    const one = [];
    for (const it of items) one.push((await askDetailed(model, it.audio, it.question, { maxNewTokens: 6 })).text);
    const many = await askBatch(model, items, { maxNewTokens: 6 });
    expect(many.map((r) => r.text)).toEqual(one);
    expect(many[0]!.clips[0]!.windows).toBe(1);
  }, 30_000);

  it('eval-model: clips answered in groups give the answers of each question asked alone', async () => {
    const corpus = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-evalbatch-'));
    try {
      const lines = [16000, 9000, 24000, 12345, 20000].map((n, i) => {
        const file = `c${i}.wav`;
        writeWav(path.join(corpus, file), randn(n, 30 + i, 0.2));
        const speech = i % 2 === 0;
        return JSON.stringify({ file, labels: [speech ? 'female speech' : 'alarm'], caption: 'x', gender: speech ? 'female' : null, speech, split: 'test', augment: [], duration: n / 16000, voice: null, sentence: null, seed: i });
      });
      fs.writeFileSync(path.join(corpus, 'manifest.jsonl'), lines.join('\n') + '\n');
      const ev = await evalModel({ engine, model, corpus, split: 'test', batchClips: 3, maxNewTokens: 6, latencyClips: 0 });
      expect(ev.clips).toBe(5);
      // each answer = generate() on that clip and question alone
      for (const ex of ev.examples) {
        const samples = readWav(path.join(corpus, ex.file)).samples;
        const f = model.encodeAudio(samples);
        try {
          for (const [kind, answer] of Object.entries(ex.answers)) {
            const ids = buildChatPrompt(model.tokenizer!, model.audioTokenCounts(samples.length), PROMPTS[kind as PromptKind], { audioTokenIndex: model.audioTokenIndex });
            const r = await generate(model, { ids, audio: f }, { maxNewTokens: 6 });
            expect(answer, `${ex.file} ${kind}`).toBe(model.tokenizer!.decode(r.tokens, { skipSpecial: true }).trim());
          }
        } finally {
          f.dispose();
        }
      }
      expect(ev.examples.map((e) => Object.keys(e.answers).length)).toEqual([4, 3, 4, 3, 4]);
    } finally {
      fs.rmSync(corpus, { recursive: true, force: true });
    }
  }, 60_000);

  it('CLI: ask with several files answers each as asking it alone', async () => {
    const files = [0, 1, 2].map((i) => {
      const f = path.join(dir, `ask-${i}.wav`);
      writeWav(f, CLIPS[i]!);
      return f;
    });
    const r = runCli(['ask', ...files, '--model', dir, '--max-tokens', '5', '--json', '--batch', '2']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    const got = JSON.parse(r.stdout);
    const want = [];
    for (const f of files) want.push((await askDetailed(model, f, 'Describe the sound.', { maxNewTokens: 5 })).text);
    expect(got.map((x: { file: string }) => x.file)).toEqual(files);
    expect(got.map((x: { answer: string }) => x.answer)).toEqual(want);
    const bad = runCli(['ask', ...files, '--model', dir, '--windows', 'all']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.join('\n')).toMatch(/--windows all takes one file/);
  }, 60_000);

  it('bad options are one error each', async () => {
    await expect(generateBatch(model, prompts, { maxBatch: 0 })).rejects.toThrow(/maxBatch 0 must be a positive integer/);
    await expect(generateBatch(model, prompts, { maxNewTokens: 10_000 })).rejects.toThrow(/prompt 0 of \d+ positions/);
    expect(await generateBatch(model, [], {})).toEqual([]);
  });
});
