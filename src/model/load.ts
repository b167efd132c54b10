// Loading a Qwen2-Audio checkpoint (Hugging Face layout) onto the GPU.
//
//   dir/config.json               → Qwen2AudioConfig (config.ts fills HF's defaults)
//   dir/preprocessor_config.json  → the Whisper front end (Qwen2-Audio's if absent)
//   dir/generation_config.json    → stop tokens and sampling defaults (optional)
//   dir/tokenizer.json            → the tokenizer (optional)
//   dir/model.safetensors or dir/model.safetensors.index.json + shards
//
// Tensors are streamed: read in chunks of at most LOAD_CHUNK_VALUES values (LoadOptions.chunkValues), converted (F32/F16/BF16
// → the model dtype) and uploaded chunk by chunk, also where the loader fuses them (q|k|v and gate|up
// become one matrix each, so a layer runs one projection matmul instead of three) — so host memory
// stays a few chunks whatever the checkpoint's size. A matrix larger than one storage binding is split
// into row blocks (src/tensor/blocked.ts). Shapes are checked against the config before anything is uploaded; every
// problem is listed in one error.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HOP_LENGTH, N_FFT, SAMPLE_RATE } from '../audio/mel-filters.js';
import { FrontendConfig, QWEN2_AUDIO_FRONTEND } from '../audio/logmel.js';
import type { Engine } from '../gpu/engine.js';
import { keep } from '../tensor/scope.js';
import { Tensor, empty } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import { readJson } from '../util/fs.js';
import { AudioLLM, GenerationDefaults } from './audiollm.js';
import type { EncoderLayerWeights, EncoderWeights } from './audio-encoder.js';
import { Qwen2AudioConfig, checkTensors, expectedTensorShapes, loadQwen2AudioConfig } from './config.js';
import type { DecoderLayerWeights, DecoderWeights } from './decoder.js';
import { Checkpoint, SAFETENSORS_DTYPE_BYTES, TensorInfo, openCheckpoint, toFloat16Bits, toFloat32 } from '../io/safetensors.js';
import { RowBlocks, Weight, rowBlockRanges } from '../tensor/blocked.js';
import { Tokenizer, loadTokenizer } from './tokenizer.js';

export type WeightDtype = 'f32' | 'f16';

export interface LoadOptions {
  /**
   * 'f32' (default): every weight in f32. 'f16': the matrices (projections, embeddings, lm_head,
   * convolutions) in f16, halving memory; norms, biases and positions stay f32 and activations
   * are f32 either way. Needs the adapter's shader-f16. 'auto': what the checkpoint's config.json
   * says (resolveWeightDtype), as the CLI does by default.
   */
  dtype?: WeightDtype | 'auto';
  /** KV cache dtype of the model's generation (default: the weight dtype; see AudioLLM.kvDtype). */
  kvDtype?: WeightDtype;
  /** A one-line note for the user (e.g. 'auto' falling back to f32); the CLI prints it on stderr. */
  onNote?: (line: string) => void;
  /** Load dir/tokenizer.json when present (default true). */
  tokenizer?: boolean;
  /** Called after each tensor is read with (done, total) counted in checkpoint tensors. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Largest weight buffer to create (default: what one kernel binding may hold, the device's
   * maxStorageBufferBindingSize — 128 MiB on lavapipe — or less where the environment variable
   * ARDGPU_MAX_BINDING_BYTES says so). A larger matrix is split into row blocks (RowBlocks).
   */
  maxBindingBytes?: number;
  /**
   * Values per staging chunk (default 4 Mi values = 16 MiB of f32; also the environment variable
   * ARDGPU_LOAD_CHUNK_VALUES). Host memory while loading is a few chunks: see LoadStats.
   */
  chunkValues?: number;
}

/** What loading held on the host and read (AudioLLM.loadStats). */
export interface LoadStats {
  /** Values per staging chunk. */
  chunkValues: number;
  /** Largest host memory held at once for one chunk: staging + raw bytes read + converted copies. */
  peakStagingBytes: number;
  /** Largest single host buffer the loader allocated. */
  largestBufferBytes: number;
  /** Bytes read from the checkpoint's files (tensor data). */
  bytesRead: number;
  /** Bytes uploaded to the device. */
  bytesUploaded: number;
  /** readRange calls. */
  reads: number;
}

