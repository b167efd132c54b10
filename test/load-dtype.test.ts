// Weight dtype from config.json (--dtype auto|f32|f16), the KV cache dtype, and the loader's
// bounded host staging (LoadStats), on the tiny Qwen2-Audio fixture (tools/reference).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../src/gpu/engine.js';
import type { AudioLLM } from '../src/model/audiollm.js';
import { generate } from '../src/model/generate.js';
import { defaultKvDtype, loadAudioLLM, resolveWeightDtype } from '../src/model/load.js';
import { openSafetensors, writeSafetensors, TensorToWrite } from '../src/io/safetensors.js';
import { writeWav } from '../src/audio/wav.js';
import { FIXTURE_DIR, tinyModelDir } from './tiny-model.js';
import { getEngine, itF16, randn, relErr, runCli } from './helpers.js';

const fx = openSafetensors(path.join(FIXTURE_DIR, 'fixtures.safetensors'));
const FJ = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, 'fixtures.json'), 'utf8'));
const PROMPT: number[] = FJ.prompt_ids;
const POS: number[] = FJ.logits_positions;
const EMBEDDED = path.join(import.meta.dirname, '..', 'weights');

let engine: Engine;
let f32model: AudioLLM;
const dirs: string[] = [];

/** A copy of the tiny model folder whose weights are stored as `dtype` and whose config says `torchDtype`. */
function variant(dtype: 'F16' | 'BF16', torchDtype: string, metadata: Record<string, string> = {}): string {
  const dir = tinyModelDir();
  dirs.push(dir);
  const cfgFile = path.join(dir, 'config.json');
  fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), torch_dtype: torchDtype }));
  const src = openSafetensors(path.join(FIXTURE_DIR, dtype === 'BF16' ? 'model-bf16.safetensors' : 'model.safetensors'));
  const m = new Map<string, TensorToWrite>();
  for (const [name, info] of src.tensors) m.set(name, { dtype, shape: info.shape, data: src.readFloat32(name) });
  src.close();
  writeSafetensors(path.join(dir, 'model.safetensors'), m, metadata);
  return dir;
}

async function logitsOf(m: AudioLLM): Promise<Float32Array> {
  const f = m.encodeAudio(fx.readFloat32('audio'));
  const l = m.forward(PROMPT, f, { logits: POS })!;
  const out = await l.toFloat32();
  f.dispose();
  l.dispose();
  return out;
}

beforeAll(async () => {
  engine = await getEngine();
  f32model = await loadAudioLLM(engine, FIXTURE_DIR);
});

