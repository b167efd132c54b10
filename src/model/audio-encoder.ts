// The audio tower of Qwen2-Audio (a Whisper encoder) and the projector, for one 30 s window:
//
//   mel [n_mels, 2T] → conv1 (k3, pad 1) + GELU → conv2 (k3, stride 2, pad 1) + GELU → [T, d]
//   + embed_positions[:T] → N pre-LN blocks (bidirectional MHA, GELU MLP)
//   → AvgPool1d(2) over time → audio_tower.layer_norm → multi_modal_projector.linear → [T/2, hidden]
//
// Short clips: HF pads the window and masks the keys of padded frames. We use the exact shortcut
// (tools/reference/README.md): run only the T = n_keys valid positions, from mel frames
// [0, 2·n_keys], with no mask — the same features, and a 5 s clip costs 250 positions, not 1500.
import type { Qwen2AudioEncoderConfig } from './config.js';
import type { Hooks } from './hooks.js';
import { Tensor } from '../tensor/tensor.js';
import { add, map } from '../tensor/ops/elementwise.js';
import { contiguous, reshape, slice, transpose } from '../tensor/ops/layout.js';
import { conv1dTimeMajor, layerNorm, scaledDotProductAttention } from '../tensor/ops/nn.js';
import { linear } from '../tensor/ops/matmul.js';
import type { Weight } from '../tensor/blocked.js';
import { ArdError } from '../util/errors.js';

export interface EncoderLayerWeights {
  ln1W: Tensor; // self_attn_layer_norm
  ln1B: Tensor;
  qkvW: Weight; // [3d, d]: q_proj | k_proj | v_proj
  qkvB: Tensor; // [3d]: q bias | 0 (k_proj has none) | v bias
  outW: Weight;
  outB: Tensor;
  ln2W: Tensor; // final_layer_norm
  ln2B: Tensor;
  fc1W: Weight;
  fc1B: Tensor;
  fc2W: Weight;
  fc2B: Tensor;
}

export interface EncoderWeights {
  conv1W: Weight; // [d, n_mels, 3]
  conv1B: Tensor;
  conv2W: Weight; // [d, d, 3]
  conv2B: Tensor;
  positions: Tensor; // [max_source_positions, d], read from the checkpoint
  layers: EncoderLayerWeights[];
  lnPostW: Tensor; // audio_tower.layer_norm (after the pool)
  lnPostB: Tensor;
  projW: Weight; // multi_modal_projector.linear [hidden, d]
  projB: Tensor;
}

const LN_EPS = 1e-5; // nn.LayerNorm's default; Whisper's config does not set it

/** Valid positions after the convolutions for `validFrames` mel frames (HF: (n − 1)//2 + 1). */
export function convOutLength(validFrames: number): number {
  return Math.floor((validFrames - 1) / 2) + 1;
}

/** Audio tokens a window with `validFrames` valid mel frames gives (750 for a full 30 s window). */
export function audioTokenCount(validFrames: number): number {
  if (validFrames <= 0) return 0;
  return Math.max(0, Math.floor((convOutLength(validFrames) - 2) / 2) + 1);
}

export interface EncodeOptions {
  hooks?: Hooks;
  /** Which window of the clip this is (passed to hooks). */
  window?: number;
  /** Also return the last layer's output and the pooled, normed states (tests, analysis). */
  intermediate?: boolean;
}

export interface EncodeResult {
  /** [audioTokenCount(validFrames), hidden]: the rows spliced into the prompt. */
  features: Tensor;
  /** [T, d] the residual stream after the last encoder layer (with `intermediate`). */
  hidden?: Tensor;
  /** [T/2, d] after the pool and audio_tower.layer_norm (with `intermediate`). */
  pooled?: Tensor;
}

/** Columns [col0, col0 + H·hd) of a dense [T, C] matrix as an [H, T, hd] view. */
export function headsView(m: Tensor, col0: number, heads: number, hd: number): Tensor {
  const [T, C] = m.shape as [number, number];
  if (!m.isContiguousIgnoringOffset()) throw new ArdError('headsView: expects a dense matrix');
  return m.view([heads, T, hd], [hd, C, 1], m.offset + col0);
}

