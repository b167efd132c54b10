// Training the small default AudioLLM with ardgpu's own autograd.
//
// The inference forward (audio-encoder.ts, decoder.ts) is written for no-grad use: fused
// elementwise kernels without gradients, strided views into fused projections, a KV cache filled
// in place. The training forward below computes the same function with recorded ops only, from the
// unfused Hugging Face tensors, batched over right-padded sequences (causal attention never lets a
// real token see the padding). The test checks that its logits equal those of AudioLLM.forward on
// the exported and reloaded weights.
//
//   per clip:  cached log-mel → conv1 → GELU → conv2 → GELU + positions → N pre-LN blocks
//              → avg-pool 2 → LayerNorm → projector                         → features [n_i, D]
//   per batch: embed_tokens(ids) with placeholder rows ← features → decoder [B, L, D]
//              → RMSNorm → lm_head at answer positions only → cross-entropy
//
// A run: tokenizer (BPE on the training text) → log-mels cached once → AdamW steps with warm-up,
// cosine decay and global-norm clipping → checkpoints (weights, AdamW state, step; the data order
// is a pure function of seed and step) → export to weights/ in F16.
import { mulberry32 } from '../util/random.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FrontendConfig, windowFeatures } from '../audio/logmel.js';
import { readWav } from '../audio/wav.js';
import { CONCEPT_LABELS, readManifest, type ManifestEntry } from '../corpus/manifest.js';
import { Engine } from '../gpu/engine.js';
import { backward, param } from '../tensor/autograd.js';
import { AdamW, WeightAverage, clipGradNorm } from '../tensor/optim.js';
import { keep, tidy } from '../tensor/scope.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { abs, add, addScalar, exp, log, mul, neg, relu, scale, sub, where } from '../tensor/ops/elementwise.js';
import { mean, sum } from '../tensor/ops/reduce.js';
import { concat, contiguous, permute, reshape, slice, transpose } from '../tensor/ops/layout.js';
import { crossEntropy, embedding, indexSelect } from '../tensor/ops/index.js';
import { conv1dTimeMajor, layerNorm, rmsNorm, rope, softmax } from '../tensor/ops/nn.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { ArdError } from '../util/errors.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs.js';
import { audioTokenCount, convOutLength } from '../model/audio-encoder.js';
import { mixedEntry, planMels, planMix } from './mix.js';
import { Qwen2AudioConfig, expectedTensorShapes, parseQwen2AudioConfig, qwen2AudioConfigToJson } from '../model/config.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { Tokenizer } from '../model/tokenizer.js';
import {
  IGNORE, LABEL_ORDERS, type EncodedConversation, type LabelOrder, type QuestionWeights, batchClips, checkQuestionWeights, epochPool, clipQAs, encodeConversation, hashInts, pickQuestions, templateIds, trainTokenizer,
} from './data.js';

// ---- model size -----------------------------------------------------------------------------

export interface ModelDims {
  nMels: number;
  /** Encoder window in seconds (Qwen2-Audio: 30); 100 mel frames and 50 positions per second. */
  windowSeconds: number;
  encDim: number;
  encLayers: number;
  encHeads: number;
  encFfn: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  maxPositions: number;
}

export const DEFAULT_DIMS: Readonly<ModelDims> = {
  nMels: 80,
  windowSeconds: 4,
  encDim: 128,
  encLayers: 2,
  encHeads: 4,
  encFfn: 512,
  hidden: 128,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  intermediate: 384,
  maxPositions: 512,
};

const SAMPLE_RATE = 16000;
const HOP = 160;

export function frontendFor(d: ModelDims): FrontendConfig {
  return { nMels: d.nMels, nSamples: Math.round(d.windowSeconds * SAMPLE_RATE), hopLength: HOP, nFft: 400, samplingRate: SAMPLE_RATE };
}

/** preprocessor_config.json in the layout of Qwen2-Audio's WhisperFeatureExtractor. */
export function preprocessorJson(fe: FrontendConfig): Record<string, unknown> {
  return {
    feature_extractor_type: 'WhisperFeatureExtractor',
    feature_size: fe.nMels,
    sampling_rate: fe.samplingRate,
    hop_length: fe.hopLength,
    n_fft: fe.nFft,
    chunk_length: fe.nSamples / fe.samplingRate,
    n_samples: fe.nSamples,
    nb_max_frames: fe.nSamples / fe.hopLength,
    padding_side: 'right',
    padding_value: 0.0,
    return_attention_mask: true,
    processor_class: 'Qwen2AudioProcessor',
  };
}

/** The Qwen2-Audio config for these dims, with the vocabulary and special ids of `tok`. */
export function makeConfig(d: ModelDims, tok: Tokenizer): Qwen2AudioConfig {
  const frames = (d.windowSeconds * SAMPLE_RATE) / HOP;
  if (!Number.isInteger(frames / 2)) throw new ArdError(`model dims: a ${d.windowSeconds} s window is not a whole number of encoder positions`);
  const t = templateIds(tok);
  const json = {
    model_type: 'qwen2_audio',
    audio_token_index: t.audio,
    audio_config: {
      num_mel_bins: d.nMels,
      d_model: d.encDim,
      encoder_layers: d.encLayers,
      encoder_attention_heads: d.encHeads,
      encoder_ffn_dim: d.encFfn,
      max_source_positions: frames / 2,
      activation_function: 'gelu',
      scale_embedding: false,
    },
    text_config: {
      vocab_size: tok.vocabSize,
      hidden_size: d.hidden,
      intermediate_size: d.intermediate,
      num_hidden_layers: d.layers,
      num_attention_heads: d.heads,
      num_key_value_heads: d.kvHeads,
      hidden_act: 'silu',
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      max_position_embeddings: d.maxPositions,
      tie_word_embeddings: false,
      bos_token_id: t.endOfText,
      eos_token_id: t.imEnd,
    },
  };
  return parseQwen2AudioConfig(json, 'train config');
}

// ---- weights --------------------------------------------------------------------------------
// Training keeps the weights unfused, under their Hugging Face names (q, k, v, gate and up apart):
// every projection is then its own matmul whose gradient lands in its own tensor, with no slicing
// of fused outputs (a slice's gradient is a zero-filled full-size tensor). The checkpoint and the
// export write them as they are; the inference loader fuses them as it does for any checkpoint.

/** Trainable and frozen tensors by Hugging Face name (Qwen2AudioForConditionalGeneration). */
export type Weights = Map<string, Tensor>;

/** The encoder's position table: fixed (Whisper's sinusoids), not trained. */
export const FROZEN = new Set(['audio_tower.embed_positions.weight']);

/** Whisper's fixed sinusoidal position table [positions, d] (sin | cos halves). */
export function sinusoids(positions: number, d: number): Float32Array {
  const half = d / 2;
  const inc = Math.log(10000) / (half - 1);
  const out = new Float32Array(positions * d);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.exp(-inc * i);
      out[p * d + i] = Math.sin(a);
      out[p * d + half + i] = Math.cos(a);
    }
  }
  return out;
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function fnvHex(s: string): string {
  return fnv(s).toString(16).padStart(8, '0');
}

/**
 * Scale of the (frozen) sinusoidal position table. At full amplitude (rms 0.7) it drowns the conv
 * stem's output at initialisation (rms ≈ 0.05): the clips' audio features then differ by a few
 * percent, and neither the encoder nor the decoder finds the audio for hundreds of steps.
 */
export const POSITION_SCALE = 0.1;

/**
 * Initial values of one tensor (host f32): norms 1, biases 0, positions sinusoidal ×
 * POSITION_SCALE, convolutions N(0, 1/fan_in) (PyTorch's default magnitude, so the stem passes the
 * spectrogram on at unit gain), other projections N(0, 0.02) with the residual-branch outputs
 * scaled by 1/√(2·layers). Each tensor draws from its own stream, seeded by (seed, name).
 */
export function initialValue(name: string, shape: readonly number[], config: Qwen2AudioConfig, seed: number): Float32Array {
  const n = shape.reduce((x, y) => x * y, 1);
  if (name === 'audio_tower.embed_positions.weight') return sinusoids(shape[0]!, shape[1]!).map((x) => x * POSITION_SCALE);
  if (/(layer_?norm|final_layer_norm|input_layernorm|post_attention_layernorm|model\.norm)\.weight$/.test(name)) return new Float32Array(n).fill(1);
  if (name.endsWith('.bias')) return new Float32Array(n);
  let std = 0.02;
  if (/audio_tower\.conv[12]\.weight$/.test(name)) std = 1 / Math.sqrt(shape[1]! * shape[2]!);
  if (/audio_tower\.layers\.\d+\.(self_attn\.out_proj|fc2)\.weight$/.test(name)) std /= Math.sqrt(2 * config.audio_config.encoder_layers);
  if (/language_model\.model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/.test(name)) std /= Math.sqrt(2 * config.text_config.num_hidden_layers);
  const r = mulberry32(hashInts(seed, 0x1417, fnv(name)));
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    v[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * std;
  }
  return v;
}

/** Fresh f32 weights on the GPU (kept outside any tidy scope), deterministic for a seed. */
export function initWeights(engine: Engine, config: Qwen2AudioConfig, seed: number): Weights {
  const w: Weights = new Map();
  for (const [name, shape] of expectedTensorShapes(config)) {
    w.set(name, keep(tensor(engine, initialValue(name, shape, config, seed), shape)));
  }
  return w;
}

/** The trainable tensors (everything but FROZEN), in a fixed order. */
export function trainableWeights(w: Weights): Map<string, Tensor> {
  return new Map([...w].filter(([n]) => !FROZEN.has(n)));
}

function get(w: Weights, name: string): Tensor {
  const t = w.get(name);
  if (!t) throw new ArdError(`training forward: no weight ${name}`);
  return t;
}

// ---- the training forward -------------------------------------------------------------------

const LN_EPS = 1e-5;

/** [..., R, H·hd] dense → [..., H, R, hd] (a view; matmul reads it in place). */
function heads(x: Tensor, H: number, hd: number): Tensor {
  const lead = x.shape.slice(0, -1);
  const r = reshape(x, [...lead, H, hd]);
  const n = r.rank;
  const perm = r.shape.map((_, i) => i);
  [perm[n - 3], perm[n - 2]] = [perm[n - 2]!, perm[n - 3]!];
  return permute(r, perm);
}

/**
 * One encoder layer over the rows of several clips packed one after another (x [ΣT, d], clip c
 * owning T[c] rows): every projection runs once for all clips, attention runs clip by clip on row
 * views of the packed q, k and v.
 */
