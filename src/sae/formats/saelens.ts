// SAELens's on-disk SAE folder, written and read:
//   cfg.json                  the inference config SAELens 6 writes (SAE.save_inference_model,
//                             sae_lens/saes/sae.py): architecture, d_in, d_sae, dtype, device,
//                             apply_b_dec_to_input, normalize_activations, reshape_activations, k,
//                             rescale_acts_by_decoder_norm (TopKSAEConfig, sae_lens/saes/topk_sae.py)
//                             and a `metadata` block (model and hook names, sae_lens_version, …)
//   sae_weights.safetensors   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]
//   sparsity.safetensors      optional: `sparsity` [d_sae] = log10(feature density + 1e-10)
//                             (sae_lens/training/sae_trainer.py, _log_feature_sparsity)
// SAELens's TopK SAE computes z = TopK-then-ReLU((x − b_dec·apply_b_dec_to_input)·W_enc + b_enc)
// and x̂ = z·W_dec + b_dec: ardgpu's SAE on raw activations once the input scale is folded in
// (common.ts). Reading accepts SAELens 6 configs and the older layout SAELens itself converts
// (sae_lens/loading/pretrained_sae_loaders.py, handle_pre_6_0_config: `activation_fn_str: "topk"`
// with `activation_fn_kwargs: {k}`); other architectures are refused with the file named.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../../gpu/engine.js';
import { openSafetensors, writeSafetensors } from '../../io/safetensors.js';
import { ArdError } from '../../util/errors.js';
import { writeJsonAtomic } from '../../util/fs.js';
import type { SparseAutoencoder } from '../model.js';
import { FOLDED_SCALE_KEY, LAYER_KEY, SaeArrays, foldInputScale, needTensor, positiveInt, readCfg, saeFromArrays, writeFolderAtomic } from './common.js';

export const SAELENS_CFG = 'cfg.json';
export const SAELENS_WEIGHTS = 'sae_weights.safetensors';
export const SAELENS_SPARSITY = 'sparsity.safetensors';
/** The SAELens release whose layout these files follow (and which cfg.json's metadata names). */
export const SAELENS_VERSION = '6.18.0';
/** SAELens adds this before log10 so that dead latents get a finite value. */
export const SAELENS_LOG_EPS = 1e-10;

export interface SaelensWriteOptions {
  /** Decoder layer the SAE reads (hook `language_model.model.layers.L`, whose output capture stores). */
  layer: number;
  /** Model identity for metadata.model_name (e.g. the capture's model source). */
  modelName?: string | null;
  /** Corpus for metadata.dataset_path. */
  datasetPath?: string | null;
  /** Per-latent firing density over the capture (fraction of tokens with z > 0): sparsity.safetensors. */
  density?: Float32Array | null;
  /** More keys for cfg.json's metadata block (ardgpu's provenance). */
  extraMetadata?: Record<string, unknown>;
  /**
   * A BatchTopK SAE's inference threshold: written as SAELens's JumpReLU (architecture "jumprelu",
   * a `threshold` [d_sae] tensor, every entry θ), as SAELens saves BatchTopK SAEs for inference. The
   * input-scale fold keeps pre-activations unchanged, so θ needs no rescaling.
   */
  threshold?: number | null;
}

/** The Hugging Face module whose output ardgpu's layer-L capture is (Qwen2AudioForConditionalGeneration). */
export function hookNameOf(layer: number): string {
  return `language_model.model.layers.${layer}`;
}

/** The layer a hook name points at (`…layers.L…`), or null. */
export function layerOfHookName(hook: unknown): number | null {
  const m = typeof hook === 'string' ? /layers[._](\d+)/.exec(hook) ?? /blocks\.(\d+)\./.exec(hook) : null;
  return m ? Number(m[1]) : null;
}