/**
 * The weight dtype for `requested` on an adapter with or without shader-f16, as Hugging Face's
 * torch_dtype="auto" reads it: config.json's `torch_dtype` (or `dtype`, transformers ≥ 4.56)
 * float16/bfloat16 → f16 (bf16 is converted: WGSL has no bf16), but f32 where the adapter lacks
 * shader-f16 (with a note); float32 or absent → f32. The embedded model says float16, so it loads
 * f16 on f16 adapters, as ardgpu's CLI always loaded it (activations stay f32 either way).
 */
export function resolveWeightDtype(
  configJson: Record<string, unknown>,
  requested: WeightDtype | 'auto' | undefined,
  hasF16: boolean,
  source = 'config.json',
): { dtype: WeightDtype; note?: string } {
  const req = requested ?? 'auto';
  if (req !== 'auto' && req !== 'f32' && req !== 'f16') throw new ArdError(`dtype: expected auto, f32 or f16, got ${JSON.stringify(req)}`);
  if (req !== 'auto') return { dtype: req };
  const text = configJson.text_config as Record<string, unknown> | undefined;
  const td = configJson.torch_dtype ?? configJson.dtype ?? text?.torch_dtype ?? text?.dtype;
  if (td !== 'float16' && td !== 'bfloat16') return { dtype: 'f32' };
  if (hasF16) return { dtype: 'f16' };
  return { dtype: 'f32', note: `note: ${source} says ${td}, but this adapter has no shader-f16: loading the weights in f32 (twice the memory)` };
}

/**
 * The KV cache dtype when none is asked for: the weight dtype — f16 weights come from an f16/bf16
 * checkpoint whose own runs kept keys and values in half precision — except for checkpoints
 * ardgpu trained (safetensors metadata producer "ardgpu …", the embedded model among them): they
 * were trained and evaluated with f32 activations, which an f32 cache keeps exactly (the demo's
 * figures included); their f16 storage is only a size choice.
 */
export function defaultKvDtype(weights: WeightDtype, metadata: Record<string, string>): WeightDtype {
  if (weights === 'f32') return 'f32';
  return (metadata.producer ?? '').startsWith('ardgpu') ? 'f32' : 'f16';
}

/** ARDGPU_LOAD_CHUNK_VALUES or the option, checked. */
function chunkValuesOf(opt: number | undefined): number {
  const env = process.env.ARDGPU_LOAD_CHUNK_VALUES;
  const v = opt ?? (env !== undefined && env !== '' ? Number(env) : LOAD_CHUNK_VALUES);
  if (!Number.isSafeInteger(v) || v < 1) throw new ArdError(`load chunk: expected a positive whole number of values, got '${opt ?? env}'`);
  return v;
}

/**
 * Maps the tensor names of newer transformers layouts onto the classic
 * Qwen2AudioForConditionalGeneration names this code uses:
 *   model.audio_tower.* → audio_tower.*, model.multi_modal_projector.* → multi_modal_projector.*,
 *   model.language_model.* and language_model.{layers,embed_tokens,norm}.* → language_model.model.*,
 *   lm_head.weight → language_model.lm_head.weight.
 */
export function canonicalTensorName(name: string): string {
  if (name.startsWith('model.audio_tower.')) return name.slice('model.'.length);
  if (name.startsWith('model.multi_modal_projector.')) return name.slice('model.'.length);
  if (name.startsWith('model.language_model.')) return 'language_model.model.' + name.slice('model.language_model.'.length);
  if (name === 'lm_head.weight') return 'language_model.lm_head.weight';
  const m = /^language_model\.(layers\.|embed_tokens\.|norm\.)/.exec(name);
  if (m) return 'language_model.model.' + name.slice('language_model.'.length);
  return name;
}

/** The Whisper front end of a model directory (Qwen2-Audio's defaults for missing keys/file). */
export function loadFrontendConfig(dir: string): FrontendConfig {
  const file = path.join(dir, 'preprocessor_config.json');
  if (!fs.existsSync(file)) return { ...QWEN2_AUDIO_FRONTEND };
  const j = readJson<Record<string, unknown>>(file);
  const int = (key: string, def: number): number => {
    const v = j[key] ?? def;
    if (!Number.isSafeInteger(v) || (v as number) <= 0) throw new ArdError(`${file}: ${key} must be a positive integer (got ${JSON.stringify(v)})`);
    return v as number;
  };
  const samplingRate = int('sampling_rate', SAMPLE_RATE);
  if (samplingRate !== SAMPLE_RATE) throw new ArdError(`${file}: sampling_rate ${samplingRate} is not supported (16000 only)`);
  const chunk = int('chunk_length', 30);
  const fe: FrontendConfig = {
    nMels: int('feature_size', QWEN2_AUDIO_FRONTEND.nMels),
    nSamples: int('n_samples', chunk * samplingRate),
    hopLength: int('hop_length', HOP_LENGTH),
    nFft: int('n_fft', N_FFT),
    samplingRate,
  };
  if (fe.nFft % 2 !== 0) throw new ArdError(`${file}: n_fft ${fe.nFft} must be even`);
  return fe;
}