function encoderLayer(w: Weights, p: string, x: Tensor, heads_: number, T: readonly number[]): Tensor {
  const [N, d] = x.shape as [number, number];
  const hd = d / heads_;
  const h = layerNorm(x, get(w, `${p}self_attn_layer_norm.weight`), get(w, `${p}self_attn_layer_norm.bias`), LN_EPS);
  const q = linear(h, get(w, `${p}self_attn.q_proj.weight`), get(w, `${p}self_attn.q_proj.bias`));
  const k = linear(h, get(w, `${p}self_attn.k_proj.weight`));
  const v = linear(h, get(w, `${p}self_attn.v_proj.weight`), get(w, `${p}self_attn.v_proj.bias`));
  const outs: Tensor[] = [];
  let at = 0;
  for (const n of T) {
    const rows = (t: Tensor) => heads(slice(t, 0, at, at + n), heads_, hd); // [H, n, hd]
    const att = softmax(matmul(rows(q), rows(k), { transB: true }), { scale: 1 / Math.sqrt(hd) });
    outs.push(transpose(matmul(att, rows(v)), 0, 1)); // [n, H, hd]
    at += n;
  }
  const o = reshape(outs.length === 1 ? contiguous(outs[0]!) : concat(outs, 0), [N, d]);
  const x1 = add(x, linear(o, get(w, `${p}self_attn.out_proj.weight`), get(w, `${p}self_attn.out_proj.bias`)));
  const h2 = layerNorm(x1, get(w, `${p}final_layer_norm.weight`), get(w, `${p}final_layer_norm.bias`), LN_EPS);
  const f = linear(h2, get(w, `${p}fc1.weight`), get(w, `${p}fc1.bias`), 'gelu');
  return add(x1, linear(f, get(w, `${p}fc2.weight`), get(w, `${p}fc2.bias`)));
}

/**
 * Audio features of several clips, each [audioTokenCount(validFrames), hidden], with gradients: the
 * function encodeWindow computes clip by clip. Each clip's `mel` holds its window's first
 * min(2·T + 1, frames) log-mel frames (T = convOutLength(validFrames)), the part the encoder reads.
 * The convolutions run clip by clip; then the clips' rows are packed into one tensor, so each
 * encoder layer's and the projector's weights see one matmul per step (and one gradient, not a sum
 * of per-clip gradients). The features returned are row views of the packed projector output.
 */
export function encodeTrainBatch(w: Weights, config: Qwen2AudioConfig, mels: readonly ClipMel[]): Tensor[] {
  if (mels.length === 0) return [];
  const cfg = config.audio_config;
  const A = 'audio_tower.';
  // the conv stem time-major ([frames, channels]) as unfold + matmul: the direct conv1d kernel's
  // gradients took ~270 of the encoder's ~870 ms (8 clips) on llvmpipe
  const conv = (x: Tensor, name: string, stride: number, rows?: number) =>
    conv1dTimeMajor(x, get(w, `${A}${name}.weight`), get(w, `${A}${name}.bias`), { stride, padding: 1, act: 'gelu', rows });
  const pack = (ts: Tensor[]) => (ts.length === 1 ? ts[0]! : concat(ts, 0)); // one clip: no copy
  const T = mels.map((m) => convOutLength(m.validFrames));
  const stems = mels.map(({ mel, validFrames }, c) => {
    const need = Math.min(2 * cfg.max_source_positions, 2 * T[c]! + 1);
    if (mel.rank !== 2 || mel.shape[0] !== cfg.num_mel_bins || mel.shape[1]! < need) {
      throw new ArdError(`encodeTrainBatch: mel [${mel.shape.join(', ')}] must be [${cfg.num_mel_bins}, ≥${need}] for ${validFrames} valid frames`);
    }
    const g1 = conv(mel.shape[1] === need ? mel : slice(mel, 1, 0, need), 'conv1', 1);
    return add(conv(transpose(g1), 'conv2', 2, T[c]), slice(get(w, `${A}embed_positions.weight`), 0, 0, T[c]));
  });
  let x = pack(stems); // [ΣT, d]
  for (let i = 0; i < cfg.encoder_layers; i++) x = encoderLayer(w, `${A}layers.${i}.`, x, cfg.encoder_attention_heads, T);
  // average pool by 2 over time, each clip's first n pairs of rows (layer norm and projector are per row)
  const n = mels.map((m) => audioTokenCount(m.validFrames));
  const even: Tensor[] = [];
  const odd: Tensor[] = [];
  let at = 0;
  mels.forEach((_, c) => {
    if (2 * n[c]! > T[c]!) throw new ArdError(`encodeTrainBatch: ${n[c]} audio tokens from ${T[c]} encoder steps`);
    even.push(slice(x, 0, at, at + 2 * n[c]!, 2));
    odd.push(slice(x, 0, at + 1, at + 2 * n[c]!, 2));
    at += T[c]!;
  });
  const pairs = scale(add(pack(even), pack(odd)), 0.5);
  const pooled = layerNorm(pairs, get(w, `${A}layer_norm.weight`), get(w, `${A}layer_norm.bias`), LN_EPS);
  const feats = linear(pooled, get(w, 'multi_modal_projector.linear.weight'), get(w, 'multi_modal_projector.linear.bias'));
  if (mels.length === 1) return [feats];
  let row = 0;
  return n.map((k) => slice(feats, 0, row, (row += k)));
}

/**
 * Grouped-query attention over already-projected q [B, Lq, H, hd], k and v [B, Lk, KVH, hd]; query
 * i sees keys j ≤ i + offset. `bias` [B, 1, 1, Lk] (0 or a large negative number) hides padding
 * keys. Returns the heads merged, [B·Lq, H·hd].
 */
function attend(q: Tensor, k: Tensor, v: Tensor, config: Qwen2AudioConfig, offset: number, bias?: Tensor): Tensor {
  const t = config.text_config;
  const H = t.num_attention_heads;
  const KVH = t.num_key_value_heads;
  const hd = t.head_dim;
  const rep = H / KVH;
  const [B, Lq] = q.shape as [number, number];
  const Lk = k.shape[1]!;
  // query heads grouped by their kv head: [B, KVH, rep·Lq, hd] (head j = g·rep + r)
  const qg = reshape(contiguous(permute(q, [0, 2, 1, 3])), [B, KVH, rep * Lq, hd]);
  const scores = reshape(matmul(qg, permute(k, [0, 2, 1, 3]), { transB: true }), [B, H, Lq, Lk]);
  const att = softmax(bias ? add(scores, bias) : scores, { causal: true, causalOffset: offset, scale: 1 / Math.sqrt(hd) });
  const o = matmul(reshape(att, [B, KVH, rep * Lq, Lk]), permute(v, [0, 2, 1, 3])); // [B, H, Lq, hd] in groups
  return reshape(contiguous(permute(reshape(o, [B, H, Lq, hd]), [0, 2, 1, 3])), [B * Lq, H * hd]);
}

/** q, k, v of one decoder layer for B sequences of L rows whose first row sits at position `start`. */
function qkv(w: Weights, p: string, x: Tensor, config: Qwen2AudioConfig, B: number, L: number, start: number, withQ = true): { q: Tensor | null; k: Tensor; v: Tensor } {
  const t = config.text_config;
  const h = rmsNorm(x, get(w, `${p}input_layernorm.weight`), t.rms_norm_eps);
  const proj = (name: string, n: number) => reshape(linear(h, get(w, `${p}self_attn.${name}.weight`), get(w, `${p}self_attn.${name}.bias`)), [B, L, n, t.head_dim]);
  return {
    q: withQ ? rope(proj('q_proj', t.num_attention_heads), start, { theta: t.rope_theta }) : null,
    k: rope(proj('k_proj', t.num_key_value_heads), start, { theta: t.rope_theta }),
    v: proj('v_proj', t.num_key_value_heads),
  };
}

/** The rest of a decoder layer once attention is done: o_proj residual, then the SwiGLU MLP residual. */
function finishLayer(w: Weights, p: string, x: Tensor, merged: Tensor, config: Qwen2AudioConfig): Tensor {
  const x1 = add(x, linear(merged, get(w, `${p}self_attn.o_proj.weight`)));
  const h2 = rmsNorm(x1, get(w, `${p}post_attention_layernorm.weight`), config.text_config.rms_norm_eps);
  const a = mul(linear(h2, get(w, `${p}mlp.gate_proj.weight`), undefined, 'silu'), linear(h2, get(w, `${p}mlp.up_proj.weight`)));
  return add(x1, linear(a, get(w, `${p}mlp.down_proj.weight`)));
}

function decoderLayer(w: Weights, p: string, x: Tensor, config: Qwen2AudioConfig, B: number, L: number): Tensor {
  const { q, k, v } = qkv(w, p, x, config, B, L, 0);
  return finishLayer(w, p, x, attend(q!, k, v, config, 0), config);
}

/** inputs_embeds [B·L, D] → the decoder's final-normed hidden states [B·L, D]. */
export function decodeTrain(w: Weights, config: Qwen2AudioConfig, x: Tensor, B: number, L: number): Tensor {
  const t = config.text_config;
  for (let i = 0; i < t.num_hidden_layers; i++) x = decoderLayer(w, `language_model.model.layers.${i}.`, x, config, B, L);
  return rmsNorm(x, get(w, 'language_model.model.norm.weight'), t.rms_norm_eps);
}

export interface TrainBatch {
  /** Right-padded token ids, B rows of L. */
  ids: Int32Array;
  /** Row index (into B·L) of every position with a target, and the target ids. */
  rows: Int32Array;
  targets: Int32Array;
  B: number;
  L: number;
  /** For each placeholder position (row-major in B·L), the feature row (into the concatenated features). */
  slotRows: Int32Array;
  slotSrc: Int32Array;
}

/**
 * Packs conversations (in the order of their features) into one batch, right-padded (or
 * left-padded: `left`, for shared prefixes).
 */
export function packBatch(convs: readonly Pick<EncodedConversation, 'ids' | 'targets' | 'nAudio'>[], padId: number, audioId: number, left = false): TrainBatch {
  const B = convs.length;
  const L = Math.max(...convs.map((c) => c.ids.length));
  const ids = new Int32Array(B * L).fill(padId);
  const rows: number[] = [];
  const targets: number[] = [];
  const slotRows: number[] = [];
  const slotSrc: number[] = [];
  let feat = 0;
  convs.forEach((c, b) => {
    let n = 0;
    const at = b * L + (left ? L - c.ids.length : 0);
    c.ids.forEach((id, i) => {
      ids[at + i] = id;
      if (c.targets[i]! !== IGNORE) {
        rows.push(at + i);
        targets.push(c.targets[i]!);
      }
      if (id === audioId) {
        slotRows.push(at + i);
        slotSrc.push(feat + n++);
      }
    });
    if (n !== c.nAudio) throw new ArdError(`packBatch: conversation ${b} has ${n} placeholders for ${c.nAudio} audio tokens`);
    feat += n;
  });
  return { ids, rows: Int32Array.from(rows), targets: Int32Array.from(targets), B, L, slotRows: Int32Array.from(slotRows), slotSrc: Int32Array.from(slotSrc) };
}

/**
 * inputs_embeds [B·L, D]: token embeddings with the placeholder rows of conversation b taken, in
 * order, from features[b]. One gather from the concatenated features and one row select for the
 * whole batch, all with gradients (per clip, each would cost a full [B·L, D] pass: 8 clips made
 * these two a quarter of a training step).
 */