/** cfg.json for an ardgpu Top-K SAE whose input scale is already folded into the weights. */
export function saelensConfig(a: { d: number; m: number; k: number }, o: SaelensWriteOptions): Record<string, unknown> {
  const jump = o.threshold !== undefined && o.threshold !== null;
  return {
    architecture: jump ? 'jumprelu' : 'topk',
    d_in: a.d,
    d_sae: a.m,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: true,
    // the scale is folded into the weights, as SAELens does for expected_average_only_in
    normalize_activations: 'none',
    reshape_activations: 'none',
    // ardgpu selects the top k on the raw pre-activations (its decoder rows are unit norm in training)
    ...(jump ? {} : { k: a.k, rescale_acts_by_decoder_norm: false }),
    metadata: {
      sae_lens_version: SAELENS_VERSION,
      sae_lens_training_version: null,
      model_name: o.modelName ?? null,
      model_class_name: 'Qwen2AudioForConditionalGeneration',
      hook_name: hookNameOf(o.layer),
      hook_head_index: null,
      model_from_pretrained_kwargs: {},
      prepend_bos: false,
      exclude_special_tokens: false,
      context_size: null,
      seqpos_slice: [null],
      dataset_path: o.datasetPath ?? null,
      ...o.extraMetadata,
    },
  };
}

/** log10(density + 1e-10) per latent, as SAELens stores it. */
export function logDensity(density: Float32Array): Float32Array {
  return Float32Array.from(density, (v) => Math.log10(v + SAELENS_LOG_EPS));
}

/** Writes DIR/{cfg.json, sae_weights.safetensors[, sparsity.safetensors]} (atomically, as a folder). */
export function writeSaelens(dir: string, a: SaeArrays, inputScale: number, o: SaelensWriteOptions): void {
  if (o.density && o.density.length !== a.m) throw new ArdError(`${dir}: density has ${o.density.length} values, expected d_sae = ${a.m}`);
  const f = foldInputScale(a, inputScale);
  const files: Record<string, (file: string) => void> = {
    [SAELENS_CFG]: (file) => writeJsonAtomic(file, saelensConfig(a, o)),
    [SAELENS_WEIGHTS]: (file) =>
      writeSafetensors(
        file,
        {
          W_enc: { dtype: 'F32', shape: [a.d, a.m], data: f.W_enc },
          b_enc: { dtype: 'F32', shape: [a.m], data: f.b_enc },
          W_dec: { dtype: 'F32', shape: [a.m, a.d], data: f.W_dec },
          b_dec: { dtype: 'F32', shape: [a.d], data: f.b_dec },
          ...(o.threshold !== undefined && o.threshold !== null ? { threshold: { dtype: 'F32' as const, shape: [a.m], data: new Float32Array(a.m).fill(o.threshold) } } : {}),
        },
        { [FOLDED_SCALE_KEY]: JSON.stringify(inputScale), [LAYER_KEY]: JSON.stringify(o.layer) },
      ),
  };
  if (o.density) files[SAELENS_SPARSITY] = (file) => writeSafetensors(file, { sparsity: { dtype: 'F32', shape: [a.m], data: logDensity(o.density!) } });
  writeFolderAtomic(dir, SAELENS_CFG, files);
}

/** A folder holding SAELens's cfg.json and sae_weights.safetensors. */
export function isSaelensFolder(dir: string): boolean {
  return fs.existsSync(path.join(dir, SAELENS_CFG)) && fs.existsSync(path.join(dir, SAELENS_WEIGHTS));
}

const NORMALIZE_OK = new Set(['none', 'expected_average_only_in']);

