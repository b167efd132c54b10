// `planModel` / `ardgpu plan`: a model's device needs from its config alone, checked against what the
// loader really allocates (tiny model) and against Qwen2-Audio-7B-Instruct's published configuration
// (test/fixtures/qwen2-audio-7b/config.json), whose byte counts are re-derived here term by term.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadQwen2AudioConfig } from '../src/model/config.js';
import { loadAudioLLM } from '../src/model/load.js';
import { planModel } from '../src/model/plan.js';
import { RowBlocks } from '../src/tensor/blocked.js';
import { Tensor } from '../src/tensor/tensor.js';
import { getEngine } from './helpers.js';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny-audiollm');
const Q7B = path.join(import.meta.dirname, 'fixtures', 'qwen2-audio-7b');
const BIN = path.join(import.meta.dirname, '..', 'bin', 'ardgpu.mjs');
const HUGE = 2 ** 40;

/** Every weight buffer of a loaded model: [bytes, blocks] per weight object. */
function loadedWeights(model: { encoder: object; decoder: object }): { bytes: number; blocks: number[] } {
  let bytes = 0;
  const blocks: number[] = [];
  const seen = new Set<unknown>();
  const walk = (v: unknown) => {
    if (seen.has(v)) return; // a tied lm_head is the embedding
    seen.add(v);
    if (v instanceof Tensor) bytes += v.size * (v.dtype === 'f16' ? 2 : 4);
    else if (v instanceof RowBlocks) {
      blocks.push(v.blocks.length);
      v.blocks.forEach(walk);
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(model.encoder);
  walk(model.decoder);
  return { bytes, blocks: blocks.sort((a, b) => a - b) };
}

describe('plan', () => {
  it("the tiny model: the plan's weight bytes and row blocks are what the loader allocates", async () => {
    const engine = await getEngine();
    const config = loadQwen2AudioConfig(TINY);
    for (const binding of [HUGE, 12 * 1024, 5000]) {
      // the plan allows for the pool's 1/8 rounding as the loader does: hand it 9/8 of the loader's limit
      const plan = planModel(config, { dtype: 'f32', maxBindingBytes: binding === HUGE ? HUGE : binding * 1.125, maxBufferBytes: HUGE });
      const model = await loadAudioLLM(engine, TINY, { maxBindingBytes: binding });
      const got = loadedWeights(model);
      model.dispose();
      expect(plan.weights.bytes).toBe(got.bytes);
      expect(plan.split.map((w) => w.blocks).sort((a, b) => a - b), `binding ${binding}`).toEqual(got.blocks);
      // at the small limits the position table and other activations (never split) do not fit a binding
      expect(plan.fits).toBe(binding === HUGE);
      if (binding !== HUGE) expect(plan.problems.join('\n')).toMatch(/embed_positions\.weight \[100, 64\] f32: 25600 bytes in one buffer exceed a binding/);
    }
  });

  it("Qwen2-Audio-7B's published shapes: weights, splits on a 128 MiB binding and none on 4 GiB, KV cache, activations", () => {
    const c = loadQwen2AudioConfig(Q7B);
    // parameters, re-derived: matrices (2 bytes in f16) and vectors + position table (always f32)
    const [V, H, I, L] = [156032, 4096, 11008, 32];
    const [D, F, E, M] = [1280, 5120, 32, 128];
    const textMat = 2 * V * H + L * (4 * H * H + 3 * H * I);
    const textVec = L * (3 * H + 2 * H) + H;
    const audioMat = D * M * 3 + D * D * 3 + E * (4 * D * D + 2 * D * F) + H * D;
    const audioVec = 2 * D + 1500 * D + E * (4 * D + 4 * D + F + D) + 2 * D + H; // k bias zeros included
    const p = planModel(c, { dtype: 'f16', maxBindingBytes: 128 * 2 ** 20, maxBufferBytes: 4 * 2 ** 30 });
    expect(p.weights.bytes).toBe(2 * (textMat + audioMat) + 4 * (textVec + audioVec));
    expect(p.weights.bytes / 1e9).toBeCloseTo(16.8, 1);
    const split = new Map(p.split.map((w) => [w.name.replace(/layers\.\d+\./, 'layers.*.'), w.blocks]));
    expect([...split]).toEqual([
      ['language_model.model.embed_tokens.weight', 11], // 1.28 GB in ≤ 119.3 MB blocks
      ['language_model.lm_head.weight', 11],
      ['language_model.model.layers.*.mlp.gate|up.weight', 2], // 22,016 × 4,096 f16: 180 MB
    ]);
    expect(p.split).toHaveLength(34);
    expect(p.kvCache.bytes).toBe(2 * L * 32 * 128 * p.positions * 4);
    expect(p.positions).toBe(750 + 256);
    // the encoder's [20, 1500, 1500] scores (180 MB) are materialised 559 query rows at a time (64 MiB)
    const enc = p.activations.find((x) => x.name.startsWith('encoder: attention scores'))!;
    expect(enc).toEqual({ name: 'encoder: attention scores (3 chunks of 559 query rows)', shape: [20, 559, 1500], bytes: 20 * 559 * 1500 * 4 });
    expect(p.activations[0]!.name).toBe('decoder prefill: gate|up'); // [1006, 22016] f32: 88.6 MB
    expect(p.fits).toBe(true);
    const gpu = planModel(c, { dtype: 'f16', maxBindingBytes: 4 * 2 ** 30 - 4, maxBufferBytes: HUGE, memoryBytes: 80 * 2 ** 30 });
    expect(gpu.split).toEqual([]);
    expect(gpu.fits).toBe(true);
    // flash attention (the GPU profile's) keeps scores in workgroup memory: no score buffer is planned, and
    const flash = planModel(c, { dtype: 'f16', maxBindingBytes: 128 * 2 ** 20, maxBufferBytes: 4 * 2 ** 30, attention: 'flash' });
    expect(flash.activations.some((x) => x.name.includes('attention scores'))).toBe(false);
    expect(flash.activations.map((x) => x.name)).toEqual(p.activations.map((x) => x.name).filter((n) => !n.includes('attention scores')));
    expect(flash.weights.bytes).toBe(p.weights.bytes);
    const small = planModel(c, { dtype: 'f32', maxBindingBytes: HUGE, maxBufferBytes: HUGE, memoryBytes: 24 * 2 ** 30, batch: 8 });
    expect(small.fits).toBe(false);
    expect(small.problems.join('\n')).toMatch(/needs about \d+ bytes .* more than the 25769803776 available/);
    expect(() => planModel(c, { dtype: 'f16', maxBindingBytes: HUGE, maxBufferBytes: HUGE, positions: 9000 }).problems).not.toThrow();
    expect(planModel(c, { dtype: 'f16', maxBindingBytes: HUGE, maxBufferBytes: HUGE, positions: 9000 }).problems[0]).toMatch(/9000 positions exceed max_position_embeddings 8192/);
  });

  it('ardgpu plan --json on the 7B config', () => {
    const r = spawnSync(process.execPath, [BIN, 'plan', '--model', Q7B, '--dtype', 'f16', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, ARDGPU_FROM_SOURCE: '1', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.weights.bytes).toBe(planModel(loadQwen2AudioConfig(Q7B), { dtype: 'f16', maxBindingBytes: HUGE, maxBufferBytes: HUGE }).weights.bytes);
    expect(typeof out.fits).toBe('boolean');
    expect(out.adapter).toMatch(/\S/);
  });
});
