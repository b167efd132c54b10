// SAELens and sparsify SAE folders: the files match the published layouts field by field, the
// exported weights compute the ardgpu SAE's codes and reconstructions under each project's own
// forward pass (written out here from their sources), loading gives the same SAE back, foreign
// variants (pre-6 SAELens configs, apply_b_dec_to_input false, rescale_acts_by_decoder_norm) load
// to the function SAELens computes, bad folders fail with one line naming the file, and the
// export-sae command writes both layouts from a run.
//
// Sources (SAELens 6.18.0, github.com/jbloomAus/SAELens @ 91ca16cc; sparsify @ 9d3b136c,
// github.com/EleutherAI/sparsify):
//   sae_lens/saes/sae.py           SAEConfig fields, SAE.save_inference_model, process_sae_in,
//                                  fold_activation_norm_scaling_factor
//   sae_lens/saes/topk_sae.py      TopKSAEConfig (k, rescale_acts_by_decoder_norm), TopKSAE.encode /
//                                  decode, TopK (topk then ReLU), _fold_norm_topk
//   sae_lens/constants.py          cfg.json, sae_weights.safetensors, sparsity.safetensors
//   sae_lens/training/sae_trainer.py  _log_feature_sparsity: log10(act_freq / n + 1e-10), saved
//                                  as {"sparsity": …}
//   sae_lens/loading/pretrained_sae_loaders.py  handle_pre_6_0_config (activation_fn_str "topk",
//                                  activation_fn_kwargs.k), LLM_METADATA_KEYS
//   sparsify/config.py             SparseCoderConfig fields
//   sparsify/sparse_coder.py       save_to_disk (cfg.json = cfg.to_dict() + d_in; sae.safetensors =
//                                  the module state: encoder.weight [M, D], encoder.bias, W_dec
//                                  [M, D], b_dec), encode (x − b_dec), decode (+ b_dec)
//   sparsify/fused_encoder.py      relu(linear(x, W, b)) then topk
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../src/gpu/engine.js';
import { tensor } from '../src/tensor/tensor.js';
import { ShardReader } from '../src/io/shards.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { SparseAutoencoder } from '../src/sae/model.js';
import { loadSae } from '../src/sae/load.js';
import { readSaeArrays, SaeArrays, transpose2d } from '../src/sae/formats/common.js';
import { loadSaelens, readSaelensSparsity, writeSaelens } from '../src/sae/formats/saelens.js';
import { writeSparsify } from '../src/sae/formats/sparsify.js';
import { featureDensity } from '../src/ard/export-sae.js';
import { ArdError } from '../src/util/errors.js';
import { expectClose, getEngine, randn, runCli } from './helpers.js';

const d = 16;
const m = 64;
const k = 8;
const S = 0.37; // an input scale far from 1, so a missed fold shows
const LAYER = 3;
const ROWS = 48;