export function embedTrain(engine: Engine, w: Weights, batch: TrainBatch, features: readonly Tensor[]): Tensor {
  const n = batch.B * batch.L;
  const x = embedding(get(w, 'language_model.model.embed_tokens.weight'), tensor(engine, batch.ids, [n], 'i32'));
  const src = new Int32Array(n);
  const isSlot = new Float32Array(n);
  let k = 0;
  let base = 0;
  features.forEach((f, b) => {
    const rows = f.shape[0]!;
    for (; k < batch.slotRows.length && batch.slotSrc[k]! < base + rows; k++) {
      const r = batch.slotRows[k]!;
      if (Math.floor(r / batch.L) !== b) throw new ArdError(`embedTrain: features of clip ${b} do not match its placeholders`);
      src[r] = batch.slotSrc[k]!; // a row of the concatenated features
      isSlot[r] = 1;
    }
    base += rows;
  });
  if (k !== batch.slotRows.length) throw new ArdError(`embedTrain: ${batch.slotRows.length} placeholders but ${base} feature rows`);
  if (features.length === 0) return x;
  const all = features.length === 1 ? features[0]! : concat(features, 0);
  const spread = indexSelect(all, 0, tensor(engine, src, [n], 'i32'));
  return where(tensor(engine, isSlot, [n, 1]), spread, x);
}

export interface ClipMel {
  mel: Tensor;
  validFrames: number;
}

/**
 * The training forward: logits [rows, V] at the given rows of the batch (all rows: null), and
 * each clip's audio features. Sequence b is about clip clipOf[b] (default b): each clip is encoded
 * once, whatever number of sequences use its features.
 */
export function trainForward(
  engine: Engine,
  w: Weights,
  config: Qwen2AudioConfig,
  mels: readonly ClipMel[],
  batch: TrainBatch,
  rows: Int32Array | null,
  clipOf?: readonly number[],
): { logits: Tensor; features: Tensor[] } {
  const features = encodeTrainBatch(w, config, mels);
  const feats = clipOf ? clipOf.map((c) => features[c]!) : features;
  if (feats.length !== batch.B) throw new ArdError(`trainForward: ${feats.length} feature sets for ${batch.B} sequences`);
  const x = embedTrain(engine, w, batch, feats);
  return { logits: lmHead(engine, w, config, decodeTrain(w, config, x, batch.B, batch.L), rows), features };
}

/** Logits [rows, V] of the final-normed hidden states at the given rows (all rows: null). */
function lmHead(engine: Engine, w: Weights, config: Qwen2AudioConfig, hidden: Tensor, rows: Int32Array | null): Tensor {
  const picked = rows ? indexSelect(hidden, 0, tensor(engine, rows, [rows.length], 'i32')) : hidden;
  const head = config.text_config.tie_word_embeddings ? 'language_model.model.embed_tokens.weight' : 'language_model.lm_head.weight';
  return linear(picked, get(w, head));
}

/** Logits [rows, V] of the training forward (see trainForward). */
export function trainLogits(engine: Engine, w: Weights, config: Qwen2AudioConfig, mels: readonly ClipMel[], batch: TrainBatch, rows: Int32Array | null, clipOf?: readonly number[]): Tensor {
  return trainForward(engine, w, config, mels, batch, rows, clipOf).logits;
}

// ---- sequences that share their clip's prompt prefix -------------------------------------------
//
// Every question about a clip starts with the same tokens: the system turn, the user header and
// the audio placeholders; the question follows the audio. Under causal attention those prefix rows
// never see the question, so their hidden states are the same in every sequence about the clip.
// A shared batch runs each clip's prefix through the decoder once and the per-question suffixes
// attend to it: the same logits and gradients as one full sequence per question (checked in
// train.test.ts), without repeating ~80 % of the rows. Prefixes are left-padded (RoPE depends only
// on distances, so shifting a whole sequence changes nothing) and their padding keys are hidden by
// an additive bias; suffixes are right-padded (causal attention never looks ahead).

/** A large negative score: exp underflows to 0 after the softmax's scale. */
const HIDE = -1e9;

export interface SharedBatch {
  /** P left-padded prefixes, one per clip (rows/targets empty). */
  prefix: TrainBatch;
  /** [P·Lp]: 0 at real prefix positions, HIDE at the front padding. */
  prefixBias: Float32Array;
  /** S right-padded suffixes (question, assistant header, answer), Ls each. */
  suffixIds: Int32Array;
  S: number;
  Ls: number;
  /** The clip (prefix) of each suffix. */
  suffixClip: Int32Array;
  /** Row index (into S·Ls) of every target position, and the target ids. */
  rows: Int32Array;
  targets: Int32Array;
}

/**
 * Splits conversations (conversation i about clip clipOf[i]; clips 0..P−1, each with at least one)
 * after their last audio placeholder and packs the shared prefixes and the suffixes.
 */
export function packShared(convs: readonly EncodedConversation[], clipOf: readonly number[], padId: number, audioId: number): SharedBatch {
  if (convs.length !== clipOf.length || convs.length === 0) throw new ArdError(`packShared: ${convs.length} conversations for ${clipOf.length} clip indices`);
  const P = Math.max(...clipOf) + 1;
  const prefixes: ({ ids: number[]; targets: number[]; nAudio: number } | null)[] = new Array(P).fill(null);
  const suffixes: { ids: number[]; targets: number[]; nAudio: number }[] = [];
  convs.forEach((c, i) => {
    const cut = c.ids.lastIndexOf(audioId) + 1;
    if (cut === 0) throw new ArdError(`packShared: conversation ${i} has no audio placeholder`);
    if (c.targets.slice(0, cut).some((t) => t !== IGNORE)) throw new ArdError(`packShared: conversation ${i} has a target inside its audio prefix`);
    const pre = c.ids.slice(0, cut);
    const k = clipOf[i]!;
    const seen = prefixes[k]?.ids;
    if (seen && (seen.length !== pre.length || seen.some((x, j) => x !== pre[j]))) throw new ArdError(`packShared: conversations about clip ${k} differ before the question`);
    prefixes[k] = { ids: pre, targets: c.targets.slice(0, cut), nAudio: c.nAudio };
    suffixes.push({ ids: c.ids.slice(cut), targets: c.targets.slice(cut), nAudio: 0 });
  });
  const missing = prefixes.findIndex((x) => x === null);
  if (missing >= 0) throw new ArdError(`packShared: no conversation about clip ${missing}`);
  const prefix = packBatch(prefixes as { ids: number[]; targets: number[]; nAudio: number }[], padId, audioId, true);
  const Lp = prefix.L;
  const prefixBias = new Float32Array(P * Lp);
  prefixes.forEach((pre, b) => prefixBias.fill(HIDE, b * Lp, (b + 1) * Lp - pre!.ids.length));
  const suffix = packBatch(suffixes, padId, audioId);
  return { prefix, prefixBias, suffixIds: suffix.ids, S: suffix.B, Ls: suffix.L, suffixClip: Int32Array.from(clipOf), rows: suffix.rows, targets: suffix.targets };
}

/**
 * The decoder over a shared batch: inputs_embeds of the prefixes [P·Lp, D] and of the suffixes
 * [S·Ls, D] → the suffixes' final-normed hidden states [S·Ls, D]. The prefixes' own outputs are
 * never needed past the last layer's keys and values, so the last layer computes only those.
 */
export function decodeShared(engine: Engine, w: Weights, config: Qwen2AudioConfig, xp: Tensor, xs: Tensor, sb: SharedBatch): Tensor {
  const t = config.text_config;
  const P = sb.prefix.B;
  const Lp = sb.prefix.L;
  const { S, Ls } = sb;
  const clip = tensor(engine, sb.suffixClip, [S], 'i32');
  const biasP = tensor(engine, sb.prefixBias, [P, 1, 1, Lp]);
  const suffixBias = new Float32Array(S * (Lp + Ls));
  sb.suffixClip.forEach((k, s) => suffixBias.set(sb.prefixBias.subarray(k * Lp, (k + 1) * Lp), s * (Lp + Ls)));
  const biasS = tensor(engine, suffixBias, [S, 1, 1, Lp + Ls]);
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const p = `language_model.model.layers.${i}.`;
    const last = i + 1 === t.num_hidden_layers;
    const pre = qkv(w, p, xp, config, P, Lp, 0, !last);
    const suf = qkv(w, p, xs, config, S, Ls, Lp);
    const k = concat([indexSelect(pre.k, 0, clip), suf.k], 1); // [S, Lp + Ls, KVH, hd]
    const v = concat([indexSelect(pre.v, 0, clip), suf.v], 1);
    const xsNext = finishLayer(w, p, xs, attend(suf.q!, k, v, config, Lp, biasS), config);
    if (!last) xp = finishLayer(w, p, xp, attend(pre.q!, pre.k, pre.v, config, 0, biasP), config);
    xs = xsNext;
  }
  return rmsNorm(xs, get(w, 'language_model.model.norm.weight'), t.rms_norm_eps);
}

/** The shared-batch training forward: logits [targets, V] at the suffixes' target rows, and each clip's audio features. */
export function sharedForward(engine: Engine, w: Weights, config: Qwen2AudioConfig, mels: readonly ClipMel[], sb: SharedBatch): { logits: Tensor; features: Tensor[] } {
  if (mels.length !== sb.prefix.B) throw new ArdError(`sharedForward: ${mels.length} clips for ${sb.prefix.B} prefixes`);
  const features = encodeTrainBatch(w, config, mels);
  const xp = embedTrain(engine, w, sb.prefix, features);
  const xs = embedding(get(w, 'language_model.model.embed_tokens.weight'), tensor(engine, sb.suffixIds, [sb.S * sb.Ls], 'i32'));
  return { logits: lmHead(engine, w, config, decodeShared(engine, w, config, xp, xs, sb), sb.rows), features };
}

// A training-only auxiliary head (never exported): multi-label logits of each clip's labels from
// its time-averaged audio features. From scratch, the decoder and the encoder start as random
// maps, and the answers' gradient reaches the encoder only through the decoder: the model first
// learns the answers' text priors and ignores the audio for hundreds of steps. The head gives the
// encoder (and projector) a direct signal from the start.
export const AUX_WEIGHT = 'aux.weight';
export const AUX_BIAS = 'aux.bias';

/**
 * Adds the auxiliary head's tensors to `w`: weight [classes, hidden] N(0, 0.02); bias the log-odds
 * of each class's share of training clips (`prior`), else 0. From 0 (every class at p = 0.5) the
 * first few hundred steps of the heavily weighted aux gradient would only teach "most labels are
 * absent": an aux-only probe sat at the prior's loss for 200 steps.
 */
export function initAux(engine: Engine, w: Weights, config: Qwen2AudioConfig, classes: number, seed: number, prior?: Float32Array): void {
  const H = config.text_config.hidden_size;
  const r = mulberry32(hashInts(seed, 0xa0c5));
  const v = new Float32Array(classes * H);
  for (let i = 0; i < v.length; i++) v[i] = Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r()) * 0.02;
  w.set(AUX_WEIGHT, keep(tensor(engine, v, [classes, H])));
  if (prior && prior.length !== classes) throw new ArdError(`initAux: ${prior.length} priors for ${classes} classes`);
  const bias = prior ? prior.map((p) => Math.log(p / (1 - p))) : new Float32Array(classes);
  w.set(AUX_BIAS, keep(tensor(engine, bias, [classes])));
}

/**
 * How the auxiliary head pools over time. 'mean': one logit per class from the clip's time-averaged
 * features (a sound that fills half the clip is blended with the other half). 'frames': logits per
 * frame, pooled per class by a softmax over time of those logits (a smooth maximum), so each sound
 * must be recognisable in the frames where it is loudest, whatever else the clip holds.
 */
export type AuxPool = 'mean' | 'frames';