afterAll(() => {
  f32model?.dispose();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('weight dtype from config.json', () => {
  it('resolveWeightDtype: float16/bfloat16 → f16 with shader-f16, else f32 with a note; float32/absent → f32', () => {
    expect(resolveWeightDtype({ torch_dtype: 'float16' }, 'auto', true)).toEqual({ dtype: 'f16' });
    expect(resolveWeightDtype({ torch_dtype: 'bfloat16' }, undefined, true)).toEqual({ dtype: 'f16' });
    expect(resolveWeightDtype({ dtype: 'bfloat16' }, 'auto', true)).toEqual({ dtype: 'f16' }); // transformers ≥ 4.56 writes `dtype`
    expect(resolveWeightDtype({ text_config: { torch_dtype: 'float16' } }, 'auto', true)).toEqual({ dtype: 'f16' });
    const noF16 = resolveWeightDtype({ torch_dtype: 'bfloat16' }, 'auto', false, 'x/config.json');
    expect(noF16.dtype).toBe('f32');
    expect(noF16.note).toMatch(/^note: x\/config\.json says bfloat16, but this adapter has no shader-f16: loading the weights in f32/);
    expect(noF16.note).not.toContain('\n');
    expect(resolveWeightDtype({ torch_dtype: 'float32' }, 'auto', true)).toEqual({ dtype: 'f32' });
    expect(resolveWeightDtype({}, 'auto', true)).toEqual({ dtype: 'f32' });
    expect(resolveWeightDtype({ torch_dtype: 'float16' }, 'f32', true)).toEqual({ dtype: 'f32' });
    expect(resolveWeightDtype({}, 'f16', true)).toEqual({ dtype: 'f16' });
    expect(() => resolveWeightDtype({}, 'f64' as 'f32', true)).toThrow(/expected auto, f32 or f16/);
  });

  it('the embedded model: f16 weights on f16 adapters (as the CLI always loaded it) and an f32 KV cache', () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(EMBEDDED, 'config.json'), 'utf8'));
    expect(resolveWeightDtype(cfg, 'auto', true).dtype).toBe('f16');
    expect(resolveWeightDtype(cfg, 'auto', false).dtype).toBe('f32');
    const st = openSafetensors(path.join(EMBEDDED, 'model.safetensors'));
    expect(defaultKvDtype('f16', st.metadata)).toBe('f32'); // trained by ardgpu with f32 activations
    st.close();
    expect(defaultKvDtype('f16', { format: 'pt' })).toBe('f16');
    expect(defaultKvDtype('f32', { format: 'pt' })).toBe('f32');
  });

  itF16('an f16 and a bf16 checkpoint load as f16 by default and as f32 when asked; logits within f16 bounds', async () => {
    for (const [dtype, td, ref] of [['F16', 'float16', 'logits'], ['BF16', 'bfloat16', 'logits_bf16']] as const) {
      const dir = variant(dtype, td);
      const auto = await loadAudioLLM(engine, dir, { dtype: 'auto', tokenizer: false });
      const f32 = await loadAudioLLM(engine, dir, { dtype: 'f32', tokenizer: false });
      try {
        expect([auto.dtype, auto.kvDtype], dtype).toEqual(['f16', 'f16']);
        expect(auto.decoder.layers[0]!.gateUpW.dtype).toBe('f16');
        expect([f32.dtype, f32.kvDtype], dtype).toEqual(['f32', 'f32']);
        expect(f32.decoder.layers[0]!.gateUpW.dtype).toBe('f32');
        const la = await logitsOf(auto);
        const lf = await logitsOf(f32);
        // f32 loading of the stored values matches the reference of the same rounding
        expect(relErr(lf, fx.readFloat32(ref)).rel, `${dtype} f32`).toBeLessThan(dtype === 'BF16' ? 1e-3 : 2e-2);
        const e = relErr(la, lf);
        expect(e.abs, `${dtype}: f16 vs f32 logits`).toBeLessThan(0.1);
        expect(e.abs, `${dtype}: f16 differs`).toBeGreaterThan(0); // the f16 path really ran
        expect(relErr(la, fx.readFloat32(ref)).abs, `${dtype}: f16 vs the reference`).toBeLessThan(0.1);
      } finally {
        auto.dispose();
        f32.dispose();
      }
    }
  }, 60_000);

  itF16('an ardgpu-trained checkpoint keeps an f32 KV cache; kvDtype overrides', async () => {
    const dir = variant('F16', 'float16', { producer: 'ardgpu tools/train-audiollm.ts' });
    const m = await loadAudioLLM(engine, dir, { dtype: 'auto', tokenizer: false });
    const m2 = await loadAudioLLM(engine, dir, { dtype: 'auto', kvDtype: 'f16', tokenizer: false });
    try {
      expect([m.dtype, m.kvDtype]).toEqual(['f16', 'f32']);
      expect([m2.dtype, m2.kvDtype]).toEqual(['f16', 'f16']);
    } finally {
      m.dispose();
      m2.dispose();
    }
  });
});

describe('KV cache dtype', () => {
  itF16('f16 cache: half the bytes; logits and greedy tokens close to the f32 cache', async () => {
    const c32 = f32model.newCache(64);
    const c16 = f32model.newCache(64, 'f16');
    expect([c32.dtype, c16.dtype]).toEqual(['f32', 'f16']);
    expect(c16.bytes * 2).toBe(c32.bytes);
    expect(c16.k[0]!.dtype).toBe('f16');
    c32.dispose();
    c16.dispose();
    const f = f32model.encodeAudio(fx.readFloat32('audio'));
    try {
      const base = await logitsOf(f32model);
      const greedy = (await generate(f32model, { ids: PROMPT, audio: f }, { maxNewTokens: 12, stopTokens: [] })).tokens;
      expect(greedy).toEqual(FJ.greedy);
      f32model.kvDtype = 'f16';
      try {
        const l16 = await logitsOf(f32model);
        const e = relErr(l16, base);
        expect(e.abs).toBeGreaterThan(0); // keys and values were rounded
        expect(e.rel).toBeLessThan(5e-3);
        // cached decoding: every step reads the f16 cache
        const g = await generate(f32model, { ids: PROMPT, audio: f }, { maxNewTokens: 12, stopTokens: [] });
        expect(g.tokens).toEqual(FJ.greedy);
      } finally {
        f32model.kvDtype = 'f32';
      }
      // the f32 cache is what it always was: the reference's logits
      expect(relErr(await logitsOf(f32model), fx.readFloat32('logits')).rel).toBeLessThan(1e-3);
      expect(Array.from(await logitsOf(f32model))).toEqual(Array.from(base));
    } finally {
      f.dispose();
    }
  });
});