let engine: Engine;
let tmp: string;
let orig: SparseAutoencoder;
let x: Float32Array; // raw activations (the caller's units)
beforeAll(async () => {
  engine = await getEngine();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-saefmt-'));
  orig = randomSae(1, S);
  x = randn(ROWS * d, 7, 1 / S); // the scale brings it to about unit size, as in training
});
afterAll(() => {
  orig?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Random Top-K SAE with unit decoder rows, an encoder that is not Wdecᵀ, and non-zero biases. */
function randomSae(seed: number, inputScale: number): SparseAutoencoder {
  const W_dec = randn(m * d, seed);
  for (let j = 0; j < m; j++) {
    const n = Math.hypot(...W_dec.subarray(j * d, (j + 1) * d));
    for (let c = 0; c < d; c++) W_dec[j * d + c]! /= n;
  }
  return SparseAutoencoder.fromArrays(
    engine,
    { d, m, k },
    { W_enc: randn(d * m, seed + 1, 0.5), b_enc: randn(m, seed + 2, 0.1), W_dec, b_dec: randn(d, seed + 3, 0.3) },
    { inputScale, layer: LAYER },
  );
}

/** What an ardgpu SAE computes on raw x: dense codes [rows, m] and x̂ [rows, d]. */
async function ardgpuForward(sae: SparseAutoencoder, xs: Float32Array) {
  const xt = tensor(engine, xs, [xs.length / d, d]);
  const zt = sae.encodeDense(xt);
  const yt = sae.reconstruct(xt);
  const [z, y] = [(await zt.read()) as Float32Array, (await yt.read()) as Float32Array];
  for (const t of [xt, zt, yt]) t.dispose();
  return { z, y };
}

/** `got` computes what `want` does on xs: the same codes and reconstructions (f32 bounds). */
async function expectSameFunction(got: SparseAutoencoder, want: SparseAutoencoder, xs: Float32Array): Promise<void> {
  const [r0, r1] = [await ardgpuForward(want, xs), await ardgpuForward(got, xs)];
  expectClose(r1.z, r0.z, 1e-5, 1e-5, 'codes');
  expectClose(r1.y, r0.y, 1e-5, 1e-5, 'reconstruction');
}

/** Indices of the k largest of v (ties: lower index), as torch.topk picks them. */
function topk(v: Float64Array, kk: number): number[] {
  return [...v.keys()].sort((a, b) => v[b]! - v[a]! || a - b).slice(0, kk);
}

/**
 * SAELens 6 TopKSAE.encode / decode on host arrays (W_enc [d_in, d_sae], W_dec [d_sae, d_in]):
 * sae_in = x − b_dec·apply_b_dec_to_input; pre = sae_in·W_enc + b_enc (× ‖W_dec[j]‖ when
 * rescale_acts_by_decoder_norm); z = ReLU(topk(pre)); x̂ = (z / ‖W_dec[j]‖ when rescaling)·W_dec + b_dec.
 */
function saelensForward(cfg: any, w: Record<string, Float32Array>, xs: Float32Array) {
  const D = cfg.d_in as number;
  const M = cfg.d_sae as number;
  const K = (cfg.k ?? cfg.activation_fn_kwargs?.k) as number;
  const rows = xs.length / D;
  const norms = Float64Array.from({ length: M }, (_, j) => Math.hypot(...w.W_dec!.subarray(j * D, (j + 1) * D)));
  const z = new Float32Array(rows * M);
  const y = new Float32Array(rows * D);
  const apply = cfg.apply_b_dec_to_input ?? true;
  for (let r = 0; r < rows; r++) {
    const pre = new Float64Array(M);
    for (let j = 0; j < M; j++) {
      let acc = w.b_enc![j]!;
      for (let c = 0; c < D; c++) acc += (xs[r * D + c]! - (apply ? w.b_dec![c]! : 0)) * w.W_enc![c * M + j]!;
      pre[j] = cfg.rescale_acts_by_decoder_norm ? acc * norms[j]! : acc;
    }
    for (const j of topk(pre, K)) z[r * M + j] = Math.max(0, pre[j]!);
    for (let c = 0; c < D; c++) {
      let acc = w.b_dec![c]!;
      for (let j = 0; j < M; j++) if (z[r * M + j]) acc += (cfg.rescale_acts_by_decoder_norm ? z[r * M + j]! / norms[j]! : z[r * M + j]!) * w.W_dec![j * D + c]!;
      y[r * D + c] = acc;
    }
  }
  return { z, y };
}

/** sparsify SparseCoder.encode / decode: z = topk(ReLU((x − b_dec)·encoder.weightᵀ + encoder.bias)), x̂ = z·W_dec + b_dec. */
function sparsifyForward(cfg: any, w: Record<string, Float32Array>, xs: Float32Array) {
  const D = cfg.d_in as number;
  const M = cfg.num_latents as number;
  const rows = xs.length / D;
  const z = new Float32Array(rows * M);
  const y = new Float32Array(rows * D);
  for (let r = 0; r < rows; r++) {
    const pre = new Float64Array(M);
    for (let j = 0; j < M; j++) {
      let acc = w['encoder.bias']![j]!;
      for (let c = 0; c < D; c++) acc += (xs[r * D + c]! - w.b_dec![c]!) * w['encoder.weight']![j * D + c]!;
      pre[j] = Math.max(0, acc);
    }
    for (const j of topk(pre, cfg.k)) z[r * M + j] = pre[j]!;
    for (let c = 0; c < D; c++) {
      let acc = w.b_dec![c]!;
      for (let j = 0; j < M; j++) if (z[r * M + j]) acc += z[r * M + j]! * w.W_dec![j * D + c]!;
      y[r * D + c] = acc;
    }
  }
  return { z, y };
}

/**
 * A safetensors file read by the format's definition (8-byte little-endian header length, JSON
 * header with dtype / shape / data_offsets, then the data), independently of src/io: header and
 * F32 tensors.
 */
function readRawSafetensors(file: string) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tensors: Record<string, Float32Array> = {};
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = info.data_offsets as [number, number];
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    tensors[name] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  return { header, tensors };
}

function tensorLayout(header: any): Record<string, [string, number[]]> {
  const out: Record<string, [string, number[]]> = {};
  for (const [name, info] of Object.entries<any>(header)) if (name !== '__metadata__') out[name] = [info.dtype, info.shape];
  return out;
}

const sorted = (o: object) => Object.keys(o).sort();

describe('SAELens folder', () => {
  it('matches SAELens 6 layout field by field (cfg.json, sae_weights.safetensors, sparsity.safetensors)', async () => {
    const dir = path.join(tmp, 'saelens-layout');
    const density = Float32Array.from({ length: m }, (_, j) => (j % 5 === 0 ? 0 : j / m));
    writeSaelens(dir, await readSaeArrays(orig), S, { layer: LAYER, modelName: 'tiny-qwen2-audio', datasetPath: '/corpus', density });
    expect(fs.readdirSync(dir).sort()).toEqual(['cfg.json', 'sae_weights.safetensors', 'sparsity.safetensors']);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'cfg.json'), 'utf8'));
    // SAEConfig's fields + TopKSAEConfig's + architecture and metadata (SAE.save_inference_model)
    expect(sorted(cfg)).toEqual(['apply_b_dec_to_input', 'architecture', 'd_in', 'd_sae', 'device', 'dtype', 'k', 'metadata', 'normalize_activations', 'rescale_acts_by_decoder_norm', 'reshape_activations']);
    expect(cfg).toMatchObject({
      architecture: 'topk', d_in: d, d_sae: m, dtype: 'float32', device: 'cpu', k,
      apply_b_dec_to_input: true, normalize_activations: 'none', reshape_activations: 'none', rescale_acts_by_decoder_norm: false,
    });
    // metadata: sae_lens_version ≥ 6 (else SAELens rewrites the config as pre-6), and the keys
    // LanguageModelSAETrainingRunner._set_sae_metadata fills
    expect(Number(cfg.metadata.sae_lens_version.split('.')[0])).toBeGreaterThanOrEqual(6);
    for (const key of ['model_name', 'hook_name', 'hook_head_index', 'model_class_name', 'prepend_bos', 'dataset_path', 'context_size', 'seqpos_slice', 'model_from_pretrained_kwargs', 'exclude_special_tokens', 'sae_lens_training_version']) {
      expect(cfg.metadata, key).toHaveProperty(key);
    }
    expect(cfg.metadata).toMatchObject({ model_name: 'tiny-qwen2-audio', hook_name: `language_model.model.layers.${LAYER}`, hook_head_index: null, dataset_path: '/corpus', seqpos_slice: [null] });
    expect(cfg.metadata.model_from_pretrained_kwargs).toEqual({}); // non-empty makes SAELens warn

    const w = readRawSafetensors(path.join(dir, 'sae_weights.safetensors'));
    expect(tensorLayout(w.header)).toEqual({ W_enc: ['F32', [d, m]], b_enc: ['F32', [m]], W_dec: ['F32', [m, d]], b_dec: ['F32', [d]] });
    const sp = readRawSafetensors(path.join(dir, 'sparsity.safetensors'));
    expect(tensorLayout(sp.header)).toEqual({ sparsity: ['F32', [m]] });
    expectClose(sp.tensors.sparsity!, Array.from(density, (v) => Math.log10(v + 1e-10)), 1e-6, 1e-6, 'log10 density');
    expect(sp.tensors.sparsity![0]).toBeCloseTo(-10, 5); // a dead latent
    expectClose(readSaelensSparsity(dir)!, sp.tensors.sparsity!, 0, 0, 'read back');

    // SAELens's forward pass on these files computes the ardgpu SAE's codes and reconstructions on raw x
    const ref = await ardgpuForward(orig, x);
    const theirs = saelensForward(cfg, w.tensors, x);
    expectClose(theirs.z, ref.z, 1e-4, 1e-4, 'codes (SAELens forward)');
    expectClose(theirs.y, ref.y, 1e-4, 1e-4, 'reconstruction (SAELens forward)');
  });

  it('round trip: export → loadSae / SparseAutoencoder.load gives the same SAE, codes and reconstructions', async () => {
    const dir = path.join(tmp, 'saelens-rt');
    const a = await readSaeArrays(orig);
    writeSaelens(dir, a, S, { layer: LAYER });
    expect(fs.existsSync(path.join(dir, 'sparsity.safetensors'))).toBe(false); // no density given
    for (const p of [dir, path.join(dir, 'sae_weights.safetensors')]) {
      for (const load of [loadSae, SparseAutoencoder.load]) {
        const back = load(engine, p) as SparseAutoencoder;
        try {
          expect(back).toBeInstanceOf(SparseAutoencoder);
          expect([back.d, back.m, back.k, back.inputScale, back.layer]).toEqual([d, m, k, S, LAYER]);
          const b = await readSaeArrays(back);
          for (const key of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expectClose(b[key], a[key], 1e-6, 1e-7, key);
          await expectSameFunction(back, orig, x);
        } finally {
          back.dispose();
        }
      }
    }
  });

  it('a folder SAELens wrote (no ardgpu metadata) loads with input scale 1 and computes the same function', async () => {
    const dir = path.join(tmp, 'saelens-foreign');
    writeSaelens(dir, await readSaeArrays(orig), S, { layer: LAYER });
    const w = readRawSafetensors(path.join(dir, 'sae_weights.safetensors'));
    writeSafetensors(path.join(dir, 'sae_weights.safetensors'), Object.fromEntries(Object.entries(w.tensors).map(([n, t]) => [n, { dtype: 'F32', shape: w.header[n].shape, data: t }])));
    const back = loadSae(engine, dir) as SparseAutoencoder;
    try {
      expect(back.inputScale).toBe(1);
      expect(back.layer).toBe(LAYER); // from metadata.hook_name
      await expectSameFunction(back, orig, x);
    } finally {
      back.dispose();
    }
  });

  it('pre-6 configs, apply_b_dec_to_input false and rescale_acts_by_decoder_norm load to what SAELens computes', async () => {
    // decoder rows of varied norms, so rescaling matters
    const W_dec = randn(m * d, 21, 0.7);
    const w = { W_enc: randn(d * m, 22, 0.5), b_enc: randn(m, 23, 0.2), W_dec, b_dec: randn(d, 24, 0.5) };
    const xs = randn(ROWS * d, 25);
    const variants: [string, Record<string, unknown>][] = [
      ['pre6-topk', { d_in: d, d_sae: m, dtype: 'float32', activation_fn_str: 'topk', activation_fn_kwargs: { k }, hook_point: 'blocks.2.hook_resid_post', normalize_activations: false, apply_b_dec_to_input: true, sae_lens_training_version: '3.5.0' }],
      ['no-bdec-input', { architecture: 'topk', d_in: d, d_sae: m, dtype: 'float32', k, apply_b_dec_to_input: false, normalize_activations: 'none', metadata: { sae_lens_version: '6.5.0' } }],
      ['rescale', { architecture: 'topk', d_in: d, d_sae: m, dtype: 'float32', k, apply_b_dec_to_input: true, rescale_acts_by_decoder_norm: true, normalize_activations: 'none', metadata: { sae_lens_version: '6.18.0', hook_name: 'blocks.5.hook_resid_post' } }],
    ];
    for (const [name, cfg] of variants) {
      const dir = path.join(tmp, `saelens-${name}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify(cfg));
      writeSafetensors(path.join(dir, 'sae_weights.safetensors'), {
        W_enc: { dtype: 'F32', shape: [d, m], data: w.W_enc }, b_enc: { dtype: 'F32', shape: [m], data: w.b_enc },
        W_dec: { dtype: 'F32', shape: [m, d], data: w.W_dec }, b_dec: { dtype: 'F32', shape: [d], data: w.b_dec },
      });
      const theirs = saelensForward(cfg, w, xs);
      const back = loadSaelens(engine, dir);
      try {
        const ours = await ardgpuForward(back, xs);
        expectClose(ours.z, theirs.z, 1e-4, 1e-4, `${name} codes`);
        expectClose(ours.y, theirs.y, 1e-4, 1e-4, `${name} reconstruction`);
      } finally {
        back.dispose();
      }
    }
    const pre6 = loadSaelens(engine, path.join(tmp, 'saelens-pre6-topk'));
    expect(pre6.layer).toBe(2); // from the pre-6 hook_point
    pre6.dispose();
  });
});

describe('sparsify folder', () => {
  it("matches sparsify's layout field by field and its forward pass computes the ardgpu SAE", async () => {
    const root = path.join(tmp, 'sparsify-root');
    const dir = writeSparsify(root, await readSaeArrays(orig), S, { layer: LAYER });
    expect(dir).toBe(path.join(root, `language_model.model.layers.${LAYER}`));
    expect(fs.readdirSync(dir).sort()).toEqual(['cfg.json', 'sae.safetensors']);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'cfg.json'), 'utf8'));
    // SparseCoderConfig's fields + d_in (save_to_disk)
    expect(sorted(cfg)).toEqual(['activation', 'd_in', 'expansion_factor', 'k', 'multi_topk', 'normalize_decoder', 'num_latents', 'skip_connection', 'transcode']);
    expect(cfg).toMatchObject({ activation: 'topk', d_in: d, num_latents: m, k, multi_topk: false, skip_connection: false, transcode: false, expansion_factor: m / d });
    expect(typeof cfg.normalize_decoder).toBe('boolean');
    const w = readRawSafetensors(path.join(dir, 'sae.safetensors'));
    // nn.Linear(d_in, num_latents) stores weight [num_latents, d_in]
    expect(tensorLayout(w.header)).toEqual({ 'encoder.weight': ['F32', [m, d]], 'encoder.bias': ['F32', [m]], W_dec: ['F32', [m, d]], b_dec: ['F32', [d]] });
    const ref = await ardgpuForward(orig, x);
    const theirs = sparsifyForward(cfg, w.tensors, x);
    expectClose(theirs.z, ref.z, 1e-4, 1e-4, 'codes (sparsify forward)');
    expectClose(theirs.y, ref.y, 1e-4, 1e-4, 'reconstruction (sparsify forward)');
  });

  it('round trip: the hookpoint folder loads back to the same SAE; the root names its hookpoints', async () => {
    const root = path.join(tmp, 'sparsify-rt');
    const a = await readSaeArrays(orig);
    const dir = writeSparsify(root, a, S, { layer: LAYER });
    const back = loadSae(engine, dir) as SparseAutoencoder;
    try {
      expect([back.d, back.m, back.k, back.inputScale, back.layer]).toEqual([d, m, k, S, LAYER]);
      const b = await readSaeArrays(back);
      for (const key of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expectClose(b[key], a[key], 1e-6, 1e-7, key);
      await expectSameFunction(back, orig, x);
    } finally {
      back.dispose();
    }
    expect(() => loadSae(engine, root)).toThrow(`${root}: holds one SAE per hookpoint; name one of its folders (language_model.model.layers.${LAYER})`);
    // a bf16 sparsify file (what sparsify trains in) loads too
    const w = readRawSafetensors(path.join(dir, 'sae.safetensors'));
    const bf = path.join(tmp, 'sparsify-bf16', 'layers.4');
    fs.mkdirSync(bf, { recursive: true });
    fs.copyFileSync(path.join(dir, 'cfg.json'), path.join(bf, 'cfg.json'));
    writeSafetensors(path.join(bf, 'sae.safetensors'), Object.fromEntries(Object.entries(w.tensors).map(([n, t]) => [n, { dtype: 'BF16', shape: w.header[n].shape, data: t }])));
    const b16 = loadSae(engine, bf) as SparseAutoencoder;
    try {
      expect([b16.inputScale, b16.layer]).toEqual([1, 4]);
      const theirs = sparsifyForward(JSON.parse(fs.readFileSync(path.join(bf, 'cfg.json'), 'utf8')), readBf16AsF32(path.join(bf, 'sae.safetensors')), x);
      const ours = await ardgpuForward(b16, x);
      expectClose(ours.z, theirs.z, 1e-4, 1e-4, 'bf16 codes');
    } finally {
      b16.dispose();
    }
  });
});

/** BF16 tensors widened to f32 by the definition (the high 16 bits of an f32). */
function readBf16AsF32(file: string): Record<string, Float32Array> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out: Record<string, Float32Array> = {};
  for (const [name, info] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = info.data_offsets as [number, number];
    const u = new Uint32Array((b - a) / 2);
    for (let i = 0; i < u.length; i++) u[i] = buf.readUInt16LE(8 + n + a + 2 * i) << 16;
    out[name] = new Float32Array(u.buffer);
  }
  return out;
}

describe('feature density', () => {
  it('is the share of rows on which each latent fires, streamed from shards', async () => {
    const file = path.join(tmp, 'density', 'shard.safetensors');
    writeSafetensors(file, { acts: { dtype: 'F32', shape: [ROWS, d], data: x } });
    const reader = new ShardReader([{ file, tensor: 'acts', rows: ROWS }], d);
    const { density, rows } = await featureDensity(engine, orig, reader, { batchRows: 20 });
    expect(rows).toBe(ROWS);
    const { z } = await ardgpuForward(orig, x);
    const want = Array.from({ length: m }, (_, j) => {
      let c = 0;
      for (let r = 0; r < ROWS; r++) if (z[r * m + j]! > 0) c++;
      return c / ROWS;
    });
    expectClose(density, want, 0, 1e-7, 'density');
    expect(new Set(want).size).toBeGreaterThan(2); // latents fire at different rates
  });
});

describe('bad SAE folders: one line naming the file', () => {
  async function saelensDir(name: string, cfgPatch: Record<string, unknown> = {}, weights?: (a: SaeArrays) => Record<string, any>) {
    const dir = path.join(tmp, 'bad', name);
    const a = await readSaeArrays(orig);
    writeSaelens(dir, a, 1, { layer: LAYER });
    const cfgFile = path.join(dir, 'cfg.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), ...cfgPatch }));
    if (weights) writeSafetensors(path.join(dir, 'sae_weights.safetensors'), weights(a));
    return dir;
  }
  const full = (a: SaeArrays) => ({
    W_enc: { dtype: 'F32', shape: [d, m], data: a.W_enc }, b_enc: { dtype: 'F32', shape: [m], data: a.b_enc },
    W_dec: { dtype: 'F32', shape: [m, d], data: a.W_dec }, b_dec: { dtype: 'F32', shape: [d], data: a.b_dec },
  });

  it('SAELens', async () => {
    const cases: [string, string, Record<string, unknown>, ((a: SaeArrays) => Record<string, any>) | undefined][] = [
      ['jumprelu', 'cfg.json: architecture "jumprelu" is not supported (ardgpu loads Top-K SAEs: architecture "topk")', { architecture: 'jumprelu' }, undefined],
      ['pre6-relu', 'cfg.json: architecture "standard" is not supported', { architecture: undefined, metadata: {}, activation_fn_str: 'relu' }, undefined],
      ['layernorm', 'cfg.json: normalize_activations "layer_norm" is not supported', { normalize_activations: 'layer_norm' }, undefined],
      ['hookz', 'cfg.json: reshape_activations "hook_z" is not supported', { reshape_activations: 'hook_z' }, undefined],
      ['no-k', "cfg.json: 'k' must be a positive integer, got undefined", { k: undefined }, undefined],
      ['big-k', `sae_weights.safetensors: k = ${m + 1} exceeds the number of latents ${m}`, { k: m + 1 }, undefined],
      ['no-benc', "sae_weights.safetensors: no tensor 'b_enc' (has ", {}, (a) => { const { b_enc: _b, ...rest } = full(a); return rest; }],
      ['wrong-shape', `sae_weights.safetensors: W_dec has shape [${d}, ${m}], expected [${m}, ${d}]`, {}, (a) => ({ ...full(a), W_dec: { dtype: 'F32', shape: [d, m], data: a.W_dec } })],
      ['d-mismatch', `sae_weights.safetensors: W_enc has shape [${d}, ${m}], expected [${d + 4}, ${m}]`, { d_in: d + 4 }, undefined],
      ['scaling', 'sae_weights.safetensors: a finetuning scaling_factor other than 1 is not supported', {}, (a) => ({ ...full(a), scaling_factor: { dtype: 'F32', shape: [m], data: new Float32Array(m).fill(2) } })],
    ];
    for (const [name, msg, patch, weights] of cases) {
      const dir = await saelensDir(name, patch, weights);
      let err: unknown;
      try {
        loadSae(engine, dir).dispose();
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(ArdError);
      expect((err as Error).message, name).toContain(path.join(dir, msg.split(':')[0]!) + ':' + msg.slice(msg.indexOf(':') + 1));
      expect((err as Error).message).not.toContain('\n');
    }
    // d_in not a multiple of 4
    const odd = path.join(tmp, 'bad', 'odd');
    fs.mkdirSync(odd, { recursive: true });
    fs.writeFileSync(path.join(odd, 'cfg.json'), JSON.stringify({ architecture: 'topk', d_in: 6, d_sae: 8, k: 2, metadata: { sae_lens_version: '6.0.0' } }));
    writeSafetensors(path.join(odd, 'sae_weights.safetensors'), {
      W_enc: { dtype: 'F32', shape: [6, 8], data: new Float32Array(48) }, b_enc: { dtype: 'F32', shape: [8], data: new Float32Array(8) },
      W_dec: { dtype: 'F32', shape: [8, 6], data: new Float32Array(48) }, b_dec: { dtype: 'F32', shape: [6], data: new Float32Array(6) },
    });
    expect(() => loadSae(engine, odd)).toThrow(`${path.join(odd, 'sae_weights.safetensors')}: d_in = 6 is not a multiple of 4`);
    // not JSON
    const bad = await saelensDir('not-json');
    fs.writeFileSync(path.join(bad, 'cfg.json'), '{ architecture: topk');
    expect(() => loadSae(engine, bad)).toThrow(new RegExp(`^${escape(path.join(bad, 'cfg.json'))}: invalid JSON`));
  });

  it('sparsify, and paths that are no SAE', async () => {
    const a = await readSaeArrays(orig);
    const cases: [string, Record<string, unknown>, string][] = [
      ['groupmax', { activation: 'groupmax' }, 'cfg.json: activation "groupmax" is not supported (only "topk")'],
      ['skip', { skip_connection: true }, 'cfg.json: skip_connection (W_skip) is not supported'],
      ['transcoder', { transcode: true }, 'cfg.json: a transcoder (transcode: true) is not an autoencoder ardgpu can load'],
      ['expansion', { num_latents: 0, expansion_factor: 2 }, `sae.safetensors: encoder.weight has shape [${m}, ${d}], expected [${2 * d}, ${d}]`],
    ];
    for (const [name, patch, msg] of cases) {
      const dir = writeSparsify(path.join(tmp, 'bad-sparsify', name), a, 1, { layer: LAYER });
      const cfgFile = path.join(dir, 'cfg.json');
      fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), ...patch }));
      const [file, rest] = [msg.slice(0, msg.indexOf(':')), msg.slice(msg.indexOf(':'))];
      expect(() => loadSae(engine, dir), name).toThrow(path.join(dir, file) + rest);
    }
    const empty = path.join(tmp, 'bad', 'empty');
    fs.mkdirSync(empty, { recursive: true });
    expect(() => loadSae(engine, empty)).toThrow(`${empty}: not an SAE folder (expected saelens: cfg.json + sae_weights.safetensors; sparsify: cfg.json + sae.safetensors)`);
    const missing = path.join(tmp, 'bad', 'missing');
    expect(() => loadSae(engine, missing)).toThrow(`${missing}: cannot open (ENOENT)`);
  });

  it('writing refuses to replace a folder that is not an earlier export, and replaces one that is', async () => {
    const a = await readSaeArrays(orig);
    const dir = path.join(tmp, 'bad', 'occupied');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    expect(() => writeSaelens(dir, a, S, { layer: LAYER })).toThrow(`${dir}: folder is not empty and holds no cfg.json (refusing to replace it)`);
    expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
    const again = path.join(tmp, 'bad', 'again');
    writeSaelens(again, a, S, { layer: LAYER, density: new Float32Array(m) });
    writeSaelens(again, a, S, { layer: LAYER });
    expect(fs.readdirSync(again).sort()).toEqual(['cfg.json', 'sae_weights.safetensors']);
    expect(fs.readdirSync(path.dirname(again)).filter((n) => n.includes('.tmp') || n.includes('.old'))).toEqual([]);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('ardgpu export-sae', () => {

  it('writes a run SAE as SAELens (densities over the capture) and sparsify folders that load back', async () => {
    const run = path.join(tmp, 'run');
    const shard = `layer-${LAYER}/shard-00000.safetensors`;
    writeSafetensors(path.join(run, 'capture', shard), { acts: { dtype: 'F32', shape: [ROWS, d], data: x } });
    fs.writeFileSync(path.join(run, 'capture', 'manifest.json'), JSON.stringify({
      model: 'tiny-model', corpus: '/corpus', prompt: 'Describe.', layers: [LAYER], d, dtype: 'f32', positions: 'audio',
      clips: [{ id: 'c0', file: 'c0.wav', labels: [], split: 'train', duration: 1, rowStart: 0, rowCount: ROWS, frameSeconds: 0.04 }],
      shards: { [LAYER]: [{ file: shard, rowStart: 0, rowCount: ROWS }] },
    }));
    await orig.save(path.join(run, `sae-${LAYER}.safetensors`));

    const out = path.join(tmp, 'exported-saelens');
    const r = runCli(['export-sae', '--run', run, '--layer', String(LAYER), '--format', 'saelens', '--out', out, '--json', '--quiet']);
    expect(r.code, r.stderr.join('\n')).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'saelens', dir: out, d, m, k, inputScale: S, densityRows: ROWS });
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'cfg.json'), 'utf8'));
    expect(cfg.metadata).toMatchObject({ model_name: 'tiny-model', dataset_path: '/corpus', hook_name: `language_model.model.layers.${LAYER}` });
    const { z } = await ardgpuForward(orig, x);
    const fired = Array.from({ length: m }, (_, j) => Array.from({ length: ROWS }, (_, r) => z[r * m + j]! > 0).filter(Boolean).length / ROWS);
    expectClose(readSaelensSparsity(out)!, fired.map((v) => Math.log10(v + 1e-10)), 1e-6, 1e-6, 'sparsity');
    const back = loadSae(engine, out) as SparseAutoencoder;
    expectClose((await ardgpuForward(back, x)).y, (await ardgpuForward(orig, x)).y, 1e-5, 1e-5, 'reconstruction');
    back.dispose();

    const root = path.join(tmp, 'exported-sparsify');
    const s = runCli(['export-sae', '--run', run, '--layer', String(LAYER), '--format', 'sparsify', '--out', root]);
    expect(s.code, s.stderr.join('\n')).toBe(0);
    const hook = path.join(root, `language_model.model.layers.${LAYER}`);
    expect(s.stdout).toContain(`→ ${hook}`);
    expect(fs.readdirSync(hook).sort()).toEqual(['cfg.json', 'sae.safetensors']);
  }, 300_000);

  it('usage and missing-SAE errors are one line', () => {
    const bad = runCli(['export-sae', '--run', tmp, '--layer', '1', '--format', 'dictionary_learning', '--out', path.join(tmp, 'x')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toEqual([`error: --format: expected saelens or sparsify, got 'dictionary_learning'`]);
    const none = runCli(['export-sae', '--run', tmp, '--layer', '9', '--out', path.join(tmp, 'x')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toHaveLength(1);
    expect(none.stderr[0]).toContain(`${path.join(tmp, 'sae-9.safetensors')}: no SAE for layer 9`);
    const help = runCli(['export-sae', '--help']);
    expect(help.code).toBe(0);
    for (const f of ['--run', '--layer', '--format', '--out', '--json']) expect(help.stdout).toContain(f);
  }, 120_000);
});

// transpose2d is what the sparsify layout's encoder.weight relies on
describe('transpose2d', () => {
  it('swaps a [2, 3] matrix', () => {
    expect(Array.from(transpose2d(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, 3))).toEqual([1, 4, 2, 5, 3, 6]);
  });
});