/** The auxiliary head's logits [clips, classes] from each clip's audio features [n_i, D]. */
export function auxLogits(w: Weights, features: readonly Tensor[], pool: AuxPool = 'mean'): Tensor {
  const W = get(w, AUX_WEIGHT), b = get(w, AUX_BIAS);
  if (pool === 'mean') {
    const pooled = concat(features.map((f) => mean(f, 0, true)), 0); // [clips, D]
    return linear(pooled, W, b);
  }
  const rows = features.map((f) => {
    const z = contiguous(transpose(linear(f, W, b))); // [classes, n]
    return transpose(sum(mul(softmax(z), z), -1, true)); // Σ_t softmax_t(z)·z: [1, classes]
  });
  return concat(rows, 0);
}

/** Mean binary cross-entropy of the auxiliary head against multi-hot targets [clips, classes]. */
export function auxLoss(engine: Engine, w: Weights, features: readonly Tensor[], targets: Float32Array, pool: AuxPool = 'mean'): Tensor {
  const z = auxLogits(w, features, pool);
  const y = tensor(engine, targets, [...z.shape]);
  // softplus(z) − y·z, computed stably as max(z, 0) + log(1 + e^−|z|) − y·z
  const bce = sub(add(relu(z), log(addScalar(exp(neg(abs(z))), 1))), mul(y, z));
  return mean(bce);
}

export interface LossParts {
  /** What is minimised: lm + auxWeight · aux. */
  loss: Tensor;
  /** Mean cross-entropy over the answer tokens. */
  lm: Tensor;
  aux: Tensor | null;
}

/**
 * Losses of one batch (scalars with gradients). `aux`: multi-hot label targets [clips, classes]
 * for the auxiliary head and its weight.
 */
export function trainLossParts(
  engine: Engine,
  w: Weights,
  config: Qwen2AudioConfig,
  mels: readonly ClipMel[],
  batch: TrainBatch | SharedBatch,
  clipOf?: readonly number[],
  aux?: { targets: Float32Array; weight: number; pool?: AuxPool },
): LossParts {
  const { logits, features } = 'prefix' in batch ? sharedForward(engine, w, config, mels, batch) : trainForward(engine, w, config, mels, batch, batch.rows, clipOf);
  const lm = crossEntropy(logits, tensor(engine, batch.targets, [batch.targets.length], 'i32'), { ignoreIndex: IGNORE });
  if (!aux || aux.weight === 0) return { loss: lm, lm, aux: null };
  const a = auxLoss(engine, w, features, aux.targets, aux.pool);
  return { loss: add(lm, scale(a, aux.weight)), lm, aux: a };
}

/** Mean cross-entropy over the batch's target positions (a scalar with gradients). */
export function trainLoss(engine: Engine, w: Weights, config: Qwen2AudioConfig, mels: readonly ClipMel[], batch: TrainBatch | SharedBatch, clipOf?: readonly number[]): Tensor {
  return trainLossParts(engine, w, config, mels, batch, clipOf).lm;
}

// ---- the training run -----------------------------------------------------------------------

export interface TrainOptions {
  /** Corpus directory (manifest.jsonl + clips). */
  corpus: string;
  /** Where the finished model goes (weights/). */
  out: string;
  steps: number;
  seed?: number;
  /** Continue from the work directory's checkpoint (an error if it belongs to another run). */
  resume?: boolean;
  /** Caches, checkpoint and loss log (default <out>/.ardgpu-cache/train). */
  work?: string;
  dims?: Partial<ModelDims>;
  /** Clips per step (default 8). */
  batch?: number;
  /** Questions asked about each clip per step, one sequence each, sharing the clip's encoder pass and prompt prefix (default 2). */
  questionsPerClip?: number;
  /** Relative draw weights of the question kinds (default: all 1, a uniform draw). */
  questionWeights?: QuestionWeights;
  /**
   * Start from this exported model directory (its weights and tokenizer) instead of a random
   * initialisation: a second training stage. The dims must match.
   */
  initFrom?: string;
  /** Weight of the training-only auxiliary label loss (default 1; 0 turns it off). */
  auxWeight?: number;
  /** Learning-rate multiplier of the audio tower (default 1). */
  encoderLrScale?: number;
  /**
   * Learning-rate multiplier of the auxiliary head (default 1). Its logits start near 0 for every
   * clip; at the shared rate the head takes hundreds of steps to grow, and until then its loss sits
   * at the label base rate and tells the encoder little.
   */
  auxLrScale?: number;
  /** How the auxiliary head pools over time (default 'mean'): see AuxPool. */
  auxPool?: AuxPool;
  /** Times a clip with several labels appears in each epoch (default 1): see epochPool. */
  mixtureRepeat?: number;
  /** Share of batch slots (0–1, default 0) whose single-label clip becomes a fresh mixture: see train-mix.ts. */
  mixRate?: number;
  /** Share (0–1, default 0) of those fresh mixtures that get a third sound: see MixOptions. */
  mixThird?: number;
  /** Fresh mixtures of sounds only put noise-like sounds 3–8 dB lower, as the corpus does (default false): see MixOptions. */
  mixCorpusLevels?: boolean;
  /** Order of the labels in "What sounds can you hear?" answers (default 'given'): see LabelOrder. */
  labelOrder?: LabelOrder;
  /**
   * Export (and validate) an exponential moving average of the weights with this decay instead of
   * the last step's weights (0–1, default 0: off); see WeightAverage.ema.
   */
  ema?: number;
  /**
   * Export (and validate) the uniform mean of the weights after steps averageFrom,
   * averageFrom + averageEvery, … up to the last step (1-based steps; default: off).
   */
  averageFrom?: number;
  /** Steps between the weights that --average-from averages (default 1: every step). */
  averageEvery?: number;
  /** Peak learning rate (default 2e-3), reached after `warmup` steps, then cosine decay to lr·minLrRatio. */
  lr?: number;
  warmup?: number;
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  /** Global gradient-norm clip (default 1). */
  clipNorm?: number;
  /** Requested tokenizer vocabulary (default 1024; the trained one may be smaller). */
  vocabSize?: number;
  /** Steps between checkpoints (default 100; one is always written at the end). */
  checkpointEvery?: number;
  /** Steps between validation losses (default 200; 0 = never). */
  valEvery?: number;
  /** At most this many validation clips for the validation loss (default 48). */
  valClips?: number;
  /** Use only the first N training clips (tests). */
  maxTrainClips?: number;
  /** Stop after this step (checkpointed) without exporting, as if interrupted (tests). */
  stopAfter?: number;
  /** Write the model to `out` at the end (default true). */
  export?: boolean;
  engine?: Engine;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface StepRecord {
  step: number;
  /** Mean cross-entropy over the answer tokens. */
  loss: number;
  /** The auxiliary label loss (training only), when on. */
  auxLoss?: number;
  lr: number;
  gradNorm: number;
  /** Answer tokens the loss is over. */
  tokens: number;
  /** Sequence positions in the padded batch. */
  positions: number;
  ms: number;
  valLoss?: number;
}

export interface TrainResult {
  config: Qwen2AudioConfig;
  steps: number;
  records: StepRecord[];
  /** Wall time of this invocation (ms). */
  ms: number;
  /** Training wall time over the whole run, resumed parts included (ms). */
  totalMs: number;
  exported: boolean;
  work: string;
}

interface Clip {
  entry: ManifestEntry;
  mel: Float32Array;
  frames: number;
  validFrames: number;
  nAudio: number;
}

/** Learning rate at `step` (0-based): linear warm-up, then cosine decay to lr·minRatio at `total`. */
export function lrAt(step: number, total: number, lr: number, warmup: number, minRatio: number): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return lr * (minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/**
 * Log-mels of the clips, computed once and cached in `file` (keyed by the clip list and the
 * front end): each clip keeps the frames the encoder reads (see encodeTrainBatch), in f32.
 */
export async function cachedMels(engine: Engine, corpus: string, entries: readonly ManifestEntry[], fe: FrontendConfig, maxPositions: number, file: string): Promise<Clip[]> {
  const key = fnvHex(JSON.stringify([fe, maxPositions, entries.map((e) => e.file)]));
  if (fs.existsSync(file)) {
    const st = openSafetensors(file);
    try {
      if (st.metadata.key === key) {
        const valid = JSON.parse(st.metadata.validFrames!) as number[];
        return entries.map((entry, i) => {
          const mel = st.readFloat32(`mel.${i}`);
          return { entry, mel, frames: mel.length / fe.nMels, validFrames: valid[i]!, nAudio: audioTokenCount(valid[i]!) };
        });
      }
    } finally {
      st.close();
    }
  }
  const clips: Clip[] = [];
  for (const entry of entries) {
    const samples = readWav(path.join(corpus, entry.file)).samples;
    // training sees the first window only (the corpus's clips fit in one)
    const wf = windowFeatures(engine, samples.subarray(0, fe.nSamples), fe);
    const T = convOutLength(wf.validFrames);
    const frames = Math.min(2 * maxPositions, 2 * T + 1);
    const part = tidy(() => contiguous(slice(wf.mel, 1, 0, frames)));
    wf.mel.dispose();
    const mel = await part.toFloat32();
    part.dispose();
    clips.push({ entry, mel, frames, validFrames: wf.validFrames, nAudio: audioTokenCount(wf.validFrames) });
  }
  const tensors: Record<string, TensorToWrite> = {};
  clips.forEach((c, i) => (tensors[`mel.${i}`] = { dtype: 'F32', shape: [fe.nMels, c.frames], data: c.mel }));
  writeSafetensors(file, tensors, { key, validFrames: JSON.stringify(clips.map((c) => c.validFrames)) });
  return clips;
}

export interface RunSpec {
  version: number;
  seed: number;
  dims: ModelDims;
  batch: number;
  questionsPerClip: number;
  questionWeights: QuestionWeights | null;
  /** The model a second stage starts from: its directory and a hash of its weights file. */
  initFrom: { dir: string; key: string } | null;
  auxWeight: number;
  encoderLrScale: number;
  auxLrScale: number;
  auxPool: AuxPool;
  mixtureRepeat: number;
  mixRate: number;
  mixThird: number;
  mixCorpusLevels: boolean;
  labelOrder: LabelOrder;
  /** Decay of the exported weight EMA (0: none). */
  ema: number;
  /** The exported weights are the mean of those after steps averageFrom, averageFrom + averageEvery, … (null: none). */
  averageFrom: number | null;
  averageEvery: number;
  /** The auxiliary head's classes (the corpus labels). */
  auxClasses: string[];
  steps: number;
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  clipNorm: number;
  vocabSize: number;
  maxTrainClips: number | null;
  corpus: string;
}

const RUN_VERSION = 11;
const CKPT = 'checkpoint.safetensors';

function specOf(o: TrainOptions, dims: ModelDims, manifestKey: string): RunSpec {
  return {
    version: RUN_VERSION,
    seed: o.seed ?? 0,
    dims,
    batch: o.batch ?? 8,
    questionsPerClip: o.questionsPerClip ?? 2,
    questionWeights: o.questionWeights ?? null,
    initFrom: null,
    auxWeight: o.auxWeight ?? 1,
    encoderLrScale: o.encoderLrScale ?? 1,
    auxLrScale: o.auxLrScale ?? 1,
    auxPool: o.auxPool ?? 'mean',
    mixtureRepeat: o.mixtureRepeat ?? 1,
    mixRate: o.mixRate ?? 0,
    mixThird: o.mixThird ?? 0,
    mixCorpusLevels: o.mixCorpusLevels ?? false,
    labelOrder: o.labelOrder ?? 'given',
    ema: o.ema ?? 0,
    averageFrom: o.averageFrom ?? null,
    averageEvery: o.averageEvery ?? 1,
    auxClasses: [],
    steps: o.steps,
    lr: o.lr ?? 2e-3,
    warmup: o.warmup ?? Math.min(200, Math.max(1, Math.round(o.steps * 0.05))),
    minLrRatio: o.minLrRatio ?? 0.1,
    weightDecay: o.weightDecay ?? 0.01,
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.98,
    clipNorm: o.clipNorm ?? 1,
    vocabSize: o.vocabSize ?? 1024,
    maxTrainClips: o.maxTrainClips ?? null,
    corpus: manifestKey,
  };
}

/** JSON with every object's keys sorted (comparing settings written in another key order). */
function sortedJson(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))) : v,
  );
}

