// The AudioLLM against the float64 PyTorch reference fixtures (tools/reference, tiny model).
import { tinyTokenizerJson } from './tiny-model.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { windowFeatures } from '../src/audio/logmel.js';
import type { Engine } from '../src/gpu/engine.js';
import { AudioLLM } from '../src/model/audiollm.js';
import { buildChatPrompt, askDetailed, chatPromptText } from '../src/model/chat.js';
import { generate, sampleToken } from '../src/model/generate.js';
import { canonicalTensorName, loadAudioLLM } from '../src/model/load.js';
import { TensorToWrite, openSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { Tokenizer } from '../src/model/tokenizer.js';
import { keep, tidy } from '../src/tensor/scope.js';
import { Tensor, tensor } from '../src/tensor/tensor.js';
import { RowBlocks } from '../src/tensor/blocked.js';
import { add, clone } from '../src/tensor/ops/elementwise.js';
import { getEngine, itF16, relErr, rng } from './helpers.js';

const DIR = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm');
const fx = openSafetensors(path.join(DIR, 'fixtures.safetensors'));
const FJ = JSON.parse(fs.readFileSync(path.join(DIR, 'fixtures.json'), 'utf8'));
const PROMPT: number[] = FJ.prompt_ids;
const POS: number[] = FJ.logits_positions;

function expectNear(a: ArrayLike<number>, name: string, rel: number): number {
  const e = relErr(a, fx.readFloat32(name));
  expect(e.rel, `${name}: max abs err ${e.abs}`).toBeLessThan(rel);
  return e.rel;
}

const errs: Record<string, number> = {};
let engine: Engine;
let model: AudioLLM;
let feats: Tensor;

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ardgpu-${tag}-`));
}

function copyConfigs(dst: string): void {
  for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(DIR, f), path.join(dst, f));
}

/** The fixture checkpoint's tensors, optionally renamed / edited. */
function checkpointTensors(edit?: (m: Map<string, TensorToWrite>) => void): Map<string, TensorToWrite> {
  const st = openSafetensors(path.join(DIR, 'model.safetensors'));
  const m = new Map<string, TensorToWrite>();
  for (const [name, info] of st.tensors) m.set(name, { dtype: 'F32', shape: info.shape, data: st.readFloat32(name) });
  st.close();
  edit?.(m);
  return m;
}

beforeAll(async () => {
  engine = await getEngine();
  model = await loadAudioLLM(engine, DIR);
  feats = model.encodeAudio(fx.readFloat32('audio'));
});

afterAll(() => {
  feats?.dispose();
  model?.dispose();
  console.log('relative errors vs the float64 reference:', JSON.stringify(errs));
});

describe('AudioLLM (tiny Qwen2-Audio) vs the PyTorch reference', () => {
  it('loads the config, front end and generation defaults', () => {
    expect(model.frontend).toMatchObject({ nMels: 80, nSamples: 32000, hopLength: 160, nFft: 400 });
    expect(model.audioTokenIndex).toBe(299);
    expect(model.generation.eosTokenIds).toContain(296);
    expect(model.audioTokens(32000)).toBe(50);
    expect(model.audioTokens(16000)).toBe(FJ.tone_padded_audio_tokens);
    expect(model.audioTokenCounts(48000)).toEqual([50, 25]);
  });

  it('audio tower: last layer, pool + layer_norm, projected features', async () => {
    const wf = windowFeatures(engine, fx.readFloat32('audio'), model.frontend);
    expect(wf.validFrames).toBe(200);
    errs.logmel = expectNear(await wf.mel.read(), 'logmel_audio', 1e-4);
    const r = model.encodeMel(wf.mel, wf.validFrames, { intermediate: true });
    errs.encoder_out = expectNear(await r.hidden!.read(), 'encoder_out', 1e-4);
    errs.encoder_pooled = expectNear(await r.pooled!.read(), 'encoder_pooled', 1e-4);
    errs.audio_features = expectNear(await r.features.read(), 'audio_features', 1e-4);
    expect(r.features.shape).toEqual([50, 64]);
    for (const t of [wf.mel, r.hidden!, r.pooled!, r.features]) t.dispose();
    // the same features through encodeAudio (used by the rest of the tests)
    errs.audio_features_encodeAudio = expectNear(await feats.read(), 'audio_features', 1e-4);
  });

  it('a short clip: padded window, masked frames (exact shortcut) → 25 tokens', async () => {
    const f = model.encodeAudio(fx.readFloat32('tone'));
    expect(f.shape).toEqual([25, 64]);
    errs.audio_features_tone = expectNear(await f.read(), 'audio_features_tone', 1e-4);
    f.dispose();
  });

  it('a clip longer than the window is encoded window by window, features concatenated', async () => {
    const audio = fx.readFloat32('audio');
    const tone = fx.readFloat32('tone');
    const both = new Float32Array(audio.length + tone.length);
    both.set(audio);
    both.set(tone, audio.length);
    const f = model.encodeAudio(both);
    expect(f.shape).toEqual([75, 64]);
    const got = await f.read();
    f.dispose();
    const want = new Float32Array(75 * 64);
    want.set(fx.readFloat32('audio_features'));
    want.set(fx.readFloat32('audio_features_tone'), 50 * 64);
    expect(relErr(got, want).rel).toBeLessThan(1e-4);
  });

  it('splices the audio features at the placeholders', async () => {
    const x = model.embed(PROMPT, feats);
    errs.embeds = expectNear(await x.read(), 'embeds', 1e-4);
    x.dispose();
    expect(() => model.embed(PROMPT, null)).toThrow(/50 audio placeholders but there are 0/);
    expect(() => model.embed([1, 2, 300])).toThrow(/token id 300/);
  });

  it('logits at the fixture positions and the residual stream via hooks', async () => {
    const resid: Tensor[] = [];
    const handles = [0, 1].map((layer) =>
      model.hooks.add({ layer, fn: (r) => void resid.push(keep(clone(r))) }),
    );
    const t0 = performance.now();
    const logits = model.forward(PROMPT, feats, { logits: POS })!;
    const got = await logits.read();
    console.log(`forward pass (83 positions, 12 logits rows): ${(performance.now() - t0).toFixed(1)} ms`);
    handles.forEach((h) => h.remove());
    expect(logits.shape).toEqual([12, 300]);
    errs.logits = expectNear(got, 'logits', 1e-3);
    expect(resid.map((r) => r.shape)).toEqual([
      [83, 64],
      [83, 64],
    ]);
    errs.resid_0 = expectNear(await resid[0]!.read(), 'resid_0', 1e-3);
    errs.resid_1 = expectNear(await resid[1]!.read(), 'resid_1', 1e-3);
    // capture stops early: layers above the hooked one are not run
    const d0 = engine.dispatchCount;
    const h0 = model.hooks.add({ layer: 0, fn: (r) => void resid.push(keep(clone(r))) });
    expect(model.forward(PROMPT, feats, { logits: 'none', lastLayer: 0 })).toBeNull();
    h0.remove();
    expect(Array.from(await resid[2]!.read())).toEqual(Array.from(await resid[0]!.read()));
    const early = engine.dispatchCount - d0;
    const d1 = engine.dispatchCount;
    model.forward(PROMPT, feats, { logits: 'none' });
    expect(early).toBeLessThan(engine.dispatchCount - d1);
    expect(() => model.forward(PROMPT, feats, { lastLayer: 0 })).toThrow(/logits need every layer/);
    for (const t of [logits, ...resid]) t.dispose();
    expect(model.hooks.size).toBe(0);
  });

  it('the KV cache: a prompt fed in chunks gives the same logits as one pass', async () => {
    const cache = model.newCache(PROMPT.length);
    const x = model.embed(PROMPT, feats);
    const chunks = [10, 1, 40, 32];
    let at = 0;
    let last: Tensor | null = null;
    for (const n of chunks) {
      last?.dispose();
      last = tidy(() => model.step(x.view([n, 64], [64, 1], x.offset + at * 64), cache, { logits: 'all' }));
      at += n;
    }
    expect(cache.length).toBe(83);
    const got = await last!.read();
    // rows 75..82 of the prompt are the last chunk's rows 43..50 (chunk starts at 51)
    const want = fx.readFloat32('logits');
    const rowsGot = new Float32Array(8 * 300);
    for (let r = 0; r < 8; r++) rowsGot.set(got.subarray((24 + r) * 300, (25 + r) * 300), r * 300);
    expect(relErr(rowsGot, want.subarray(4 * 300)).rel).toBeLessThan(1e-3);
    for (const t of [last!, x]) t.dispose();
    cache.dispose();
  });

  it('greedy generation with the KV cache reproduces the reference tokens', async () => {
    const streamed: number[] = [];
    const before = engine.memory().liveBytes;
    const t0 = performance.now();
    const r = await generate(model, { ids: PROMPT, audio: feats }, { maxNewTokens: 12, stopTokens: [], onToken: (t) => void streamed.push(t) });
    const ms = performance.now() - t0;
    console.log(`greedy 12 tokens: prefill ${r.prefillMs.toFixed(1)} ms, decode ${r.decodeMs.toFixed(1)} ms (${((11 * 1000) / r.decodeMs).toFixed(1)} tokens/s), total ${ms.toFixed(1)} ms`);
    expect(r.tokens).toEqual(FJ.greedy);
    expect(streamed).toEqual(FJ.greedy);
    expect(r.stopReason).toBe('length');
    expect(engine.memory().liveBytes).toBe(before); // cache and every step's tensors freed
    // a stop token ends generation (not included), and onToken can stop it
    const s = await generate(model, { ids: PROMPT, audio: feats }, { maxNewTokens: 12, stopTokens: [FJ.greedy[3]] });
    expect(s).toMatchObject({ tokens: FJ.greedy.slice(0, 3), stopReason: 'stop', stopToken: FJ.greedy[3] });
    const c = await generate(model, { ids: PROMPT, audio: feats }, { maxNewTokens: 12, stopTokens: [], onToken: (_t, i) => i < 1 });
    expect(c).toMatchObject({ tokens: FJ.greedy.slice(0, 2), stopReason: 'callback' });
  });

  it('seeded sampling reproduces; top-k 1 is greedy', async () => {
    const opts = { maxNewTokens: 6, stopTokens: [], temperature: 1.5, topP: 0.95, seed: 7 };
    const a = await generate(model, { ids: PROMPT, audio: feats }, opts);
    const b = await generate(model, { ids: PROMPT, audio: feats }, opts);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens.every((t) => t >= 0 && t < 300)).toBe(true);
    const k1 = await generate(model, { ids: PROMPT, audio: feats }, { ...opts, topK: 1 });
    expect(k1.tokens).toEqual(FJ.greedy.slice(0, 6));
    // the sampler itself: top-p keeps the nucleus only
    const logits = Float32Array.from([0, 5, 4.9, -3, 1]);
    const r = rng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(sampleToken(logits, { temperature: 1, topP: 0.9 }, r));
    expect([...seen].sort()).toEqual([1, 2]);
  });

  it('hooks steer: adding zero changes nothing, adding a vector changes the logits', async () => {
    const base = await tidy(() => model.forward(PROMPT, feats, { logits: 'last' })!).read();
    const zero = tensor(engine, new Float32Array(64), [64]);
    const v = tensor(engine, Float32Array.from({ length: 64 }, (_, i) => (i % 7) - 3), [64]);
    const run = async (vec: Tensor, layer: number) => {
      const h = model.hooks.add({ layer, fn: (r) => add(r, vec) });
      try {
        const l = model.forward(PROMPT, feats, { logits: 'last' })!;
        const out = await l.read();
        l.dispose();
        return out;
      } finally {
        h.remove();
      }
    };
    expect(Array.from(await run(zero, 0))).toEqual(Array.from(base));
    const steered = await run(v, 0);
    expect(relErr(steered, base).abs).toBeGreaterThan(0.1);
    // encoder hooks too: the audio features move
    const h = model.hooks.add({ where: 'encoder', layer: 1, fn: (r) => add(r, v) });
    const f2 = model.encodeAudio(fx.readFloat32('audio'));
    h.remove();
    expect(relErr(await f2.read(), await feats.read()).abs).toBeGreaterThan(0.01);
    for (const t of [zero, v, f2]) t.dispose();
    expect(() => model.hooks.add({ layer: 2, fn: () => {} })).toThrow(/decoder layer 2 out of range/);
    const bad = model.hooks.add({ layer: 1, fn: (r) => clone(r.view([83 * 64], [1])) });
    expect(() => model.forward(PROMPT, feats)).toThrow(/hook returned f32\[5312\], expected f32\[83, 64\]/);
    bad.remove();
  });

  it('the chat template and ask()', async () => {
    expect(chatPromptText(1, 'What is it?')).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nWhat is it?<|im_end|>\n<|im_start|>assistant\n',
    );
    // the tokenizer fixture, with the tiny model's special ids
    const tok = Tokenizer.fromJSON(tinyTokenizerJson(), 'tiny+specials');
    const ids = buildChatPrompt(tok, [25], 'Hi?');
    expect(ids[0]).toBe(295);
    const first = ids.indexOf(299);
    expect(ids[first - 1]).toBe(297);
    expect(ids.slice(first, first + 25).every((t) => t === 299)).toBe(true);
    expect(ids[first + 25]).toBe(298);
    expect(tok.decode(ids)).toBe(chatPromptText(1, 'Hi?').replace('<|AUDIO|>', '<|AUDIO|>'.repeat(25)));
    const before = engine.memory().liveBytes;
    const pieces: string[] = [];
    const r = await askDetailed(model, fx.readFloat32('tone'), 'Hi?', { tokenizer: tok, maxNewTokens: 5, onText: (d) => void pieces.push(d) });
    expect(r.promptIds).toEqual(ids);
    const f = model.encodeAudio(fx.readFloat32('tone'));
    const g = await generate(model, { ids, audio: f }, { maxNewTokens: 5 });
    f.dispose();
    expect(r.tokens).toEqual(g.tokens);
    expect(r.text).toBe(tok.decode(g.tokens, { skipSpecial: true }));
    expect(pieces.join('')).toBe(r.text);
    expect(engine.memory().liveBytes).toBe(before);
  });
});

describe('checkpoint variants', () => {
  it('weights larger than a binding are split into row blocks: the same bits as unsplit', async () => {
    // 12 KiB: every matrix of the tiny model splits, into 2–7 blocks (f32)
    const maxBindingBytes = 12 * 1024;
    const m = await loadAudioLLM(engine, DIR, { maxBindingBytes });
    try {
      const weights: [string, RowBlocks | Tensor][] = [
        ['conv1', m.encoder.conv1W], ['conv2', m.encoder.conv2W], ['proj', m.encoder.projW],
        ['embed', m.decoder.embed], ['lmHead', m.decoder.lmHead],
        ...m.encoder.layers.flatMap((l, i) => [[`enc${i}.qkv`, l.qkvW], [`enc${i}.out`, l.outW], [`enc${i}.fc1`, l.fc1W], [`enc${i}.fc2`, l.fc2W]] as [string, RowBlocks | Tensor][]),
        ...m.decoder.layers.flatMap((l, i) => [[`dec${i}.qkv`, l.qkvW], [`dec${i}.o`, l.oW], [`dec${i}.gateUp`, l.gateUpW], [`dec${i}.down`, l.downW]] as [string, RowBlocks | Tensor][]),
      ];
      const counts = weights.map(([name, w]) => {
        expect(w, name).toBeInstanceOf(RowBlocks);
        const b = w as RowBlocks;
        for (const t of b.blocks) expect(t.size * 4, name).toBeLessThanOrEqual(maxBindingBytes);
        return b.blocks.length;
      });
      expect(Math.min(...counts)).toBe(2);
      expect(Math.max(...counts)).toBe(7);
      // encoder, splice (the embedding gathered across blocks), decoder, lm_head: identical outputs
      const f = m.encodeAudio(fx.readFloat32('audio'));
      expect(Array.from(await f.read())).toEqual(Array.from(await feats.read()));
      const got = m.forward(PROMPT, f, { logits: POS })!;
      const want = model.forward(PROMPT, feats, { logits: POS })!;
      expect(Array.from(await got.read())).toEqual(Array.from(await want.read()));
      const x = m.embed([0, 5, 299, 17, 5], null, { splice: false });
      const y = model.embed([0, 5, 299, 17, 5], null, { splice: false });
      expect(Array.from(await x.read())).toEqual(Array.from(await y.read()));
      // greedy generation with the KV cache
      const ids = (await generate(m, { ids: PROMPT, audio: f }, { maxNewTokens: 6 })).tokens;
      expect(ids).toEqual((await generate(model, { ids: PROMPT, audio: feats }, { maxNewTokens: 6 })).tokens);
      for (const t of [f, got, want, x, y]) t.dispose();
    } finally {
      m.dispose();
    }
  });

  it('bf16 checkpoint: features, logits and greedy tokens of the bf16 reference', async () => {
    const dir = tmpDir('bf16');
    copyConfigs(dir);
    fs.copyFileSync(path.join(DIR, 'model-bf16.safetensors'), path.join(dir, 'model.safetensors'));
    const m = await loadAudioLLM(engine, dir);
    try {
      const f = m.encodeAudio(fx.readFloat32('audio'));
      errs.audio_features_bf16 = expectNear(await f.read(), 'audio_features_bf16', 1e-4);
      const l = m.forward(PROMPT, f, { logits: POS })!;
      errs.logits_bf16 = expectNear(await l.read(), 'logits_bf16', 1e-3);
      // and it is not the f32 model's output
      expect(relErr(await l.read(), fx.readFloat32('logits')).abs).toBeGreaterThan(0.01);
      l.dispose();
      const g = await generate(m, { ids: PROMPT, audio: f }, { maxNewTokens: 12, stopTokens: [] });
      expect(g.tokens).toEqual(FJ.greedy_bf16);
      f.dispose();
    } finally {
      m.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the sharded checkpoint and newer transformers tensor names give the same logits', async () => {
    const want = fx.readFloat32('logits');
    const sharded = await loadAudioLLM(engine, path.join(DIR, 'sharded'));
    const dir = tmpDir('renamed');
    try {
      const l = sharded.forward(PROMPT, feats, { logits: POS })!;
      expect(relErr(await l.read(), want).rel).toBeLessThan(1e-3);
      l.dispose();
      // model.language_model.*, model.audio_tower.*, lm_head.weight
      copyConfigs(dir);
      const renamed = new Map<string, TensorToWrite>();
      for (const [n, t] of checkpointTensors()) {
        const nn = n.startsWith('language_model.model.')
          ? 'model.language_model.' + n.slice(21)
          : n === 'language_model.lm_head.weight'
            ? 'lm_head.weight'
            : 'model.' + n;
        expect(canonicalTensorName(nn)).toBe(n);
        renamed.set(nn, t);
      }
      writeSafetensors(path.join(dir, 'model.safetensors'), renamed);
      expect(canonicalTensorName('language_model.layers.3.mlp.up_proj.weight')).toBe('language_model.model.layers.3.mlp.up_proj.weight');
      expect(canonicalTensorName('language_model.embed_tokens.weight')).toBe('language_model.model.embed_tokens.weight');
      const m = await loadAudioLLM(engine, dir);
      const l2 = m.forward(PROMPT, feats, { logits: POS })!;
      expect(relErr(await l2.read(), want).rel).toBeLessThan(1e-3);
      l2.dispose();
      m.dispose();
    } finally {
      sharded.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  itF16('f16 weights: logits close to f32 and the same greedy tokens', async () => {
    const progress: [number, number][] = [];
    const m = await loadAudioLLM(engine, DIR, { dtype: 'f16', onProgress: (d, t) => void progress.push([d, t]) });
    try {
      expect(progress).toHaveLength(66);
      expect(progress[65]).toEqual([66, 66]);
      expect(m.decoder.layers[0]!.qkvW.dtype).toBe('f16');
      const f = m.encodeAudio(fx.readFloat32('audio'));
      const l = m.forward(PROMPT, f, { logits: POS })!;
      const e = relErr(await l.read(), fx.readFloat32('logits'));
      errs.logits_f16 = e.rel;
      expect(e.abs).toBeLessThan(0.1);
      l.dispose();
      const g = await generate(m, { ids: PROMPT, audio: f }, { maxNewTokens: 12, stopTokens: [] });
      expect(g.tokens).toEqual(FJ.greedy);
      f.dispose();
    } finally {
      m.dispose();
    }
  });

  it('missing and mis-shaped tensors are listed in one error; nothing stays allocated', async () => {
    const dir = tmpDir('broken');
    try {
      copyConfigs(dir);
      const tensors = checkpointTensors((m) => {
        m.delete('language_model.model.layers.1.mlp.up_proj.weight');
        m.delete('audio_tower.layers.0.fc1.bias');
        m.set('language_model.model.norm.weight', { dtype: 'F32', shape: [63], data: new Float32Array(63) });
      });
      writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      const before = engine.memory().liveBytes;
      let msg = '';
      try {
        await loadAudioLLM(engine, dir);
      } catch (e: any) {
        msg = e.message;
      }
      expect(msg).toMatch(/2 missing: .*audio_tower\.layers\.0\.fc1\.bias/);
      expect(msg).toMatch(/language_model\.model\.layers\.1\.mlp\.up_proj\.weight/);
      expect(msg).toMatch(/1 mis-shaped: language_model\.model\.norm\.weight is \[63\], expected \[64\]/);
      expect(msg.split('\n')).toHaveLength(1);
      expect(engine.memory().liveBytes).toBe(before);
      await expect(loadAudioLLM(engine, path.join(dir, 'nope'))).rejects.toThrow(/not a model directory/);
      // matrices larger than a binding are split into row blocks, but one row must fit: fc2's rows
      // (128 f32 = 512 bytes) do not fit 300, and what was uploaded before it (split) is freed
      await expect(loadAudioLLM(engine, DIR, { maxBindingBytes: 300 })).rejects.toThrow(
        /audio_tower\.layers\.0\.fc2\.weight \[64, 128\] f32: one row of 512 bytes is more than one storage binding of this adapter holds \(300\)/,
      );
      expect(engine.memory().liveBytes).toBe(before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
