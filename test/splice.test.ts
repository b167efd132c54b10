// The spliced-in loss (src/ard/splice.ts) on the tiny fixture model, with reconstructions whose
// answers are known: the identity recovers all the loss with KL 0; a reconstruction that is 0
// everywhere is zero-ablation (recovered 0, KL equal to zero-ablation's); and the stage picks the
// answers (captions, else greedy), writes RUN/splice-L.json and skips itself when fresh.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { loadAudioLLM } from '../src/model/load.js';
import { buildChatPrompt } from '../src/model/chat.js';
import { writeWav } from '../src/audio/wav.js';
import { clone, map } from '../src/tensor/ops/elementwise.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { readSplice, spliceLoss, splicePath, spliceStage, spreadClips } from '../src/ard/splice.js';
import { writeReport } from '../src/ard/report.js';
import type { SpliceItem } from '../src/ard/splice.js';
import { getEngine, randn } from './helpers.js';
import { tinyModelDir } from './tiny-model.js';

const LAYER = 0; // the tiny model has 2 decoder layers: after the last one nothing reads the audio rows again
let engine: Engine;
let model: AudioLLM;
let modelDir: string;
let tmp: string;
const identity = { reconstruct: (x: Tensor) => clone(x) };
const nothing = { reconstruct: (x: Tensor) => map([x], '0.0', { name: 'zero_like' }) };

beforeAll(async () => {
  engine = await getEngine();
  modelDir = tinyModelDir();
  model = await loadAudioLLM(engine, modelDir);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-splice-'));
});
afterAll(() => {
  model?.dispose();
  for (const d of [tmp, modelDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

function item(seed: number, answer: number[]): SpliceItem {
  const samples = randn(12000, seed, 0.3);
  const w = model.windows(samples.length)[0]!;
  const prompt = buildChatPrompt(model.tokenizer!, [w.tokens], 'Describe the sound.', { audioTokenIndex: model.audioTokenIndex });
  const first = prompt.indexOf(model.audioTokenIndex);
  return { ids: [...prompt, ...answer], audio: model.encodeAudio(samples), answerStart: prompt.length, splice: { from: first, to: first + w.tokens } };
}

describe('spliced-in loss', () => {
  it('identity SAE: recovered 1, KL 0; all-zero reconstruction: recovered 0; CE matches a direct computation', async () => {
    const items = [item(1, [40, 41, 42, 296]), item(2, [50, 296])];
    try {
      const id = await spliceLoss(model, identity, LAYER, items);
      expect(id.tokens).toBe(6);
      expect(id.recovered).toBe(1);
      expect(id.ceSae).toBe(id.ceClean);
      expect(id.klSae).toBe(0);
      expect(id.ceZero).toBeGreaterThan(id.ceClean); // removing the audio rows' residual hurts
      expect(id.klZero).toBeGreaterThan(0);
      const zero = await spliceLoss(model, nothing, LAYER, items);
      expect(zero.recovered).toBe(0);
      expect(zero.ceSae).toBe(zero.ceZero);
      expect(zero.klSae).toBeCloseTo(zero.klZero, 12);
      expect(model.hooks.size).toBe(0);
      // clean CE by hand: all logits, log-softmax, the answer tokens
      let ce = 0;
      let n = 0;
      for (const it of items) {
        const lg = model.forward(it.ids, it.audio, { logits: 'all' })!;
        const V = lg.shape[1]!;
        const host = await lg.toFloat32();
        lg.dispose();
        for (let p = it.answerStart; p < it.ids.length; p++) {
          const row = host.subarray((p - 1) * V, p * V);
          const mx = Math.max(...row);
          const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
          ce += lse - row[it.ids[p]!]!;
          n++;
        }
      }
      expect(id.ceClean).toBeCloseTo(ce / n, 4);
    } finally {
      for (const it of items) it.audio?.dispose();
    }
  }, 120_000);

  it('spreads clips evenly', () => {
    expect(spreadClips(10, 3)).toEqual([1, 5, 8]);
    expect(spreadClips(2, 5)).toEqual([0, 1]);
  });

  it('the stage: captions where the manifest has them, greedy answers elsewhere; fresh runs are skipped', async () => {
    const run = path.join(tmp, 'run');
    fs.mkdirSync(path.join(run, 'capture'), { recursive: true });
    const clips = [0, 1].map((i) => {
      const file = path.join(tmp, `c${i}.wav`);
      writeWav(file, randn(12000, 10 + i, 0.3));
      return { id: `c${i}`, file, labels: ['x'], split: 'val', duration: 0.75, rowStart: 0, rowCount: 0, frameSeconds: 0.04, ...(i === 0 ? { caption: 'a dog barks' } : {}) };
    });
    fs.writeFileSync(path.join(run, 'capture', 'manifest.json'), JSON.stringify({ model: 'tiny', prompt: 'Describe the sound.', positions: 'audio', layers: [LAYER], d: 64, dtype: 'f32', clips, shards: {} }));
    const o = { model, sae: identity, run, layer: LAYER, saeId: { digest: 'identity', name: 'identity' }, clips: 8, maxNewTokens: 4 };
    const r = await spliceStage(o);
    expect(r.skipped).toBe(false);
    expect([r.clips, r.captionAnswers, r.greedyAnswers]).toEqual([2, 1, 1]);
    expect(r.recovered).toBe(1);
    expect(r.klSae).toBe(0);
    expect(r.positions).toBe('audio');
    expect(readSplice(run, LAYER)).toMatchObject({ layer: LAYER, recovered: 1, tokens: r.tokens });
    expect((await spliceStage(o)).skipped).toBe(true);
    const z = await spliceStage({ ...o, sae: nothing, saeId: { digest: 'zero', name: 'zero' } });
    expect(z.skipped).toBe(false);
    expect(z.recovered).toBe(0);
    // evaluate's eval.json and the report's SAE section carry it
    fs.writeFileSync(path.join(run, `sae-${LAYER}.train.json`), JSON.stringify({ layer: LAYER, log: [{ step: 0, fvu: 1 }, { step: 1, fvu: 0.5 }] }));
    const html = fs.readFileSync(writeReport(run, { layers: [LAYER] }).file, 'utf8');
    expect(html).toContain('<h3>Spliced-in loss</h3>');
    expect(html).toMatch(/fraction of loss recovered<\/th><td class="num"><b>0\.0000<\/b>/);
    fs.rmSync(splicePath(run, LAYER));
    expect(fs.readFileSync(writeReport(run, { layers: [LAYER] }).file, 'utf8')).toContain('Spliced-in loss not measured');
  }, 120_000);
});