/** AdamW instances, each over a named group of parameters (the groups differ in learning rate). */
interface OptGroup {
  opt: AdamW;
  names: string[];
  /** Learning-rate multiplier of the group. */
  scale: number;
}

/** The running average of the exported weights (--ema, --average-from) and the names it covers. */
interface Averaged {
  avg: WeightAverage;
  names: string[];
}

async function saveCheckpoint(file: string, step: number, totalMs: number, params: Map<string, Tensor>, groups: readonly OptGroup[], averaged: Averaged | null): Promise<void> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of params) tensors[`param.${name}`] = { dtype: 'F32', shape: [...t.shape], data: await t.toFloat32() };
  const avgMeta: Record<string, string> = {};
  if (averaged) {
    const st = await averaged.avg.state();
    averaged.names.forEach((n, i) => (tensors[`average.${n}`] = { dtype: 'F32', shape: [...params.get(n)!.shape], data: st.buffers[i]! }));
    avgMeta.averageUpdates = String(st.updates);
  }
  const steps: Record<string, number> = {};
  for (const g of groups) {
    const st = await g.opt.state();
    g.names.forEach((n, i) => {
      steps[n] = st.steps[i]!;
      for (const buf of ['m', 'v'] as const) {
        const a = st.buffers[buf]![i];
        if (a) tensors[`adam.${buf}.${n}`] = { dtype: 'F32', shape: [a.length], data: a };
      }
    });
  }
  writeSafetensors(file, tensors, { step: String(step), totalMs: String(Math.round(totalMs)), optimizer: JSON.stringify({ kind: 'adamw', steps }), ...avgMeta });
}

/** Restores the checkpoint; `averageAt(step)` makes the weight average the run has at that step, if any. */
async function loadCheckpoint(
  engine: Engine,
  file: string,
  params: Map<string, Tensor>,
  groups: readonly OptGroup[],
  averageAt: (step: number) => Averaged | null,
): Promise<{ step: number; totalMs: number; averaged: Averaged | null }> {
  const st = openSafetensors(file);
  try {
    const step = Number(st.metadata.step);
    const averaged = averageAt(step);
    if (averaged) {
      const missing = averaged.names.find((n) => !st.tensors.has(`average.${n}`));
      if (missing !== undefined || st.metadata.averageUpdates === undefined) throw new ArdError(`${file}: no weight average in the checkpoint`);
      averaged.avg.loadState({ updates: Number(st.metadata.averageUpdates), buffers: averaged.names.map((n) => st.readFloat32(`average.${n}`)) });
    }
    readInto(engine, st, file, params, (n) => `param.${n}`, ' (a checkpoint of another model?)');
    const meta = JSON.parse(st.metadata.optimizer ?? 'null') as { kind: 'adamw'; steps: Record<string, number> } | null;
    if (!meta || typeof meta.steps !== 'object') throw new ArdError(`${file}: no optimizer state`);
    for (const g of groups) {
      const buffers: Record<string, (Float32Array | null)[]> = {};
      for (const buf of ['m', 'v']) buffers[buf] = g.names.map((n) => (st.tensors.has(`adam.${buf}.${n}`) ? st.readFloat32(`adam.${buf}.${n}`) : null));
      const o = g.opt;
      g.opt.loadState({
        kind: 'adamw',
        steps: g.names.map((n) => meta.steps[n] ?? 0),
        hyper: { lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weightDecay },
        buffers,
      });
    }
    return { step, totalMs: Number(st.metadata.totalMs ?? 0), averaged };
  } finally {
    st.close();
  }
}

function readLog(file: string, upTo: number): StepRecord[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as StepRecord)
    .filter((r) => r.step < upTo);
}

/**
 * Copies tensors of an open safetensors file into `targets` (name → tensor), reading each from
 * key keyOf(name): every one must be there with the tensor's size. `hint` ends both errors.
 */
function readInto(engine: Engine, st: ReturnType<typeof openSafetensors>, file: string, targets: Iterable<[string, Tensor]>, keyOf: (name: string) => string, hint: string): void {
  for (const [name, t] of targets) {
    const key = keyOf(name);
    if (!st.tensors.has(key)) throw new ArdError(`${file}: no tensor ${key}${hint}`);
    const data = st.readFloat32(key);
    if (data.length !== t.size) throw new ArdError(`${file}: ${key} has ${data.length} values, the model needs ${t.size}${hint}`);
    engine.write(t.buffer, t.offset * 4, data);
  }
}

/**
 * Overwrites `w` (the model's tensors; training-only ones are left alone) with an exported model's.
 * An audio encoder deeper than the exported one (--dims '{"encLayers":…}') grows: its extra layers
 * come after the exported ones, freshly initialised but with both residual outputs (attention
 * out_proj, fc2) zeroed, so each starts as the identity and the grown model computes exactly what
 * the exported one did. Returns how many encoder layers were added.
 */
function loadInitWeights(engine: Engine, w: Weights, file: string): number {
  const st = openSafetensors(file);
  try {
    const count = (has: (i: number) => boolean) => {
      let n = 0;
      while (has(n)) n++;
      return n;
    };
    const have = count((i) => st.tensors.has(`audio_tower.layers.${i}.fc1.weight`));
    const want = count((i) => w.has(`audio_tower.layers.${i}.fc1.weight`));
    const decFile = count((i) => st.tensors.has(`language_model.model.layers.${i}.mlp.up_proj.weight`));
    const decWant = count((i) => w.has(`language_model.model.layers.${i}.mlp.up_proj.weight`));
    // layers the model lacks would be dropped silently: a shallower model is not a continuation
    if (have > want || decFile > decWant) {
      throw new ArdError(`${file}: ${have > want ? `${have} audio encoder layers` : `${decFile} decoder layers`}, more than the model being trained has (${have > want ? want : decWant}) (a model of other dims?)`);
    }
    const layerOf = (name: string) => Number(/^audio_tower\.layers\.(\d+)\./.exec(name)?.[1] ?? -1);
    // with no encoder layer in the file at all this is not a shallower model of ours: nothing grows
    const grows = (name: string) => have > 0 && layerOf(name) >= have;
    readInto(engine, st, file, [...w].filter(([name]) => !name.startsWith('aux.') && !grows(name)), (n) => n, ' (a model of other dims?)');
    const added = new Set<number>();
    for (const [name, t] of w) {
      if (!grows(name)) continue;
      added.add(layerOf(name));
      if (/\.(self_attn\.out_proj|fc2)\.(weight|bias)$/.test(name)) engine.write(t.buffer, t.offset * 4, new Float32Array(t.size));
    }
    return added.size;
  } finally {
    st.close();
  }
}

