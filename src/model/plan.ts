// What a model will need on a device, from its config alone (no weights read): the bytes of its
// weights as the loader lays them out (q|k|v and gate|up fused, matrices in the chosen dtype, vectors in
// f32), which of them exceed one storage binding and so load as row blocks, the KV cache for a number of
// positions and sequences, and the largest activation buffers of one encoder window and one decoder
// prefill. Attention scores are chunked over queries (as scaledDotProductAttention does), or never
// leave the workgroup where the device profile runs flash attention; other activations are not split,
// so one larger than a binding is a "does not fit".
import { rowBlockRanges } from '../tensor/blocked.js';
import { attentionScoreBudget } from '../gpu/profile.js';
import { ArdError } from '../util/errors.js';
import { Qwen2AudioConfig, expectedTensorShapes } from './config.js';

export interface PlanOptions {
  dtype: 'f32' | 'f16';
  /** KV cache dtype (default f32; loadAudioLLM's default for f16 checkpoints from elsewhere is f16). */
  kvDtype?: 'f32' | 'f16';
  /** Positions per sequence in the KV cache and the prefill (default: one audio window's tokens + 256). */
  positions?: number;
  /** Sequences decoded together (each has its own KV cache). */
  batch?: number;
  /** The device's maxStorageBufferBindingSize and maxBufferSize. */
  maxBindingBytes: number;
  maxBufferBytes: number;
  /** Memory the weights, cache and activations may use, when known (software adapters: host RAM). */
  memoryBytes?: number;
  /** The attention kernel inference will use (the device profile's nn.attention; default chunked). */
  attention?: 'chunked' | 'flash';
}

export interface PlannedTensor {
  name: string;
  shape: number[];
  dtype: 'f32' | 'f16';
  bytes: number;
  /** Row blocks the loader makes (1: one buffer). */
  blocks: number;
}

export interface ModelPlan {
  dtype: 'f32' | 'f16';
  positions: number;
  batch: number;
  weights: { bytes: number; tensors: number; largest: PlannedTensor };
  /** Weights larger than one binding: loaded as row blocks. */
  split: PlannedTensor[];
  kvCache: { bytes: number; dtype: 'f32' | 'f16' };
  /** The largest activations (f32), largest first. */
  activations: { name: string; shape: number[]; bytes: number }[];
  limits: { maxBindingBytes: number; maxBufferBytes: number; memoryBytes: number | null };
  /** Weights + KV cache + twice the largest activation (a producer and its consumer live at once). */
  totalBytes: number;
  fits: boolean;
  /** Why it does not fit, one line each (empty when it fits). */
  problems: string[];
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The loader's tensors: q|k|v and gate|up fused into one matrix each, Whisper's k bias zeros. */
function loadedTensors(config: Qwen2AudioConfig, dtype: 'f32' | 'f16'): PlannedTensor[] {
  const out: PlannedTensor[] = [];
  const fused = new Map<string, { name: string; shape: number[] }>();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const m = /^(.*\.)(q_proj|k_proj|v_proj|gate_proj|up_proj)\.(weight|bias)$/.exec(name);
    if (m) {
      const key = `${m[1]}${m[2] === 'gate_proj' || m[2] === 'up_proj' ? 'gate|up' : 'q|k|v'}.${m[3]}`;
      const f = fused.get(key) ?? { name: key, shape: [0, ...shape.slice(1)] };
      f.shape[0]! += shape[0]!;
      fused.set(key, f);
      // Whisper's k_proj has no bias: the fused bias holds zeros in its place
      if (m[2] === 'q_proj' && m[3] === 'bias' && name.startsWith('audio_tower.')) f.shape[0]! += shape[0]!;
      continue;
    }
    out.push({ name, shape, dtype, bytes: 0, blocks: 1 });
  }
  for (const f of fused.values()) out.push({ name: f.name, shape: f.shape, dtype, bytes: 0, blocks: 1 });
  // vectors (norms, biases) and the encoder's position table are f32; matrices take the model dtype
  for (const t of out) {
    if (t.shape.length < 2 || t.name.endsWith('embed_positions.weight')) t.dtype = 'f32';
    t.bytes = numel(t.shape) * (t.dtype === 'f16' ? 2 : 4);
  }
  return out; // a tied lm_head is the embedding: expectedTensorShapes lists it once
}