/**
 * The audio window (samples) of the model in `dir`, read from its preprocessor config without
 * loading the model, so that a clip can be opened (and a bad file refused) first. A config it
 * cannot read gives Qwen2-Audio's window: loading the model then says what is wrong with it.
 */
export function audioWindowSamples(dir: string): number {
  try {
    return loadFrontendConfig(dir).nSamples;
  } catch {
    return QWEN2_AUDIO_FRONTEND.nSamples;
  }
}

function idList(v: unknown): number[] {
  if (Array.isArray(v)) return v.filter((x): x is number => Number.isSafeInteger(x) && x >= 0);
  return Number.isSafeInteger(v) && (v as number) >= 0 ? [v as number] : [];
}

/** Stop tokens and sampling defaults: generation_config.json, else config.json's text eos, plus <|im_end|> / <|endoftext|>. */
export function loadGenerationDefaults(dir: string, config: Qwen2AudioConfig, tokenizer: Tokenizer | null): GenerationDefaults {
  const file = path.join(dir, 'generation_config.json');
  const g = fs.existsSync(file) ? readJson<Record<string, unknown>>(file) : {};
  const eos = new Set<number>([...idList(g.eos_token_id), ...idList(config.text_config.eos_token_id)]);
  for (const t of ['<|im_end|>', '<|endoftext|>']) {
    const id = tokenizer?.tokenToId(t);
    if (id !== undefined) eos.add(id);
  }
  const num = (k: string): number | undefined => (typeof g[k] === 'number' && Number.isFinite(g[k]) ? (g[k] as number) : undefined);
  return {
    eosTokenIds: [...eos].sort((a, b) => a - b),
    doSample: g.do_sample === true,
    temperature: num('temperature'),
    topP: num('top_p'),
    topK: num('top_k'),
  };
}

// ---- tensors --------------------------------------------------------------------------------

/** A tensor name, or that many zeros (Whisper's missing k_proj bias inside the fused q|k|v bias). */
type Part = string | { zeros: number };

/** Values per upload chunk (16 MiB of f32): a loader's host memory is a small multiple of this. */
const LOAD_CHUNK_VALUES = 4 << 20;

const partsLabel = (parts: Part[]) => parts.map((p) => (typeof p === 'string' ? p : `${p.zeros} zeros`)).join(' + ');

class WeightReader {
  /** canonical name → checkpoint name */
  readonly names = new Map<string, string>();
  readonly infos = new Map<string, TensorInfo>();
  /** Every tensor uploaded so far (freed if loading fails). */
  readonly created: Tensor[] = [];
  read = 0;
  readonly stats: LoadStats;

  constructor(
    readonly engine: Engine,
    readonly ckpt: Checkpoint,
    readonly dtype: WeightDtype,
    /** Largest buffer a kernel can bind. */
    readonly maxBytes: number,
    readonly onProgress?: (done: number, total: number) => void,
    readonly total = 0,
    readonly chunkValues = LOAD_CHUNK_VALUES,
  ) {
    this.stats = { chunkValues, peakStagingBytes: 0, largestBufferBytes: 0, bytesRead: 0, bytesUploaded: 0, reads: 0 };
    for (const [name, info] of ckpt.tensors) {
      const c = canonicalTensorName(name);
      if (this.names.has(c)) throw new ArdError(`${ckpt.source}: tensors ${this.names.get(c)} and ${name} are the same weight under two names`);
      this.names.set(c, name);
      this.infos.set(c, info);
    }
  }

  /** Element ranges of the parts in the concatenation, checked to hold exactly `n` values. */
  private layout(parts: Part[], shape: number[]): { part: Part; at: number; len: number }[] {
    const n = shape.reduce((a, b) => a * b, 1);
    const out: { part: Part; at: number; len: number }[] = [];
    let at = 0;
    for (const part of parts) {
      const len = typeof part === 'string' ? this.infos.get(part)!.shape.reduce((a, b) => a * b, 1) : part.zeros;
      out.push({ part, at, len });
      at += len;
    }
    if (at !== n) throw new ArdError(`${this.ckpt.source}: ${partsLabel(parts)} do not hold the ${n} values of [${shape.join(', ')}]`);
    return out;
  }