/** Runs (or resumes) a training run; exports the model to `out` at the end. */
export async function trainAudioLLM(o: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new ArdError(`train: --steps must be a positive integer (got ${o.steps})`);
  const dims: ModelDims = { ...DEFAULT_DIMS, ...o.dims };
  const work = o.work ?? path.join(o.out, '.ardgpu-cache', 'train');
  fs.mkdirSync(work, { recursive: true });
  const all = readManifest(o.corpus);
  let trainEntries = all.filter((e) => e.split === 'train');
  if (o.maxTrainClips) trainEntries = trainEntries.slice(0, o.maxTrainClips);
  const valEntries = all.filter((e) => e.split === 'val').slice(0, o.valClips ?? 48);
  if (trainEntries.length === 0) throw new ArdError(`${o.corpus}: no training clips in the manifest`);
  const spec = specOf(o, dims, fnvHex(JSON.stringify(trainEntries.map((e) => [e.file, e.labels, e.caption]))));
  if (spec.questionWeights) checkQuestionWeights(spec.questionWeights);
  if (!(spec.mixRate >= 0 && spec.mixRate <= 1)) throw new ArdError(`train: --mix-rate must be from 0 to 1 (got ${spec.mixRate})`);
  if (!(spec.mixThird >= 0 && spec.mixThird <= 1)) throw new ArdError(`train: --mix-third must be from 0 to 1 (got ${spec.mixThird})`);
  if (!LABEL_ORDERS.includes(spec.labelOrder)) throw new ArdError(`train: --label-order must be ${LABEL_ORDERS.join(' or ')} (got ${String(spec.labelOrder)})`);
  if (!(spec.ema >= 0 && spec.ema < 1)) throw new ArdError(`train: --ema must be from 0 to below 1 (got ${spec.ema})`);
  if (spec.averageFrom !== null && !(Number.isInteger(spec.averageFrom) && spec.averageFrom >= 1 && spec.averageFrom <= spec.steps)) {
    throw new ArdError(`train: --average-from must be a step from 1 to --steps ${spec.steps} (got ${spec.averageFrom})`);
  }
  if (!(Number.isInteger(spec.averageEvery) && spec.averageEvery >= 1)) throw new ArdError(`train: --average-every must be a positive integer (got ${spec.averageEvery})`);
  if (spec.ema > 0 && spec.averageFrom !== null) throw new ArdError('train: --ema and --average-from exclude each other');
  if (spec.auxPool !== 'mean' && spec.auxPool !== 'frames') throw new ArdError(`train: --aux-pool must be mean or frames (got ${String(spec.auxPool)})`);
  if (o.initFrom) {
    const dir = path.resolve(o.initFrom);
    for (const f of ['model.safetensors', 'tokenizer.json']) {
      if (!fs.existsSync(path.join(dir, f))) throw new ArdError(`${path.join(dir, f)}: not found (--init needs an exported model directory)`);
    }
    spec.initFrom = { dir, key: fnvHex(fs.readFileSync(path.join(dir, 'model.safetensors')).toString('latin1')) };
  }
  if (spec.auxWeight > 0) {
    const seen = new Set(trainEntries.flatMap((e) => e.labels));
    spec.auxClasses = [...CONCEPT_LABELS.filter((l) => seen.has(l)), ...[...seen].filter((l) => !CONCEPT_LABELS.includes(l)).sort()];
  }
  const specFile = path.join(work, 'run.json');
  const ckptFile = path.join(work, CKPT);
  const logFile = path.join(work, 'loss.jsonl');
  const tokFile = path.join(work, 'tokenizer.json');
  if (o.resume) {
    if (!fs.existsSync(specFile) || !fs.existsSync(ckptFile)) throw new ArdError(`${work}: nothing to resume (no run.json / ${CKPT}); start without --resume`);
    const prev = JSON.parse(fs.readFileSync(specFile, 'utf8')) as RunSpec;
    // a run may be resumed with another total (the schedule follows it); the warm-up stays
    if (o.warmup === undefined) spec.warmup = prev.warmup;
    // settings newer than the checkpoint's run take their defaults
    const { steps: _a, ...a } = { ...prev, ema: prev.ema ?? 0, averageFrom: prev.averageFrom ?? null, averageEvery: prev.averageEvery ?? 1 };
    const { steps: _b, ...b } = spec;
    if (sortedJson(a) !== sortedJson(b)) throw new ArdError(`${specFile}: the checkpoint belongs to a run with other settings (${JSON.stringify(prev)})`);
    if (spec.steps !== prev.steps) log(`note: total steps changed ${prev.steps} → ${spec.steps} (the schedule follows the new total)`);
  } else {
    for (const f of [ckptFile, logFile]) fs.rmSync(f, { force: true });
  }

  const engine = o.engine ?? (await Engine.create());
  const ownsEngine = !o.engine;
  let weights: Weights | null = null;
  let groups: OptGroup[] = [];
  let averaged: Averaged | null = null;
  /** The weights to validate and export: the running average in place of the trained weights, once there is one. */
  const exportWeights = (): Weights => {
    if (!averaged) return weights!;
    const w = new Map(weights!);
    averaged.names.forEach((n, i) => w.set(n, averaged!.avg.average(i)));
    return w;
  };
  try {
    // tokenizer: trained once per run, on the training clips' text
    let tok: Tokenizer;
    if (o.resume && fs.existsSync(tokFile)) tok = Tokenizer.load(tokFile);
    else if (spec.initFrom) {
      // a second stage keeps the first stage's tokenizer (the embeddings are indexed by it)
      const text = fs.readFileSync(path.join(spec.initFrom.dir, 'tokenizer.json'), 'utf8');
      writeFileAtomic(tokFile, text);
      tok = Tokenizer.load(tokFile);
    } else {
      const tj = trainTokenizer(trainEntries, spec.vocabSize);
      writeFileAtomic(tokFile, JSON.stringify(tj));
      tok = Tokenizer.fromJSON(tj, tokFile);
    }
    writeFileAtomic(specFile, JSON.stringify(spec, null, 2) + '\n');
    const config = makeConfig(dims, tok);
    const fe = frontendFor(dims);
    const maxPos = config.audio_config.max_source_positions;
    log(`tokenizer: ${tok.vocabSize} tokens; ${trainEntries.length} training clips, ${valEntries.length} validation clips`);
    const tm = performance.now();
    const clips = await cachedMels(engine, o.corpus, trainEntries, fe, maxPos, path.join(work, `mels-train.safetensors`));
    const valClips = valEntries.length ? await cachedMels(engine, o.corpus, valEntries, fe, maxPos, path.join(work, `mels-val.safetensors`)) : [];
    log(`log-mels ready (${((performance.now() - tm) / 1000).toFixed(1)} s)`);
    const qas = clips.map((c) => clipQAs(c.entry, spec.labelOrder));
    const pool = epochPool(clips.map((c) => c.entry.labels.length), spec.mixtureRepeat);
    const labelsOf = clips.map((c) => c.entry.labels);
    const tid = templateIds(tok);

    weights = initWeights(engine, config, spec.seed);
    if (spec.initFrom && !o.resume) {
      const grown = loadInitWeights(engine, weights, path.join(spec.initFrom.dir, 'model.safetensors'));
      if (grown > 0) log(`audio encoder grown by ${grown} layer${grown > 1 ? 's' : ''} (identity at the start: residual outputs zeroed)`);
    }
    const nAux = spec.auxClasses.length;
    const auxIndex = new Map(spec.auxClasses.map((l, i) => [l, i]));
    if (nAux) {
      // each class's share of training clips, kept inside [1/2n, 1 − 1/2n]
      const n = clips.length;
      const share = new Float32Array(nAux);
      for (const c of clips) for (const l of c.entry.labels) share[auxIndex.get(l)!]! += 1 / n;
      initAux(engine, weights, config, nAux, spec.seed, share.map((p) => Math.min(1 - 0.5 / n, Math.max(0.5 / n, p))));
    }
    const params = trainableWeights(weights);
    for (const [n, t] of params) param(t, n);
    // the audio tower and the aux head may learn at their own rates; the projector and decoder at lr
    const groupOf = (n: string) => (n.startsWith('audio_tower.') ? 0 : n.startsWith('aux.') ? 2 : 1);
    const scaleOf = [spec.encoderLrScale, 1, spec.auxLrScale];
    groups = [0, 1, 2]
      .map((gi) => ({ names: [...params.keys()].filter((n) => groupOf(n) === gi), scale: scaleOf[gi]! }))
      .filter((g) => g.names.length)
      .map((g) => ({ ...g, opt: new AdamW({ params: g.names.map((n) => params.get(n)!), lr: spec.lr * g.scale, betas: [spec.beta1, spec.beta2], eps: 1e-8, weightDecay: spec.weightDecay }) }));
    let start = 0;
    let totalMs = 0;
    // the exported weights' running average (not the aux head, which is not exported)
    const avgNames = [...params.keys()].filter((n) => !n.startsWith('aux.'));
    const newAverage = (): Averaged => ({ avg: new WeightAverage(avgNames.map((n) => params.get(n)!)), names: avgNames });
    // an EMA runs from the start; a mean starts as the weights after step averageFrom
    const averageAt = (stepsDone: number) => (spec.ema > 0 || (spec.averageFrom !== null && stepsDone >= spec.averageFrom) ? newAverage() : null);
    if (o.resume) {
      const ck = await loadCheckpoint(engine, ckptFile, params, groups, averageAt);
      averaged = ck.averaged;
      start = ck.step;
      totalMs = ck.totalMs;
      log(`resumed at step ${start}`);
    } else {
      averaged = averageAt(0);
    }
    // the log keeps exactly the steps the checkpoint has seen
    const records = readLog(logFile, start);
    writeFileAtomic(logFile, records.map((r) => JSON.stringify(r) + '\n').join(''));
    const logFd = fs.openSync(logFile, 'a');
    const end = Math.min(spec.steps, o.stopAfter ?? spec.steps);
    const every = o.checkpointEvery ?? 100;
    const valEvery = o.valEvery ?? 200;
    try {
      for (let step = start; step < end; step++) {
        const ts = performance.now();
        const pick = batchClips(spec.seed, step, spec.batch, pool.length).map((i) => pool[i]!);
        // each slot's clip, or a fresh mixture in its place (train-mix.ts)
        const slots = pick.map((c, i) => {
          const m = planMix(spec.seed, step, i, c, labelsOf, spec.mixRate, { third: spec.mixThird, corpusLevels: spec.mixCorpusLevels });
          if (!m) return { clip: clips[c]!, qas: qas[c]! };
          const entry = mixedEntry([m.fg, m.bg, ...(m.third ? [m.third.clip] : [])].map((j) => clips[j]!.entry), m.captionSeed);
          const { mel, frames, validFrames } = planMels(m, clips, dims.nMels);
          return { clip: { entry, mel, frames, validFrames, nAudio: audioTokenCount(validFrames) }, qas: clipQAs(entry, spec.labelOrder) };
        });
        const convs: EncodedConversation[] = [];
        const clipOf: number[] = [];
        pick.forEach((c, i) => {
          for (const qa of pickQuestions(spec.seed, step, c, slots[i]!.qas, spec.questionsPerClip, spec.questionWeights)) {
            convs.push(encodeConversation(tok, slots[i]!.clip.nAudio, [qa]));
            clipOf.push(i);
          }
        });
        const batch = packShared(convs, clipOf, tid.endOfText, tid.audio);
        const lr = lrAt(step, spec.steps, spec.lr, spec.warmup, spec.minLrRatio);
        for (const g of groups) g.opt.lr = lr * g.scale;
        let auxTargets: Float32Array | undefined;
        if (nAux) {
          auxTargets = new Float32Array(pick.length * nAux);
          slots.forEach((sl, i) => {
            for (const l of sl.clip.entry.labels) auxTargets![i * nAux + auxIndex.get(l)!] = 1;
          });
        }
        const { lm, aux, norm } = tidy(() => {
          const mels = slots.map(({ clip }) => ({ mel: tensor(engine, clip.mel, [dims.nMels, clip.frames]), validFrames: clip.validFrames }));
          const parts = trainLossParts(engine, weights!, config, mels, batch, clipOf, auxTargets ? { targets: auxTargets, weight: spec.auxWeight, pool: spec.auxPool } : undefined);
          backward(parts.loss);
          const n = clipGradNorm([...params.values()], spec.clipNorm);
          for (const g of groups) g.opt.step();
          return { lm: parts.lm, aux: parts.aux, norm: n };
        });
        for (const g of groups) g.opt.zeroGrad();
        if (!averaged) averaged = averageAt(step + 1);
        else if (spec.ema > 0) averaged.avg.ema(spec.ema);
        else if ((step + 1 - spec.averageFrom!) % spec.averageEvery === 0) averaged.avg.mean();
        const lossV = await lm.item();
        const auxV = aux ? await aux.item() : undefined;
        const normV = await norm.item();
        for (const t of [lm, aux, norm]) t?.dispose();
        if (!Number.isFinite(lossV)) throw new ArdError(`train: loss became ${lossV} at step ${step}`);
        const rec: StepRecord = { step, loss: lossV, ...(auxV !== undefined ? { auxLoss: auxV } : {}), lr, gradNorm: normV, tokens: batch.targets.length, positions: batch.prefix.B * batch.prefix.L + batch.S * batch.Ls, ms: Math.round(performance.now() - ts) };
        if (valEvery > 0 && valClips.length && ((step + 1) % valEvery === 0 || step + 1 === spec.steps)) {
          rec.valLoss = await validationLoss(engine, exportWeights(), config, tok, valClips, spec.batch, spec.labelOrder);
        }
        records.push(rec);
        fs.writeSync(logFd, JSON.stringify(rec) + '\n');
        totalMs += performance.now() - ts;
        if ((step + 1) % 10 === 0 || step === start || step + 1 === end) {
          log(`step ${step + 1}/${spec.steps} loss ${lossV.toFixed(4)}${auxV !== undefined ? ` aux ${auxV.toFixed(4)}` : ''}${rec.valLoss !== undefined ? ` val ${rec.valLoss.toFixed(4)}` : ''} lr ${lr.toExponential(2)} |g| ${normV.toFixed(3)} ${(rec.ms / 1000).toFixed(2)} s/step`);
        }
        if ((step + 1) % every === 0 || step + 1 === end) {
          await saveCheckpoint(ckptFile, step + 1, totalMs, params, groups, averaged);
        }
      }
    } finally {
      fs.closeSync(logFd);
    }
    const done = end >= spec.steps;
    let exported = false;
    if (done && o.export !== false) {
      await exportModel(o.out, exportWeights(), config, fe, { spec, records, totalMs, tokenizerJson: fs.readFileSync(tokFile, 'utf8') });
      exported = true;
      log(`model written to ${o.out}`);
    }
    return { config, steps: end, records, ms: performance.now() - t0, totalMs, exported, work };
  } finally {
    for (const g of groups) g.opt.dispose();
    averaged?.avg.dispose();
    if (weights) for (const t of weights.values()) t.dispose();
    if (ownsEngine) engine.destroy();
  }
}

