// The training forward of the AudioLLM and its losses, with ardgpu's own autograd.
//
// The inference forward (model/audio-encoder.ts, model/decoder.ts) is written for no-grad use:
// fused elementwise kernels without gradients, strided views into fused projections, a KV cache
// filled in place. The training forward below computes the same function with recorded ops only,
// from the unfused Hugging Face tensors, batched over right-padded sequences (causal attention
// never lets a real token see the padding). The test checks that its logits equal those of
// AudioLLM.forward on the exported and reloaded weights.
//
//   per clip:  cached log-mel → conv1 → GELU → conv2 → GELU + positions → N pre-LN blocks
//              → avg-pool 2 → LayerNorm → projector                         → features [n_i, D]
//   per batch: embed_tokens(ids) with placeholder rows ← features → decoder [B, L, D]
//              → RMSNorm → lm_head at answer positions only → cross-entropy
import type { Engine } from '../gpu/engine.js';
import { audioTokenCount, convOutLength } from '../model/audio-encoder.js';
import type { Qwen2AudioConfig } from '../model/config.js';
import { keep } from '../tensor/scope.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { abs, add, addScalar, exp, log, mul, neg, relu, scale, sub, where } from '../tensor/ops/elementwise.js';
import { mean, sum } from '../tensor/ops/reduce.js';
import { concat, contiguous, permute, reshape, slice, transpose } from '../tensor/ops/layout.js';
import { crossEntropy, embedding, indexSelect } from '../tensor/ops/index.js';
import { conv1dTimeMajor, layerNorm, rmsNorm, rope, softmax } from '../tensor/ops/nn.js';
import { linear, matmul } from '../tensor/ops/matmul.js';
import { ArdError } from '../util/errors.js';
import { mulberry32 } from '../util/random.js';
import { IGNORE, type EncodedConversation, hashInts } from './data.js';
import type { Weights } from './dims.js';

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

/**
 * Mean binary cross-entropy of the auxiliary head against multi-hot targets [clips, classes]. With
 * `mask` (one 0/1 per clip): the mean over the clips whose mask is 1 (0 when none is).
 */
export function auxLoss(engine: Engine, w: Weights, features: readonly Tensor[], targets: Float32Array, pool: AuxPool = 'mean', mask?: Float32Array): Tensor {
  const z = auxLogits(w, features, pool);
  const y = tensor(engine, targets, [...z.shape]);
  // softplus(z) − y·z, computed stably as max(z, 0) + log(1 + e^−|z|) − y·z
  const bce = sub(add(relu(z), log(addScalar(exp(neg(abs(z))), 1))), mul(y, z));
  if (!mask) return mean(bce);
  const kept = mask.reduce((a, b) => a + b, 0);
  const m = tensor(engine, mask, [mask.length, 1]);
  return scale(sum(mul(bce, m)), kept > 0 ? 1 / (kept * z.shape[1]!) : 0);
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
  aux?: { targets: Float32Array; mask?: Float32Array; weight: number; pool?: AuxPool },
): LossParts {
  const { logits, features } = 'prefix' in batch ? sharedForward(engine, w, config, mels, batch) : trainForward(engine, w, config, mels, batch, batch.rows, clipOf);
  const lm = crossEntropy(logits, tensor(engine, batch.targets, [batch.targets.length], 'i32'), { ignoreIndex: IGNORE });
  if (!aux || aux.weight === 0) return { loss: lm, lm, aux: null };
  const a = auxLoss(engine, w, features, aux.targets, aux.pool, aux.mask);
  return { loss: add(lm, scale(a, aux.weight)), lm, aux: a };
}

/** Mean cross-entropy over the batch's target positions (a scalar with gradients). */
export function trainLoss(engine: Engine, w: Weights, config: Qwen2AudioConfig, mels: readonly ClipMel[], batch: TrainBatch | SharedBatch, clipOf?: readonly number[]): Tensor {
  return trainLossParts(engine, w, config, mels, batch, clipOf).lm;
}