/** Bidirectional multi-head self-attention over x [T, d] (no mask). */
function selfAttention(h: Tensor, w: EncoderLayerWeights, heads: number): Tensor {
  const [T, d] = h.shape as [number, number];
  const hd = d / heads;
  const qkv = linear(h, w.qkvW, w.qkvB); // [T, 3d]
  const q = headsView(qkv, 0, heads, hd); // [H, T, hd] views, no copies
  const k = headsView(qkv, d, heads, hd);
  const v = headsView(qkv, 2 * d, heads, hd);
  const o = scaledDotProductAttention(q, k, v); // [H, T, hd], scale 1/√hd, no mask
  const merged = reshape(contiguous(transpose(o, 0, 1)), [T, d]);
  return linear(merged, w.outW, w.outB);
}

function encoderLayer(x: Tensor, w: EncoderLayerWeights, cfg: Qwen2AudioEncoderConfig): Tensor {
  // attention block (pre-LN)
  const h1 = layerNorm(x, w.ln1W, w.ln1B, LN_EPS);
  const x1 = add(x, selfAttention(h1, w, cfg.encoder_attention_heads));
  // MLP block (pre-LN): fc2(gelu(fc1(h)))
  const h2 = layerNorm(x1, w.ln2W, w.ln2B, LN_EPS);
  const f = linear(h2, w.fc1W, w.fc1B, 'gelu');
  return add(x1, linear(f, w.fc2W, w.fc2B));
}

/**
 * One window through the audio tower and the projector. `mel` is the window's log-mel
 * [n_mels, 2·max_source_positions] (padded as Qwen2AudioProcessor does); frames past
 * `validFrames` are padding. Call inside tidy(); the returned tensors belong to the caller.
 */
export function encodeWindow(
  w: EncoderWeights,
  cfg: Qwen2AudioEncoderConfig,
  mel: Tensor,
  validFrames: number,
  opts: EncodeOptions = {},
): EncodeResult {
  const frames = 2 * cfg.max_source_positions;
  if (mel.rank !== 2 || mel.shape[0] !== cfg.num_mel_bins || mel.shape[1] !== frames) {
    throw new ArdError(`audio encoder: mel must be [${cfg.num_mel_bins}, ${frames}], got [${mel.shape.join(', ')}]`);
  }
  if (!Number.isInteger(validFrames) || validFrames < 1 || validFrames > frames) {
    throw new ArdError(`audio encoder: valid frames ${validFrames} outside 1..${frames}`);
  }
  const T = convOutLength(validFrames);
  // the exact shortcut: frames [0, 2T] still reach position T−1 through both convolutions
  const melIn = slice(mel, 1, 0, Math.min(frames, 2 * T + 1));
  // both convolutions time-major ([frames, d]) as unfold + matmul (see conv1dTimeMajor)
  const g1 = conv1dTimeMajor(melIn, w.conv1W, w.conv1B, { stride: 1, padding: 1, act: 'gelu' });
  const c2 = conv1dTimeMajor(transpose(g1), w.conv2W, w.conv2B, { stride: 2, padding: 1, rows: T }); // [T, d]
  // GELU and the position table in one pass
  let x = map([c2, slice(w.positions, 0, 0, T)], 'gelu_(a) + b', { name: 'gelu_add_pos' });
  for (let i = 0; i < w.layers.length; i++) {
    x = encoderLayer(x, w.layers[i]!, cfg);
    if (opts.hooks?.has('encoder', i)) {
      x = opts.hooks.run(x, { where: 'encoder', layer: i, start: 0, rows: T, step: 0, window: opts.window ?? 0 });
    }
  }
  // AvgPool1d(2, 2) over time (drops a trailing odd row), then the final LayerNorm
  const half = Math.floor(T / 2);
  const pooledRaw = map([slice(x, 0, 0, 2 * half, 2), slice(x, 0, 1, 2 * half, 2)], '0.5 * (a + b)', { name: 'avgpool2' });
  const pooled = layerNorm(pooledRaw, w.lnPostW, w.lnPostB, LN_EPS);
  const n = audioTokenCount(validFrames);
  const features = linear(slice(pooled, 0, 0, n), w.projW, w.projB);
  return opts.intermediate ? { features, hidden: x, pooled } : { features };
}