/** Loads a SAELens Top-K SAE folder as ardgpu's SAE (any other architecture: a one-line error). */
export function loadSaelens(engine: Engine, dir: string): SparseAutoencoder {
  const cfgFile = path.join(dir, SAELENS_CFG);
  const cfg = readCfg(dir);
  const meta = cfg.metadata && typeof cfg.metadata === 'object' ? cfg.metadata : {};
  const version = String(cfg.sae_lens_version ?? meta.sae_lens_version ?? '0');
  const v6 = Number(version.split('.')[0]) >= 6;
  // before SAELens 6 a TopK SAE was `activation_fn_str: "topk"` + `activation_fn_kwargs.k`
  const act = cfg.activation_fn_str ?? cfg.activation_fn;
  let arch = cfg.architecture ?? (v6 ? undefined : 'standard');
  let k = cfg.k;
  if (!v6 && act === 'topk' && cfg.activation_fn_kwargs?.k !== undefined) {
    arch = 'topk';
    k = cfg.activation_fn_kwargs.k;
  }
  if (arch !== 'topk') throw new ArdError(`${cfgFile}: architecture ${JSON.stringify(arch)} is not supported (ardgpu loads Top-K SAEs: architecture "topk")`);
  const d = positiveInt(cfgFile, 'd_in', cfg.d_in);
  const m = positiveInt(cfgFile, 'd_sae', cfg.d_sae);
  k = positiveInt(cfgFile, 'k', k);
  // A bool was the pre-6 spelling (true = expected_average_only_in). SAELens's load_from_disk applies
  // no runtime normalisation for expected_average_only_in (only from_pretrained folds a known factor),
  // so loading it as 'none' computes what SAELens computes; per-row schemes cannot be expressed.
  const norm = typeof cfg.normalize_activations === 'boolean' ? (cfg.normalize_activations ? 'expected_average_only_in' : 'none') : (cfg.normalize_activations ?? 'none');
  if (!NORMALIZE_OK.has(norm)) throw new ArdError(`${cfgFile}: normalize_activations ${JSON.stringify(norm)} is not supported (only "none" and "expected_average_only_in")`);
  const reshape = cfg.reshape_activations ?? 'none';
  if (reshape !== 'none') throw new ArdError(`${cfgFile}: reshape_activations ${JSON.stringify(reshape)} is not supported (only "none")`);
  const applyBDec = cfg.apply_b_dec_to_input ?? true;
  if (typeof applyBDec !== 'boolean') throw new ArdError(`${cfgFile}: apply_b_dec_to_input must be true or false`);

  const f = openSafetensors(path.join(dir, SAELENS_WEIGHTS));
  try {
    for (const [name, shape] of [['W_enc', [d, m]], ['b_enc', [m]], ['W_dec', [m, d]], ['b_dec', [d]]] as const) needTensor(f, name, [...shape]);
    if (f.tensors.has('scaling_factor') && f.readFloat32('scaling_factor').some((v) => v !== 1)) {
      throw new ArdError(`${f.file}: a finetuning scaling_factor other than 1 is not supported`);
    }
    const a: SaeArrays = { d, m, k, W_enc: f.readFloat32('W_enc'), b_enc: f.readFloat32('b_enc'), W_dec: f.readFloat32('W_dec'), b_dec: f.readFloat32('b_dec') };
    // without b_dec on the input: x·W_enc + b_enc = (x − b_dec)·W_enc + (b_enc + b_dec·W_enc)
    if (!applyBDec) {
      const b = a.b_enc.slice();
      for (let c = 0; c < d; c++) {
        const bc = a.b_dec[c]!;
        if (bc !== 0) for (let j = 0; j < m; j++) b[j]! += bc * a.W_enc[c * m + j]!;
      }
      a.b_enc = b;
    }
    // TopK on pre·‖W_dec[j]‖ then z/‖W_dec[j]‖: the same as unit rows with W_enc, b_enc scaled by
    // the norms (SAELens's _fold_norm_topk, sae_lens/saes/topk_sae.py)
    if (cfg.rescale_acts_by_decoder_norm === true) {
      for (let j = 0; j < m; j++) {
        let n2 = 0;
        for (let c = 0; c < d; c++) n2 += a.W_dec[j * d + c]! ** 2;
        const n = Math.sqrt(n2);
        if (!(n > 0)) throw new ArdError(`${f.file}: W_dec row ${j} is zero, so rescale_acts_by_decoder_norm is undefined`);
        a.b_enc[j]! *= n;
        for (let c = 0; c < d; c++) {
          a.W_dec[j * d + c]! /= n;
          a.W_enc[c * m + j]! *= n;
        }
      }
    }
    return saeFromArrays(engine, f.file, a, f.metadata, layerOfHookName(meta.hook_name ?? cfg.hook_name ?? cfg.hook_point));
  } finally {
    f.close();
  }
}

/** sparsity.safetensors's log10 densities, or null when the folder has none. */
export function readSaelensSparsity(dir: string): Float32Array | null {
  const file = path.join(dir, SAELENS_SPARSITY);
  if (!fs.existsSync(file)) return null;
  const f = openSafetensors(file);
  try {
    const t = f.tensors.get('sparsity');
    if (!t || t.shape.length !== 1) throw new ArdError(`${file}: needs a 1-D tensor 'sparsity'`);
    return f.readFloat32('sparsity');
  } finally {
    f.close();
  }
}
