// The size of the AudioLLM that ardgpu trains (ModelDims), the Qwen2-Audio config and front end
// those dims give, and the initial weights of a run.
import type { FrontendConfig } from '../audio/logmel.js';
import type { Engine } from '../gpu/engine.js';
import { type Qwen2AudioConfig, expectedTensorShapes, parseQwen2AudioConfig } from '../model/config.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { keep } from '../tensor/scope.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { mulberry32 } from '../util/random.js';
import { fnv, hashInts, templateIds } from './data.js';

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
