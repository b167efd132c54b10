// EleutherAI sparsify's on-disk layout, written and read: one folder per hookpoint under a root,
// each as SparseCoder.save_to_disk writes it (sparsify/sparse_coder.py):
//   cfg.json          SparseCoderConfig.to_dict() + d_in (sparsify/config.py): activation,
//                     expansion_factor, normalize_decoder, num_latents, k, multi_topk,
//                     skip_connection, transcode, d_in
//   sae.safetensors   the module's state dict: encoder.weight [num_latents, d_in] (nn.Linear),
//                     encoder.bias [num_latents], W_dec [num_latents, d_in], b_dec [d_in]
// sparsify encodes z = TopK(ReLU((x − b_dec)·encoder.weightᵀ + encoder.bias)) and decodes
// x̂ = z·W_dec + b_dec: ardgpu's SAE on raw activations once the input scale is folded in
// (common.ts; ReLU before or after the top k gives the same positive codes).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../../gpu/engine.js';
import { openSafetensors, writeSafetensors } from '../../io/safetensors.js';
import { ArdError } from '../../util/errors.js';
import { writeJsonAtomic } from '../../util/fs.js';
import type { SparseAutoencoder } from '../model.js';
import { FOLDED_SCALE_KEY, LAYER_KEY, SaeArrays, foldInputScale, needTensor, positiveInt, readCfg, saeFromArrays, transpose2d, writeFolderAtomic } from './common.js';
import { hookNameOf, layerOfHookName } from './saelens.js';

export const SPARSIFY_CFG = 'cfg.json';
export const SPARSIFY_WEIGHTS = 'sae.safetensors';

/** cfg.json for an ardgpu Top-K SAE in sparsify's SparseCoderConfig keys. */
export function sparsifyConfig(a: { d: number; m: number; k: number }): Record<string, unknown> {
  return {
    activation: 'topk',
    expansion_factor: Math.max(1, Math.round(a.m / a.d)),
    // The exported rows carry the folded input scale (norm 1/s): sparsify must not renormalise them
    // if training continues, and SAELens's sparsify converter reads this flag as
    // apply_b_dec_to_input = !normalize_decoder (sae_lens/loading/pretrained_sae_loaders.py).
    normalize_decoder: false,
    num_latents: a.m,
    k: a.k,
    multi_topk: false,
    skip_connection: false,
    transcode: false,
    d_in: a.d,
  };
}

/** The hookpoint folder name sparsify would give ardgpu's layer-L residual stream. */
export function sparsifyHookpoint(layer: number): string {
  return hookNameOf(layer);
}

/** Writes ROOT/<hookpoint>/{cfg.json, sae.safetensors} (the hookpoint folder atomically); returns that folder. */
export function writeSparsify(root: string, a: SaeArrays, inputScale: number, o: { layer: number }): string {
  const dir = path.join(root, sparsifyHookpoint(o.layer));
  const f = foldInputScale(a, inputScale);
  writeFolderAtomic(dir, SPARSIFY_CFG, {
    [SPARSIFY_CFG]: (file) => writeJsonAtomic(file, sparsifyConfig(a)),
    [SPARSIFY_WEIGHTS]: (file) =>
      writeSafetensors(
        file,
        {
          'encoder.weight': { dtype: 'F32', shape: [a.m, a.d], data: transpose2d(f.W_enc, a.d, a.m) },
          'encoder.bias': { dtype: 'F32', shape: [a.m], data: f.b_enc },
          W_dec: { dtype: 'F32', shape: [a.m, a.d], data: f.W_dec },
          b_dec: { dtype: 'F32', shape: [a.d], data: f.b_dec },
        },
        { [FOLDED_SCALE_KEY]: JSON.stringify(inputScale), [LAYER_KEY]: JSON.stringify(o.layer) },
      ),
  });
  return dir;
}

/** A folder holding sparsify's cfg.json and sae.safetensors. */
export function isSparsifyFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, SPARSIFY_CFG)) && fs.existsSync(path.join(dir, SPARSIFY_WEIGHTS));
}

/** Loads one sparsify hookpoint folder as ardgpu's SAE (Top-K SAEs only; others: a one-line error). */
export function loadSparsify(engine: Engine, dir: string): SparseAutoencoder {
  const cfgFile = path.join(dir, SPARSIFY_CFG);
  const cfg = readCfg(dir);
  const activation = cfg.activation ?? 'topk';
  if (activation !== 'topk') throw new ArdError(`${cfgFile}: activation ${JSON.stringify(activation)} is not supported (only "topk")`);
  if (cfg.transcode === true) throw new ArdError(`${cfgFile}: a transcoder (transcode: true) is not an autoencoder ardgpu can load`);
  if (cfg.skip_connection === true) throw new ArdError(`${cfgFile}: skip_connection (W_skip) is not supported`);
  const d = positiveInt(cfgFile, 'd_in', cfg.d_in);
  const k = positiveInt(cfgFile, 'k', cfg.k);
  const m = cfg.num_latents ? positiveInt(cfgFile, 'num_latents', cfg.num_latents) : d * positiveInt(cfgFile, 'expansion_factor', cfg.expansion_factor);
  const f = openSafetensors(path.join(dir, SPARSIFY_WEIGHTS));
  try {
    needTensor(f, 'encoder.weight', [m, d]);
    needTensor(f, 'encoder.bias', [m]);
    needTensor(f, 'W_dec', [m, d]);
    needTensor(f, 'b_dec', [d]);
    const a: SaeArrays = {
      d, m, k,
      W_enc: transpose2d(f.readFloat32('encoder.weight'), m, d),
      b_enc: f.readFloat32('encoder.bias'),
      W_dec: f.readFloat32('W_dec'),
      b_dec: f.readFloat32('b_dec'),
    };
    return saeFromArrays(engine, f.file, a, f.metadata, layerOfHookName(path.basename(path.resolve(dir))));
  } finally {
    f.close();
  }
}