  /**
   * Uploads elements [e0, e1) of the parts' concatenation as a new tensor of `shape`, streamed through
   * one staging chunk: host memory stays a few chunks whatever the tensor's size.
   */
  private upload(parts: Part[], label: string, spans: { part: Part; at: number; len: number }[], e0: number, e1: number, shape: number[], dtype: 'f32' | 'f16'): Tensor {
    const t = keep(empty(this.engine, shape, dtype));
    this.created.push(t);
    t.name = label;
    const outBytes = dtype === 'f16' ? 2 : 4;
    const staging = new Float32Array(Math.min(this.chunkValues, e1 - e0));
    const st = this.stats;
    // host bytes held for this chunk beyond `staging` (raw read + converted copy); see note()
    const note = (extra: number, ...buffers: ArrayBufferView[]) => {
      for (const b of buffers) st.largestBufferBytes = Math.max(st.largestBufferBytes, b.byteLength);
      st.peakStagingBytes = Math.max(st.peakStagingBytes, staging.byteLength + extra);
    };
    note(0, staging);
    let filled = 0; // values in staging
    let written = 0; // values of t already uploaded
    const flush = () => {
      const host = staging.subarray(0, filled);
      st.bytesUploaded += filled * outBytes;
      if (dtype === 'f32') this.engine.write(t.buffer, written * outBytes, host);
      else {
        const bits = toFloat16Bits(host);
        note(bits.byteLength, bits);
        for (let i = 0; i < bits.length; i++) {
          if ((bits[i]! & 0x7c00) === 0x7c00 && Number.isFinite(host[i]!)) {
            throw new ArdError(`${this.ckpt.source}: ${label} has value ${host[i]} beyond the f16 range (load with dtype f32)`);
          }
        }
        this.engine.write(t.buffer, written * outBytes, bits);
      }
      written += filled;
      filled = 0;
    };
    for (const { part, at, len } of spans) {
      let from = Math.max(e0, at);
      const to = Math.min(e1, at + len);
      while (from < to) {
        const take = Math.min(to - from, staging.length - filled);
        if (typeof part === 'string') {
          const info = this.infos.get(part)!;
          const bpe = SAFETENSORS_DTYPE_BYTES[info.dtype];
          const bytes = this.ckpt.readRange(this.names.get(part)!, (from - at) * bpe, (from - at + take) * bpe);
          const f32 = toFloat32(bytes, info.dtype);
          st.reads++;
          st.bytesRead += bytes.byteLength;
          note(bytes.byteLength + (f32.buffer === bytes.buffer ? 0 : f32.byteLength), bytes, f32);
          staging.set(f32, filled);
        } else staging.fill(0, filled, filled + take);
        filled += take;
        from += take;
        if (filled === staging.length) flush();
      }
    }
    if (filled > 0) flush();
    for (const { part, at, len } of spans) if (typeof part === 'string' && at + len <= e1 && at + len > e0) this.onProgress?.(++this.read, this.total);
    return t;
  }

  /**
   * A matrix or convolution kernel (the parts concatenated along dim 0) in the model's weight dtype.
   * One larger than a storage binding is split along dim 0 into row blocks (RowBlocks), each uploaded
   * on its own.
   */
  mat(parts: Part[], shape: number[]): Weight {
    const spans = this.layout(parts, shape);
    const label = partsLabel(parts);
    const [rows, ...rest] = shape as [number, ...number[]];
    const rowValues = rest.reduce((a, b) => a * b, 1);
    const valueBytes = this.dtype === 'f16' ? 2 : 4;
    if (rows * rowValues * valueBytes <= this.maxBytes) return this.upload(parts, label, spans, 0, rows * rowValues, shape, this.dtype);
    if (rowValues * valueBytes > this.maxBytes) {
      throw new ArdError(
        `${this.ckpt.source}: ${label} [${shape.join(', ')}] ${this.dtype}: one row of ${rowValues * valueBytes} bytes is more than one storage binding of this adapter holds (${this.maxBytes})`,
      );
    }
    const blocks = rowBlockRanges(rows, rowValues, this.dtype, this.maxBytes).map(([r0, r1], i) =>
      this.upload(parts, `${label} rows ${r0}–${r1 - 1} (block ${i})`, spans, r0 * rowValues, r1 * rowValues, [r1 - r0, ...rest], this.dtype),
    );
    return new RowBlocks(blocks);
  }