describe('streamed loading: bounded host staging', () => {
  it('tensors 37× the chunk never stage more than three chunks; every byte is read once; same logits', async () => {
    const chunk = 512;
    const st = openSafetensors(path.join(FIXTURE_DIR, 'model.safetensors'));
    let dataBytes = 0;
    let largest = 0;
    for (const [, info] of st.tensors) {
      dataBytes += info.byteLength;
      largest = Math.max(largest, info.shape.reduce((a, b) => a * b, 1));
    }
    st.close();
    expect(largest).toBeGreaterThanOrEqual(37 * chunk);
    const m = await loadAudioLLM(engine, FIXTURE_DIR, { chunkValues: chunk, tokenizer: false });
    try {
      const s = m.loadStats!;
      expect(s.chunkValues).toBe(chunk);
      // staging (f32) + the raw bytes read + a converted copy: at most 3 × chunk × 4 bytes
      expect(s.peakStagingBytes).toBeLessThanOrEqual(3 * chunk * 4);
      expect(s.peakStagingBytes).toBeGreaterThanOrEqual(chunk * 4);
      expect(s.largestBufferBytes).toBe(chunk * 4);
      expect(s.bytesRead).toBe(dataBytes);
      expect(s.reads).toBeGreaterThan(dataBytes / (chunk * 4));
      // f32 weights; fused q|k|v biases add Whisper's zero k bias, so uploads ≥ reads
      expect(s.bytesUploaded).toBeGreaterThanOrEqual(dataBytes);
      expect(Array.from(await logitsOf(m))).toEqual(Array.from(await logitsOf(f32model)));
    } finally {
      m.dispose();
    }
    // the default chunk holds these small tensors whole
    expect(f32model.loadStats!.chunkValues).toBe(4 << 20);
    expect(f32model.loadStats!.largestBufferBytes).toBeGreaterThanOrEqual(largest * 4);
  });

  itF16('an f16 checkpoint loaded as f16 through a small chunk: the same bound, the same logits', async () => {
    const dir = variant('F16', 'float16');
    const a = await loadAudioLLM(engine, dir, { dtype: 'f16', chunkValues: 300, tokenizer: false });
    const b = await loadAudioLLM(engine, dir, { dtype: 'f16', tokenizer: false });
    try {
      expect(a.loadStats!.peakStagingBytes).toBeLessThanOrEqual(3 * 300 * 4);
      expect(Array.from(await logitsOf(a))).toEqual(Array.from(await logitsOf(b)));
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('a bad chunk size is one error naming it', async () => {
    await expect(loadAudioLLM(engine, FIXTURE_DIR, { chunkValues: 0 })).rejects.toThrow(/^load chunk: expected a positive whole number of values, got '0'$/);
  });
});

describe('CLI', () => {
  itF16('ask: --dtype auto (default) follows torch_dtype, --dtype f32 and --kv-dtype choose', async () => {
    const dir = variant('BF16', 'bfloat16');
    const wav = path.join(dir, 'clip.wav');
    writeWav(wav, randn(16000, 5, 0.2));
    const ask = (...extra: string[]) => {
      const r = runCli(['ask', wav, '--model', dir, '--max-tokens', '2', '--json', ...extra]);
      expect(r.code, r.stderr.join('\n')).toBe(0);
      return JSON.parse(r.stdout);
    };
    expect(ask()).toMatchObject({ dtype: 'f16', kvDtype: 'f16' });
    expect(ask('--dtype', 'f32')).toMatchObject({ dtype: 'f32', kvDtype: 'f32' });
    expect(ask('--kv-dtype', 'f32')).toMatchObject({ dtype: 'f16', kvDtype: 'f32' });
    const bad = runCli(['ask', wav, '--model', dir, '--dtype', 'f8']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.join('\n')).toMatch(/--dtype: expected auto, f32 or f16, got 'f8'/);
  }, 120_000);
});