export function planModel(config: Qwen2AudioConfig, opts: PlanOptions): ModelPlan {
  const a = config.audio_config;
  const t = config.text_config;
  const batch = opts.batch ?? 1;
  const T = a.max_source_positions; // encoder positions per window (after the stride-2 convolution)
  const audioTokens = Math.floor(T / 2);
  const positions = opts.positions ?? Math.min(t.max_position_embeddings, audioTokens + 256);
  if (!Number.isSafeInteger(batch) || batch < 1) throw new ArdError(`plan: batch must be a positive integer (got ${batch})`);
  if (!Number.isSafeInteger(positions) || positions < 1) throw new ArdError(`plan: positions must be a positive integer (got ${positions})`);
  // the pool rounds buffer sizes up by at most 1/8, as loadAudioLLM allows for
  const binding = Math.floor(Math.min(opts.maxBindingBytes, opts.maxBufferBytes) / 1.125);

  const tensors = loadedTensors(config, opts.dtype);
  const problems: string[] = [];
  for (const w of tensors) {
    if (w.bytes <= binding) continue;
    const rowBytes = (w.bytes / w.shape[0]!) | 0;
    if (w.shape.length < 2 || w.name.endsWith('embed_positions.weight')) {
      problems.push(`${w.name} [${w.shape.join(', ')}] ${w.dtype}: ${w.bytes} bytes in one buffer exceed a binding (${binding})`);
    } else if (rowBytes > binding) {
      problems.push(`${w.name} [${w.shape.join(', ')}]: one row of ${rowBytes} bytes exceeds a binding (${binding})`);
    } else {
      w.blocks = rowBlockRanges(w.shape[0]!, numel(w.shape.slice(1)), w.dtype, binding).length;
    }
  }
  const weightBytes = tensors.reduce((s, w) => s + w.bytes, 0);
  const largest = tensors.reduce((m, w) => (w.bytes > m.bytes ? w : m));

  // keys and values of every layer: [KVH, positions, head_dim] each, per sequence
  const kvDtype = opts.kvDtype ?? 'f32';
  const kvPerLayer = 2 * t.num_key_value_heads * positions * t.head_dim * (kvDtype === 'f16' ? 2 : 4) * batch;
  if (positions > t.max_position_embeddings) problems.push(`${positions} positions exceed max_position_embeddings ${t.max_position_embeddings}`);

  // one encoder window per clip, and a prefill of `positions` tokens per sequence (f32 activations)
  const H = t.num_attention_heads;
  const acts: { name: string; shape: number[] }[] = [
    { name: 'encoder: log-mel window', shape: [a.num_mel_bins, 2 * T] },
    { name: 'encoder: conv1 unfolded input', shape: [2 * T, a.num_mel_bins * 3] },
    { name: 'encoder: conv2 unfolded input', shape: [T, a.d_model * 3] },
    { name: 'encoder: q|k|v', shape: [T, 3 * a.d_model] },
    { name: 'encoder: attention scores', shape: [a.encoder_attention_heads, T, T] },
    { name: 'encoder: MLP hidden', shape: [T, a.encoder_ffn_dim] },
    { name: 'decoder prefill: q|k|v', shape: [batch, positions, (H + 2 * t.num_key_value_heads) * t.head_dim] },
    { name: 'decoder prefill: attention scores', shape: [batch, H, positions, positions] },
    { name: 'decoder prefill: gate|up', shape: [batch, positions, 2 * t.intermediate_size] },
    { name: 'decoder: logits of the last position', shape: [batch, t.vocab_size] },
  ];
  // attention scores are materialised a chunk of query rows at a time (scaledDotProductAttention)
  const scoreCap = Math.min(attentionScoreBudget(opts.maxBindingBytes), binding);
  const flash = opts.attention === 'flash';
  const activations = acts
    // flash attention keeps its scores in workgroup memory: no buffer holds them
    .filter((x) => !(flash && x.name.endsWith('attention scores')))
    .map((x) => {
      const bytes = numel(x.shape) * 4;
      if (!x.name.endsWith('attention scores') || bytes <= scoreCap) return { ...x, bytes };
      const [rows, cols] = x.shape.slice(-2) as [number, number];
      const chunk = Math.max(1, Math.floor(scoreCap / ((bytes / rows) | 0)));
      return { name: `${x.name} (${Math.ceil(rows / chunk)} chunks of ${chunk} query rows)`, shape: [...x.shape.slice(0, -2), chunk, cols], bytes: (bytes / rows) * chunk };
    })
    .sort((p, q) => q.bytes - p.bytes);
  for (const x of activations) {
    if (x.bytes > binding) problems.push(`${x.name} [${x.shape.join(', ')}] f32: ${x.bytes} bytes exceed a binding (${binding}); activations are not split`);
  }
  const totalBytes = weightBytes + kvPerLayer * t.num_hidden_layers + 2 * activations[0]!.bytes;
  if (opts.memoryBytes !== undefined && totalBytes > opts.memoryBytes) {
    problems.push(`needs about ${totalBytes} bytes (weights ${weightBytes}, KV cache ${kvPerLayer * t.num_hidden_layers}, activations ${2 * activations[0]!.bytes}), more than the ${opts.memoryBytes} available`);
  }
  return {
    dtype: opts.dtype,
    positions,
    batch,
    weights: { bytes: weightBytes, tensors: tensors.length, largest },
    split: tensors.filter((w) => w.blocks > 1).sort((p, q) => q.bytes - p.bytes),
    kvCache: { bytes: kvPerLayer * t.num_hidden_layers, dtype: kvDtype },
    activations,
    limits: { maxBindingBytes: binding, maxBufferBytes: opts.maxBufferBytes, memoryBytes: opts.memoryBytes ?? null },
    totalBytes,
    fits: problems.length === 0,
    problems,
  };
}