  /** A vector (norm weight, bias) or the position table: always f32. */
  vec(parts: Part[], shape: number[]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    return this.upload(parts, partsLabel(parts), this.layout(parts, shape), 0, n, shape, 'f32');
  }
}

function readEncoder(r: WeightReader, config: Qwen2AudioConfig): EncoderWeights {
  const a = config.audio_config;
  const D = a.d_model;
  const A = 'audio_tower.';
  const layers: EncoderLayerWeights[] = [];
  for (let i = 0; i < a.encoder_layers; i++) {
    const p = `${A}layers.${i}.`;
    layers.push({
      ln1W: r.vec([`${p}self_attn_layer_norm.weight`], [D]),
      ln1B: r.vec([`${p}self_attn_layer_norm.bias`], [D]),
      // Whisper's k_proj has no bias: zeros in the fused bias
      qkvW: r.mat([`${p}self_attn.q_proj.weight`, `${p}self_attn.k_proj.weight`, `${p}self_attn.v_proj.weight`], [3 * D, D]),
      qkvB: r.vec([`${p}self_attn.q_proj.bias`, { zeros: D }, `${p}self_attn.v_proj.bias`], [3 * D]),
      outW: r.mat([`${p}self_attn.out_proj.weight`], [D, D]),
      outB: r.vec([`${p}self_attn.out_proj.bias`], [D]),
      ln2W: r.vec([`${p}final_layer_norm.weight`], [D]),
      ln2B: r.vec([`${p}final_layer_norm.bias`], [D]),
      fc1W: r.mat([`${p}fc1.weight`], [a.encoder_ffn_dim, D]),
      fc1B: r.vec([`${p}fc1.bias`], [a.encoder_ffn_dim]),
      fc2W: r.mat([`${p}fc2.weight`], [D, a.encoder_ffn_dim]),
      fc2B: r.vec([`${p}fc2.bias`], [D]),
    });
  }
  const H = config.text_config.hidden_size;
  return {
    conv1W: r.mat([`${A}conv1.weight`], [D, a.num_mel_bins, 3]),
    conv1B: r.vec([`${A}conv1.bias`], [D]),
    conv2W: r.mat([`${A}conv2.weight`], [D, D, 3]),
    conv2B: r.vec([`${A}conv2.bias`], [D]),
    positions: r.vec([`${A}embed_positions.weight`], [a.max_source_positions, D]),
    layers,
    lnPostW: r.vec([`${A}layer_norm.weight`], [D]),
    lnPostB: r.vec([`${A}layer_norm.bias`], [D]),
    projW: r.mat(['multi_modal_projector.linear.weight'], [H, D]),
    projB: r.vec(['multi_modal_projector.linear.bias'], [H]),
  };
}

function readDecoder(r: WeightReader, config: Qwen2AudioConfig): DecoderWeights {
  const t = config.text_config;
  const H = t.hidden_size;
  const q = t.num_attention_heads * t.head_dim;
  const kv = t.num_key_value_heads * t.head_dim;
  const I = t.intermediate_size;
  const T = 'language_model.model.';
  const layers: DecoderLayerWeights[] = [];
  for (let i = 0; i < t.num_hidden_layers; i++) {
    const p = `${T}layers.${i}.`;
    layers.push({
      ln1W: r.vec([`${p}input_layernorm.weight`], [H]),
      qkvW: r.mat([`${p}self_attn.q_proj.weight`, `${p}self_attn.k_proj.weight`, `${p}self_attn.v_proj.weight`], [q + 2 * kv, H]),
      qkvB: r.vec([`${p}self_attn.q_proj.bias`, `${p}self_attn.k_proj.bias`, `${p}self_attn.v_proj.bias`], [q + 2 * kv]),
      oW: r.mat([`${p}self_attn.o_proj.weight`], [H, q]),
      ln2W: r.vec([`${p}post_attention_layernorm.weight`], [H]),
      gateUpW: r.mat([`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`], [2 * I, H]),
      downW: r.mat([`${p}mlp.down_proj.weight`], [H, I]),
    });
  }
  const embed = r.mat([`${T}embed_tokens.weight`], [t.vocab_size, H]);
  const lmHead = t.tie_word_embeddings ? embed : r.mat(['language_model.lm_head.weight'], [t.vocab_size, H]);
  return { embed, layers, norm: r.vec([`${T}norm.weight`], [H]), lmHead };
}