/** Mean answer-token loss over every question of `clips` (single-turn, as trained), no gradients. */
export async function validationLoss(engine: Engine, w: Weights, config: Qwen2AudioConfig, tok: Tokenizer, clips: readonly Clip[], clipsPerBatch: number, labelOrder: LabelOrder = 'given'): Promise<number> {
  const tid = templateIds(tok);
  let sum = 0;
  let count = 0;
  for (let i = 0; i < clips.length; i += clipsPerBatch) {
    const part = clips.slice(i, i + clipsPerBatch);
    const convs: EncodedConversation[] = [];
    const clipOf: number[] = [];
    part.forEach((c, j) => {
      for (const qa of clipQAs(c.entry, labelOrder)) {
        convs.push(encodeConversation(tok, c.nAudio, [qa]));
        clipOf.push(j);
      }
    });
    const batch = packShared(convs, clipOf, tid.endOfText, tid.audio);
    const l = engine.noGradScope(() =>
      tidy(() => {
        const mels = part.map((c) => ({ mel: tensor(engine, c.mel, [config.audio_config.num_mel_bins, c.frames]), validFrames: c.validFrames }));
        return trainLoss(engine, w, config, mels, batch, clipOf);
      }),
    );
    sum += (await l.item()) * batch.targets.length;
    count += batch.targets.length;
    l.dispose();
  }
  return sum / count;
}

// ---- export ---------------------------------------------------------------------------------

export interface ExportInfo {
  spec: RunSpec;
  /** The tokenizer.json text. */
  tokenizerJson: string;
  records: readonly StepRecord[];
  totalMs: number;
}

/** Files the exported model directory holds (README.md is written by writeWeightsReadme). */
export const MODEL_FILES = ['model.safetensors', 'config.json', 'preprocessor_config.json', 'tokenizer.json', 'generation_config.json'] as const;
/** Upper bound for everything in weights/ (the repository carries it). */
export const MAX_EXPORT_BYTES = 20 * 1024 * 1024;

/**
 * Writes a loadable model directory (HF layout): model.safetensors (F16 by default; F32 for exact
 * comparisons), config.json, preprocessor_config.json, tokenizer.json, generation_config.json.
 */
export async function writeModelDir(
  out: string,
  w: Weights,
  config: Qwen2AudioConfig,
  fe: FrontendConfig,
  tokenizerJson: string,
  opts: { dtype?: 'F16' | 'F32'; metadata?: Record<string, string> } = {},
): Promise<void> {
  const dtype = opts.dtype ?? 'F16';
  fs.mkdirSync(out, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of w) {
    if (name.startsWith('aux.')) continue; // training-only head
    const data = await t.toFloat32();
    if (dtype === 'F16') {
      for (let i = 0; i < data.length; i++) {
        if (!(Math.abs(data[i]!) < 65504)) throw new ArdError(`export: ${name} holds ${data[i]} (not representable in f16)`);
      }
    }
    tensors[name] = { dtype, shape: [...t.shape], data };
  }
  writeSafetensors(path.join(out, 'model.safetensors'), tensors, { format: 'pt', producer: 'ardgpu src/model/train.ts', ...opts.metadata });
  writeJsonAtomic(path.join(out, 'config.json'), { ...qwen2AudioConfigToJson(config), torch_dtype: dtype === 'F16' ? 'float16' : 'float32' });
  writeJsonAtomic(path.join(out, 'preprocessor_config.json'), preprocessorJson(fe));
  writeFileAtomic(path.join(out, 'tokenizer.json'), tokenizerJson);
  const tok = Tokenizer.fromJSON(JSON.parse(tokenizerJson), 'tokenizer.json');
  const t = templateIds(tok);
  writeJsonAtomic(path.join(out, 'generation_config.json'), {
    bos_token_id: t.endOfText,
    eos_token_id: [t.imEnd, t.endOfText],
    pad_token_id: t.endOfText,
    do_sample: false,
    max_new_tokens: 64,
  });
}

/** The finished run: the model (F16) plus the loss log and curve; checks the size budget. */
export async function exportModel(out: string, w: Weights, config: Qwen2AudioConfig, fe: FrontendConfig, info: ExportInfo): Promise<void> {
  const last = info.records[info.records.length - 1];
  await writeModelDir(out, w, config, fe, info.tokenizerJson, {
    metadata: {
      producer: 'ardgpu tools/train-audiollm.ts',
      steps: String(info.spec.steps),
      seed: String(info.spec.seed),
      ...(last ? { final_loss: last.loss.toFixed(4) } : {}),
    },
  });
  writeFileAtomic(path.join(out, 'train-log.jsonl'), info.records.map((r) => JSON.stringify(r) + '\n').join(''));
  writeFileAtomic(path.join(out, 'loss.svg'), lossSvg(info.records));
  const bytes = fs.readdirSync(out).filter((f) => fs.statSync(path.join(out, f)).isFile()).reduce((a, f) => a + fs.statSync(path.join(out, f)).size, 0);
  if (bytes > MAX_EXPORT_BYTES) throw new ArdError(`export: ${out} holds ${(bytes / 2 ** 20).toFixed(1)} MiB, over the ${MAX_EXPORT_BYTES / 2 ** 20} MiB budget`);
}

/** An SVG line chart of the training loss (raw and smoothed) and the validation loss. */
export function lossSvg(records: readonly StepRecord[]): string {
  const W = 720, H = 360, L = 60, R = 20, T = 30, B = 45;
  if (records.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"></svg>\n`;
  const xs = records.map((r) => r.step + 1);
  const ys = records.map((r) => r.loss);
  const ema: number[] = [];
  let e = ys[0]!;
  for (const y of ys) ema.push((e = 0.95 * e + 0.05 * y));
  const val = records.filter((r) => r.valLoss !== undefined).map((r) => [r.step + 1, r.valLoss!] as const);
  const xMax = Math.max(...xs);
  const yMax = Math.max(...ema, ...val.map((v) => v[1]), ys.slice(0, Math.max(1, Math.ceil(ys.length / 50))).reduce((a, b) => Math.max(a, b), 0)) * 1.05;
  const sx = (x: number) => L + ((W - L - R) * x) / xMax;
  const sy = (y: number) => T + (H - T - B) * (1 - Math.min(y, yMax) / yMax);
  const stride = Math.max(1, Math.floor(records.length / 600));
  const line = (pts: [number, number][]) => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
  const rawPts = xs.map((x, i) => [x, ys[i]!] as [number, number]).filter((_, i) => i % stride === 0);
  const emaPts = xs.map((x, i) => [x, ema[i]!] as [number, number]).filter((_, i) => i % stride === 0 || i === xs.length - 1);
  const nice = (max: number) => {
    const raw = max / 5;
    const p = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  };
  const xStep = nice(xMax);
  const yStep = nice(yMax);
  let g = '';
  for (let y = 0; y <= yMax + 1e-9; y += yStep) g += `<line x1="${L}" x2="${W - R}" y1="${sy(y).toFixed(1)}" y2="${sy(y).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(sy(y) + 4).toFixed(1)}" text-anchor="end">${+y.toFixed(3)}</text>`;
  for (let x = 0; x <= xMax; x += xStep) g += `<text x="${sx(x).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${x}</text>`;
  const valDots = val.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="#d62728"/>`).join('');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">Training loss (answer tokens, cross-entropy)</text>`,
    g,
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#333"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">step</text>`,
    `<path d="${line(rawPts)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`,
    `<path d="${line(emaPts)}" fill="none" stroke="#08519c" stroke-width="2"/>`,
    valDots,
    `<g transform="translate(${W - R - 190},${T + 8})"><rect width="180" height="${val.length ? 58 : 40}" fill="#fff" stroke="#ccc"/>`,
    `<line x1="8" x2="28" y1="14" y2="14" stroke="#9ecae1"/><text x="34" y="18">loss per step</text>`,
    `<line x1="8" x2="28" y1="32" y2="32" stroke="#08519c" stroke-width="2"/><text x="34" y="36">moving average</text>`,
    val.length ? `<circle cx="18" cy="50" r="3.5" fill="#d62728"/><text x="34" y="54">validation loss</text>` : '',
    `</g></svg>`,
    '',
  ].join('\n');
}

// ---- weights/README.md ----------------------------------------------------------------------

export interface ReadmeInfo {
  /** Commands of earlier stages (a run with initFrom), printed before `command`. */
  previousCommands?: string[];
  command: string;
  result: TrainResult;
  eval: import('./eval-model.js').EvalResult;
  adapter: string;
  /** How the corpus was made (default: the make-corpus command for seed 0, size 1200). */
  corpusCommand?: string;
}

/** Encoder layers a stage added to the model it started from (0 without --init or growth). */
function grownLayers(spec: RunSpec): number {
  const cfgFile = spec.initFrom ? path.join(spec.initFrom.dir, 'config.json') : null;
  if (!cfgFile || !fs.existsSync(cfgFile)) return 0;
  const before = (JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Qwen2AudioConfig).audio_config.encoder_layers;
  return Math.max(0, spec.dims.encLayers - before);
}