/** ARDGPU_MAX_BINDING_BYTES: a lower binding limit than the adapter's (tests split small models this way). */
function envBindingLimit(): number | undefined {
  const v = process.env.ARDGPU_MAX_BINDING_BYTES;
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 4) throw new ArdError(`ARDGPU_MAX_BINDING_BYTES: expected a whole number of bytes ≥ 4, got '${v}'`);
  return n;
}

/**
 * Loads a Qwen2-Audio model directory (HF layout) onto `engine`. Throws one ArdError listing every
 * missing, mis-shaped or non-float tensor before uploading anything.
 */
export async function loadAudioLLM(engine: Engine, dir: string, opts: LoadOptions = {}): Promise<AudioLLM> {
  const want = opts.dtype ?? 'f32';
  if (want !== 'f32' && want !== 'f16' && want !== 'auto') throw new ArdError(`loadAudioLLM: dtype must be 'auto', 'f32' or 'f16' (got ${JSON.stringify(want)})`);
  if (want === 'f16' && !engine.f16) throw new ArdError(`loadAudioLLM: dtype f16 needs the shader-f16 feature, which this adapter lacks`);
  const kvDtype = opts.kvDtype;
  if (kvDtype !== undefined && kvDtype !== 'f32' && kvDtype !== 'f16') throw new ArdError(`loadAudioLLM: kvDtype must be 'f32' or 'f16' (got ${JSON.stringify(kvDtype)})`);
  if (kvDtype === 'f16' && !engine.f16) throw new ArdError(`loadAudioLLM: an f16 KV cache needs the shader-f16 feature, which this adapter lacks`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ArdError(`${dir}: not a model directory`);
  const chunkValues = chunkValuesOf(opts.chunkValues);
  const config = loadQwen2AudioConfig(dir);
  let dtype: WeightDtype = want === 'auto' ? 'f32' : want;
  if (want === 'auto') {
    const file = path.join(dir, 'config.json');
    const r = resolveWeightDtype(readJson<Record<string, unknown>>(file), 'auto', engine.f16, file);
    dtype = r.dtype;
    if (r.note) opts.onNote?.(r.note);
  }
  const frontend = loadFrontendConfig(dir);
  if (frontend.nMels !== config.audio_config.num_mel_bins) {
    throw new ArdError(`${dir}: preprocessor_config.json feature_size ${frontend.nMels} does not match audio_config.num_mel_bins ${config.audio_config.num_mel_bins}`);
  }
  if (Math.floor(frontend.nSamples / frontend.hopLength) !== 2 * config.audio_config.max_source_positions) {
    throw new ArdError(
      `${dir}: preprocessor_config.json n_samples ${frontend.nSamples} gives ${Math.floor(frontend.nSamples / frontend.hopLength)} frames, but the encoder takes 2 × max_source_positions = ${2 * config.audio_config.max_source_positions}`,
    );
  }
  const tokFile = path.join(dir, 'tokenizer.json');
  const tokenizer = opts.tokenizer !== false && fs.existsSync(tokFile) ? loadTokenizer(tokFile) : null;
  const generation = loadGenerationDefaults(dir, config, tokenizer);

  const ckpt = openCheckpoint(dir);
  let r: WeightReader | null = null;
  try {
    // the buffer pool rounds sizes up by at most 1/8: keep the rounded buffer within the limit
    const devMax = Math.floor(Math.min(engine.limits.maxStorageBufferBindingSize, engine.limits.maxBufferSize) / 1.125);
    const maxBytes = Math.min(opts.maxBindingBytes ?? envBindingLimit() ?? Infinity, devMax);
    r = new WeightReader(engine, ckpt, dtype, maxBytes, opts.onProgress, expectedTensorShapes(config).size, chunkValues);
    checkTensors({ tensors: r.infos, source: ckpt.source }, config);
    const encoder = readEncoder(r, config);
    const decoder = readDecoder(r, config);
    await engine.sync();
    const kv = kvDtype ?? defaultKvDtype(dtype, ckpt.metadata);
    return new AudioLLM(engine, { config, frontend, encoder, decoder, tokenizer, generation, dtype, kvDtype: kv, source: dir, loadStats: r.stats });
  } catch (e) {
    for (const t of r?.created ?? []) t.dispose();
    throw e;
  } finally {
    ckpt.close();
  }
}