/** weights/README.md: what the model is, how it was trained (exact command, time) and how it scores. */
export function writeWeightsReadme(out: string, info: ReadmeInfo): void {
  const cfg = info.result.config;
  const a = cfg.audio_config;
  const t = cfg.text_config;
  const spec = JSON.parse(fs.readFileSync(path.join(info.result.work, 'run.json'), 'utf8')) as RunSpec;
  const shapes = expectedTensorShapes(cfg);
  let nParams = 0;
  for (const s of shapes.values()) nParams += s.reduce((x, y) => x * y, 1);
  const size = (f: string) => (fs.existsSync(path.join(out, f)) ? fs.statSync(path.join(out, f)).size : 0);
  const total = fs.readdirSync(out).filter((f) => fs.statSync(path.join(out, f)).isFile()).reduce((s, f) => s + size(f), 0);
  const recs = info.result.records;
  const tail = recs.slice(-Math.max(1, Math.floor(recs.length / 20)));
  const tailLoss = tail.reduce((s, r) => s + r.loss, 0) / tail.length;
  const vals = recs.filter((r) => r.valLoss !== undefined);
  const ev = info.eval;
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const ok = (x: boolean) => (x ? 'yes' : 'no');
  const meanStep = recs.reduce((s, r) => s + r.ms, 0) / Math.max(1, recs.length);
  const lines = [
    '# The default AudioLLM',
    '',
    'A small model in the layout of Hugging Face\'s `Qwen2AudioForConditionalGeneration` (Whisper-style',
    'audio encoder → average pool → projector → Qwen2 decoder), trained from scratch by ardgpu itself:',
    'its own autograd and AdamW, on WebGPU. It exists so that a fresh clone runs the whole AR&D loop with',
    'nothing downloaded, and it proves the engine\'s autograd on a real model. It knows only the synthetic',
    'probe corpus (`src/corpus`): 26 sound concepts, female/male speech (espeak-ng voices), mixtures and',
    'augmentations.',
    '',
    '## Files',
    '',
    '| file | what | bytes |',
    '| --- | --- | --- |',
    `| model.safetensors | every tensor, F16, Hugging Face names (${shapes.size} tensors, ${(nParams / 1e6).toFixed(2)} M parameters) | ${size('model.safetensors')} |`,
    `| config.json | Qwen2-Audio config | ${size('config.json')} |`,
    `| preprocessor_config.json | Whisper front end: ${a.num_mel_bins} mel bins, ${spec.dims.windowSeconds} s window | ${size('preprocessor_config.json')} |`,
    `| tokenizer.json | byte-level BPE, ${t.vocab_size} tokens (Qwen2 pre-tokenizer and special tokens) | ${size('tokenizer.json')} |`,
    `| generation_config.json | stop tokens (<\\|im_end\\|>, <\\|endoftext\\|>), greedy | ${size('generation_config.json')} |`,
    `| train-log.jsonl, loss.svg | loss per step (and validation loss) | ${size('train-log.jsonl') + size('loss.svg')} |`,
    `| eval-${ev.split}.json | held-out evaluation | ${size(`eval-${ev.split}.json`)} |`,
    '',
    `In all ${(total / 2 ** 20).toFixed(2)} MiB.`,
    '',
    '## Architecture',
    '',
    '| part | size |',
    '| --- | --- |',
    `| audio encoder | ${a.encoder_layers} pre-LN layers, d_model ${a.d_model}, ${a.encoder_attention_heads} heads, FFN ${a.encoder_ffn_dim}; conv stem (k3, k3 stride 2); ${a.max_source_positions} positions (${spec.dims.windowSeconds} s window, 25 audio tokens per second after the pool); sinusoidal positions (× ${POSITION_SCALE}), frozen |`,
    `| projector | linear ${a.d_model} → ${t.hidden_size} |`,
    `| decoder | ${t.num_hidden_layers} layers, hidden ${t.hidden_size}, ${t.num_attention_heads} query heads / ${t.num_key_value_heads} KV heads (head dim ${t.head_dim}), SwiGLU ${t.intermediate_size}, RoPE θ ${t.rope_theta}, RMSNorm; untied lm_head |`,
    `| vocabulary | ${t.vocab_size} (audio token id ${cfg.audio_token_index}) |`,
    '',
    '## Data',
    '',
    `The training split of the probe corpus (${info.corpusCommand ?? '`ardgpu make-corpus --seed 0 --size 1200 --out DIR`'}); validation and test clips use`,
    'speakers and sentences never heard in training. Each training example is one single-turn chat in',
    'Qwen2-Audio\'s template (`src/model/chat.ts`) — exactly the prompt inference feeds — with the clip\'s',
    'audio and one question:',
    '',
    '| question | answer |',
    '| --- | --- |',
    '| Describe the sound. | the clip\'s caption |',
    '| What is the gender of the speaker? | female / male (speech clips only) |',
    `| What sounds can you hear? | the labels, comma-separated (e.g. "female speech, white noise"), ${spec.labelOrder === 'canonical' ? 'speech first, then the sounds in a fixed order (the corpus\'s concept list)' : 'speech or the loudest sound first'} |`,
    '| Is anyone speaking? | yes / no |',
    '',
    `Each step takes ${spec.batch} clips and asks each ${spec.questionsPerClip} of its questions (seeded draws${spec.questionWeights ? `, weighted ${Object.entries(spec.questionWeights).map(([k, v]) => `${k} ${v}`).join(', ')}, others 1` : ''}), one sequence per`,
    'question, sharing the clip\'s encoder pass and the decoder\'s pass over the prompt up to the audio\'s end (the question comes after',
    'the audio, so under causal attention those rows are the same in every sequence about the clip). The loss is on answer tokens and',
    'their <|im_end|> only.',
    ...(spec.mixRate > 0 ? [`A share of ${spec.mixRate} of the batch slots that hold a single-label clip get a fresh mixture instead: that clip with another single-label training clip added in the log-mel power domain (src/train/mix.ts)${spec.mixThird > 0 ? `; ${spec.mixThird} of those mixtures get a third sound` : ''}${spec.mixCorpusLevels ? '; in mixtures of sounds only, noise-like sounds sit 3–8 dB lower, as in the corpus' : ''}.`] : []),
    ...(spec.mixtureRepeat !== 1 ? [`Clips with several labels (mixtures) appear ${spec.mixtureRepeat} times in each epoch's order, every other clip once.`] : []),
    'Log-mels are computed once per clip and cached. (A multi-turn chat with every question about a clip',
    'would be cheaper, but later answers can be read off earlier ones, and the model learned that shortcut',
    'instead of listening.)',
    '',
    '## Training',
    '',
    '```',
    ...(info.previousCommands ?? []),
    info.command,
    '```',
    '',
    ...(spec.initFrom
      ? ((k) => [`- Stage ${k + 1}, the last command: it starts from the stage-${k} model (its README is kept as README.stage${k}.md, its loss curve as loss.stage${k}.svg; earlier stages likewise) instead of a random initialisation, with the stage-1 tokenizer. Figures below are this stage's.`])(Math.max(1, info.previousCommands?.length ?? 1))
      : []),
    ...((n) => (n > 0 ? [`- The audio encoder has ${n} more layer${n > 1 ? 's' : ''} than the model it starts from: appended after its layers, freshly initialised with both residual outputs (attention out_proj, fc2) zeroed, so the grown model starts out computing exactly what that model did.`] : []))(grownLayers(spec)),
    `- ${spec.steps} steps of ${spec.batch} clips, seed ${spec.seed}; AdamW (β ${spec.beta1}/${spec.beta2}, weight decay ${spec.weightDecay}), learning rate ${spec.lr}${spec.encoderLrScale !== 1 ? ` (× ${spec.encoderLrScale} for the audio tower)` : ''} after ${spec.warmup} warm-up steps, cosine decay to ${+(spec.lr * spec.minLrRatio).toPrecision(3)}; gradients clipped to norm ${spec.clipNorm}.`,
    ...(spec.ema > 0 ? [`- The exported weights (and the validation losses) are an exponential moving average of the trained weights, decay ${spec.ema} (ramped up as (1+t)/(10+t) over the first updates), kept from the first step.`] : []),
    ...(spec.averageFrom !== null ? [`- The exported weights (and the validation losses from step ${spec.averageFrom} on) are the mean of the weights after ${spec.averageEvery === 1 ? `every step from step ${spec.averageFrom} to step ${spec.steps}` : `steps ${spec.averageFrom}, ${spec.averageFrom + spec.averageEvery}, … up to ${spec.steps} (every ${spec.averageEvery} steps)`} (${Math.floor((spec.steps - spec.averageFrom) / spec.averageEvery) + 1} sets of weights).`] : []),
    ...(spec.auxWeight > 0
      ? [`- A training-only auxiliary loss (weight ${spec.auxWeight}${spec.auxLrScale !== 1 ? `, learning rate × ${spec.auxLrScale}` : ''}, not exported): ${spec.auxPool === 'frames' ? 'a linear head on every audio frame, pooled per class over time by a softmax of its own logits (a smooth maximum),' : "a linear head on each clip's time-averaged audio features"} predicts the clip's labels (binary cross-entropy over ${spec.auxClasses.length} classes; its bias starts at each label's log-odds among training clips), so the encoder gets a direct signal from the start.`]
      : []),
    `- Wall time: ${(info.result.totalMs / 60000).toFixed(1)} min of training (${(meanStep / 1000).toFixed(2)} s per step on average) on ${info.adapter}.`,
    `- Loss: ${recs[0] ? recs[0].loss.toFixed(3) : '?'} at the first step, ${tailLoss.toFixed(3)} averaged over the last ${tail.length} steps${vals.length ? `; validation loss ${vals[vals.length - 1]!.valLoss!.toFixed(3)} at the end` : ''}.`,
    '- Interrupted runs continue with `--resume` (checkpoints hold the weights, AdamW state and step; the data order is a function of seed and step, so the loss sequence equals an uninterrupted run\'s).',
    '',
    '![training loss](loss.svg)',
    '',
    `## Held-out results (${ev.split} split, ${ev.clips} clips, greedy decoding)`,
    '',
    '| measure | result | target | met |',
    '| --- | --- | --- | --- |',
    `| gender accuracy ("What is the gender of the speaker?", ${ev.gender.total} speech clips) | ${pct(ev.gender.accuracy)} | ≥ 95 % | ${ok(ev.gender.accuracy >= 0.95)} |`,
    `| "Is anyone speaking?" accuracy | ${pct(ev.speaking.accuracy)} | ≥ 95 % | ${ok(ev.speaking.accuracy >= 0.95)} |`,
    `| label precision ("What sounds can you hear?") | ${pct(ev.labels.precision)} | ≥ 80 % | ${ok(ev.labels.precision >= 0.8)} |`,
    `| label recall | ${pct(ev.labels.recall)} | ≥ 80 % | ${ok(ev.labels.recall >= 0.8)} |`,
    ...Object.entries(ev.labels.byLabelCount).map(([n, c]) => `| label recall on clips with ${n} label${n === '1' ? '' : 's'} (${c.clips} clips, ${c.labels} labels) | ${pct(c.recall)} | | |`),
    `| exact label set | ${pct(ev.labels.exactMatch)} | | |`,
    `| ask() latency, WAV in → answer out (median of ${ev.latency.clips}) | ${(ev.latency.medianMs / 1000).toFixed(2)} s | < 5 s | ${ok(ev.latency.medianMs < 5000)} |`,
    '',
    'Some answers:',
    '',
    '| clip labels | Describe the sound. | What sounds can you hear? |',
    '| --- | --- | --- |',
    ...ev.examples.slice(0, 8).map((e) => `| ${e.labels.join(', ')} | ${e.answers.describe ?? ''} | ${e.answers.sounds ?? ''} |`),
    '',
    `Reproduce the evaluation: \`evalModel({ engine, model: 'weights', corpus, split: '${ev.split}' })\` (src/train/eval-model.ts).`,
    '',
  ];
  writeFileAtomic(path.join(out, 'README.md'), lines.join('\n'));
}

/**
 * Writes the weights of a run's latest checkpoint as a loadable model directory (to look at a
 * run in progress, or to rescue an interrupted one). Returns the checkpoint's step.
 */
export async function exportCheckpoint(engine: Engine, work: string, out: string, opts: { dtype?: 'F16' | 'F32' } = {}): Promise<number> {
  const spec = JSON.parse(fs.readFileSync(path.join(work, 'run.json'), 'utf8')) as RunSpec;
  const tokenizerJson = fs.readFileSync(path.join(work, 'tokenizer.json'), 'utf8');
  const tok = Tokenizer.fromJSON(JSON.parse(tokenizerJson), path.join(work, 'tokenizer.json'));
  const config = makeConfig(spec.dims, tok);
  const w = initWeights(engine, config, spec.seed);
  const st = openSafetensors(path.join(work, CKPT));
  try {
    readInto(engine, st, `${work}/${CKPT}`, [...w].filter(([name]) => !FROZEN.has(name)), (n) => `param.${n}`, '');
    await writeModelDir(out, w, config, frontendFor(spec.dims), tokenizerJson, { dtype: opts.dtype, metadata: { steps: st.metadata.step ?? '?' } });
    return Number(st.metadata.step);
  } finally {
    st.close();
    for (const t of w.values()) t.dispose();
  }
}
